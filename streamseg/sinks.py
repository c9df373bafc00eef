"""Where results go: an H.264 MP4 of the overlay (PyAV) and one of the raw input (`--save-input`),
CSV and JSONL rows, an OpenCV window, and the scan summary (numbers and a matplotlib CSA plot).

Every sink implements `types.Sink`: `write(result)` per frame and `quit_requested`. The videos and
the rows are `types.FileSink`s: each writes into a `files.StagedFile` (a hidden temp file beside its
target, `.NAME.PID.*.part`), completed by `finish()` (the step that can fail: disk full), renamed
onto the target by `commit()` or discarded by `abort()`. The runner finishes every file first and
commits only when all finished, so a failed run leaves the earlier outputs as they were (all or
none). Temp files left by a killed run are removed by the next run that writes the same target
(files.remove_stale_temps). The summary JSON and the CSA plot, written whole once the run is over,
join the same commit as `StagedFile`s; a snapshot is written at once (`files.atomic_write`).
"""
from __future__ import annotations

import csv
import ctypes
import ctypes.util
import math
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

# cv2 before av: both wheels bundle libxcb-shm under one name, and when PyAV's copy is loaded first
# OpenCV's Qt window hangs for ever in cv2.namedWindow (tests/test_window.py checks the order).
import cv2  # isort: skip
import av  # isort: skip
import numpy as np

from .files import StagedFile, atomic_write, check_writable, json_text, write_error
from .types import CONFIDENT_SCORE, NERVE_SCORE, Result, StreamsegError

_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


class VideoSink:
    """H.264 (libx264, yuv420p) at the source frame rate, keeping each frame's timestamp; a `types.FileSink`."""

    quit_requested = False  # a file never asks to stop

    def __init__(self, path, width: int, height: int, rate: Fraction | float | None, time_base: Fraction | None = None,
                 use_capture_time: bool = False, crf: int = 20, preset: str = "veryfast", threads: int = 1):
        self.path = check_writable(path)
        fmt = _FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise StreamsegError(f"{self.path}: output must end in {', '.join(sorted(_FORMATS))}")
        rate = Fraction(rate).limit_denominator(100000) if rate else Fraction(25)
        self.time_base = time_base or Fraction(1, 90000)
        self.use_capture_time = use_capture_time
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
        if self.use_capture_time or r.frame.pts is None:
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


def display_problem() -> str | None:
    """Why no OpenCV window can open here, or None. OpenCV's wheels draw through Qt on X11 (xcb), and
    Qt aborts the whole process when it cannot connect, so this connects to $DISPLAY first, as Qt will."""
    build = cv2.getBuildInformation()
    gui = next((ln.split(":", 1)[1].strip() for ln in build.splitlines() if ln.strip().startswith("GUI:")), "")
    if gui.upper() in ("", "NONE"):
        return "this OpenCV has no GUI (opencv-python-headless?)"
    name = os.environ.get("DISPLAY")
    if not name:
        return "DISPLAY is not set"
    try:
        xcb = ctypes.CDLL(ctypes.util.find_library("xcb") or "libxcb.so.1")
    except OSError:
        return "libxcb (X11) is not installed"
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    conn = xcb.xcb_connect(name.encode(), None)
    try:
        failed = xcb.xcb_connection_has_error(conn)
    finally:
        xcb.xcb_disconnect(conn)
    return f"cannot open display {name}" if failed else None


def has_display() -> bool:
    return display_problem() is None


def require_display() -> None:
    """Raise the one-line error for --show where no window can open."""
    problem = display_problem()
    if problem:
        raise StreamsegError(f"--show needs a display: {problem}; use --no-show")


class WindowSink:
    """An OpenCV window showing each overlay at its own size (no Qt toolbar). Keys: f or space
    freezes and unfreezes what is shown, s saves what is shown as a PNG in `snapshot_dir`, q or Esc
    quits. The run goes on while the window is frozen."""

    def __init__(self, title: str = "streamseg", snapshot_dir=".", on_event=None):
        require_display()
        self.title, self.snapshot_dir = title, Path(snapshot_dir)
        self.on_event = on_event or (lambda kind, msg: None)
        self.last = None  # the last overlay written (what the signal-lost screen dims)
        self.displayed = None  # what the window shows now
        self.frozen = False
        self.quit_requested = False
        self.snapshots: list[Path] = []

    def show(self, img: np.ndarray) -> None:
        """Display `img` (unless frozen) and handle the keys pressed since the last call."""
        if not self.frozen:
            if self.displayed is None:  # opened with the first image, at its size (Qt's default: 400x300, scaled)
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
                cv2.resizeWindow(self.title, img.shape[1], img.shape[0])
            self.displayed = img
            cv2.imshow(self.title, img)
        self.poll()

    def poll(self) -> None:
        """Handle the window's events and keys; also called between frames."""
        if self.displayed is None:
            return
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            self.quit_requested = True
        elif key in (ord("f"), ord(" ")):
            self.frozen = not self.frozen
            self.on_event("freeze", "frozen" if self.frozen else "unfrozen")
        elif key == ord("s"):
            self.snapshot()

    def snapshot(self) -> Path | None:
        """Save what is shown as streamseg_<date>_<time>_<ms>.png, never over an earlier one."""
        if self.displayed is None:
            return None
        t = time.time()
        stem = f"streamseg_{time.strftime('%Y%m%d_%H%M%S', time.localtime(t))}_{int(t * 1000) % 1000:03d}"
        p, n = self.snapshot_dir / f"{stem}.png", 1
        while p.exists():
            p, n = self.snapshot_dir / f"{stem}_{n}.png", n + 1
        ok, png = cv2.imencode(".png", self.displayed)
        try:
            if not ok:
                raise StreamsegError("PNG encoding failed")
            atomic_write(p, lambda tmp: Path(tmp).write_bytes(png.tobytes()))
        except (OSError, StreamsegError) as e:
            self.on_event("snapshot", f"snapshot not saved: {p} ({getattr(e, 'strerror', None) or e})")
            return None
        self.snapshots.append(p)
        self.on_event("snapshot", f"snapshot saved: {p}")
        return p

    def write(self, r: Result) -> None:
        self.last = r.overlay if r.overlay is not None else r.frame.image
        self.show(self.last)

    def close(self) -> None:
        if self.displayed is not None:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)


