"""The file outputs, each a `types.FileSink`: an H.264 MP4 of the overlay (PyAV), one of the raw
input (`--save-input`), and CSV and JSONL rows (one per processed frame).

Each writes into a `files.StagedFile` (a hidden temp file beside its target, `.NAME.PID.*.part`),
completed by `finish()` (the step that can fail: disk full), renamed onto the target by `commit()`
or discarded by `abort()`. The runner finishes every output first and commits only when all
finished, so a failed run leaves the earlier outputs as they were (all or none). Temp files left by
a killed run are removed by the next run that writes the same target (files.remove_stale_temps).
The summary JSON and the CSA plot (`scan_summary.py`), written whole once the run is over, join the
same commit as `StagedFile`s. A new file output goes here (a `types.FileSink`) and is opened in
`runner._open_sinks`.
"""
from __future__ import annotations

import csv
import math
import os
from fractions import Fraction
from pathlib import Path

# cv2 before av: both wheels bundle libxcb-shm under one name, and when PyAV's copy is loaded first
# OpenCV's Qt window hangs for ever in cv2.namedWindow (tests/test_window.py checks the order).
import cv2  # isort: skip
import av  # isort: skip
import numpy as np

from ..files import StagedFile, check_writable, json_text, write_error
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
        if self.frames == 0:
            self.abort()
            return None
        return self.file.commit()

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


FIELDS = ["frame", "pts_s", "nerve", "score", "x1", "y1", "x2", "y2", "area_px", "area_px_stable", "mm_per_px",
          "csa_mm2", "csa_mm2_stable", "perimeter_px", "perimeter_mm", "major_axis_px", "minor_axis_px",
          "circularity", "flattening", "model_ms", "end_to_end_ms"]


def result_row(r: Result, mm_per_px: float | None, score_thresh: float) -> dict:
    """One flat record per processed frame: the best detection's raw score and box, and the nerve's
    measurements (mm fields only when calibrated). The measurements are those of the outline shown:
    on a frame without a shown nerve (`nerve` 0: nothing, or a best detection below `score_thresh`)
    they stay empty, so an area column never holds a number for a structure that is not shown."""
    d, m, t = r.best, r.measurement, r.timings
    row = dict.fromkeys(FIELDS)
    shown = d is not None and d.score >= score_thresh and m is not None
    row.update(frame=r.frame.index, pts_s=None if r.frame.pts is None else round(r.frame.pts, 6),
               nerve=int(shown), mm_per_px=mm_per_px, model_ms=round(t.model_ms, 2),
               end_to_end_ms=round(t.end_to_end_ms, 2))
    if d is not None:
        row.update(score=round(d.score, 5), **{k: round(float(v), 2) for k, v in zip(("x1", "y1", "x2", "y2"), d.box)})
    if shown:
        row.update(area_px=m.area_px, area_px_stable=m.area_px_stable, csa_mm2=_r(m.csa_mm2), csa_mm2_stable=_r(m.csa_mm2_stable),
                   perimeter_px=_r(m.perimeter_px), perimeter_mm=_r(m.perimeter_mm), major_axis_px=_r(m.major_axis_px),
                   minor_axis_px=_r(m.minor_axis_px), circularity=_r(m.circularity), flattening=_r(m.flattening))
    return row


def _r(v, n=4):
    """Rounded, or None (an empty CSV cell, a JSON null) for no value or a non-finite one (flattening
    of a one-pixel-thin mask is inf): no NaN or inf is ever written."""
    return None if v is None or not math.isfinite(v) else round(float(v), n)


class RowSink:
    """CSV or JSONL, one row per processed frame; a `types.FileSink`."""

    quit_requested = False  # a file never asks to stop

    def __init__(self, path, kind: str, mm_per_px: float | None, score_thresh: float):
        self.path = check_writable(path)
        self.kind, self.mm_per_px, self.score_thresh = kind, mm_per_px, score_thresh
        self.rows = 0
        self.file, self.f = None, None
        try:
            self.file = StagedFile(self.path)
            self.f = open(self.file.tmp, "w", newline="")
            if kind == "csv":
                self.w = csv.DictWriter(self.f, fieldnames=FIELDS)
                self.w.writeheader()
        except OSError as e:
            if self.file is not None:
                self.abort()
            raise write_error(self.path, e) from None

    def write(self, r: Result) -> None:
        row = result_row(r, self.mm_per_px, self.score_thresh)
        try:
            if self.kind == "csv":
                self.w.writerow({k: "" if v is None else v for k, v in row.items()})
            else:
                self.f.write(json_text(row) + "\n")
            self.f.flush()
        except OSError as e:
            raise self.file.error(e) from None
        self.rows += 1

    def finish(self) -> None:
        """Flush, sync and close the temp file (not yet the target); StreamsegError when it cannot."""
        try:
            if not self.f.closed:
                self.f.flush()
                os.fsync(self.f.fileno())
                self.f.close()
        except OSError as e:
            self.abort()
            raise self.file.error(e) from None
        self.file.finish()

    def commit(self) -> Path | None:
        """Rename the finished temp file onto the target; None (and no file) when no row was written."""
        if self.rows == 0:
            self.abort()
            return None
        return self.file.commit()

    def abort(self) -> None:
        """Discard the temp file; the target is left as it was."""
        try:
            if self.f is not None and not self.f.closed:
                self.f.close()
        except OSError:
            pass
        self.file.abort()
