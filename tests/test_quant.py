"""INT8 on the CPU (backends/onnx_quant.py): an INT8 copy of the bundled model's dense graph,
calibrated on training-patient scans, gives fp32's detections on real sample scans; its sidecar
records the calibration; a missing calibration set or an impossible combination is one clear line.
The accuracy on all 22 test-patient scans and the speed are measured by benchmarks/quant_eval.py
(benchmarks/RESULTS.md)."""
from __future__ import annotations

import json
import shutil

import cv2
import pytest
from typer.testing import CliRunner

from streamseg import backends
from streamseg.backends.onnx_quant import CALIB_DIR, calibration_files, ensure_int8, int8_path
from streamseg.backends.parity import dice
from streamseg.app.cli import app
from streamseg.types import NERVE_SCORE, StreamsegError


@pytest.fixture(scope="module")
def calib4(tmp_path_factory):
    """Four of the bundled calibration scans (a quicker build than all 16)."""
    d = tmp_path_factory.mktemp("calib")
    for p in calibration_files()[::4]:
        shutil.copy(p, d / p.name)
    return d


@pytest.fixture(scope="module")
def fp32(engines_dir):
    return backends.load("onnxruntime", engines_dir=engines_dir)


@pytest.fixture(scope="module")
def int8_graph(fp32, engines_dir, calib4):
    from streamseg.backends.onnx_export import ensure_onnx

    return ensure_int8(ensure_onnx(fp32.model, fp32.info, engines_dir), calib4, log=print)


def test_int8_detections_match_fp32_on_sample_scans(fp32, int8_graph, sample_dir):
    from streamseg.backends.onnxrt import open_onnxruntime

    int8 = open_onnxruntime(fp32.model, fp32.info, "cpu", False, int8_graph.parent, onnx_path=int8_graph)
    assert int8.dense.steps[int8.image_size].path == int8_graph
    for p in sorted((sample_dir / "images").glob("*.png"))[:3]:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        ref, got = fp32.infer(img).detections, int8.infer(img).detections
        assert ref and got, p.name
        assert (ref[0].score >= NERVE_SCORE) == (got[0].score >= NERVE_SCORE), (p.name, ref[0].score, got[0].score)
        assert dice(ref[0].mask, got[0].mask) >= 0.9, p.name


def test_int8_sidecar_records_calibration_and_is_reused(int8_graph, calib4, fp32):
    from streamseg.backends.onnx_quant import calibration_hash

    meta = json.loads((int8_graph.parent / (int8_graph.name + ".json")).read_text())
    assert int8_graph.name.endswith("-int8.onnx") and int8_graph == int8_path(int8_graph.with_name(
        int8_graph.name.replace("-int8", "-fp32")))
    assert meta["precision"] == "int8" and meta["calibration_method"] == "MinMax"
    assert meta["calibration_sha256"] == calibration_hash(calibration_files(calib4))
    assert meta["calibration_images"] == 4 and meta["checkpoint_sha256"] == fp32.info.sha256
    before = int8_graph.stat().st_mtime_ns
    assert ensure_int8(int8_graph.with_name(int8_graph.name.replace("-int8", "-fp32")), calib4) == int8_graph
    assert int8_graph.stat().st_mtime_ns == before, "a matching INT8 graph is reused, not rebuilt"


def test_missing_calibration_set_is_one_clear_line(tmp_path):
    with pytest.raises(StreamsegError) as e:
        ensure_int8(tmp_path / "x-fp32.onnx", tmp_path / "no-such-folder")
    assert "no calibration images" in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StreamsegError, match="no calibration images"):
        calibration_files(tmp_path / "empty")


def test_bundled_calibration_set_is_training_patients_only():
    from conftest import REPO
    from streamseg.training.dataset import load_split

    split = load_split(REPO / "train" / "split.json")
    patients = {p.name.split("-")[0] for p in calibration_files(CALIB_DIR)}
    assert len(patients) == 16 and patients <= set(split["train"])
    assert sum(p.stat().st_size for p in calibration_files(CALIB_DIR)) < 3 * 2**20
    assert (CALIB_DIR.parent / "LICENSE").is_file() and (CALIB_DIR.parent / "SOURCE.md").is_file()


@pytest.mark.parametrize("args,words", [
    (["file", "demo.mp4", "--csv", "o.csv", "--precision", "int8", "--backend", "torch"], "onnxruntime"),
    (["file", "demo.mp4", "--csv", "o.csv", "--precision", "int8", "--compute", "cuda"], "CPU"),
    (["export", "--precision", "int8", "--format", "engine", "--out", "e"], "--format onnx"),
])
def test_int8_where_it_cannot_run_is_one_line(args, words, tmp_path, monkeypatch, sample_dir):
    monkeypatch.chdir(tmp_path)
    shutil.copy(sample_dir / "demo.mp4", tmp_path / "demo.mp4")
    r = CliRunner().invoke(app, args)
    err = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(err) == 1 and words in err[0], (r.exit_code, r.output)
    assert "Traceback" not in r.output
    assert not (tmp_path / "o.csv").exists()


def test_unknown_precision_is_refused_by_the_parser(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["export", "--precision", "int4"])
    assert r.exit_code == 2 and "int4" in r.stderr and "Traceback" not in r.output


def test_int8_is_rebuilt_when_the_calibration_set_changes(int8_graph, calib4, tmp_path):
    two = tmp_path / "calib2"
    two.mkdir()
    for p in calibration_files(calib4)[:2]:
        shutil.copy(p, two / p.name)
    fp32_graph = int8_graph.with_name(int8_graph.name.replace("-int8", "-fp32"))
    copy = tmp_path / fp32_graph.name
    shutil.copy(fp32_graph, copy)
    shutil.copy(str(fp32_graph) + ".json", str(copy) + ".json")
    shutil.copy(int8_graph, int8_path(copy))
    shutil.copy(str(int8_graph) + ".json", str(int8_path(copy)) + ".json")
    logged = []
    ensure_int8(copy, two, log=logged.append)
    meta = json.loads((tmp_path / (int8_path(copy).name + ".json")).read_text())
    assert meta["calibration_images"] == 2 and any("calibration_sha256 differs" in m for m in logged), logged


def test_precision_choices_are_one_list():
    from streamseg.app import cli
    from streamseg.choices import Precision

    PRECISIONS = tuple(Precision)
    assert tuple(cli.Precision) == PRECISIONS


def test_quant_eval_reports_the_load_it_measured_not_a_fixed_note(sample_dir, calib4, tmp_path, monkeypatch):
    """Regression: benchmarks/quant_eval.py wrote "shared 2-core machine, loaded by other jobs" into every
    JSON, idle or not. It now records the load averages before and after, as `streamseg bench` does."""
    import importlib.util
    import os
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "quant_eval.py"
    spec = importlib.util.spec_from_file_location("quant_eval", script)
    quant_eval = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quant_eval)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.3, 0.4))
    out = tmp_path / "q.json"
    assert quant_eval.main(["--out", str(out), "--data", str(sample_dir), "--frames", "1", "--calib", str(calib4)]) == 0
    doc = json.loads(out.read_text())
    assert doc["test_scans"] == 7 and set(doc["accuracy"]) == {"eager fp32", "onnxruntime fp32", "onnxruntime int8"}
    assert doc["load"]["loaded"] is False and doc["load"]["warning"] is None
    assert [s["when"] for s in doc["load"]["samples"]] == ["before", "after"] and "note" not in doc
