"""The pipeline's queue policies, with a slow stand-in model (no forwards): live keeps only the
newest frame (drops counted, lag bounded); file mode loses and reorders nothing."""
from __future__ import annotations

import threading
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

    dets = [Detection(box=np.zeros(4, np.float32), score=s, mask=np.zeros((48, 64), bool), mask_score=1.0) for s in (0.9, 0.4)]
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


def cold_model(first_s, then_s=0.001):
    """A model whose first call in each thread takes `first_s` (CUDA state, cuDNN autotuning and
    compiled graphs are built per thread or on first use), then `then_s`."""
    class Seen(threading.local):
        warm = False

    seen = Seen()

    def infer(image):
        cold = not seen.warm
        seen.warm = True
        time.sleep(first_s if cold else then_s)
        return Inference([], {"model": first_s if cold else then_s})
    return infer


def test_live_cold_first_call_without_warm_up_is_counted_as_drops():
    """The case the warm-up exists for (issue 21): a first call that is slow only in the inference
    thread drops the frames that arrive meanwhile (here ~150 of 200)."""
    stats, _ = run(Ticker(200, 0.01), True, cold_model(1.5))
    assert stats.dropped > 50 and stats.warmup_s == 0.0


def test_live_warm_up_runs_in_the_inference_thread_before_capture():
    """The warm-up runs in the inference thread on a blank frame of the source's size before capture
    reads: its time is `warmup_s`, not drops, not a frame's model time, and not the run's clock."""
    infer, calls = cold_model(1.5), []

    def warm(image):
        calls.append((threading.current_thread().name, image.shape, int(image.max())))
        return infer(image)

    src = Ticker(200, 0.01)
    stats, res = run(src, True, infer, warm=warm, duration_s=10)
    assert calls == [("inference", (48, 64, 3), 0)]
    assert stats.warmup_s >= 1.5 and stats.dropped < 20 and stats.frames_read == 200
    assert max(r.timings.model_ms for r in res) < 500  # no frame carries the warm-up
    assert stats.wall_s < stats.warmup_s + 10 and stats.stopped_by is None


def test_duration_counts_from_the_end_of_the_warm_up():
    stats, res = run(Ticker(1000, 0.01), True, slow_model(0.001), warm=lambda image: time.sleep(1.0),
                     duration_s=0.5)
    assert stats.warmup_s >= 1.0 and stats.stopped_by == "duration" and len(res) > 10


def test_file_mode_warm_up_loses_nothing():
    stats, res = run(Ticker(30, 0.0), False, slow_model(0.0), warm=lambda image: time.sleep(0.2))
    assert [r.frame.index for r in res] == list(range(30)) and stats.warmup_s >= 0.2
