"""The pipeline's queue policies, with a slow stand-in model (no forwards): live keeps only the
newest frame (drops counted, lag bounded); file mode loses and reorders nothing."""
from __future__ import annotations

import time

import numpy as np

from streamseg import pipeline
from streamseg.types import Frame


class Ticker:
    """A source that produces a frame every `period` s (like a 100 fps grabber)."""

    def __init__(self, n, period):
        self.n, self.period, self.fps, self.state = n, period, (1 / period if period else None), "ok"
        self.stats = type("S", (), {"frames_read": 0, "signal_lost": 0})()

    def frames(self, stop):
        img = np.zeros((48, 64, 3), np.uint8)
        for i in range(self.n):
            if stop.is_set():
                return
            if self.period:
                time.sleep(self.period)
            self.stats.frames_read += 1
            yield Frame(image=img, index=i, pts=i * 0.02, t_capture=time.perf_counter())


class Sink:
    def __init__(self):
        self.results = []

    def write(self, r):
        self.results.append(r)


def slow_model(seconds):
    def infer(image):
        time.sleep(seconds)
        return []
    return infer


def run(src, live, infer, **kw):
    sink = Sink()
    stats = pipeline.run(src, infer, lambda f, d: (None, None), lambda r, hud: r.frame.image, [sink], live=live, **kw)
    return stats, sink.results


def test_live_newest_frame_wins_and_lag_stays_bounded():
    stats, res = run(Ticker(150, 0.01), True, slow_model(0.05))
    idx = [r.frame.index for r in res]
    assert idx == sorted(idx) and len(res) < 150
    assert stats.dropped > 0 and stats.frames_read == 150
    assert stats.frames_read - len(res) - stats.dropped <= 3  # the rest were in flight at the end
    waits = [r.timings.t_infer_start - r.timings.t_capture for r in res[5:]]
    assert max(waits) < 0.2  # about one inference (0.05 s), never a growing backlog (150 frames would be 7 s)
    assert all(r.timings.t_capture <= r.timings.t_infer_start <= r.timings.t_infer_end <= r.timings.t_overlay_end for r in res)


def test_live_max_frames_is_exact():
    stats, res = run(Ticker(500, 0.005), True, slow_model(0.01), max_frames=12)
    assert len(res) == 12 and stats.stopped_by == "max-frames"


def test_file_mode_is_lossless_and_ordered():
    stats, res = run(Ticker(60, 0.0), False, slow_model(0.005))
    assert [r.frame.index for r in res] == list(range(60))
    assert [r.frame.pts for r in res] == [i * 0.02 for i in range(60)]
    assert stats.dropped == 0 and stats.processed == 60


def test_file_mode_max_frames():
    stats, res = run(Ticker(60, 0.0), False, slow_model(0.0), max_frames=7)
    assert [r.frame.index for r in res] == list(range(7)) and stats.stopped_by == "max-frames"


def test_stage_error_reaches_the_caller():
    def broken(image):
        raise RuntimeError("model exploded")
    try:
        run(Ticker(10, 0.0), False, broken)
    except RuntimeError as e:
        assert "exploded" in str(e)
    else:
        raise AssertionError("the error was swallowed")
