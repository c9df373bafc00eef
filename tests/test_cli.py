"""The command line a clinic meets: every bad value or output path is one error line and exit code
2 before any work (defects 5 and 9), and --help lists choices without a spurious `<bool>`."""
from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from streamseg.app.cli import app

DEMO = "streamseg/data/sample/demo.mp4"
COMMANDS = ["file", "live", "calibrate", "bench", "export", "train", "eval", "ablation"]


def _one_line_exit_2(args, cwd, monkeypatch, env=None):
    monkeypatch.chdir(cwd)
    r = CliRunner().invoke(app, args, env=env)
    err = r.stderr.strip().splitlines()
    assert r.exit_code == 2, (args, r.exit_code, r.output, r.exception)
    assert len(err) == 1 and err[0].startswith("error:"), (args, r.stderr)
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit))
    return err[0]


@pytest.fixture
def work(tmp_path, monkeypatch, sample_dir):
    """A temp folder holding the demo, a real image named like an output, and profiles files."""
    monkeypatch.setenv("STREAMSEG_CONFIG_DIR", str(tmp_path / "cfg"))
    shutil.copy(sample_dir / "demo.mp4", tmp_path / "demo.mp4")
    shutil.copy(next((sample_dir / "images").glob("*.png")), tmp_path / "o.csa.png")
    (tmp_path / "afile").write_text("x")
    return tmp_path


FILE_CASES = {
    "cts-cutoff nan": ["--csv", "o.csv", "--cts-cutoff", "nan"],
    "cts-cutoff inf": ["--csv", "o.csv", "--cts-cutoff", "inf"],
    "cts-cutoff 0": ["--csv", "o.csv", "--cts-cutoff", "0"],
    "compute tpu": ["--compute", "tpu"],
    "out name 238 chars": ["--out", "a" * 238 + ".mp4"],
    "out /proc": ["--out", "/proc/x.mp4"],
    "csv /proc": ["--csv", "/proc/x.csv"],
    "out in a missing folder": ["--out", "nowhere/o.mp4"],
    "mm-per-px -1": ["--mm-per-px", "-1"],
    "mm-per-px nan": ["--mm-per-px", "nan"],
    "depth-mm nan": ["--depth-mm", "nan"],
    "score-thresh nan": ["--score-thresh", "nan"],
    "max-frames 0": ["--max-frames", "0"],
    "csv is the summary json (defect 9)": ["--out", "o.mp4", "--csv", "o.summary.json"],
    "jsonl is the csa plot (defect 9)": ["--csv", "o.csv", "--jsonl", "o.csa.png"],
    "csv equals out path spelled differently": ["--csv", "o.csv", "--jsonl", "./o.csv"],
    "csv is the input": ["--csv", "demo.mp4"],
}


@pytest.mark.parametrize("extra", FILE_CASES.values(), ids=FILE_CASES.keys())
def test_file_refuses_bad_values_in_one_line_before_any_output(work, monkeypatch, extra):
    _one_line_exit_2(["file", "demo.mp4", *extra], work, monkeypatch)
    assert sorted(p.name for p in work.iterdir()) == ["afile", "demo.mp4", "o.csa.png"]  # nothing written


def test_the_plot_beside_the_outputs_never_overwrites_the_input(work, monkeypatch):
    """Defect 9: `file o.csa.png --out o.mp4` would write its CSA plot over its own input."""
    before = (work / "o.csa.png").read_bytes()
    line = _one_line_exit_2(["file", "o.csa.png", "--out", "o.mp4"], work, monkeypatch)
    assert "input" in line and (work / "o.csa.png").read_bytes() == before


LIVE_CASES = {"timeout 0": ["--timeout", "0"], "reconnect -1": ["--reconnect", "-1"],
              "backoff -1": ["--backoff", "-1"], "backoff nan": ["--backoff", "nan"], "fps 0": ["--fps", "0"],
              "width 0": ["--width", "0"], "duration nan": ["--duration", "nan"]}


@pytest.mark.parametrize("extra", LIVE_CASES.values(), ids=LIVE_CASES.keys())
def test_live_refuses_bad_values_before_opening_the_source(work, monkeypatch, extra):
    line = _one_line_exit_2(["live", "--device", "rtsp://127.0.0.1:9/none", "--no-show", *extra], work, monkeypatch)
    assert extra[0] in line


@pytest.mark.parametrize("profiles, why", [({"x": 5}, "profiles file"), ({"x": {"mm_per_px": 0.05, "crop": "abc"}}, "crop"),
                                           ({"x": {"mm_per_px": "nan"}}, "mm_per_px"), ([1, 2], "profiles file")])
