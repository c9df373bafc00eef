"""The end-to-end part of `streamseg bench`: a recorded clip replayed at its own frame rate through
the live pipeline (newest frame wins), so capture-to-overlay latency and dropped frames are what a
frame grabber would see. Each frame is released at its presentation time and stamped then."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

DEMO = Path(__file__).parent / "data" / "sample" / "demo.mp4"


class PacedSource:
    """Wraps an opened file source: frame i is released at start + pts_i, never earlier."""

    def __init__(self, src, max_seconds: float):
        self.src = src
        self.fps = src.fps or 25.0
        self.width, self.height = src.width, src.height
        self.stats = src.stats
        self.state = "ok"
        self.max_seconds = max_seconds
        self.released = 0

    def frames(self, stop: threading.Event):
        start = None
        for f in self.src.frames(stop):
            due = f.pts if f.pts is not None else f.index / self.fps
            if start is None:
                start, first = time.perf_counter(), due
            due -= first
            if due >= self.max_seconds:
                return
            while not stop.is_set() and (wait := start + due - time.perf_counter()) > 0:
                time.sleep(min(wait, 0.05))
            if stop.is_set():
                return
            f.t_capture = time.perf_counter()
            self.released += 1
            yield f


def _pct(xs) -> dict:
    a = np.asarray(xs, dtype=np.float64)
    if a.size == 0:
        return {}
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max()), "n": int(a.size)}


def run_live(model, backend_name: str, half: bool, device: str, o, log=print) -> dict:
    """Replay o.e2e_video (default: the bundled demo clip) for at most o.e2e_seconds."""
    try:
        from . import pipeline
        from .measure import Stabiliser, measure
        from .overlay import Style, draw
        from .sources import open_source
    except ImportError as e:  # e.g. no PyAV on a GPU box
        log(f"end-to-end part skipped: {e}")
        return {"skipped": f"{type(e).__name__}: {e}"}
    from .bench import open_backend

    video = Path(o.e2e_video or DEMO)
    be = open_backend(backend_name, model, device, half, o.engines_dir, log)
    for _ in range(max(1, o.warmup)):  # warm the backend before the clock starts
        be.predict_one(np.zeros((480, 640, 3), np.uint8))
    src = open_source(str(video), live=False)
    paced = PacedSource(src, o.e2e_seconds)
    stab, style = Stabiliser(), Style(calibrated=False)

    def analyse(frame, dets):
        det = dets[0] if dets else None
        m = measure(det.mask) if det is not None else None
        return det, stab.update(det.score if det is not None else None, m)

    log(f"end-to-end: {video.name} at {paced.fps:g} fps for up to {o.e2e_seconds:g} s through the live pipeline "
        f"({be.name}/{'fp16' if be.half else 'fp32'})")
    try:
        stats = pipeline.run(paced, be.predict_one, analyse, lambda r, hud: draw(r, style, hud), [], live=True)
    finally:
        src.close()
    return {"video": str(video), "source_fps": paced.fps, "backend": be.name, "precision": "fp16" if be.half else "fp32",
            "frames_released": paced.released, "processed": stats.processed, "dropped": stats.dropped,
            "dropped_fraction": stats.dropped / paced.released if paced.released else 0.0,
            "processed_fps": stats.processed_fps, "capture_to_overlay_ms": _pct(stats.end_to_end_ms),
            "model_ms": _pct(stats.model_ms)}
