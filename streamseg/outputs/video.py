"""The video outputs, each a `types.FileSink`: an H.264 MP4 of the overlay (PyAV) and one of the raw
input (`--save-input`); the CSV and JSONL rows are `rows.py`.

Each writes into a `files.StagedFile` (a hidden temp file beside its target, `.NAME.PID.*.part`),
completed by `finish()` (the step that can fail: disk full), renamed onto the target by `commit()`
or discarded by `abort()`. The runner finishes every output first and commits only when all
finished, so a failed run leaves the earlier outputs as they were (all or none). Temp files left by
a killed run are removed by the next run that writes the same target (files.remove_stale_temps).
The summary JSON and the CSA plot (`analysis/summary.py`), written whole once the run is over, join the
same commit as `StagedFile`s. A new file output goes in `outputs/` (a `types.FileSink`) and is opened in
`sinks.open_outputs`.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

# cv2 before av: both wheels bundle libxcb-shm under one name, and when PyAV's copy is loaded first
# OpenCV's Qt window hangs for ever in cv2.namedWindow (tests/test_window.py checks the order).
import cv2  # isort: skip
import av  # isort: skip
import numpy as np

from ..files import StagedFile, check_writable
from ..types import Result, StreamsegError

_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


class VideoSink:
    """H.264 (libx264, yuv420p) at the source frame rate, keeping each frame's timestamp; a `types.FileSink`."""

    quit_requested = False  # a file never asks to stop

    def __init__(self, path, width: int, height: int, rate: Fraction | float | None, time_base: Fraction | None = None,
                 crf: int = 20, preset: str = "veryfast", threads: int = 1):
        self.path = check_writable(path)
        fmt = _FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise StreamsegError(f"{self.path}: output must end in {', '.join(sorted(_FORMATS))}")
        rate = Fraction(rate).limit_denominator(100000) if rate else Fraction(25)
        self.time_base = time_base or Fraction(1, 90000)
        self.file = StagedFile(self.path)
        self.container = None
        try:
            self.container = av.open(self.file.tmp, mode="w", format=fmt)
            st = self.container.add_stream("libx264", rate=rate)
            st.width, st.height = width + width % 2, height + height % 2  # yuv420p needs even sizes
            st.pix_fmt = "yuv420p"
            st.time_base = self.time_base
            st.codec_context.time_base = self.time_base
            st.options = {"crf": str(crf), "preset": preset}
            st.codec_context.thread_count = threads
            self.stream = st
        except Exception:
            self.abort()
            raise
        self.frames = 0
        self._last_pts = None
        self._t0 = None
        self._step = max(1, round(1 / (rate * self.time_base)))  # ticks per frame at the nominal rate

    def _pts(self, r: Result) -> int:
        if r.frame.pts is None:  # live: the capture clock
            if self._t0 is None:
                self._t0 = r.frame.t_capture
            pts = round((r.frame.t_capture - self._t0) / self.time_base)
        else:
            pts = round(r.frame.pts / self.time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + (self._step if pts < self._last_pts - self._step else 1)
        self._last_pts = pts
        return pts

    def image(self, r: Result) -> np.ndarray:
        """What this video shows of `r`: the overlay (the frame itself when none was drawn)."""
        return r.overlay if r.overlay is not None else r.frame.image

    def write(self, r: Result) -> None:
        img = _fit(self.image(r), self.stream.width, self.stream.height)
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
        vf.pts = self._pts(r)
        vf.time_base = self.time_base
        try:
            for packet in self.stream.encode(vf):
                self.container.mux(packet)
        except (OSError, av.error.FFmpegError) as e:
            raise self.file.error(e) from None
        self.frames += 1

    def finish(self) -> None:
        """Flush the encoder and complete the temp file (not yet the target); raises StreamsegError
        (and discards the temp file) when it cannot be completed."""
        if self.container is None:
            return
        try:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            self.container.close()
            self.container = None
        except (OSError, av.error.FFmpegError) as e:
            self.abort()
            raise self.file.error(e) from None
        self.file.finish()

    def commit(self) -> Path | None:
        """Rename the finished temp file onto the target; None (and no file) when no frame was written."""
        return self.file.commit(keep=self.frames > 0)

    def abort(self) -> None:
        try:
            if self.container is not None:
                self.container.close()
        except Exception:  # noqa: BLE001 - discarding anyway
            pass
        self.container = None
        self.file.abort()


class RawVideoSink(VideoSink):
    """The input as it came in (after --crop), without the overlay: same frames and timestamps as the
    overlay video, so a later model can be run on the session (`--save-input`). Encoded at a lower
    CRF than the overlay (less loss) by default."""

    def __init__(self, path, width: int, height: int, rate, time_base=None, crf: int = 15, **kw):
        super().__init__(path, width, height, rate, time_base, crf=crf, **kw)

    def image(self, r: Result) -> np.ndarray:
        return r.frame.image


def _fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """`img` at the video's size. An odd side is padded by one replicated pixel (yuv420p); a frame whose
    resolution changed mid-stream is scaled, keeping its aspect, to fit and centred on black, so the
    whole image stays visible and undistorted in one playable video at the first frame's size."""
    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    if 0 <= width - w <= 1 and 0 <= height - h <= 1:
        return cv2.copyMakeBorder(img, 0, height - h, 0, width - w, cv2.BORDER_REPLICATE)
    s = min(width / w, height / h)
    nw, nh = max(1, min(width, round(w * s))), max(1, min(height, round(h * s)))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    top, left = (height - nh) // 2, (width - nw) // 2
    return cv2.copyMakeBorder(small, top, height - nh - top, left, width - nw - left, cv2.BORDER_CONSTANT, value=0)
