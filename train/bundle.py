"""Store a trained checkpoint as the package's bundled default: FP16 weights (half the size), the
same config and training metadata, plus where it came from. Loading casts back to FP32.

    python train/bundle.py runs/all/model_last.pt streamseg/weights/default.pt --thresholds runs/cv/mnv2-usgra/cv.json

`--thresholds CV_JSON` stores the display and CSA-summary thresholds that a cross-validation
(`streamseg train --folds K`) chose on its pooled held-out predictions; the runtime then uses them
where the user gives no --score-thresh / --confident (`ModelInfo.thresholds`).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamseg.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from streamseg.files import file_sha256
from streamseg.model.architecture import thresholds_from_meta
from streamseg.types import StreamsegError


def cv_thresholds(cv_json: str) -> dict:
    """The operating point a CV report chose -> the checkpoint's meta["thresholds"]. Without a CSA
    threshold that keeps <= 1 % of outlines off the nerve, the CSA summary uses the display one."""
    doc = json.loads(Path(cv_json).read_text())
    chosen, pooled = doc["thresholds"], doc["pooled"]
    display = chosen["display"]
    csa = chosen["csa_summary"] if chosen["csa_summary"] is not None else display
    done = f"{len(doc['folds_done'])} of {doc['folds']} folds"
    return {"display": display, "csa": csa,
            "chosen_on": f"patient-wise CV, {done}, {pooled['images']} scans / {pooled['negatives']['all']['images']} "
                         f"nerve-free held out ({Path(cv_json).as_posix()})",
            "cv_sha256": file_sha256(cv_json)}


def main(src: str, dst: str, cv_json: str | None = None) -> None:
    meta = dict(read_checkpoint(src).get("meta", {}))
    meta.pop("train_state", None)  # optimiser/scheduler state of a *_last.pt: only --resume needs it
    meta["bundled_from"] = {"file": str(src), "sha256": file_sha256(src), "storage": "fp16"}
    if cv_json is not None:
        meta["thresholds"] = cv_thresholds(cv_json)
    th = thresholds_from_meta(meta, cv_json or src)  # numbers the runtime would refuse are refused before writing
    model, info = load_checkpoint(src)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dst, model, meta=meta, half=True, config=info.config)
    print(f"{dst}: {Path(dst).stat().st_size / 2**20:.1f} MiB (fp16) from {src}; shown at >= {th.display:g}, "
          f"CSA at >= {th.csa:g} ({th.chosen_on})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="trained checkpoint")
    ap.add_argument("dst", help="where the FP16 copy goes (streamseg/weights/default.pt)")
    ap.add_argument("--thresholds", metavar="CV_JSON", help="cv.json of `streamseg train --folds K`")
    args = ap.parse_args()
    try:
        main(args.src, args.dst, args.thresholds)
    except (StreamsegError, OSError, KeyError, ValueError, TypeError) as e:  # one line, no traceback
        raise SystemExit(f"bundle: {type(e).__name__ if not str(e) else e}") from None