def test_a_broken_profile_is_one_line(work, monkeypatch, profiles, why):
    (work / "cfg").mkdir()
    (work / "cfg" / "profiles.json").write_text(json.dumps(profiles))
    assert why in _one_line_exit_2(["file", "demo.mp4", "--profile", "x"], work, monkeypatch)
    assert why in _one_line_exit_2(["calibrate", "--list"], work, monkeypatch)


def _bad_coco(tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"id": 1, "image_id": 1, "segmentation": [[1, "x"]]}]}
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    return "bad.json"


OTHER_CASES = {
    "eval mm-per-px -1": ["eval", "--data", "{sample}", "--mm-per-px", "-1"],
    "eval conf nan": ["eval", "--data", "{sample}", "--conf", "nan"],
    "eval out-dir is a file": ["eval", "--data", "{sample}", "--out-dir", "afile"],
    "eval json /proc": ["eval", "--data", "{sample}", "--json", "/proc/x.json"],
    "eval compute tpu": ["eval", "--data", "{sample}", "--compute", "tpu"],
    "eval coco with bad annotations": ["eval", "--data", "bad.json"],
    "train epochs 0": ["train", "--data", "{sample}", "--epochs", "0", "--out", "m.pt"],
    "train lr -1": ["train", "--data", "{sample}", "--lr", "-1", "--out", "m.pt"],
    "train lr nan": ["train", "--data", "{sample}", "--lr", "nan", "--out", "m.pt"],
    "train box-iou 1": ["train", "--data", "{sample}", "--box-iou", "1", "--out", "m.pt"],
    "train out /proc": ["train", "--data", "{sample}", "--out", "/proc/x.pt"],
    "train compute tpu": ["train", "--data", "{sample}", "--compute", "tpu", "--out", "m.pt"],
    "train coco with bad annotations": ["train", "--data", "bad.json", "--epochs", "1", "--out", "m.pt"],
    "export out /proc": ["export", "--out", "/proc/engines"],
    "export out is a file": ["export", "--out", "afile"],
    "export compute tpu": ["export", "--compute", "tpu", "--out", "e"],
    "bench frames 0": ["bench", "--frames", "0", "--out", "b"],
}


@pytest.mark.parametrize("args", OTHER_CASES.values(), ids=OTHER_CASES.keys())
def test_eval_train_export_bench_refuse_bad_values_in_one_line(work, monkeypatch, sample_dir, args):
    _bad_coco(work)
    _one_line_exit_2([a.format(sample=sample_dir) for a in args], work, monkeypatch)
    assert not (work / "m.pt").exists() and not (work / "e").exists() and not (work / "b").exists()


def test_cuda_without_cuda_is_one_line(work, monkeypatch, sample_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for args in (["eval", "--data", str(sample_dir)], ["train", "--data", str(sample_dir), "--out", "m.pt"],
                 ["export", "--out", "e"]):
        assert "CUDA" in _one_line_exit_2([*args, "--compute", "cuda"], work, monkeypatch)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_choices_without_bool(command):
    text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
    assert "<bool>" not in text and "Usage:" in text
    if command in ("file", "live"):
        assert "<auto|torch|compiled|onnxruntime|tensorrt>" in text
    if command in ("file", "live", "bench", "export", "train", "eval"):
        assert "<cpu|cuda|cuda:N|auto>" in text


def test_help_choices_follow_the_backends_and_formats():
    from streamseg.app import cli
    from streamseg.choices import Backend, ExportFormat

    BACKENDS, FORMATS = tuple(Backend), tuple(ExportFormat)  # what backends.load and export.build accept
    assert tuple(cli.Backend) == BACKENDS and tuple(cli.ExportFormat) == FORMATS


def test_an_unknown_choice_is_refused_by_the_parser(work, monkeypatch):
    monkeypatch.chdir(work)
    r = CliRunner().invoke(app, ["file", "demo.mp4", "--backend", "tpu"])
    assert r.exit_code == 2 and "tpu" in r.stderr and "Traceback" not in r.output


def test_outputs_get_ordinary_file_modes(tmp_path):
    """atomic_write gives every output the mode the umask allows (0644 under 022), not mkstemp's 0600."""
    import os

    from streamseg.files import atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "o.json", lambda tmp: open(tmp, "w").write("{}"))
    finally:
        os.umask(old)
    assert (tmp_path / "o.json").stat().st_mode & 0o777 == 0o644


def test_default_engines_folder_is_the_user_cache(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if k != "STREAMSEG_ENGINES"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-c", "from streamseg.backends.artefacts import DEFAULT_DIR; print(DEFAULT_DIR)"],
                       env=env, capture_output=True, text=True, check=True)
    assert r.stdout.strip() == str(tmp_path / "streamseg" / "engines")
