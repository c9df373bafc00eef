"""Open `--device` / a file / a URL -> an iterator of `Frame` (crop applied, BGR uint8).

- `/dev/videoN` or an index: OpenCV's V4L2 backend, buffer size 1, the requested size/fps
  (frame grabbers present as UVC devices); each read waits at most the read timeout
  (`settings.bound_v4l2_reads`).
- URLs (rtsp/udp/tcp/http/...) and files: PyAV, any container/codec FFmpeg decodes, keeping the
  presentation timestamps. Network opens and reads have timeouts, so nothing hangs.
- Live frames carry the session's capture clock as `pts` (seconds since the first frame, from
  perf_counter): monotonic across reconnects, and the clock the live MP4 is written with.
- Live sources reconnect with back-off when the signal drops (by default for about 5 minutes:
  a cable unplugged and plugged back in); each loss and attempt is counted
  and reported through `on_event(kind, message)`. Files decode what can be decoded and count
  the rest (truncated or corrupt data).
"""
from __future__ import annotations

import os
import re
import select
import stat
import threading
import time
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

# cv2 before av: both wheels bundle libxcb-shm under one name, and when PyAV's copy is loaded first
# OpenCV's Qt window hangs for ever in cv2.namedWindow (tests/test_window.py checks the order).
import cv2  # isort: skip
import av  # isort: skip
import numpy as np

from ..files import first_line
from ..settings import bound_v4l2_reads
from ..letterbox import ensure_bgr
from .calibration import Calibration
from ..types import (BACKOFF_MAX_S, BACKOFF_S, OPEN_TIMEOUT_S, READ_TIMEOUT_S, RECONNECT_ATTEMPTS, Frame, Source,
                    SourceState, SourceStats, StreamsegError)

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "udp://", "tcp://", "http://", "https://", "srt://", "rtp://")
MIN_SIDE, MAX_SIDE = 32, 8192
_AV_ERRORS = (av.error.FFmpegError, OSError, EOFError)


def kind_of(spec: str) -> str:
    """'v4l2', 'url' or 'file'."""
    s = str(spec)
    if s.isdigit() or s.startswith("/dev/video"):
        return "v4l2"
    if s.lower().startswith(URL_SCHEMES):
        return "url"
    return "file"


