"""The bundled default model works out of the box: every command uses it when no --model is given,
and it finds the nerve on the bundled real scans. The model was trained on all 83 patients of
../shared/data/median-nerve-univpm, the sample's four (Pz065, Pz074, Pz089, Pz097) among them, so
these seven scans are a smoke test of the shipped weights, not a measure of accuracy: that is the
patient-wise cross-validation (train/RESULTS.md), whose thresholds the model carries."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from streamseg.files import file_sha256
from streamseg.model.checkpoint import DEFAULT_WEIGHTS, load_checkpoint, read_checkpoint
from streamseg.app.cli import app
from streamseg.training.dataset import scan_folder
from streamseg.training.evaluate import predict_samples
from streamseg.training.metrics import dice

REPO = Path(__file__).resolve().parents[1]


def test_bundled_weights_are_small_fp16_and_describe_their_training():
    assert DEFAULT_WEIGHTS.is_file()
    assert DEFAULT_WEIGHTS.stat().st_size <= 30 * 2**20
    blob = read_checkpoint(DEFAULT_WEIGHTS)
    assert blob["config"]["mask_head"] == "112"
    assert {t.dtype for t in blob["state_dict"].values() if t.is_floating_point()} == {torch.float16}
    meta = blob["meta"]
    assert meta["data"]["patients"] == 83 and len(meta["split"]["train"]) == 83  # every patient (issue 16)
    assert meta["split"]["val"] == meta["split"]["test"] == []  # the CV is the estimate, nothing held out here
    init = meta["initial_weights"]  # the usgra-seg nerves model (train/default.sh), itself from ImageNet
    assert init["kind"] == "file" and file_sha256(REPO / init["file"]) == init["sha256"]  # the one kept in the repo
    assert init["trained"]["data"].endswith("usgra-seg/train")
    assert init["trained"]["initial_weights"]["weights"] == "MobileNet_V2_Weights.IMAGENET1K_V1"
    assert "train_state" not in meta  # no optimiser state shipped
    th = meta["thresholds"]  # chosen on the CV's pooled held-out predictions, with the report they came from
    assert 0.5 < th["display"] < 1 and th["display"] <= th["csa"] < 1
    assert "patient-wise CV" in th["chosen_on"] and len(th["cv_sha256"]) == 64
    report = REPO / "train" / "results" / "cv" / "mnv2-usgra" / "cv.json"  # the CV report kept in the repo
    assert file_sha256(report) == th["cv_sha256"], "the CV report changed: re-bundle (train/bundle.py --thresholds)"
    chosen = json.loads(report.read_text())["thresholds"]
    assert th["display"] == chosen["display"] and th["csa"] == (chosen["csa_summary"] or chosen["display"])


def test_bundled_model_finds_the_nerve_on_the_bundled_scans(sample_dir):
    model, info = load_checkpoint()  # no path: the bundled default
    preds = predict_samples(model, scan_folder(sample_dir), config=info.config)
    dices = [dice(d[0].mask, gt) if d else 0.0 for _s, _img, gt, d in preds]
    scores = [d[0].score if d else 0.0 for *_x, d in preds]
    assert len(dices) == 7
    assert min(scores) > 0.5, scores
    assert float(np.median(dices)) >= 0.85, dices
    assert min(dices) >= 0.6, dices


def test_eval_without_model_uses_the_bundled_one(sample_dir, tmp_path):
    out = tmp_path / "eval.json"
    r = CliRunner().invoke(app, ["eval", "--data", str(sample_dir), "--json", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads(out.read_text())["summary"]
    assert summary["model"].endswith("default.pt")
    assert summary["images"] == 7 and summary["dice_median"] > 0.85 and summary["box"] == "mask"


def test_file_without_model_uses_the_bundled_one(sample_dir, tmp_path):
    out, table = tmp_path / "o.mp4", tmp_path / "o.csv"
    r = CliRunner().invoke(app, ["file", str(sample_dir / "demo.mp4"), "--out", str(out), "--csv", str(table),
                                 "--max-frames", "6", "--backend", "torch", "--no-show"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 6 and out.stat().st_size > 0
    # the demo's first scan: the nerve found on every frame (scores 0.97-0.999), shown where its confidence
    # (score x mask score, 0.87-0.95) reaches the model's own display threshold (chosen on its CV), never below it
    display = read_checkpoint(DEFAULT_WEIGHTS)["meta"]["thresholds"]["display"]
    assert all(float(row["score"]) >= 0.85 for row in rows), [row["score"] for row in rows]
    for row in rows:
        assert float(row["confidence"]) == pytest.approx(float(row["score"]) * float(row["mask_score"]), abs=2e-5)
        assert int(row["nerve"]) == (float(row["confidence"]) >= display), row
    assert "mobilenet_v2" in r.output
    assert all(row["csa_mm2"] == "" for row in rows)  # uncalibrated: never a made-up mm²
