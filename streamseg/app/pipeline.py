"""Three threads joined by bounded queues: capture -> inference -> (analyse, overlay, sinks).

- Live: the newest frame wins. The capture->inference slot holds one frame; a newer frame
  replaces an unprocessed one (counted as dropped), so lag never grows.
- File: lossless and ordered. Bounded blocking queues; every frame read is processed and written.
- Each Result carries perf_counter stamps at capture, inference start/end, measurement, overlay end
  and sinks written, and the backend's time per stage for that frame (`Result.speed`, ms).
- One frame's stages are two functions, `infer_frame` (inference thread) and `write_frame` (output
  loop): `streamseg bench` times the same two.
- Warm-up: `warm(image)` (the backend's plain `infer`, never a stateful tracking wrapper) runs once
  on a blank frame of the source's size in the inference thread itself (CUDA/cuDNN state and
  compiled graphs are built per thread or on first use there), before capture starts reading and
  before the run's clock (wall, CPU, --duration) starts. Its time is `RunStats.warmup_s`: never
  dropped frames, never a frame's model time.
- SIGINT/SIGTERM (routed here while it runs: `interrupts.signals_to`) and a sink whose
  `quit_requested` turns True stop capture; what was already
  inferred is written, then the caller finishes and commits the outputs (runner.py).

The pipeline knows none of the stages' insides: it is handed a `types.Source`, an `infer(image) ->
Inference` (detections, seconds per stage: a backend's `infer`), an `analyse(detections) -> measurement`
(`measure.Analyser`), a `render(result, hud) -> image` and `types.Sink`s.
"""
from __future__ import annotations

import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .interrupts import signals_to
from ..types import Detection, Frame, Hud, Inference, Measurement, Result, Sink, Source, StopReason, Timings

Infer = Callable[[np.ndarray], Inference]  # a backend's infer (or tracking.tracked's)
Analyse = Callable[[Sequence[Detection]], Measurement | None]
Render = Callable[[Result, Hud], np.ndarray]
Warm = Callable[[np.ndarray], object]  # called once before the first frame; what it returns is ignored

_END = object()


class LatestSlot:
    """A one-frame mailbox: put() replaces what is there (and counts it as dropped)."""

    def __init__(self):
        self._cv = threading.Condition()
        self._item = None
        self._full = False
        self.dropped = 0

    def put(self, item) -> None:
        with self._cv:
            if self._full and self._item is not _END:
                self.dropped += 1
            self._item, self._full = item, True
            self._cv.notify()

    def get(self, timeout: float):
        with self._cv:
            if not self._cv.wait_for(lambda: self._full, timeout):
                raise queue.Empty
            item, self._item, self._full = self._item, None, False
            return item


class _Rate:
    """Events per second, exponentially smoothed over the gaps between events."""

    def __init__(self, alpha: float = 0.1):
        self.alpha, self.last, self.value = alpha, None, None

    def tick(self, t: float) -> float | None:
        if self.last is not None and t > self.last:
            inst = 1.0 / (t - self.last)
            self.value = inst if self.value is None else (1 - self.alpha) * self.value + self.alpha * inst
        self.last = t
        return self.value


@dataclass
class RunStats:
    frames_read: int = 0
    processed: int = 0
    dropped: int = 0
    wall_s: float = 0.0  # from the end of the warm-up
    warmup_s: float = 0.0  # the warm-up call in the inference thread, before capture started
    cpu_s: float = 0.0  # process CPU time (all threads) over the run: robust to other load on the machine
    stopped_by: StopReason | None = None  # None: the input ended
    model_ms: list[float] = field(default_factory=list)
    end_to_end_ms: list[float] = field(default_factory=list)

    @property
    def processed_fps(self) -> float:
        return self.processed / self.wall_s if self.wall_s > 0 else 0.0


def run(source: Source, infer: Infer, analyse: Analyse, render: Render, sinks: Sequence[Sink], live: bool,
        max_frames: int | None = None, duration_s: float | None = None, queue_size: int = 4,
        on_tick: Callable[[bool], None] | None = None, warm: Warm | None = None) -> RunStats:
    """Run until the source ends, a limit or a signal stops it, or a sink asks to quit.

    `warm(image)`: the warm-up (module doc), None for none. Pass the backend's plain `infer`, not a
    tracking wrapper: the warm-up's detections must not seed the tracker.

    `on_tick(lost)` is called while no result is ready (about every 0.1 s), with whether the source
    has lost its signal. A stage's error stops the run and is raised here."""
    return _Run(source, infer, analyse, render, sinks, live, max_frames, duration_s, queue_size, on_tick, warm).go()


