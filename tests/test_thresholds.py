"""A model's operating point travels with it (issue 16): the display and CSA-summary thresholds a
cross-validation chose are stored in the checkpoint (train/bundle.py --thresholds), and `file`,
`live`, `eval` and `bench` use them wherever the user gives no --score-thresh / --confident. A
checkpoint without them runs at the runtime's defaults; malformed ones are one line at load."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from streamseg.model.checkpoint import load_checkpoint, read_checkpoint
from streamseg.app.cli import app
from streamseg.model.architecture import thresholds_from_meta
from streamseg.app.runner import Options, run
from streamseg.types import CONFIDENT_SCORE, NERVE_SCORE, StreamsegError, Thresholds

ROOT = Path(__file__).resolve().parents[1]
CV_JSON = ROOT / "train" / "results" / "cv" / "mnv2" / "cv.json"  # a real CV report, kept in the repo


def with_meta(src: Path, dst: Path, **meta) -> Path:
    blob = read_checkpoint(src)
    blob["meta"] = {**blob["meta"], **meta}
    torch.save(blob, dst)
    return dst


def test_no_thresholds_in_the_checkpoint_means_the_runtime_defaults():
    assert thresholds_from_meta({}) == Thresholds() == Thresholds(NERVE_SCORE, CONFIDENT_SCORE, Thresholds().chosen_on)


@pytest.mark.parametrize("bad", [{"display": "high", "csa": 0.9}, {"display": 0.9}, [0.9, 0.9],
                                 {"display": 0.0, "csa": 0.9}, {"display": 0.9, "csa": 0.8}, {"display": 1.2, "csa": 1.3}])
def test_malformed_thresholds_are_refused(bad):
    with pytest.raises(StreamsegError, match="thresholds"):
        thresholds_from_meta({"thresholds": bad}, "m.pt")


def test_a_checkpoints_thresholds_reach_its_backend(tiny_checkpoint, tmp_path):
    from streamseg import backends

    ckpt = with_meta(tiny_checkpoint, tmp_path / "m.pt", thresholds={"display": 0.8, "csa": 0.9, "chosen_on": "a CV"})
    _, info = load_checkpoint(ckpt)
    assert info.thresholds == Thresholds(0.8, 0.9, "a CV")
    assert backends.load("torch", ckpt).thresholds == Thresholds(0.8, 0.9, "a CV")


def test_a_malformed_operating_point_is_one_line_at_load(tiny_checkpoint, sample_dir, tmp_path):
    ckpt = with_meta(tiny_checkpoint, tmp_path / "m.pt", thresholds={"display": 0.99, "csa": 0.5})
    r = CliRunner().invoke(app, ["file", str(sample_dir / "demo.mp4"), "--model", str(ckpt), "--max-frames", "1",
                                 "--backend", "torch", "--csv", str(tmp_path / "o.csv")])
    assert r.exit_code != 0 and "score thresholds are out of range" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o.csv").exists()


class Scored:
    """The `types.Backend` contract: one fixed nerve-shaped detection scoring 0.9, and the model's
    own operating point `thresholds`."""

    name, precision, roi_sizes, image_size = "scored", "fp32", (), 512

    def __init__(self, thresholds: Thresholds):
        self.thresholds = thresholds

    def describe(self) -> str:
        return "fixed detection at 0.9"

    def prepare_windows(self) -> None:
        pass

    def infer(self, image, roi=None):
        import numpy as np

        from streamseg.types import Detection, Inference

        mask = np.zeros(image.shape[:2], bool)
        mask[100:140, 150:220] = True
        return Inference([Detection(np.array([150, 100, 220, 140], np.float32), 0.9, mask, 1.0)], {"model": 0.001})


def shown(sample_dir, tmp_path, model: Thresholds, **flags) -> tuple[list[int], list[str]]:
    """The CSV's `nerve` column of 4 frames of the real demo clip, and the run's log."""
    out, logged = tmp_path / f"o{len(list(tmp_path.iterdir()))}.csv", []
    run(Options(input=str(sample_dir / "demo.mp4"), live=False, max_frames=4, csv=out, summary=False, **flags),
        log=logged.append, backend=Scored(model))
    import csv

    return [int(r["nerve"]) for r in csv.DictReader(out.open())], logged


def test_the_run_shows_at_the_models_threshold_unless_the_user_gives_one(sample_dir, tmp_path):
    low, high = Thresholds(0.85, 0.85, "a CV"), Thresholds(0.95, 0.95, "another CV")
    nerve, logged = shown(sample_dir, tmp_path, low)
    assert nerve == [1, 1, 1, 1]
    assert any("shown as the nerve at confidence >= 0.85, in the CSA at >= 0.85: a CV" in m for m in logged)
    assert shown(sample_dir, tmp_path, high)[0] == [0, 0, 0, 0]
    nerve, logged = shown(sample_dir, tmp_path, high, score_thresh=0.8)
    assert nerve == [1, 1, 1, 1] and any(": --score-thresh/--confident" in m for m in logged)
    assert Options(input="x.mp4", live=False, confident=0.99).thresholds(low) == Thresholds(0.85, 0.99,
                                                                                              "--score-thresh/--confident")


def test_bundle_stores_the_thresholds_the_cv_chose(tiny_checkpoint, tmp_path):
    chosen = json.loads(CV_JSON.read_text())["thresholds"]
    dst = tmp_path / "default.pt"
    r = subprocess.run([sys.executable, str(ROOT / "train" / "bundle.py"), str(tiny_checkpoint), str(dst),
                        "--thresholds", str(CV_JSON)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    th = load_checkpoint(dst)[1].thresholds
    assert (th.display, th.csa) == (chosen["display"], chosen["csa_summary"]) and "patient-wise CV" in th.chosen_on
    assert f">= {th.display:g}" in r.stdout


def test_bundle_refuses_a_file_that_is_no_cv_report_in_one_line(tiny_checkpoint, tmp_path):
    bad = tmp_path / "cv.json"
    bad.write_text("{}")
    r = subprocess.run([sys.executable, str(ROOT / "train" / "bundle.py"), str(tiny_checkpoint), str(tmp_path / "d.pt"),
                        "--thresholds", str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d.pt").exists()


def test_eval_reports_the_user_view_at_the_models_threshold(sample_dir, tiny_checkpoint, tmp_path):
    from streamseg.training.evaluate import run_eval

    ckpt = with_meta(tiny_checkpoint, tmp_path / "m.pt", thresholds={"display": 0.7, "csa": 0.9})
    rep = run_eval(sample_dir, ckpt)
    assert rep.view.operating_point.score_thresh == 0.7
    assert run_eval(sample_dir, ckpt, score_thresh=0.6).view.operating_point.score_thresh == 0.6
