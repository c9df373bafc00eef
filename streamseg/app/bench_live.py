"""The end-to-end part of `streamseg bench`: a recorded clip replayed at its own frame rate through
the live pipeline (newest frame wins), so capture-to-overlay latency and dropped frames are what a
frame grabber would see. Each frame is released at its presentation time and stamped then.

It is handed an opened backend and imports nothing of the benchmark that calls it (nor torch)."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

from . import pipeline
from ..analysis.measure import Analyser
from ..outputs.overlay import Style, draw
from .stats import percentiles
from ..types import STABLE_WINDOW, Backend, Frame, SourceState, SourceStats, Thresholds

DEMO = Path(__file__).parents[1] / "data" / "sample" / "demo.mp4"


def output_stages(th: Thresholds, live: bool) -> tuple[pipeline.Analyse, pipeline.Render]:
    """The analyse and draw steps `file` (live=False) and `live` run on an uncalibrated input at the
    operating point `th` (as runner._stream builds them), for `pipeline.write_frame`: what the replay
    here and `streamseg bench`'s timed frames run."""
    style = Style(calibrated=False, score_thresh=th.display, live=live)  # live: the HUD shows lag and drops
    return Analyser(None, STABLE_WINDOW, th.csa), (lambda r, hud: draw(r, style, hud))


class PacedSource:
    """Wraps an opened file source (a `types.Source`): frame i is released at start + pts_i, never earlier."""

    def __init__(self, src, max_seconds: float):
        self.src = src
        self.fps = src.fps or 25.0
        self.rate, self.time_base = src.rate, src.time_base
        self.width, self.height = src.width, src.height
        self.stats: SourceStats = src.stats
        self.max_seconds = max_seconds
        self.released = 0

    @property
    def state(self) -> SourceState:
        return self.src.state

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
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

    def describe(self) -> str:
        return f"{self.src.describe()} paced at {self.fps:g} fps"

    def calibration(self, given, log):
        return self.src.calibration(given, log)

    def close(self) -> None:
        self.src.close()


def run_live(backend: Backend, o, log=print, infer=None) -> dict:
    """Replay o.e2e_video (default: the bundled demo clip) for at most o.e2e_seconds through the live
    pipeline with `backend` (already opened), after o.warmup untimed frames (at least one) of
    `backend.infer`, run in the pipeline's inference thread before the clock starts (`warmup_s`).
    `infer`: the callable the pipeline runs (`infer(image) -> Inference`), default backend.infer."""
    try:
        from ..inputs.sources import open_source
    except ImportError as e:  # e.g. no PyAV on a GPU box
        log(f"end-to-end part skipped: {e}")
        return {"skipped": f"{type(e).__name__}: {e}"}

    video = Path(o.e2e_video or DEMO)
    paced = PacedSource(open_source(str(video), live=False), o.e2e_seconds)
    analyse, render = output_stages(backend.thresholds, live=True)
    log(f"end-to-end: {video.name} at {paced.fps:g} fps for up to {o.e2e_seconds:g} s through the live pipeline "
        f"({backend.describe()})")
    try:
        stats = pipeline.run(paced, infer or backend.infer, analyse, render, [], live=True,
                             warm=lambda image: [backend.infer(image) for _ in range(max(1, o.warmup))])
    finally:
        paced.close()
    return {"video": str(video), "source_fps": paced.fps, "backend": backend.name, "describe": backend.describe(),
            "frames_released": paced.released, "warmup_s": stats.warmup_s, "processed": stats.processed, "dropped": stats.dropped,
            "dropped_fraction": stats.dropped / paced.released if paced.released else 0.0,
            "processed_fps": stats.processed_fps, "capture_to_overlay_ms": percentiles(stats.end_to_end_ms),
            "model_ms": percentiles(stats.model_ms)}
