"""The live window (`--show`): whether one can open here (X11 probing, before anything else is
loaded or written), and `WindowSink`, the OpenCV window with its keys (freeze, snapshot, quit).
A snapshot is written at once (`files.atomic_write`). A new window that Qt leaves black is mapped
again (`x11.PaintWatch`)."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from ..files import atomic_write
from ..settings import display_name
from ..types import Result, StreamsegError
from .x11 import PaintWatch, XConnection, load_xcb


def display_problem() -> str | None:
    """Why no OpenCV window can open here, or None. OpenCV's wheels draw through Qt on X11 (xcb), and
    Qt aborts the whole process when it cannot connect, so this connects to $DISPLAY first, as Qt will."""
    build = cv2.getBuildInformation()
    gui = next((ln.split(":", 1)[1].strip() for ln in build.splitlines() if ln.strip().startswith("GUI:")), "")
    if gui.upper() in ("", "NONE"):
        return "this OpenCV has no GUI (opencv-python-headless?)"
    name = display_name()
    if not name:
        return "DISPLAY is not set"
    try:
        load_xcb()
    except (OSError, AttributeError):
        return "libxcb (X11) is not installed"
    try:
        XConnection(name).close()
    except OSError:
        return f"cannot open display {name}"
    return None


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
        self.watch: PaintWatch | None = None

    def show(self, img: np.ndarray) -> None:
        """Display `img` (unless frozen) and handle the keys pressed since the last call."""
        if not self.frozen:
            if self.displayed is None:  # opened with the first image, at its size (Qt's default: 400x300, scaled)
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
                cv2.resizeWindow(self.title, img.shape[1], img.shape[0])
                self.watch = PaintWatch(self.title, display_name() or "")
            self.displayed = img
            cv2.imshow(self.title, img)
        self.poll()

    def poll(self) -> None:
        """Handle the window's events and keys; also called between frames."""
        if self.displayed is None:
            return
        key = cv2.waitKey(1) & 0xFF
        if self.watch is not None:
            self.watch.check(self.displayed)
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
        if self.watch is not None:
            self.watch.stop()
        if self.displayed is not None:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