class BaseSource:
    """Frames from one input (implements `types.Source`). `frames(stop)` yields Frame objects until
    the input ends, `stop` is set, or (live) the reconnect attempts run out. Subclasses provide
    `_connect` (and `_disconnect`); opening, cropping, counting and reconnecting are shared."""

    def __init__(self, spec: str, live: bool, crop=None, reconnect_attempts: int = RECONNECT_ATTEMPTS,
                 backoff_s: float = BACKOFF_S, backoff_max_s: float = BACKOFF_MAX_S, on_event: Callable[[str, str], None] | None = None):
        self.spec = str(spec)
        self.live = live
        self.crop = crop
        self.reconnect_attempts = reconnect_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.on_event = on_event or (lambda kind, msg: None)
        self.stats = SourceStats()
        self.fps: float | None = None  # nominal frame rate of the source
        self.rate: Fraction | None = None
        self.time_base: Fraction | None = None
        self.width = self.height = 0  # after crop
        self.state: SourceState = "ok"
        self.finite = kind_of(self.spec) == "file"
        self.read_timeout_s: float | None = None  # a read that waits longer is a lost signal (live)
        self._it: Iterator | None = None
        self._pending = None
        self._t0: float | None = None  # live: capture time of the first frame (the session clock's zero)
        self._last_pts: float | None = None  # files: the last timestamp given (`_monotonic`)
        self._reading = threading.Lock()  # held while a read or (re)connect is in FFmpeg/OpenCV
        self._closing = False  # close() came while a read was blocked: the reading thread disconnects

    # --- what a concrete source provides -------------------------------------------------------
    def _connect(self) -> Iterator[tuple[np.ndarray, float | None]]:
        """Open the input -> iterator of (raw image, pts seconds). Raise StreamsegError if it cannot."""
        raise NotImplementedError

    def _disconnect(self) -> None:
        pass

    # --- shared ----------------------------------------------------------------------------------
    def open(self) -> "BaseSource":
        """Connect and read the first frame, so bad input fails here with one clear line."""
        self._it = self._connect()
        try:
            first = next(self._it, None)
        except StreamsegError:
            self.close()
            raise
        except av.error.ExitError:  # FFmpeg's read timeout ("Immediate exit requested")
            self.close()
            raise StreamsegError(self._no_data()) from None
        except _AV_ERRORS as e:
            self.close()
            raise StreamsegError(f"{self.spec}: cannot decode video ({first_line(e)})") from None
        if first is None:
            self.close()
            raise StreamsegError(f"{self.spec}: no decodable video frames")
        img = self._prepare(first[0])
        self.height, self.width = img.shape[:2]
        self._pending = (img, first[1])
        return self

    def _prepare(self, raw: np.ndarray) -> np.ndarray:
        img = ensure_bgr(raw)
        h, w = img.shape[:2]
        if self.crop is not None:
            x, y, cw, ch = self.crop
            if x + cw > w or y + ch > h:
                raise StreamsegError(f"crop {x},{y},{cw},{ch} lies outside the {w}x{h} frame of {self.spec}")
            img = np.ascontiguousarray(img[y:y + ch, x:x + cw])
            h, w = ch, cw
        if min(h, w) < MIN_SIDE or max(h, w) > MAX_SIDE:
            raise StreamsegError(f"{self.spec}: frame {w}x{h} is outside the supported {MIN_SIDE}..{MAX_SIDE} px per side")
        return img

    def frames(self, stop: threading.Event | None = None) -> Iterator[Frame]:
        stop = stop or threading.Event()
        if self._it is None:
            self.open()
        try:
            yield from self._frames(stop)
        finally:
            if self._closing:
                self._disconnect()

    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        index = 0
        while not stop.is_set():
            reason = "stream ended"
            try:
                while not stop.is_set():
                    if self._pending is not None:
                        img, pts = self._pending
                        self._pending = None
                    else:
                        with self._reading:
                            item = next(self._it, None)
                        if item is None or self._closing:
                            break
                        img = self._prepare(item[0])
                        pts = item[1]
                    self.stats.frames_read += 1
                    t = time.perf_counter()
                    if self.live:  # the stream's own pts restart at each reconnect; the session clock does not
                        self._t0 = t if self._t0 is None else self._t0
                        pts = t - self._t0
                    else:
                        pts = self._monotonic(pts)
                    yield Frame(image=img, index=index, pts=pts, t_capture=t)
                    index += 1
            except StreamsegError:
                raise
            except _AV_ERRORS as e:
                reason = self._no_data() if isinstance(e, av.error.ExitError) else first_line(e)
            if stop.is_set() or self._closing or not self.live or (self.finite and reason == "stream ended"):
                return  # a file played as a live source ends at its end; streams and devices reconnect
            self.state = "lost"
            self.stats.signal_lost += 1
            self.on_event("signal_lost", f"signal lost ({reason})")
            with self._reading:
                self._disconnect()
            if not self._reconnect(stop):
                return
            self.state = "ok"

    def _no_data(self) -> str:
        """What FFmpeg's read timeout means (it reports "[Errno 1414092869] Immediate exit requested")."""
        timeout = self.read_timeout_s
        return f"no data from {self.spec} for {timeout:g} s" if timeout else f"no data from {self.spec}"

    def _monotonic(self, pts: float | None) -> float | None:
        """A file's timestamp, never back or standing still: where the file's own times restart (two
        TS files concatenated) or repeat, the frame comes one frame period after the last. The MP4
        gets these same times (VideoSink), so the CSV and the video agree."""
        if pts is None:
            return None
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1.0 / float(self.rate or 25)
        self._last_pts = pts
        return pts

    def reconnect_delays(self) -> list[float]:
        """The waits before each reconnect attempt (s): doubling from `backoff_s`, capped at `backoff_max_s`."""
        delays, d = [], self.backoff_s
        for _ in range(self.reconnect_attempts):
            delays.append(d)
            d = min(d * 2, self.backoff_max_s)
        return delays

    def _reconnect(self, stop: threading.Event) -> bool:
        for attempt, delay in enumerate(self.reconnect_delays(), 1):
            if stop.wait(delay):
                return False
            self.stats.reconnect_attempts += 1
            self.on_event("reconnecting", f"reconnecting to {self.spec} (attempt {attempt}/{self.reconnect_attempts})")
            try:
                with self._reading:
                    self._it = self._connect()
                self.stats.reconnects += 1
                self.on_event("reconnected", f"reconnected to {self.spec}")
                return True
            except StreamsegError as e:
                self.on_event("reconnect_failed", str(e))
        self.on_event("gave_up", f"gave up on {self.spec} after {self.reconnect_attempts} reconnect attempts")
        return False

    def close(self, wait_s: float = 2.0) -> None:
        """Disconnect. While another thread is blocked in a read (a stalled stream, up to the read
        timeout), closing under it would crash FFmpeg: then the reading thread disconnects as soon
        as its bounded read returns."""
        if self._reading.acquire(timeout=wait_s):
            try:
                self._disconnect()
            finally:
                self._reading.release()
        else:
            self._closing = True

    def describe(self) -> str:
        fps = f"{self.fps:.2f} fps" if self.fps else "unknown fps"
        return f"{self.spec} ({self.width}x{self.height}, {fps})"

    def calibration(self, given: Calibration, log: Callable[[str], None]) -> Calibration:
        """`given`: a video or a grabber carries no pixel spacing of its own."""
        return given


