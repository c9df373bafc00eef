"""The pipeline's queue policies, with a slow stand-in model (no forwards): live keeps only the
newest frame (drops counted, lag bounded); file mode loses and reorders nothing."""
from __future__ import annotations

import time

import numpy as np

from streamseg.app import pipeline
from streamseg.types import Frame, Inference, SourceStats


class Ticker:
    """A source that produces a frame every `period` s (like a 100 fps grabber)."""

    def __init__(self, n, period):
        self.n, self.period, self.fps, self.state = n, period, (1 / period if period else None), "ok"
        self.width, self.height = 64, 48
        self.stats = SourceStats()

    def frames(self, stop):
        img = np.zeros((48, 64, 3), np.uint8)
        for i in range(self.n):
            if stop.is_set():
                return
            if self.period:
                time.sleep(self.period)
            self.stats.frames_read += 1
            yield Frame(image=img, index=i, pts=i * 0.02, t_capture=time.perf_counter())

    def describe(self):
        return "ticker"

    def close(self):
        pass


class Sink:
    quit_requested = False

    def __init__(self):
        self.results = []

    def write(self, r):
        self.results.append(r)

    def close(self):
        return None


def slow_model(seconds):
    def infer(image):
        time.sleep(seconds)
        return Inference([], {"model": seconds})
    return infer


def run(src, live, infer, **kw):
    sink = Sink()
    stats = pipeline.run(src, infer, lambda dets: None, lambda r, hud: r.frame.image, [sink], live=live, **kw)
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


def test_stage_times_and_detections_travel_on_the_result():
    """What `infer` returns reaches the sinks: the detections (best first) and the backend's stage
    times, converted to ms (`Result.speed`); the analyse step sees the same detections."""
    from streamseg.types import Detection

    dets = [Detection(box=np.zeros(4, np.float32), score=s, mask=np.zeros((48, 64), bool)) for s in (0.9, 0.4)]
    seen = []

    def infer(image):
        return Inference(dets, {"preprocess": 0.001, "model": 0.002})

    sink = Sink()
    pipeline.run(Ticker(3, 0.0), infer, lambda d: seen.append(d) or None, lambda r, hud: r.frame.image, [sink],
                 live=False)
    assert [r.speed for r in sink.results] == [{"preprocess": 1.0, "model": 2.0}] * 3
    assert all(r.detections == dets and r.best is dets[0] for r in sink.results) and seen == [dets] * 3


def test_a_sink_asking_to_quit_stops_the_run():
    class Quitter(Sink):
        def write(self, r):
            super().write(r)
            self.quit_requested = len(self.results) >= 2

    sink = Quitter()
    stats = pipeline.run(Ticker(1000, 0.001), slow_model(0.0), lambda d: None, lambda r, hud: r.frame.image, [sink],
                         live=False)
    assert stats.stopped_by == "quit" and 2 <= len(sink.results) < 1000
