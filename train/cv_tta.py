"""The mirror test-time augmentation lever on a finished cross-validation: each fold's own model
(SRC/foldN/model_last.pt) predicts its held-out scans and nerve-free images again, on the image and
its mirror, merged as `streamseg.training.tta` says; the pooled report is written as `streamseg
train --folds` writes one (DST/cv.md, DST/cv.json), so the two compare on the same folds and models.
Resumable: a fold with DST/foldN/predictions.json is kept.

    python train/cv_tta.py SRC DST        e.g. runs/cv/mnv2-e20 runs/cv/mnv2-e20-mirror
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from streamseg.training.cv import _write_json, predict_fold, write_report
from streamseg.training.loop import TrainConfig
from streamseg.types import StreamsegError


def run(src: Path, dst: Path) -> dict:
    folds_path = src / "folds.json"
    if not folds_path.is_file():
        raise StreamsegError(f"{src}: no folds.json (not a cross-validation folder)")
    folds = json.loads(folds_path.read_text())
    dst.mkdir(parents=True, exist_ok=True)
    _write_json(dst / "folds.json", folds)  # temp file + rename, as every CV output
    for i in range(folds["k"]):
        model, done = src / f"fold{i}" / "model_last.pt", src / f"fold{i}" / "predictions.json"
        out = dst / f"fold{i}" / "predictions.json"
        if out.is_file() or not (model.is_file() and done.is_file()):
            continue
        before = json.loads(done.read_text())
        recipe = TrainConfig(data=folds["data"], epochs=before["epochs"])
        preds = predict_fold(model, recipe, folds, i, mirror=True)
        preds["train_seconds"] = before.get("train_seconds")
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_json(out, preds)
        print(f"fold {i}: {len(preds['scans'])} scans, {len(preds['negatives'])} nerve-free images", flush=True)
    return write_report(dst, folds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    a = ap.parse_args()
    try:
        report = run(a.src, a.dst)
    except StreamsegError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"folds {report.get('folds_done')}: {a.dst / 'cv.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