# --- one frame's stages: the inference thread runs the first, the output loop the second; `streamseg
# bench` times the two in series (app/bench.py), so it times what `file` and `live` run -------------
def infer_frame(infer: Infer, frame: Frame) -> Result:
    """Infer one frame -> its Result, stamped (t_capture, t_infer_start, t_infer_end), with the
    backend's time per stage in ms (`Result.speed`)."""
    t = Timings(t_capture=frame.t_capture, t_infer_start=time.perf_counter())
    out = infer(frame.image)
    t.t_infer_end = time.perf_counter()
    return Result(frame=frame, detections=list(out.detections), timings=t,
                  speed={stage: 1000.0 * s for stage, s in out.stages.items()})


def write_frame(r: Result, analyse: Analyse, render: Render, hud: Hud, sinks: Sequence[Sink]) -> None:
    """Analyse, draw (the HUD's model time and lag so far are filled in here) and write one result to
    every sink, stamping the end of each step in r.timings (t_analysed, t_overlay_end, t_written)."""
    t = r.timings
    r.measurement = analyse(r.detections)
    t.t_analysed = time.perf_counter()
    hud.model_ms = t.model_ms
    hud.end_to_end_ms = 1000.0 * (t.t_analysed - t.t_capture)  # up to now: the overlay is not drawn yet
    r.overlay = render(r, hud)
    t.t_overlay_end = time.perf_counter()
    for s in sinks:
        s.write(r)
    t.t_written = time.perf_counter()


def _put_until(q, item, done: threading.Event) -> bool:
    """Put `item` on `q`, waiting while it is full, until `done` is set; False when it gave up."""
    while not done.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            pass
    return False


