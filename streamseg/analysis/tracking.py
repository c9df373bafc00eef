"""Tracking: after a confident detection, run the network on a window around the last nerve
instead of the whole frame, until the nerve is lost; then the full frame again.

The geometry of a window (the crop letterboxed at the full frame's scale into a smaller square
input, one of the backend's `roi_sizes`) is `letterbox.Letterbox.window`; this module is the policy:
- `Tracker`: the policy. After a detection scoring >= `threshold` (the display threshold,
  `types.NERVE_SCORE`), the next frame's window is a square around its box: the smallest input
  size holding `margin` × the box's longer side (else the largest, while it holds `min_margin` ×),
  shifted inside the frame.
  Full frame again when the window's best detection drops below the threshold (the same frame is
  re-run on the full frame at once, so tracking never hides a nerve the full frame shows), when
  nothing is found, and every `recheck` frames. A lost window costs a window and a full frame, so
  windows back off while they keep being lost: after a loss the next 1, 2, 4, ... `max_backoff`
  frames (doubling with each loss in a row) run the full frame only; a window that holds ends it.
  When the nerve's scores sit at the threshold, tracking then costs about a full frame, not two.
- `tracked(infer, tracker)`: a plain `infer(image) -> Inference`, as `backend.infer`,
  for the pipeline, the runner and the bench. A tracked frame's stages carry `track` (the seconds
  the policy took); a full-frame one has no `track` entry.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..letterbox import ROI_SIZES, Roi
from ..types import NERVE_SCORE, Backend, Detection, Inference

RoiInfer = Callable[..., Inference]  # backend.infer(image, roi=None)
Infer = Callable[[np.ndarray], Inference]


def square_roi(box: np.ndarray, side: float, src_h: int, src_w: int) -> Roi:
    """A side × side window centred on `box`, shifted (not shrunk) to lie inside the frame; a
    side longer than the frame is cut to it on that axis."""
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    out = []
    for c, n in ((cx, src_w), (cy, src_h)):
        s = min(int(math.ceil(side)), n)
        lo = int(round(c - s / 2.0))
        lo = min(max(lo, 0), n - s)
        out.append((lo, lo + s))
    (x0, x1), (y0, y1) = out
    return x0, y0, x1, y1


@dataclass
class Tracker:
    """Chooses each frame's window from the last detections (see the module doc)."""

    image_size: int = 512
    sizes: Sequence[int] = ROI_SIZES
    threshold: float = NERVE_SCORE
    margin: float = 1.5  # window side / the box's longer side, wanted ...
    min_margin: float = 1.25  # ... and at least (else the full frame): a long nerve gets the largest window
    recheck: int = 30  # a full frame at least every `recheck` frames
    max_backoff: int = 16  # at most this many full frames after a lost window before the next one
    box: np.ndarray | None = None  # the last confident box, source pixels
    since_full: int = 0
    backoff: int = 0  # full frames after the next lost window (0: no window lost since one held)
    wait: int = 0  # full frames still to run before the next window

    def roi(self, src_h: int, src_w: int) -> Roi | None:
        """The window for the next frame, or None for the full frame."""
        if self.wait > 0:
            self.wait -= 1
            return None
        if self.box is None or not self.sizes or self.since_full + 1 >= self.recheck:
            return None
        scale = self.image_size / max(src_h, src_w)
        b = self.box
        side = max(b[2] - b[0], b[3] - b[1]) * scale  # the box's longer side, model pixels
        fit = [s for s in sorted(self.sizes) if s >= self.margin * side]
        size = fit[0] if fit else max(self.sizes)
        if size < self.min_margin * side or size >= self.image_size:
            return None  # too tight for the nerve, or as large as the frame: nothing saved
        roi = square_roi(b, math.floor(size / scale), src_h, src_w)
        if (roi[2] - roi[0]) >= src_w and (roi[3] - roi[1]) >= src_h:
            return None
        return roi

    def update(self, detections: Sequence[Detection], roi: Roi | None) -> bool:
        """Take the detections of a frame run on `roi` (None: full frame); False when a window lost
        the nerve (its best detection is missing or below the threshold)."""
        best = detections[0] if detections else None
        found = best is not None and best.confidence >= self.threshold
        self.since_full = 0 if roi is None else self.since_full + 1
        self.box = np.asarray(best.box, dtype=np.float64) if found else None
        if roi is not None:
            self.backoff = 0 if found else min(max(1, 2 * self.backoff), self.max_backoff)
            self.wait = self.backoff  # 0 when the window held
        return found or roi is None


def tracked(infer: RoiInfer, tracker: Tracker) -> Infer:
    """`infer(image, roi=...)` (a backend's) driven by `tracker`: an `infer(image)` like the backend's.
    A window that loses the nerve is followed by the full frame on the same image (stages summed)."""

    def run(image: np.ndarray) -> Inference:
        t0 = time.perf_counter()
        roi = tracker.roi(image.shape[0], image.shape[1])
        policy = time.perf_counter() - t0
        if roi is None:
            out = infer(image)
            tracker.update(out.detections, None)
            return out
        win = infer(image, roi=roi)
        t1 = time.perf_counter()
        kept = tracker.update(win.detections, roi)
        policy += time.perf_counter() - t1
        if kept:
            return Inference(win.detections, {**win.stages, "track": policy})
        full = infer(image)
        tracker.update(full.detections, None)
        a, b = win.stages, full.stages
        return Inference(full.detections, {k: a.get(k, 0.0) + b.get(k, 0.0) for k in {**a, **b}})

    return run


def track(backend: Backend, threshold: float = NERVE_SCORE) -> Infer:
    """`backend.infer` as `file` and `live` run it: window inputs built first (`prepare_windows`),
    then driven by a fresh `Tracker` at the backend's window sizes (the runner and the bench)."""
    backend.prepare_windows()
    return tracked(backend.infer, Tracker(image_size=backend.image_size, sizes=backend.roi_sizes, threshold=threshold))
