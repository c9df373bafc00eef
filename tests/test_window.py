"""The `--show` window, for real: each test starts its own X server (Xvfb), finds the window by its
title and presses keys with xdotool (XTEST, as a keyboard does), and reads the screen with xwd.
What the screen shows is compared, pixel for pixel, with what the run wrote (the snapshot PNG, the
MP4, the CSV), so a blank, scaled or wrong window fails.

Needs Xvfb, xdotool and xwd (apt-get install xvfb xdotool x11-apps); .ci/run installs them. Without
them these tests skip, except under CI=true, where they fail."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamseg.outputs.overlay import lost_screen

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "streamseg" / "data" / "sample" / "demo.mp4"  # 606x468, 20 fps, 350 frames
W, H = 606, 468
SLOW = 300  # s: limits that only matter when something is broken (a loaded 2-core machine is slow to start torch)


def _need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        msg = f"{', '.join(missing)} not installed (apt-get install xvfb xdotool x11-apps ffmpeg)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI: {msg}")
        pytest.skip(msg)


def answers(display: str) -> bool:
    """Whether the X server on `display` takes a client now (its socket is there and xdotool gets in)."""
    if not Path(f"/tmp/.X11-unix/X{display.lstrip(':')}").exists():
        return False
    r = subprocess.run(["xdotool", "getdisplaygeometry"], capture_output=True, timeout=30,
                       env={**os.environ, "DISPLAY": display})
    return r.returncode == 0


@contextlib.contextmanager
def xvfb():
    """A fresh Xvfb 1280x1024x24 on a free display number (Xvfb picks it: -displayfd), handed over
    once it answers a client, not merely once it has named its display: the live-window test once
    failed under load with `qt.qpa.xcb: could not connect to display`. -noreset: no server reset
    each time the last client (an xdotool call) leaves."""
    _need("Xvfb", "xdotool", "xwd")
    rfd, wfd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(wfd), "-screen", "0", "1280x1024x24", "-nolisten", "tcp",
                               "-noreset"], pass_fds=(wfd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(wfd)
    try:
        ready, _, _ = select.select([rfd], [], [], 60)
        number = os.read(rfd, 32).decode().strip() if ready else ""
        assert number.isdigit(), "Xvfb did not start"
        wait_for(lambda: server.poll() is not None or answers(f":{number}"), 60, "the X server to answer")
        assert server.poll() is None, "Xvfb exited"
        yield f":{number}"
    finally:
        os.close(rfd)
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def xdisplay():
    with xvfb() as display:
        yield display


def grab(display, box=None) -> np.ndarray:
    """The screen (or `box` = x, y, w, h of it) as BGR, read from `xwd -root` (ZPixmap, 24/32 bpp)."""
    raw = subprocess.run(["xwd", "-root", "-silent", "-display", display], capture_output=True, check=True).stdout
    h = struct.unpack(">25I", raw[:100])
    size, width, height, order, bpp, stride, ncolours = h[0], h[4], h[5], h[7], h[11], h[12], h[19]
    assert order == 0 and bpp in (24, 32) and h[14:17] == (0xFF0000, 0xFF00, 0xFF), h  # LSB first: B, G, R
    rows = np.frombuffer(raw, np.uint8, count=stride * height, offset=size + 12 * ncolours).reshape(height, stride)
    img = rows[:, : width * bpp // 8].reshape(height, width, bpp // 8)[:, :, :3]
    if box is not None:
        x, y, w, hh = box
        img = img[y:y + hh, x:x + w]
    return np.ascontiguousarray(img)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.1)


def painted(display, box) -> list[np.ndarray]:
    """[what the window shows] once it is painted (not black) and steady over two grabs, else []: Qt
    repaints after a key asynchronously, and under load a grab can come before the paint."""
    try:
        a = grab(display, box)
        time.sleep(0.2)
        b = grab(display, box)
    except subprocess.CalledProcessError:  # the X server would not hand over its screen: not painted yet
        return []
    return [b] if b.any() and np.array_equal(a, b) else []


def csv_rows(path) -> list[dict]:
    """The rows written so far: the CSV is renamed into place at the end of the run, so while it
    runs its rows are in the hidden temp file beside it (`.NAME.PID.*.part`)."""
    path = Path(path)
    if not path.exists():
        parts = sorted(path.parent.glob(f".{path.name}.*.part"))
        if not parts:
            return []
        path = parts[-1]
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("end_to_end_ms")]  # whole rows only


def decoded(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def written(img, frames, limit: float) -> int:
    """The index of the frame in `frames` (decoded from the run's MP4) that `img` is: within `limit`
    (mean absolute difference; one H.264 encode away) and clearly closer than any other frame."""
    d = sorted((float(np.abs(f[:H, :W].astype(np.int16) - img).mean()), i) for i, f in enumerate(frames))
    assert d[0][0] < limit and (len(d) == 1 or d[0][0] < 0.6 * d[1][0]), d[:3]
    return d[0][1]


def child_env(display: str | None) -> dict:
    """The environment of a child process: this checkout's streamseg, on `display` (None: no display)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if display is not None:
        env["DISPLAY"] = display
    return env


class Run:
    """`streamseg ...` in a subprocess on `display`; its log (stdout+stderr) is read as it grows."""

    def __init__(self, display, args, cwd):
        self.display, self.log = display, Path(cwd) / "run.log"
        with open(self.log, "w") as f:
            self.p = subprocess.Popen([sys.executable, "-m", "streamseg", *map(str, args), "--backend", "torch"],
                                      cwd=cwd, env=child_env(display), stdout=f, stderr=subprocess.STDOUT)
        self.pos = 0

    def text(self) -> str:
        return self.log.read_text()

    def expect(self, pattern: str, timeout: float = SLOW) -> re.Match:
        """The next log line matching `pattern` (after the previous match)."""
        rx = re.compile(pattern, re.M)

        def find():
            m = rx.search(self.text(), self.pos)
            assert m or self.p.poll() is None, f"the run ended:\n{self.text()}"
            return m
        m = wait_for(find, timeout, f"{pattern!r} in the log")
        self.pos = m.end()
        return m

    def window(self, timeout: float = SLOW) -> tuple[str, tuple[int, int, int, int]]:
        """The visible window titled exactly 'streamseg': its id and x, y, w, h on the screen (it opens
        with the first overlay, at that overlay's size)."""
        def find():
            assert self.p.poll() is None, self.text()
            r = self.xdotool("search", "--onlyvisible", "--name", "^streamseg$", check=False)
            return r.stdout.split()
        wid = wait_for(find, timeout, "the streamseg window")[0]
        geo = dict(ln.split("=") for ln in self.xdotool("getwindowgeometry", "--shell", wid).stdout.split())
        return wid, tuple(int(geo[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))

    def key(self, wid: str, key: str) -> None:
        self.xdotool("windowfocus", "--sync", wid, "key", key)

    def xdotool(self, *args, check=True):
        return subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=30, check=check,
                              env={**os.environ, "DISPLAY": self.display})

    def finish(self, timeout: float) -> int:
        try:
            return self.p.wait(timeout=timeout)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()


@pytest.fixture
def runs():
    """runs(display, args, cwd) starts a Run; whatever still runs at the end of the test is killed."""
    started = []

    def start(*args) -> Run:
        started.append(Run(*args))
        return started[-1]
    yield start
    for r in started:
        if r.p.poll() is None:
            r.p.kill()
            r.p.wait()


def test_the_display_is_handed_over_only_once_its_server_answers(tmp_path, monkeypatch):
    """An X server that names its display 2 s before it listens (a slow start): the fixture waits
    until a client gets in, so the first client a test starts (xdotool here, Qt in a run) connects."""
    _need("Xvfb", "xdotool", "xwd")
    n = next(n for n in range(300, 500) if not Path(f"/tmp/.X11-unix/X{n}").exists()
             and not Path(f"/tmp/.X{n}-lock").exists())
    fake = tmp_path / "bin" / "Xvfb"
    fake.parent.mkdir()
    real = shutil.which("Xvfb")
    fake.write_text(f"#!{sys.executable}\nimport os, sys, time\nfd = int(sys.argv[2])\nos.write(fd, b'{n}\\n')\n"
                    f"time.sleep(2)\nos.execv({real!r}, [{real!r}, ':{n}', *sys.argv[3:]])\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with xvfb() as display:
        assert display == f":{n}"
        r = subprocess.run(["xdotool", "getdisplaygeometry"], capture_output=True, text=True, timeout=30,
                           env={**os.environ, "DISPLAY": display})
        assert r.returncode == 0 and r.stdout.split() == ["1280", "1024"], r.stderr


@pytest.mark.parametrize("first", ["streamseg.outputs.video", "streamseg.inputs.sources"])
def test_window_opens_whichever_module_loads_pyav_first(first, xdisplay):
    """The PyAV and OpenCV wheels bundle libxcb-shm under one name; with PyAV's copy loaded first,
    Qt hung for ever in cv2.namedWindow, so `streamseg live` (which imports its outputs first) never
    showed its window. Both modules that import av import cv2 first."""
    code = (f"import {first}\nimport numpy as np\nfrom streamseg.outputs.display import WindowSink\n"
            "w = WindowSink()\nw.show(np.zeros((64, 64, 3), np.uint8))\nw.close()\nprint('shown')")
    r = subprocess.run([sys.executable, "-c", code], env=child_env(xdisplay), capture_output=True, text=True, timeout=SLOW)
    assert r.returncode == 0 and r.stdout.strip() == "shown", r.stdout + r.stderr


OPEN_CLOSE = r"""
import sys, time
import numpy as np
import streamseg.outputs.video  # PyAV loaded, as in a run
from streamseg.outputs.display import WindowSink
img = np.full((240, 320, 3), 90, np.uint8)
for k in range(int(sys.argv[1])):
    w = WindowSink(title=f"window {k}")
    print(f"open {k}", flush=True)
    start = time.monotonic()
    while time.monotonic() - start < 2.5:  # 20 frames a second for 2.5 s
        w.show(img)
        time.sleep(0.05)
    w.close()
    print(f"closed {k}: {w.watch.remaps} remaps", flush=True)
"""


def test_each_new_window_is_painted_although_qt_loses_its_map_event(xdisplay):
    """Qt 5.15 (OpenCV's wheels) sometimes loses the events that follow mapping a new window on Xvfb,
    MapNotify among them, and then never paints it: the window stayed black for the whole run (CI
    failed so). WindowSink sees its window black where the overlay is not and maps it again. Eight
    windows, one after another, each shown for 2.5 s: each shows the overlay within 2 s. Without the
    fix this test failed 4 runs of 4 here (12 of 32 windows black; both cores busy)."""
    n = 8
    p = subprocess.Popen([sys.executable, "-c", OPEN_CLOSE, str(n)], env=child_env(xdisplay), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def shown() -> bool:  # the whole image is on the screen
            try:
                return (grab(xdisplay) == 90).all(axis=2).sum() >= 320 * 240
            except subprocess.CalledProcessError:  # xwd fails now and then while a window maps
                return False
        black = []
        for k in range(n):
            assert p.stdout.readline().strip() == f"open {k}", p.stderr.read() if p.poll() is not None else ""
            deadline = time.monotonic() + 2.0
            while not shown() and time.monotonic() < deadline:
                time.sleep(0.1)
            if not shown():
                black.append(k)
            assert p.stdout.readline().startswith(f"closed {k}")
        assert not black, f"windows {black} of {n} never painted"
    finally:
        p.kill()
        p.wait()


def test_file_window_shows_the_overlay_and_its_keys_work(xdisplay, runs, tmp_path):
    """f freezes what is shown while the run goes on; s saves exactly what is shown beside --out;
    space unfreezes; q ends the run with every output finalised and exit code 0."""
    out, table = tmp_path / "o.mp4", tmp_path / "o.csv"
    # shown from 0.9, whatever the bundled model's own threshold (the demo's confidences: 0.87-0.95)
    run = runs(xdisplay, ["file", DEMO, "--show", "--out", out, "--csv", table, "--max-frames", 80,
                          "--score-thresh", 0.9], tmp_path)
    wid, box = run.window()
    assert box[2:] == (W, H)  # the overlay's own size, not Qt's 400x300 default
    wait_for(lambda: len(csv_rows(table)) >= 2, SLOW, "two frames")
    assert run.window()[1] == box  # and it stays so

    run.key(wid, "f")
    run.expect(r"^frozen$")
    frozen = wait_for(lambda: painted(xdisplay, box), 20, "the frozen frame on screen")[0]
    n = len(csv_rows(table))
    wait_for(lambda: len(csv_rows(table)) >= n + 3, SLOW, "three more frames while frozen")
    assert np.array_equal(grab(xdisplay, box), frozen)  # the run went on, the window did not

    snaps = []
    for _ in range(2):  # twice in quick succession: two files
        run.key(wid, "s")
        snaps.append(Path(run.expect(r"^snapshot saved: (.+\.png)$").group(1)))
    assert snaps[0] != snaps[1] and all(p.parent == tmp_path for p in snaps)  # README: beside --out
    for p in snaps:
        assert np.array_equal(cv2.imread(str(p)), frozen)  # the window shows the overlay pixel for pixel

    run.key(wid, "space")
    run.expect(r"^unfrozen$")
    moving = wait_for(lambda: [g for g in [grab(xdisplay, box)] if not np.array_equal(g, frozen)], SLOW,
                      "the window to move on after unfreezing")[0]

    run.key(wid, "q")
    assert run.finish(SLOW) == 0, run.text()
    summary = json.loads((tmp_path / "o.summary.json").read_text())
    rows, frames = csv_rows(table), decoded(out)
    assert summary["stopped_by"] == "quit" and len(frames) == len(rows) == summary["frames_processed"] < 80
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp files left
    written(moving, frames, 4.0)  # what was shown is what was written (one H.264 encode away)
    k = written(frozen, frames, 4.0)
    # ... and it is the overlay, not the bare scan: the mask's tint inside the nerve's box
    row = rows[k]
    assert row["nerve"] == "1", row
    x1, y1, x2, y2 = (int(float(row[c])) for c in ("x1", "y1", "x2", "y2"))
    inside = frozen[y1:y2, x1:x2].astype(int)
    assert ((inside[..., 2] - inside[..., 0]) > 40).mean() > 0.3  # mask BGR (0, 200, 255) at 35 %: R >> B
    with av.open(str(DEMO)) as c:
        bare = next(f for i, f in enumerate(c.decode(video=0)) if i == k).to_ndarray(format="bgr24")[y1:y2, x1:x2].astype(int)
    assert ((bare[..., 2] - bare[..., 0]) > 40).mean() < 0.01  # the scan itself is grey there


def one_frame_a_second(port: int) -> subprocess.Popen:
    """ffmpeg sending the demo over TCP (MPEG-TS) at 1 frame per second: long gaps between frames."""
    from test_live_stream import listening

    p = subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", str(DEMO), "-vf", "fps=1",
                          "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "1", "-f", "mpegts",
                          f"tcp://127.0.0.1:{port}?listen=1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: listening(port) or p.poll() is not None, 30, "ffmpeg to listen")
    assert p.poll() is None, "ffmpeg did not start"
    return p


def test_live_window_keys_between_frames_signal_lost_and_esc(xdisplay, runs, tmp_path):
    """`live` opens the window without --show when a display exists. Keys pressed between two frames
    all count (s then space, 0.3 s apart, one frame a second). When the stream dies the window shows
    the last overlay dimmed (once: it does not fade to black), and Esc quits then and there, before
    any reconnect attempt, with outputs finalised and exit code 0. The stream's end is the server
    going away (EOF), not the read timeout: that is long (60 s) so that a server starved on a busy
    machine (two pytest workers) is not taken for a lost signal before the keys are pressed."""
    _need("ffmpeg")
    from test_live_stream import free_port

    port = free_port()
    server = one_frame_a_second(port)
    out, table = tmp_path / "l.mp4", tmp_path / "l.csv"
    try:
        run = runs(xdisplay, ["live", "--device", f"tcp://127.0.0.1:{port}", "--out", out, "--csv", table,
                              "--reconnect", 1, "--backoff", 100, "--timeout", 60], tmp_path)
        wid, box = run.window()
        n = wait_for(lambda: len(csv_rows(table)) >= 2 and len(csv_rows(table)), SLOW, "two frames")
        wait_for(lambda: len(csv_rows(table)) > n, SLOW, "the next frame")
        time.sleep(0.1)  # the frame is on screen; the next one is about a second away
        run.key(wid, "s")
        time.sleep(0.3)
        run.key(wid, "space")
        snap = Path(run.expect(r"^snapshot saved: (.+\.png)$").group(1))
        run.expect(r"^frozen$")
        assert np.array_equal(grab(xdisplay, box), cv2.imread(str(snap)))  # both keys acted on one frame
        run.key(wid, "f")
        run.expect(r"^unfrozen$")
    finally:
        server.kill()
        server.wait()
    run.expect(r"^signal lost")
    centre = (box[0] + W // 2 - 60, box[1] + H // 2 - 20, 120, 40)
    wait_for(lambda: (grab(xdisplay, centre) == (60, 60, 255)).all(axis=2).sum() > 50, SLOW, "SIGNAL LOST")

    def steady():  # the frames still in flight are written; then the screen must stay as it is
        a = grab(xdisplay, box)
        time.sleep(1.0)  # 10 ticks of the lost screen
        return [a] if np.array_equal(a, grab(xdisplay, box)) else None
    lost = wait_for(steady, SLOW, "a steady signal-lost screen")[0]
    run.key(wid, "Escape")
    assert run.finish(SLOW) == 0, run.text()
    summary = json.loads((tmp_path / "l.summary.json").read_text())
    frames = decoded(out)
    assert summary["stopped_by"] == "quit" and summary["reconnect_attempts"] == 0  # not after the 100 s back-off
    assert len(frames) == len(csv_rows(table)) == summary["frames_processed"]
    assert snap.parent == tmp_path
    written(cv2.imread(str(snap)), frames, 6.0)  # a re-encoded stream: noisier than the file
    expected = lost_screen(frames[-1][:H, :W], W, H)  # the last overlay written, dimmed once
    assert float(np.abs(lost.astype(int) - expected).mean()) < 2.0


@pytest.mark.parametrize("command, display", [("file", None), ("live", "unreachable")])
def test_show_without_a_display_is_one_line_and_exit_2_before_any_output(command, display, tmp_path):
    """No DISPLAY, or a DISPLAY nobody answers: one clear line, exit 2, earlier outputs untouched."""
    out, table = tmp_path / "o.mp4", tmp_path / "o.csv"
    out.write_bytes(b"an earlier overlay")
    table.write_text("an earlier table\n")
    if display == "unreachable":
        display = ":" + str(next(n for n in range(170, 400) if not Path(f"/tmp/.X11-unix/X{n}").exists()
                                 and not Path(f"/tmp/.X{n}-lock").exists()))
    env = child_env(display)
    src = ["--device", DEMO] if command == "live" else [DEMO]
    r = subprocess.run([sys.executable, "-m", "streamseg", command, *map(str, src), "--show", "--out", str(out),
                        "--csv", str(table), "--backend", "torch"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=SLOW)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: --show needs a display"), lines
    assert out.read_bytes() == b"an earlier overlay" and table.read_text() == "an earlier table\n"
    assert sorted(os.listdir(tmp_path)) == ["o.csv", "o.mp4"]
