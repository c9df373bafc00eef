"""Cross-validations of several recipes compared on the folds they have all done (the same
folds.json), at one display threshold: pooled Prec / Rec (paper's rule), mAP@0.7, the top
detection on the nerve (how many, their median Dice and |area error|), what a user is shown
(correct / wrong structure / nothing) and nerve-free images shown, and each recipe's own display
rule chosen on half of the folds and counted on the other half (every halving). Used while a
recipe's CV is part-way (folds trained in different sessions) and for the rows of train/RESULTS.md.

    python train/cv_compare.py train/results/cv/mnv2-e20 train/results/cv/mnv2-usgra [--thresh 0.918]

The threshold defaults to the first recipe's chosen display threshold (its cv.json).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from streamseg.training.cv import load_predictions
from streamseg.training.cv_report import compared, compared_markdown
from streamseg.types import StreamsegError


def _folds(cv_dir: Path) -> dict:
    path = cv_dir / "folds.json"
    if not path.is_file():
        raise StreamsegError(f"{cv_dir}: no folds.json (not a cross-validation folder)")
    return json.loads(path.read_text())


def main(dirs: list[Path], thresh: float | None) -> str:
    folds = [_folds(d) for d in dirs]
    if any(f["patients"] != folds[0]["patients"] for f in folds[1:]):
        raise StreamsegError("the recipes were cross-validated on different folds: not comparable")
    if thresh is None:
        thresh = json.loads((dirs[0] / "cv.json").read_text())["thresholds"]["display"]
    preds = {d.name: load_predictions(d, folds[0]["k"]) for d in dirs}
    return compared_markdown(compared(preds, thresh))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="CV folders (runs/cv/RECIPE or train/results/cv/RECIPE)")
    ap.add_argument("--thresh", type=float, help="display threshold (default: the first recipe's chosen one)")
    args = ap.parse_args()
    try:
        print(main(args.dirs, args.thresh), end="")
    except (StreamsegError, OSError, KeyError, ValueError) as e:  # one line, no traceback
        sys.exit(f"cv_compare: {e}")