class AVSource(BaseSource):
    """Files and network streams through PyAV (FFmpeg)."""

    def __init__(self, spec: str, live: bool, open_timeout_s: float = OPEN_TIMEOUT_S, read_timeout_s: float = READ_TIMEOUT_S,
                 untimed_fps: float | None = None, **kw):
        super().__init__(spec, live, **kw)
        self.untimed_fps = untimed_fps  # --fps: the rate of frames without timestamps (files)
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self._container = None

    def _connect(self):
        url = self.spec
        if kind_of(url) == "file":
            p = Path(url)
            if not p.exists():
                raise StreamsegError(f"{url}: " + ("a symlink loop or a link to nothing" if p.is_symlink() else "no such file"))
            if p.is_dir():
                raise StreamsegError(f"{url}: is a folder, not a video")
            if not os.access(p, os.R_OK):
                raise StreamsegError(f"{url}: not readable")
            if stat.S_ISFIFO(p.stat().st_mode):
                with _fifo_with_data(p, self.open_timeout_s):
                    return self._open_av(url)
        return self._open_av(url)

    def _open_av(self, url: str):
        opts = {}
        if kind_of(url) == "url":  # a short probe; no `fflags nobuffer`: it threw away the packets read while
            # probing (about the first 1.5 s of every connection, never counted). They are decoded first
            # now; a live run keeps the newest frame, so any it cannot keep up with are counted as dropped.
            opts = {"probesize": "1000000", "analyzeduration": "1000000"}
        try:
            c = av.open(url, mode="r", options=opts, timeout=(self.open_timeout_s, self.read_timeout_s))
        except av.error.InvalidDataError:
            raise StreamsegError(f"{url}: not a video (FFmpeg cannot read this format)") from None
        except av.error.ExitError:
            raise StreamsegError(f"{url}: no answer within {self.open_timeout_s:g} s") from None
        except _AV_ERRORS as e:
            what = "unreachable" if kind_of(url) == "url" else "cannot open"
            raise StreamsegError(f"{url}: {what} ({first_line(e)})") from None
        if not c.streams.video:
            c.close()
            raise StreamsegError(f"{url}: not a video (no video stream)")
        st = c.streams.video[0]
        if st.codec_context is None or st.codec_context.codec is None:
            c.close()
            raise StreamsegError(f"{url}: unsupported video codec")
        st.thread_type = "AUTO"
        self._container = c
        rate = st.average_rate or st.guessed_rate or st.base_rate
        self.rate = Fraction(rate) if rate else None
        self.fps = float(rate) if rate else None
        self.time_base = Fraction(st.time_base) if st.time_base else None
        if not self.live:
            self.stats.expected_frames = expected_frames(c, st, self.rate)
            self.stats.expected_slack = 0 if st.frames else 1
        return self._decode(c, st)

    def _untimed_rate(self) -> Fraction:
        """The rate that times frames which carry no timestamp (raw .h264/.hevc elementary streams):
        `--fps` when given, else the rate the stream declares; neither is one clear error."""
        if self.untimed_fps:  # it is then the source's rate too (the output video's)
            self.rate = Fraction(self.untimed_fps).limit_denominator(1001)
            self.fps = float(self.untimed_fps)
            self.untimed_fps = None
        if self.rate:
            return self.rate
        raise StreamsegError(f"{self.spec}: the frames carry no timestamps and the stream gives no frame rate; "
                             "give it with --fps")

    def _decode(self, c, st):
        """Yield (bgr, pts seconds); corrupt packets are counted and skipped (files) or end the
        connection (live: a read error is a lost signal)."""
        demux = c.demux(st)
        untimed = count = 0  # frames without a timestamp, frames decoded, so far
        last, gaps = None, []  # the last frame's timestamp (s), the steps between timestamps
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                self._reached_the_end(c, st, count, last, gaps)
                return
            except av.error.InvalidDataError:
                if self.live:
                    raise
                self.stats.decode_errors += 1
                continue
            try:
                decoded = packet.decode()
            except (av.error.InvalidDataError, av.error.PatchWelcomeError, av.error.UndefinedError):
                self.stats.decode_errors += 1
                continue
            for f in decoded:
                pts = float(f.pts * f.time_base) if f.pts is not None and f.time_base else None
                if pts is None and not self.live:  # no timestamps: frame n is at n / rate, never the wall clock
                    pts = float(untimed / self._untimed_rate())
                    untimed += 1
                if pts is not None and last is not None:
                    gaps.append(pts - last)
                count, last = count + 1, pts if pts is not None else last
                yield upright(f.to_ndarray(format="bgr24"), f.rotation), pts

    def _reached_the_end(self, c, st, decoded: int, last: float | None, gaps: list[float]) -> None:
        """A file whose count is an estimate (duration x average rate: wrong for a variable frame rate),
        whose last frame is at its end and whose frames follow each other without a hole (no step over
        3x the median step: a damaged middle leaves one) was read whole: its expected count becomes
        what was decoded, so a complete file gives no "decoded N of M frames" warning."""
        if self.live or st.frames or not self.stats.expected_frames or last is None or not self.rate or not gaps:
            return
        if max(gaps) > 3 * float(np.median(gaps)):
            return
        if st.duration and st.time_base:
            end = float((st.start_time or 0) * st.time_base + st.duration * st.time_base)
        elif c.duration:
            end = float(((c.start_time or 0) + c.duration) / av.time_base)
        else:
            return
        if last + 1.5 / float(self.rate) >= end:
            self.stats.expected_frames = decoded + self.stats.decode_errors

    def _disconnect(self):
        if self._container is not None:
            try:
                self._container.close()
            except _AV_ERRORS:
                pass
            self._container = None


