"""Tracking (windows around the last nerve, `streamseg/analysis/tracking.py`) vs the full frame every time:
accuracy and model time, both paths run on the same frames in one process, alternating per frame.

(a) the demo clip (no per-frame ground truth): the reference is the full-frame result; Dice of
    the tracked mask to it (frames where both show a nerve), and shown/not-shown agreement.
(b) the TEST patients of ../shared/data/median-nerve-univpm (train/split.json "test"), one short
    synthetic clip per scan (fixed seed): the scan and its expert mask moved by a random walk of
    small translations and rotations (simulated probe motion). Dice to the expert mask per frame
    (0 where no nerve is shown) and misses (frames whose nerve is not shown at the display threshold).
Model ms: the wall time of each infer call (tracked: the window, plus the full frame where the
window lost the nerve), mean and p50, and the share of frames run on a window.

    python benchmarks/tracking_eval.py [--backend onnxruntime] [--frames 120] [--scan-frames 20]
        [--max-scans 0] [--threads 2] [--window-proposals N] [--out benchmarks/results/tracking.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamseg import backends  # noqa: E402
from streamseg.inputs.sources import open_source  # noqa: E402
from streamseg.analysis.tracking import Tracker, tracked  # noqa: E402
from streamseg.types import NERVE_SCORE, SHOWN_DETECTIONS  # noqa: E402

UNIVPM = REPO.parent / "shared" / "data" / "median-nerve-univpm"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def shown(dets) -> np.ndarray | None:
    """The mask shown to the user (best detection at the display threshold), else None."""
    return dets[0].mask if dets and dets[0].score >= NERVE_SCORE else None


class Pair:
    """Full-frame and tracked inference on the same frames, alternating which goes first."""

    def __init__(self, backend):
        self.backend = backend
        self.tracker = Tracker(image_size=backend.image_size, sizes=backend.roi_sizes)
        self.track = tracked(backend.infer, self.tracker)
        self.ms = {"full": [], "tracked": []}
        self.windows = 0
        self.n = 0

    def reset(self):
        self.tracker.box, self.tracker.since_full = None, 0

    def __call__(self, image):
        out = {}
        order = ("full", "tracked") if self.n % 2 == 0 else ("tracked", "full")
        for kind in order:
            t0 = time.perf_counter()
            got = self.backend.infer(image) if kind == "full" else self.track(image)
            self.ms[kind].append(1000.0 * (time.perf_counter() - t0))
            out[kind] = got.detections
            if kind == "tracked" and "track" in got.stages:
                self.windows += 1
        self.n += 1
        return out["full"], out["tracked"]

    def timing(self) -> dict:
        t = {k: {"mean_ms": statistics.fmean(v), "p50_ms": statistics.median(v)} for k, v in self.ms.items()}
        return {**t, "mean_ratio_full_over_tracked": t["full"]["mean_ms"] / t["tracked"]["mean_ms"],
                "p50_ratio_full_over_tracked": t["full"]["p50_ms"] / t["tracked"]["p50_ms"],
                "frames": self.n, "window_share": self.windows / max(1, self.n)}


def demo_clip(pair: Pair, clip: Path, frames: int) -> dict:
    src = open_source(str(clip), live=False)
    dices, agree, shown_full, shown_trk = [], 0, 0, 0
    try:
        for i, frame in enumerate(src.frames(threading.Event())):
            if i >= frames:
                break
            full, trk = pair(frame.image)
            mf, mt = shown(full), shown(trk)
            shown_full += mf is not None
            shown_trk += mt is not None
            agree += (mf is None) == (mt is None)
            if mf is not None and mt is not None:
                dices.append(dice(mf, mt))
    finally:
        src.close()
    n = pair.n
    return {"frames": n, "shown_full": shown_full, "shown_tracked": shown_trk, "shown_agreement": agree / n,
            "dice_to_full_mean": statistics.fmean(dices) if dices else None,
            "dice_to_full_min": min(dices) if dices else None, **pair.timing()}


def motion_clip(image: np.ndarray, mask: np.ndarray, n: int, rng: np.random.Generator):
    """n frames: the scan and its mask under a random walk of shifts (≤ 2 px/frame, ≤ 15 px) and
    rotations (≤ 0.5°/frame, ≤ 4°) about the image centre."""
    h, w = mask.shape
    dx = dy = ang = 0.0
    for _ in range(n):
        dx = float(np.clip(dx + rng.uniform(-2, 2), -15, 15))
        dy = float(np.clip(dy + rng.uniform(-2, 2), -15, 15))
        ang = float(np.clip(ang + rng.uniform(-0.5, 0.5), -4, 4))
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), ang, 1.0)
        m[:, 2] += (dx, dy)
        img = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        msk = cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
        yield img, msk


def test_patients(pair: Pair, root: Path, split: Path, scan_frames: int, max_scans: int, seed: int) -> dict:
    test = set(json.loads(split.read_text())["test"])
    scans = sorted(p for p in (root / "images").glob("*.png") if p.name.split("-")[0] in test or p.name in test)
    scans = scans[:max_scans] if max_scans else scans
    rng = np.random.default_rng(seed)
    per = {"full": [], "tracked": []}
    misses = {"full": 0, "tracked": 0}
    for path in scans:
        image = cv2.imread(str(path))
        mask = cv2.imread(str(root / "masks" / path.name), cv2.IMREAD_GRAYSCALE) > 0
        pair.reset()
        for img, gt in motion_clip(image, mask, scan_frames, rng):
            full, trk = pair(img)
            for kind, dets in (("full", full), ("tracked", trk)):
                m = shown(dets)
                misses[kind] += m is None
                per[kind].append(dice(m if m is not None else np.zeros_like(gt), gt))
    return {"scans": len(scans), "frames": len(per["full"]),
            "dice_mean": {k: statistics.fmean(v) for k, v in per.items()},
            "misses": misses, **pair.timing()}


def table(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"tracking vs full frame ({res['backend']}, {res['threads']} threads)")
    for c in ("set", "frames", "accuracy (full | tracked)", "model ms mean full | tracked", "p50 full | tracked", "windows"):
        t.add_column(c)
    d, p = res["demo"], res["test"]
    for name, r, acc in (
        ("demo clip", d, f"shown {d['shown_full']} | {d['shown_tracked']}, agree {d['shown_agreement']:.3f}, "
                         f"Dice to full {d['dice_to_full_mean'] or 0:.3f} (min {d['dice_to_full_min'] or 0:.3f})"),
        ("test patients (motion)", p, f"Dice {p['dice_mean']['full']:.3f} | {p['dice_mean']['tracked']:.3f}, "
                                      f"misses {p['misses']['full']} | {p['misses']['tracked']}")):
        t.add_row(name, str(r["frames"]), acc, f"{r['full']['mean_ms']:.0f} | {r['tracked']['mean_ms']:.0f}",
                  f"{r['full']['p50_ms']:.0f} | {r['tracked']['p50_ms']:.0f}", f"{r['window_share']:.0%}")
    Console().print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--precision", default="auto", help="auto (as file/live: int8 for onnxruntime on CPU), fp32, int8")
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    ap.add_argument("--clip", default=str(REPO / "streamseg" / "data" / "sample" / "demo.mp4"))
    ap.add_argument("--frames", type=int, default=120, help="demo clip frames")
    ap.add_argument("--data", default=str(UNIVPM))
    ap.add_argument("--split", default=str(REPO / "train" / "split.json"))
    ap.add_argument("--scan-frames", type=int, default=20)
    ap.add_argument("--max-scans", type=int, default=0, help="0: every test scan")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--window-proposals", type=int, default=None,
                    help="RPN proposals kept for a window (split backends; default: the backend's)")
    ap.add_argument("--out", default=None, help="JSON results")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    backend = backends.load(a.backend, a.model, max_detections=SHOWN_DETECTIONS, precision=a.precision)
    backend.prepare_windows()  # as the runner does: no graph is built inside a timed frame
    if a.window_proposals is not None:
        backend.window_proposals = a.window_proposals
    warm = cv2.imread(str(REPO / "streamseg" / "data" / "sample" / "images" / "Pz065-001.png"))
    for roi_pair in (Pair(backend),) * 2:  # warm-up: graphs exported/opened, caches filled
        roi_pair(warm)
    res = {"backend": backend.describe(), "threads": a.threads, "window_proposals": a.window_proposals, "machine": "see the run notes (shared, loaded)",
           "demo": demo_clip(Pair(backend), Path(a.clip), a.frames),
           "test": test_patients(Pair(backend), Path(a.data), Path(a.split), a.scan_frames, a.max_scans, a.seed)}
    table(res)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