@dataclass
class _Run:
    """One run: the capture and inference threads, and the output loop in the calling thread."""

    source: Source
    infer: Infer
    analyse: Analyse
    render: Render
    sinks: Sequence[Sink]
    live: bool
    max_frames: int | None
    duration_s: float | None
    queue_size: int
    on_tick: Callable[[bool], None] | None
    warm: Warm | None

    def __post_init__(self):
        self.stop = threading.Event()
        self.warmed = threading.Event()  # set by the inference thread after the warm-up: capture and the clock start
        self.out_gone = threading.Event()  # set when the output loop has ended: nobody drains outbox any more
        self.stats = RunStats()
        self.errors: list[BaseException] = []
        self.inbox = LatestSlot() if self.live else queue.Queue(maxsize=self.queue_size)
        self.outbox: queue.Queue = queue.Queue(maxsize=1 if self.live else self.queue_size)  # live: no backlog anywhere
        self.arrivals = _Rate()
        self.source_fps = self.source.fps  # live: measured from the arrivals
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()

    def go(self) -> RunStats:
        threads = [threading.Thread(target=self.capture, name="capture", daemon=True),
                   threading.Thread(target=self.inference, name="inference", daemon=True)]
        with signals_to(self.on_signal):
            self.t0, self.c0 = time.perf_counter(), time.process_time()
            try:
                for th in threads:
                    th.start()
                self.output()
            finally:
                self.stop.set()
                self.out_gone.set()
                for th in threads:
                    th.join(timeout=10)
        self.stats.wall_s = time.perf_counter() - self.t0
        self.stats.cpu_s = time.process_time() - self.c0
        self.stats.frames_read = self.source.stats.frames_read
        self.stats.dropped = self.dropped
        if self.errors:
            raise self.errors[0]
        return self.stats

    @property
    def dropped(self) -> int:
        return self.inbox.dropped if self.live else 0

    # --- stopping ------------------------------------------------------------------------------
    def on_signal(self, signum, _frame) -> None:
        if self.stats.stopped_by not in (StopReason.SIGINT, StopReason.SIGTERM):  # the first signal names the stop
            self.stats.stopped_by = StopReason(signal.Signals(signum).name)  # SIGINT or SIGTERM (signals_to)
        self.stop.set()

    def halt(self, why: StopReason) -> None:
        """Stop capture for `why`, unless something stopped it already."""
        if not self.stop.is_set():
            self.stats.stopped_by = why
            self.stop.set()

    def note(self, why: StopReason) -> None:
        """Record why the run ends without stopping it (what is in flight is still processed)."""
        self.stats.stopped_by = self.stats.stopped_by or why

    def fail(self, e: BaseException) -> None:
        self.errors.append(e)  # raised to the caller by go()
        self.stop.set()

    def check_duration(self) -> None:
        if self.warmed.is_set() and self.duration_s is not None and time.perf_counter() - self.t0 >= self.duration_s:
            self.halt(StopReason.DURATION)

    # --- capture thread ------------------------------------------------------------------------
    def capture(self) -> None:
        try:
            while not self.warmed.wait(0.1) and not self.stop.is_set():
                pass  # the model warms: nothing is read, so nothing is dropped
            for n, frame in enumerate(self.source.frames(self.stop), 1):
                if not self.hand_to_inference(frame):
                    break
                if not self.live and self.max_frames is not None and n >= self.max_frames:
                    self.note(StopReason.MAX_FRAMES)
                    break
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.fail(e)
        finally:
            self.hand_to_inference(_END)

    def hand_to_inference(self, item) -> bool:
        if not self.live:
            return _put_until(self.inbox, item, self.stop)
        if item is not _END:
            self.source_fps = self.arrivals.tick(item.t_capture) or self.source.fps
        self.inbox.put(item)
        return True

    # --- inference thread ----------------------------------------------------------------------
    def inference(self) -> None:
        try:
            self.warm_up()
            while (frame := self.next_frame()) is not None:
                # blocks while the output loop lives: results already inferred are kept
                if not _put_until(self.outbox, infer_frame(self.infer, frame), self.out_gone):
                    break
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.fail(e)
        finally:
            _put_until(self.outbox, _END, self.out_gone)

    def warm_up(self) -> None:
        """Run `warm` once on a blank frame of the source's size, then start the clock and capture."""
        try:
            if self.warm is not None:
                t = time.perf_counter()
                self.warm(np.zeros((self.source.height, self.source.width, 3), np.uint8))
                self.stats.warmup_s = time.perf_counter() - t
        finally:
            self.t0, self.c0 = time.perf_counter(), time.process_time()
            self.warmed.set()

    def next_frame(self) -> Frame | None:
        """The next frame to infer; None when capture has ended or the run is stopping."""
        while True:
            try:
                frame = self.inbox.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return None
                continue
            return None if frame is _END or self.stop.is_set() else frame

    # --- output loop (calling thread) -----------------------------------------------------------
    def output(self) -> None:
        hud, outputs = Hud(source_fps=self.source.fps), _Rate()
        while True:
            try:
                r = self.outbox.get(timeout=0.1)
            except queue.Empty:
                if self.on_tick is not None:
                    self.on_tick(self.source.state == "lost")
                if any(s.quit_requested for s in self.sinks):  # e.g. q while the signal is lost
                    self.halt(StopReason.QUIT)
                self.check_duration()
                continue
            if r is _END:
                return
            self.finish(r, hud, outputs)
            if any(s.quit_requested for s in self.sinks):
                self.halt(StopReason.QUIT)
            if self.live and self.max_frames is not None and self.stats.processed >= self.max_frames:
                self.note(StopReason.MAX_FRAMES)
                return  # exactly N frames: what inference has in hand is not written
            self.check_duration()

    def finish(self, r: Result, hud: Hud, outputs: _Rate) -> None:
        """Analyse, draw and write one result (`write_frame`), with the run's figures on the HUD."""
        hud.source_fps = self.source_fps
        hud.dropped = self.dropped
        hud.signal_lost = self.source.stats.signal_lost
        hud.processed_fps = outputs.tick(r.timings.t_infer_end)
        write_frame(r, self.analyse, self.render, hud, self.sinks)
        self.stats.processed += 1
        self.stats.model_ms.append(r.timings.model_ms)
        self.stats.end_to_end_ms.append(r.timings.end_to_end_ms)
