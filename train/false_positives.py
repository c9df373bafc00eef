"""No nerve where there is none: run a model over clips that contain no median nerve (the lung
clips in ../shared/data/video) and report the share of frames with a detection above the paper's
confidence (0.98), and above the display threshold (0.5). Every frame is decoded (PyAV) and run
through the runtime backend, as `streamseg file` does.

    python train/false_positives.py [--model CKPT] [--json OUT] CLIP [CLIP ...]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from streamseg import backends
from streamseg.sources import open_source


def scan(backend, clip: str) -> dict:
    scores = []
    src = open_source(clip, live=False)
    try:
        for frame in src.frames():
            dets = backend.predict_one(frame.image)
            scores.append(dets[0].score if dets else 0.0)
    finally:
        src.close()
    s = np.asarray(scores)
    return {"clip": clip, "frames": int(s.size), "frames_over_0.98": int((s > 0.98).sum()),
            "share_over_0.98": float((s > 0.98).mean()) if s.size else None,
            "frames_over_0.5": int((s > 0.5).sum()), "share_over_0.5": float((s > 0.5).mean()) if s.size else None,
            "max_score": float(s.max()) if s.size else None}


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
        print(f"{r['clip']}: {r['frames']} frames, > 0.98: {r['frames_over_0.98']} ({100 * r['share_over_0.98']:.1f} %), "
              f"> 0.5: {r['frames_over_0.5']} ({100 * r['share_over_0.5']:.1f} %), max score {r['max_score']:.3f}")
    print(f"all: {over}/{total} frames over 0.98 ({100 * report['share_over_0.98']:.2f} %)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
