"""`streamseg live` against a real ffmpeg serving MPEG-TS over TCP on 127.0.0.1: newest-frame-wins
processing, and a stream that dies mid-run (signal lost, reconnect attempts, finalised output)."""
from __future__ import annotations

import csv
import json
import os
import signal
import shutil
import socket
import subprocess
import sys
import threading
import time

import av
import pytest

from streamseg.inputs.sources import open_source

FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Is something LISTENing on 127.0.0.1:port? (read from /proc: connecting would use up ffmpeg's one client)"""
    want = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            return any(line.split()[1] == want and line.split()[3] == "0A" for line in f.readlines()[1:])
    except OSError:
        time.sleep(1.0)
        return True


class Server:
    """ffmpeg -re (real time) -stream_loop -1 -i clip -c copy -f mpegts tcp://127.0.0.1:PORT?listen=1"""

    def __init__(self, clip, port):
        self.p = subprocess.Popen([FFMPEG, "-v", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", str(clip),
                                   "-c", "copy", "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not listening(port):
            assert self.p.poll() is None and time.monotonic() < deadline, "ffmpeg did not start listening"
            time.sleep(0.05)

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=10)


@pytest.fixture
def clip(sample_dir):
    return sample_dir / "demo.mp4"


def cli(*args):
    return [sys.executable, "-m", "streamseg", "live", *map(str, args), "--backend", "torch", "--no-show"]


def frames_in(path) -> int:
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        return sum(1 for _ in c.decode(video=0))


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_live_stream_processes_40_frames(clip, tiny_checkpoint, tmp_path):
    port = free_port()
    server = Server(clip, port)
    try:
        out, table = tmp_path / "o.mp4", tmp_path / "o.csv"
        r = subprocess.run(cli("--device", f"tcp://127.0.0.1:{port}", "--max-frames", 40, "--out", out, "--csv", table,
                               "--model", tiny_checkpoint), capture_output=True, text=True, timeout=300)
    finally:
        server.stop()
    assert r.returncode == 0, r.stderr
    assert frames_in(out) == 40
    rows = csv_rows(table)
    assert len(rows) == 40
    idx = [int(x["frame"]) for x in rows]
    assert idx == sorted(idx) and len(set(idx)) == 40  # in order; gaps are frames dropped for newer ones
    s = json.loads((tmp_path / "o.summary.json").read_text())
    assert s["frames_processed"] == 40 and s["stopped_by"] == "max-frames"
    assert s["warmup_s"] > 0  # the model's first call, on its own: not dropped frames (issue 21)
    # every frame seen was processed, dropped for a newer one, or still in flight (slot, inference, outbox) at the stop
    assert 0 <= s["frames_seen"] - 40 - s["dropped"] <= 3


def test_stream_killed_mid_run_reconnects_then_finalises(clip, tiny_checkpoint, tmp_path):
    port = free_port()
    server = Server(clip, port)
    out, table = tmp_path / "k.mp4", tmp_path / "k.csv"
    p = subprocess.Popen(cli("--device", f"tcp://127.0.0.1:{port}", "--max-frames", 100000, "--out", out, "--csv", table,
                             "--model", tiny_checkpoint, "--reconnect", 3, "--backoff", 0.2, "--timeout", 2),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and rows_so_far(tmp_path, table.name) < 3:  # CSV a temp file till the end
            assert p.poll() is None, p.communicate()
            time.sleep(0.1)
        server.stop()
        t_kill = time.monotonic()
        _, err = p.communicate(timeout=90)
    finally:
        server.stop()
        if p.poll() is None:
            p.kill()
    assert time.monotonic() - t_kill < 60  # never hangs
    assert p.returncode == 1, err
    assert "signal lost" in err and "gave up" in err and "Traceback" not in err
    for k in (1, 2, 3):
        assert f"(attempt {k}/3)" in err
    rows = csv_rows(table)
    assert len(rows) >= 3
    assert frames_in(out) == len(rows)  # finalised, playable, and the CSV matches it
    s = json.loads((tmp_path / "k.summary.json").read_text())
    assert s["signal_lost"] == 1 and s["reconnect_attempts"] == 3 and s["reconnects"] == 0 and s["source_lost"]
    assert not [q for q in os.listdir(tmp_path) if q.startswith(".")]


def test_source_reconnects_when_the_stream_comes_back(clip):
    """No model here: the live source alone loses the stream, retries with back-off, and resumes."""
    port = free_port()
    events = []
    server = Server(clip, port)
    src = open_source(f"tcp://127.0.0.1:{port}", live=True, reconnect_attempts=20, backoff_s=0.2, read_timeout_s=2,
                      on_event=lambda kind, msg: events.append(kind))
    stop = threading.Event()
    it = src.frames(stop)
    try:
        assert [next(it).index for _ in range(5)] == [0, 1, 2, 3, 4]
        server.stop()
        server = Server(clip, port)  # the sender comes back on the same port
        deadline = time.monotonic() + 60
        while "reconnected" not in events:  # frames still buffered from the first connection come first
            next(it)
            assert time.monotonic() < deadline
        more = [next(it) for _ in range(5)]
    finally:
        stop.set()
        server.stop()
        src.close()
    assert events[:3] == ["signal_lost", "reconnecting", "reconnected"]
    assert src.stats.signal_lost == 1 and src.stats.reconnects == 1
    assert more[-1].index > 4 and all(f.image.shape == (468, 606, 3) for f in more)


def test_live_duration_stops_the_run(clip, tiny_checkpoint, tmp_path):
    port = free_port()
    server = Server(clip, port)
    try:
        out = tmp_path / "d.mp4"
        r = subprocess.run(cli("--device", f"tcp://127.0.0.1:{port}", "--duration", 3, "--out", out,
                               "--model", tiny_checkpoint), capture_output=True, text=True, timeout=300)
    finally:
        server.stop()
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "d.summary.json").read_text())
    assert s["stopped_by"] == "duration" and 3.0 <= s["wall_s"] < 3.0 + 15
    assert s["frames_processed"] >= 1 and frames_in(out) == s["frames_processed"]


def rows_so_far(folder, name) -> int:
    """CSV rows a running session has written (outputs are temp files until the end: `.NAME.PID.*.part`)."""
    parts = [p for p in folder.iterdir() if p.name.startswith(f".{name}.")]
    return max((len(p.read_text().splitlines()) - 1 for p in parts), default=0)


def test_stream_comes_back_larger_after_a_reconnect(clip, tiny_checkpoint, tmp_path):
    """Defect 1b (live): the sender comes back at a larger resolution (320x240, then 606x468). Every
    frame is still processed at its own size; the MP4 keeps the first size (later frames scaled to
    fit, black bars), and the CSV has one row per MP4 frame."""
    small = tmp_path / "small.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-y", "-i", str(clip), "-t", "3", "-vf", "scale=320:240",
                    "-c:v", "libx264", "-preset", "ultrafast", "-an", str(small)], check=True, timeout=60)
    port = free_port()
    server = Server(small, port)
    out, table = tmp_path / "g.mp4", tmp_path / "g.csv"
    p = subprocess.Popen(cli("--device", f"tcp://127.0.0.1:{port}", "--out", out, "--csv", table, "--model",
                             tiny_checkpoint, "--reconnect", 40, "--backoff", 0.2, "--timeout", 2),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while rows_so_far(tmp_path, "g.csv") < 4:
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.1)
        server.stop()
        server = Server(clip, port)  # back on the same port, at 606x468
        n = rows_so_far(tmp_path, "g.csv")
        while rows_so_far(tmp_path, "g.csv") < n + 12:
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.1)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=90)
    finally:
        server.stop()
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130 and "Traceback" not in err, err
    assert "signal lost" in err and "reconnected" in err, err
    with av.open(str(out)) as c:
        sizes = {(f.width, f.height) for f in c.decode(video=0)}
    assert sizes == {(320, 240)}
    assert frames_in(out) == len(csv_rows(table)) >= 16
    s = json.loads((tmp_path / "g.summary.json").read_text())
    assert s["reconnects"] >= 1 and s["stopped_by"] == "SIGINT"


def test_a_live_stream_loses_none_of_its_first_frames(clip, tmp_path):
    """With `fflags nobuffer` the packets FFmpeg read while probing the stream were thrown away: about
    the first 1.5 s of every (re)connection was never seen and never counted (30 of a 3-s, 60-frame
    stream). Every frame sent is now read."""
    short = tmp_path / "three_s.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-y", "-i", str(clip), "-t", "3", "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", "20", "-an", str(short)], check=True)
    port = free_port()
    server = subprocess.Popen([FFMPEG, "-v", "error", "-nostdin", "-re", "-i", str(short), "-c", "copy", "-f", "mpegts",
                               f"tcp://127.0.0.1:{port}?listen=1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            assert server.poll() is None and time.monotonic() < deadline, "ffmpeg did not start listening"
            time.sleep(0.05)
        src = open_source(f"tcp://127.0.0.1:{port}", live=True, reconnect_attempts=0, read_timeout_s=3)
        got = list(src.frames(threading.Event()))
    finally:
        server.kill()
        server.wait(timeout=10)
    src.close()
    assert len(got) == 60 and src.stats.frames_read == 60