def expected_frames(c, st, rate: Fraction | None) -> int | None:
    """How many frames a file should hold: the count its container stores (MP4), else its duration
    (the stream's, else the container's) x its frame rate (MKV, TS, ...); None when it says neither.
    A file cut short that keeps its header (MKV, MP4) still says its full length; MPEG-TS stores
    no length (FFmpeg estimates it from the data there), so a truncated TS cannot be told apart.
    An estimate may be one frame off (start offsets, the last frame's duration, rounded rates)."""
    if st.frames:
        return int(st.frames)
    if st.duration and st.time_base:
        seconds = st.duration * Fraction(st.time_base)
    elif c.duration:
        seconds = Fraction(c.duration, av.time_base)
    else:
        return None
    return round(seconds * rate) if rate else None


@contextmanager
def _fifo_with_data(path: Path, timeout_s: float):
    """Hold a FIFO open (non-blocking) until data arrives, so FFmpeg's blocking open and first read
    return at once; a FIFO that nobody writes to within `timeout_s` is one clear error, never a hang."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(int(timeout_s * 1000)):
            raise StreamsegError(f"{path}: a FIFO that nothing was written to within {timeout_s:g} s "
                                 "(start the program that writes to it first)")
        yield
    finally:
        os.close(fd)


class V4L2Source(BaseSource):
    """UVC frame grabbers through OpenCV's V4L2 backend (buffer size 1: always the newest frame)."""

    def __init__(self, spec: str, width: int | None = None, height: int | None = None, fps: float | None = None,
                 read_timeout_s: float = READ_TIMEOUT_S, **kw):
        super().__init__(spec, True, **kw)
        self.req = (width, height, fps)
        self.read_timeout_s = read_timeout_s
        self._cap = None

    def _device_path(self) -> str:
        return f"/dev/video{self.spec}" if self.spec.isdigit() else self.spec

    def _connect(self):
        bound_v4l2_reads(self.read_timeout_s)
        path = self._device_path()
        if not os.path.exists(path):
            raise StreamsegError(f"{path}: no such capture device")
        if not stat.S_ISCHR(os.stat(path).st_mode):
            raise StreamsegError(f"{path}: not a capture device")
        m = re.fullmatch(r"/dev/video(\d+)", os.path.realpath(path))
        if m is None:  # OpenCV's V4L2 backend opens by index; by-id/by-path links resolve to /dev/videoN
            raise StreamsegError(f"{path}: not a video capture device (not a /dev/videoN node)")
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our one line, not OpenCV's warnings
        cap = cv2.VideoCapture(int(m.group(1)), cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise StreamsegError(f"{path}: not a video capture device (V4L2 cannot open it)")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        w, h, fps = self.req
        if w:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
        if h:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        got = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(got) if got and got > 0 else (float(fps) if fps else None)
        self.rate = Fraction(self.fps).limit_denominator(1001) if self.fps else None
        self._cap = cap
        return self._read(cap)

    def _read(self, cap):
        t0 = time.perf_counter()
        while True:
            ok, img = cap.read()
            if not ok or img is None:
                raise OSError("capture device returned no frame")
            yield img, time.perf_counter() - t0

    def _disconnect(self):
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# PyAV's VideoFrame.rotation: the display matrix's angle, counterclockwise (as FFmpeg's players apply it)
_ROTATIONS = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


def upright(image: np.ndarray, degrees: float) -> np.ndarray:
    """The frame as it is meant to be shown: turned by the stream's display rotation (the display
    matrix a phone or a machine writes beside the pixels), as FFmpeg's players turn it."""
    turn = _ROTATIONS.get(int(round(degrees)) % 360)
    return image if turn is None else np.ascontiguousarray(cv2.rotate(image, turn))


def open_source(spec: str, live: bool, crop=None, width: int | None = None, height: int | None = None,
                fps: float | None = None, open_timeout_s: float = OPEN_TIMEOUT_S, read_timeout_s: float = READ_TIMEOUT_S,
                reconnect_attempts: int = RECONNECT_ATTEMPTS, backoff_s: float = BACKOFF_S, on_event=None) -> Source:
    """Open and validate a source (first frame read); raises StreamsegError with one clear line."""
    if not str(spec).strip():  # Path("") is ".", a folder: say what is wrong instead
        raise StreamsegError("the source is an empty name: give /dev/videoN, an index, a URL or a file")
    kind = kind_of(spec)
    from .dicom import DicomSource, is_dicom  # DICOM files (issue 12): pydicom, not FFmpeg

    if kind == "file" and is_dicom(spec):  # --fps: when the file's frame times are bad
        return DicomSource(spec, live, crop=crop, fps=fps, on_event=on_event).open()
    kw = dict(crop=crop, reconnect_attempts=reconnect_attempts, backoff_s=backoff_s, on_event=on_event)
    if kind == "v4l2":
        src: BaseSource = V4L2Source(spec, width=width, height=height, fps=fps, read_timeout_s=read_timeout_s, **kw)
    else:
        src = AVSource(spec, live, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s,
                       untimed_fps=None if live else fps, **kw)
    return src.open()
