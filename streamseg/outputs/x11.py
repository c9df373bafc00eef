"""What the X server says about our window, through libxcb (ctypes; libxcb is what Qt draws through).

OpenCV's wheels show windows through Qt 5.15's xcb plugin. On a bare X server (Xvfb, a kiosk without
a window manager) Qt sometimes loses the burst of events that follows mapping a new window, its
MapNotify among them: Qt then believes the window is unmapped, never paints it, and the window
stays black for the whole run (measured here: 4 of 8 windows on a loaded 2-core machine, 6 of 10
without PyAV loaded at all). Unmapping and mapping the window again gives Qt a fresh MapNotify and it
paints. `XConnection` finds this process's window by title, tells whether its centre shows anything,
and maps it again."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import time

import numpy as np

ATOM_ANY, ATOM_WM_NAME = 0, 39
Z_PIXMAP = 2
PATCH = 16  # side of the square read at the window's centre


class _Cookie(ctypes.Structure):
    _fields_ = [("sequence", ctypes.c_uint)]


class _ScreenIterator(ctypes.Structure):
    _fields_ = [("data", ctypes.POINTER(ctypes.c_uint32)), ("rem", ctypes.c_int), ("index", ctypes.c_int)]


class _Geometry(ctypes.Structure):
    _fields_ = [("response_type", ctypes.c_uint8), ("depth", ctypes.c_uint8), ("sequence", ctypes.c_uint16),
                ("length", ctypes.c_uint32), ("root", ctypes.c_uint32), ("x", ctypes.c_int16), ("y", ctypes.c_int16),
                ("width", ctypes.c_uint16), ("height", ctypes.c_uint16), ("border_width", ctypes.c_uint16)]


def load_xcb() -> ctypes.CDLL:
    """libxcb with the signatures used here; OSError where it is not installed (AttributeError where
    it lacks one of them)."""
    xcb = ctypes.CDLL(ctypes.util.find_library("xcb") or "libxcb.so.1")
    p, u32, u16, i16 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint16, ctypes.c_int16
    sigs = {
        "xcb_connect": ([ctypes.c_char_p, p], p), "xcb_connection_has_error": ([p], ctypes.c_int),
        "xcb_disconnect": ([p], None), "xcb_flush": ([p], ctypes.c_int), "xcb_get_setup": ([p], p),
        "xcb_setup_roots_iterator": ([p], _ScreenIterator),
        "xcb_query_tree": ([p, u32], _Cookie), "xcb_query_tree_reply": ([p, _Cookie, p], p),
        "xcb_query_tree_children": ([p], ctypes.POINTER(u32)), "xcb_query_tree_children_length": ([p], ctypes.c_int),
        "xcb_get_property": ([p, ctypes.c_uint8, u32, u32, u32, u32, u32], _Cookie),
        "xcb_get_property_reply": ([p, _Cookie, p], p), "xcb_get_property_value": ([p], p),
        "xcb_get_property_value_length": ([p], ctypes.c_int),
        "xcb_get_geometry": ([p, u32], _Cookie), "xcb_get_geometry_reply": ([p, _Cookie, p], ctypes.POINTER(_Geometry)),
        "xcb_get_image": ([p, ctypes.c_uint8, u32, i16, i16, u16, u16, u32], _Cookie),
        "xcb_get_image_reply": ([p, _Cookie, p], p), "xcb_get_image_data": ([p], ctypes.POINTER(ctypes.c_uint8)),
        "xcb_get_image_data_length": ([p], ctypes.c_int),
        "xcb_intern_atom": ([p, ctypes.c_uint8, u16, ctypes.c_char_p], _Cookie),
        "xcb_intern_atom_reply": ([p, _Cookie, p], p),
        "xcb_unmap_window": ([p, u32], _Cookie), "xcb_map_window": ([p, u32], _Cookie),
    }
    for name, (args, res) in sigs.items():
        f = getattr(xcb, name)
        f.argtypes, f.restype = args, res
    return xcb


_libc = ctypes.CDLL(None)
_libc.free.argtypes = [ctypes.c_void_p]


class XConnection:
    """A connection of our own to `display`, beside Qt's (closed with `close`)."""

    def __init__(self, display: str):
        self.xcb = load_xcb()
        self.conn = self.xcb.xcb_connect(display.encode(), None)
        if self.xcb.xcb_connection_has_error(self.conn):
            self.xcb.xcb_disconnect(self.conn)
            raise OSError(f"cannot open display {display}")
        self.root = self.xcb.xcb_setup_roots_iterator(self.xcb.xcb_get_setup(self.conn)).data[0]
        self.net_wm_pid = self._atom(b"_NET_WM_PID")

    def close(self) -> None:
        if self.conn:
            self.xcb.xcb_disconnect(self.conn)
            self.conn = None

    def _reply(self, name: str, *args):
        """The reply to request `name` (the caller frees it: `_libc.free`), or None on an X error."""
        cookie = getattr(self.xcb, name)(self.conn, *args)
        err = ctypes.c_void_p()
        reply = getattr(self.xcb, name + "_reply")(self.conn, cookie, ctypes.byref(err))
        if err.value:
            _libc.free(err.value)
        return reply or None

    def _property(self, window: int, atom: int) -> bytes:
        reply = self._reply("xcb_get_property", 0, window, atom, ATOM_ANY, 0, 256)
        if reply is None:
            return b""
        try:
            return ctypes.string_at(self.xcb.xcb_get_property_value(reply), self.xcb.xcb_get_property_value_length(reply))
        finally:
            _libc.free(reply)

    def _children(self, window: int) -> list[int]:
        reply = self._reply("xcb_query_tree", window)
        if reply is None:
            return []
        try:
            return self.xcb.xcb_query_tree_children(reply)[: self.xcb.xcb_query_tree_children_length(reply)]
        finally:
            _libc.free(reply)

    def find(self, title: str, pid: int | None = None, depth: int = 3) -> int | None:
        """Our top-level window titled `title` (WM_NAME) and owned by `pid` (_NET_WM_PID; default this
        process), searched `depth` levels below the root (a window manager reparents into a frame)."""
        pid = os.getpid() if pid is None else pid
        level = [self.root]
        for _ in range(depth):
            level = [c for w in level for c in self._children(w)]
            for w in level:
                if self._property(w, ATOM_WM_NAME) == title.encode() and self._pid(w) == pid:
                    return w
        return None

    def _pid(self, window: int) -> int | None:
        value = self._property(window, self.net_wm_pid) if self.net_wm_pid else b""
        return int.from_bytes(value[:4], "little") if len(value) >= 4 else None

    def _atom(self, name: bytes) -> int:
        """The atom named `name` (interned), 0 on an X error."""
        reply = self._reply("xcb_intern_atom", 0, len(name), name)
        if reply is None:
            return 0
        try:
            return ctypes.cast(reply, ctypes.POINTER(ctypes.c_uint32))[2]  # type, pad, sequence, length, atom
        finally:
            _libc.free(reply)

    def centre(self, window: int, size: int = PATCH) -> np.ndarray | None:
        """The `size`² pixels at the window's centre as BGR (None when the server will not say: the
        window is gone or unmapped). Only a 24/32-bit TrueColor screen is read."""
        g = self._reply("xcb_get_geometry", window)
        if g is None:
            return None
        try:
            w, h = g.contents.width, g.contents.height
        finally:
            _libc.free(ctypes.cast(g, ctypes.c_void_p))
        n = min(size, w, h)
        reply = self._reply("xcb_get_image", Z_PIXMAP, window, (w - n) // 2, (h - n) // 2, n, n, 0xFFFFFFFF)
        if reply is None:
            return None
        try:
            length = self.xcb.xcb_get_image_data_length(reply)
            data = np.ctypeslib.as_array(self.xcb.xcb_get_image_data(reply), (length,)).copy()
        finally:
            _libc.free(reply)
        return data.reshape(n, n, 4)[..., :3] if length == n * n * 4 else None

    def remap(self, window: int) -> None:
        """Unmap and map `window` again: its owner gets a fresh MapNotify and Expose."""
        self.xcb.xcb_unmap_window(self.conn, window)
        self.xcb.xcb_map_window(self.conn, window)
        self.xcb.xcb_flush(self.conn)


class PaintWatch:
    """Watches a window just opened until its centre shows something, mapping it again while it
    stays black although what it shows is not (Qt lost its MapNotify; see the module's doc). The
    first look is `grace` s after opening (a window manager may take a moment to map it), then every
    `period` s until `give_up_s`, with `max_remaps` remaps at most; `remaps` counts them. Where no
    connection of our own opens, it watches nothing."""

    def __init__(self, title: str, display: str, grace: float = 1.0, period: float = 0.25,
                 give_up_s: float = 10.0, max_remaps: int = 3):
        self.title, self.period, self.max_remaps, self.remaps = title, period, max_remaps, 0
        self.window: int | None = None  # found once
        now = time.monotonic()
        self.deadline, self.next_check = now + give_up_s, now + grace
        try:
            self.x: XConnection | None = XConnection(display)
        except (OSError, AttributeError):  # no libxcb, one without a symbol used here, or no server
            self.x = None

    def check(self, shown: np.ndarray) -> None:
        """Called with what the window should show now; does the X round trips only when due."""
        now = time.monotonic()
        if self.x is None or now < self.next_check:
            return
        self.next_check = now + self.period
        window = self.window = self.window or self.x.find(self.title)
        seen = None if window is None else self.x.centre(window)
        h, w = shown.shape[:2]
        half = PATCH // 2
        expected = shown[max(0, h // 2 - half): h // 2 + half, max(0, w // 2 - half): w // 2 + half]
        if seen is not None and seen.any():
            return self.stop()  # painted: the race is only at mapping
        if seen is not None and expected.max() > 8 and self.remaps < self.max_remaps:
            self.x.remap(window)
            self.remaps += 1
        if now >= self.deadline:
            self.stop()

    def stop(self) -> None:
        if self.x is not None:
            self.x.close()
            self.x = None
