"""Predict a finished cross-validation again with its own fold models (SRC/foldN/model_last.pt):
each predicts its held-out scans and nerve-free images, and the pooled report is written as
`streamseg train --folds` writes one (DST/cv.md, DST/cv.json), on the same folds and models.
Used when what a prediction records changes (e.g. the mask score), and for the mirror test-time
augmentation lever (`--mirror`: on the image and its mirror, merged as `streamseg.training.tta`
says). Resumable: a fold with DST/foldN/predictions.json is kept; DST may be SRC's kept results.

    python train/cv_predict.py SRC DST [--mirror]   e.g. runs/cv/mnv2-e20 runs/cv/mnv2-e20-mirror --mirror
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from streamseg.training.cv import _write_json, predict_fold, write_report
from streamseg.training.loop import TrainConfig
from streamseg.types import StreamsegError


def run(src: Path, dst: Path, mirror: bool = False) -> dict:
    folds_path = src / "folds.json"
    if not folds_path.is_file():
        raise StreamsegError(f"{src}: no folds.json (not a cross-validation folder)")
    folds = json.loads(folds_path.read_text())
    dst.mkdir(parents=True, exist_ok=True)
    _write_json(dst / "folds.json", folds)  # temp file + rename, as every CV output
    for i in range(folds["k"]):
        model, done = src / f"fold{i}" / "model_last.pt", src / f"fold{i}" / "predictions.json"
        out = dst / f"fold{i}" / "predictions.json"
        if not (model.is_file() and done.is_file()) or (out.is_file() and not _stale(out)):
            continue
        before = json.loads(done.read_text())
        recipe = TrainConfig(data=folds["data"], epochs=before["epochs"])
        preds = predict_fold(model, recipe, folds, i, mirror=mirror)
        preds["train_seconds"] = before.get("train_seconds")
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_json(out, preds)
        print(f"fold {i}: {len(preds['scans'])} scans, {len(preds['negatives'])} nerve-free images", flush=True)
    return write_report(dst, folds)


def _stale(predictions: Path) -> bool:
    """A fold predicted before its detections recorded a mask score (predicted again)."""
    doc = json.loads(predictions.read_text())
    return any("mask_score" not in d for s in doc["scans"] for d in s["detections"]) or \
        any("top_confidence" not in n for n in doc["negatives"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--mirror", action="store_true", help="the mirror test-time augmentation lever")
    a = ap.parse_args()
    try:
        report = run(a.src, a.dst, a.mirror)
    except StreamsegError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"folds {report.get('folds_done')}: {a.dst / 'cv.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
