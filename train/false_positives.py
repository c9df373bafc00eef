"""No nerve where there is none: run a model over clips that contain no median nerve (the lung
clips in ../shared/data/video) and report the share of frames with a detection above each of
THRESHOLDS: the paper's confidence (0.98), the runtime's display and summary thresholds
(`--score-thresh`, `--confident`), and points in between. Every frame is decoded (PyAV) and run
through the runtime backend, as `streamseg file` does.

    python train/false_positives.py [--model CKPT] [--json OUT] CLIP [CLIP ...]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from streamseg import backends
from streamseg.inputs.sources import open_source

THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.98)


def scan(backend, clip: str) -> dict:
    scores = []
    src = open_source(clip, live=False)
    try:
        for frame in src.frames():
            dets = backend.infer(frame.image).detections
            scores.append(dets[0].score if dets else 0.0)
    finally:
        src.close()
    s = np.asarray(scores)
    row = {"clip": clip, "frames": int(s.size), "max_score": float(s.max()) if s.size else None}
    for t in THRESHOLDS:
        row[f"frames_over_{t:g}"] = int((s > t).sum())
        row[f"share_over_{t:g}"] = float((s > t).mean()) if s.size else None
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    backend = backends.load(a.backend, a.model)
    t0 = time.time()
    rows = [scan(backend, c) for c in a.clips]
    total = sum(r["frames"] for r in rows)
    over = sum(r["frames_over_0.98"] for r in rows)
    report = {"model": a.model or "bundled default", "backend": backend.describe(), "clips": rows,
              "frames": total, "frames_over_0.98": over, "share_over_0.98": over / total if total else None,
              "seconds": round(time.time() - t0, 1)}
    for r in rows:
        shares = ", ".join(f"> {t:g}: {r[f'frames_over_{t:g}']} ({100 * r[f'share_over_{t:g}']:.1f} %)" for t in THRESHOLDS)
        print(f"{r['clip']}: {r['frames']} frames, {shares}, max score {r['max_score']:.3f}")
    print(f"all: {over}/{total} frames over 0.98 ({100 * report['share_over_0.98']:.2f} %)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
