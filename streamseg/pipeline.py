"""Three threads joined by bounded queues: capture -> inference -> (analyse, overlay, sinks).

- Live: the newest frame wins. The capture->inference slot holds one frame; a newer frame
  replaces an unprocessed one (counted as dropped), so lag never grows.
- File: lossless and ordered. Bounded blocking queues; every frame read is processed and written.
- Each Result carries perf_counter stamps at capture, inference start/end and overlay end.
- SIGINT/SIGTERM (and a sink asking to quit) stop capture; what was already inferred is
  written, then the caller closes the sinks, so outputs are finalised.

The pipeline knows none of the stages' insides: it is handed a source (`frames(stop)`, `fps`,
`state`, `stats`), an `infer(image) -> detections`, an `analyse(frame, detections) -> (detection,
measurement)`, a `render(result, hud) -> image`, and sinks with `write(result)`.
"""
from __future__ import annotations

import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .overlay import Hud
from .types import Result, Timings

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
    wall_s: float = 0.0
    cpu_s: float = 0.0  # process CPU time (all threads) over the run: robust to other load on the machine
    stopped_by: str | None = None  # "SIGINT", "SIGTERM", "quit", "max-frames", "duration" or None (input ended)
    model_ms: list[float] = field(default_factory=list)
    end_to_end_ms: list[float] = field(default_factory=list)

    @property
    def processed_fps(self) -> float:
        return self.processed / self.wall_s if self.wall_s > 0 else 0.0


def run(source, infer: Callable, analyse: Callable, render: Callable, sinks: Sequence, live: bool,
        max_frames: int | None = None, duration_s: float | None = None, queue_size: int = 4,
        on_tick: Callable[[bool], None] | None = None) -> RunStats:
    stop = threading.Event()
    stats = RunStats()
    errors: list[BaseException] = []
    inbox = LatestSlot() if live else queue.Queue(maxsize=queue_size)
    outbox: queue.Queue = queue.Queue(maxsize=1 if live else queue_size)  # live: no backlog anywhere
    out_gone = threading.Event()  # set when the output loop has ended: nobody drains outbox any more
    arrivals = _Rate()
    src_rate = [source.fps]

    def put_blocking(q, item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def hand_on(item) -> bool:
        """Inference -> output: blocks while the output loop lives (results already inferred are kept)."""
        while not out_gone.is_set():
            try:
                outbox.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def capture():
        try:
            n = 0
            for frame in source.frames(stop):
                if live:
                    src_rate[0] = arrivals.tick(frame.t_capture) or source.fps
                    inbox.put(frame)
                elif not put_blocking(inbox, frame):
                    break
                n += 1
                if not live and max_frames is not None and n >= max_frames:
                    stats.stopped_by = stats.stopped_by or "max-frames"
                    break
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)
            stop.set()
        finally:
            if live:
                inbox.put(_END)
            else:
                put_blocking(inbox, _END)

    def inference():
        try:
            while True:
                try:
                    frame = inbox.get(timeout=0.1)
                except queue.Empty:
                    if stop.is_set():
                        break
                    continue
                if frame is _END or stop.is_set():
                    break
                t = Timings(t_capture=frame.t_capture, t_infer_start=time.perf_counter())
                dets = infer(frame.image)
                t.t_infer_end = time.perf_counter()
                stages = getattr(infer, "__self__", None)
                t.stages = dict(getattr(stages, "last_stages", {}) or {})
                if not hand_on(Result(frame=frame, detection=dets, measurement=None, timings=t)):
                    break
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            stop.set()
        finally:
            hand_on(_END)

    def on_signal(signum, _frame):
        stats.stopped_by = signal.Signals(signum).name
        stop.set()

    old = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, on_signal)
    threads = [threading.Thread(target=capture, name="capture", daemon=True),
               threading.Thread(target=inference, name="inference", daemon=True)]
    t0, c0 = time.perf_counter(), time.process_time()
    outputs = _Rate()
    hud = Hud(source_fps=source.fps)
    try:
        for th in threads:
            th.start()
        while True:
            try:
                r = outbox.get(timeout=0.1)
            except queue.Empty:
                if on_tick is not None:
                    on_tick(getattr(source, "state", "ok") == "lost")
                if any(getattr(s, "quit", False) for s in sinks) and not stop.is_set():  # e.g. q while the signal is lost
                    stats.stopped_by = "quit"
                    stop.set()
                if duration_s is not None and time.perf_counter() - t0 >= duration_s and not stop.is_set():
                    stats.stopped_by = "duration"
                    stop.set()
                continue
            if r is _END:
                break
            r.detection, r.measurement = analyse(r.frame, r.detection)
            hud.source_fps = src_rate[0]
            hud.model_ms = r.timings.model_ms
            hud.dropped = inbox.dropped if live else 0
            hud.signal_lost = getattr(getattr(source, "stats", None), "signal_lost", 0)
            r.timings.t_overlay_end = time.perf_counter()  # provisional, for the HUD's end-to-end figure
            hud.end_to_end_ms = r.timings.end_to_end_ms
            hud.processed_fps = outputs.tick(r.timings.t_infer_end)
            r.overlay = render(r, hud)
            r.timings.t_overlay_end = time.perf_counter()
            for s in sinks:
                s.write(r)
            stats.processed += 1
            stats.model_ms.append(r.timings.model_ms)
            stats.end_to_end_ms.append(r.timings.end_to_end_ms)
            if any(getattr(s, "quit", False) for s in sinks) and not stop.is_set():
                stats.stopped_by = "quit"
                stop.set()
            if live and max_frames is not None and stats.processed >= max_frames:
                stats.stopped_by = stats.stopped_by or "max-frames"
                break  # exactly N frames: what inference has in hand is not written
            if duration_s is not None and time.perf_counter() - t0 >= duration_s and not stop.is_set():
                stats.stopped_by = "duration"
                stop.set()
    finally:
        stop.set()
        out_gone.set()
        for th in threads:
            th.join(timeout=10)
        for s, h in old.items():
            signal.signal(s, h)
        stats.wall_s = time.perf_counter() - t0
        stats.cpu_s = time.process_time() - c0
        stats.frames_read = getattr(getattr(source, "stats", None), "frames_read", stats.processed)
        stats.dropped = inbox.dropped if live else 0
    if errors:
        raise errors[0]
    return stats