@dataclass
class CsaSummary:
    """The scan's numbers: CSA (or px² area) median and IQR over confident frames, and the CTS flag
    (None when uncalibrated or without confident frames)."""

    frames_processed: int
    frames_with_nerve: int
    confident_frames: int
    confident_threshold: float
    unit: str  # "mm²" or "px²"
    mm_per_px: float | None
    calibrated: bool
    median: float | None = None
    q1: float | None = None
    q3: float | None = None
    iqr: float | None = None
    cts_cutoff_mm2: float = 10.0
    cts_flag: bool | None = None


class ScanSummary:
    """Accumulates per-frame CSA; `summary()` gives the scan's numbers, `plot()` a CSA-over-time PNG.
    A `types.Sink` holding no file: the runner writes `summary()` and `write_plot()` (as
    `files.StagedFile`s) once the run is over."""

    quit_requested = False

    def __init__(self, mm_per_px: float | None, score_thresh: float = NERVE_SCORE, confident: float = CONFIDENT_SCORE, cts_cutoff_mm2: float = 10.0):
        self.mm_per_px, self.score_thresh, self.confident, self.cutoff = mm_per_px, score_thresh, confident, cts_cutoff_mm2
        self.t, self.value, self.stable, self.conf = [], [], [], []
        self.processed = self.with_nerve = 0

    @property
    def unit(self) -> str:
        return "mm²" if self.mm_per_px is not None else "px²"

    def write(self, r: Result) -> None:
        self.processed += 1
        d, m = r.best, r.measurement
        present = d is not None and m is not None and d.score >= self.score_thresh
        self.with_nerve += present
        cal = self.mm_per_px is not None
        t = r.frame.pts if r.frame.pts is not None else r.frame.t_capture
        self.t.append(t)
        self.value.append((m.csa_mm2 if cal else m.area_px) if present else math.nan)
        self.stable.append(((m.csa_mm2_stable if cal else m.area_px_stable) or math.nan) if present else math.nan)
        self.conf.append(bool(present and d.score >= self.confident))

    def summary(self) -> CsaSummary:
        vals = np.array([v for v, c in zip(self.value, self.conf) if c], dtype=float)
        s = CsaSummary(frames_processed=self.processed, frames_with_nerve=self.with_nerve, confident_frames=int(len(vals)),
                       confident_threshold=self.confident, unit=self.unit, mm_per_px=self.mm_per_px,
                       calibrated=self.mm_per_px is not None, cts_cutoff_mm2=self.cutoff)
        if len(vals):
            q1, med, q3 = np.percentile(vals, [25, 50, 75])
            s.median, s.q1, s.q3, s.iqr = round(float(med), 3), round(float(q1), 3), round(float(q3), 3), round(float(q3 - q1), 3)
            if self.mm_per_px is not None:
                s.cts_flag = bool(med >= self.cutoff)
        return s

    def figure(self):
        """CSA (or px² area) over time, a matplotlib Figure on the Agg canvas (imported here, so the
        runtime loads matplotlib only when a summary is written): raw per frame (dots, darker when
        confident), stabilised (line), the CTS cut-off (dashed, labelled with its value)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        t = np.array(self.t, float)
        t = t - t[0] if t.size else t
        v, sv, conf = np.array(self.value, float), np.array(self.stable, float), np.array(self.conf, bool)
        cal = self.mm_per_px is not None
        name = "CSA" if cal else "area"
        ax.plot(t[conf], v[conf], ".", color="0.35", ms=4, label=f"{name} per frame (score >= {self.confident:g})")
        if (~conf).any():
            ax.plot(t[~conf], v[~conf], ".", color="0.75", ms=4, label=f"{name} per frame (less confident)")
        ax.plot(t, sv, "-", color="tab:blue", lw=2, label=f"stabilised {name} (running median)")
        if cal:
            ax.axhline(self.cutoff, color="tab:red", ls="--", lw=1.2, label=f"CTS cut-off {self.cutoff:g} mm²")
        ax.set_xlabel("time (s)")
        ax.set_ylabel(f"CSA ({self.unit})" if cal else f"area ({self.unit}, uncalibrated)")
        ax.set_title(f"{name} over time" + ("" if cal else " (uncalibrated: no pixel spacing)"))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        return fig

    def write_plot(self, path) -> None:
        """The CSA-over-time PNG written straight to `path` (a temp file: see `StagedFile`)."""
        self.figure().savefig(path, format="png")

    def plot(self, path) -> Path:
        """The CSA-over-time PNG at `path`, written atomically on its own."""
        atomic_write(Path(path), self.write_plot)
        return Path(path)
