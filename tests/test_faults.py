"""The pipeline under faults (issue 12): a failed run leaves the earlier outputs as they were (CSV,
JSONL and MP4 are committed together or not at all), a full disk is one line and exit 2, temp files
of killed runs are cleaned by the next run, Ctrl-C while the model loads is one line and exit 130."""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")


def cli(args, preexec_fn=None, timeout=300):
    """`streamseg ARGS --backend torch` in a subprocess -> (rc, stderr+stdout)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "streamseg", *map(str, args), "--backend", "torch"],
                       capture_output=True, text=True, env=env, timeout=timeout, preexec_fn=preexec_fn)
    return p.returncode, p.stderr + p.stdout


def earlier_outputs(tmp_path):
    """Outputs of an earlier run, which a failed run must leave exactly as they are."""
    files = {tmp_path / "o.csv": "earlier csv\n", tmp_path / "o.jsonl": "{\"earlier\": 1}\n"}
    for p, text in files.items():
        p.write_text(text)
    return files


def hidden(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def two_sizes(sample_dir, tmp_path_factory) -> Path:
    """A real clip whose resolution shrinks mid-stream: 1 s of demo.mp4 at 606x468 then 1 s at 320x240
    (two MPEG-TS segments made by ffmpeg, concatenated as a capture tool would)."""
    if FFMPEG is None:
        pytest.skip("ffmpeg not installed")
    d = tmp_path_factory.mktemp("two_sizes")
    demo = sample_dir / "demo.mp4"
    for name, extra in (("a.ts", []), ("b.ts", ["-vf", "scale=320:240", "-output_ts_offset", "1.0"])):
        subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-y", "-i", str(demo), "-t", "1", *extra,
                        "-c:v", "libx264", "-preset", "ultrafast", "-an", str(d / name)], check=True)
    out = d / "two_sizes.ts"
    out.write_bytes((d / "a.ts").read_bytes() + (d / "b.ts").read_bytes())
    return out


@needs_ffmpeg
def test_failure_mid_file_leaves_earlier_outputs_intact(two_sizes, tiny_checkpoint, tmp_path):
    """Defects 4 and 6: a crop valid for the first part of a file only is exit 2 with one line; the
    earlier CSV and JSONL are untouched, no MP4 appears, and no temp file is left."""
    before = earlier_outputs(tmp_path)
    rc, text = cli(["file", two_sizes, "--crop", "0,0,400,300", "--out", tmp_path / "o.mp4", "--csv", tmp_path / "o.csv",
                    "--jsonl", tmp_path / "o.jsonl", "--no-show", "--model", tiny_checkpoint])
    assert rc == 2, text
    assert "crop 0,0,400,300 lies outside the 320x240 frame" in text and "Traceback" not in text
    assert {p: p.read_text() for p in before} == before
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.summary.json").exists()
    assert hidden(tmp_path) == []


def _file_size_limit(limit: int):
    def limit_writes():  # a full disk, as the kernel reports it for this process: write() fails
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_writes


def test_disk_full_is_one_line_and_keeps_earlier_outputs(sample_dir, tiny_checkpoint, tmp_path):
    """Defect 3: a write that fails mid-run (RLIMIT_FSIZE: the kernel's EFBIG, as ENOSPC on a full
    disk) is one line and exit 2, never a traceback, and the earlier outputs stay whole."""
    before = earlier_outputs(tmp_path)
    rc, text = cli(["file", sample_dir / "demo.mp4", "--csv", tmp_path / "o.csv", "--jsonl", tmp_path / "o.jsonl",
                    "--max-frames", "60", "--no-show", "--model", tiny_checkpoint], preexec_fn=_file_size_limit(4096))
    assert rc == 2, text
    assert "Traceback" not in text
    errors = [ln for ln in text.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and "cannot write" in errors[0] and "File too large" in errors[0], text
    assert {p: p.read_text() for p in before} == before
    assert hidden(tmp_path) == []


@pytest.mark.skipif(not Path("/proc/mounts").exists() or os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_disk_full_on_a_small_tmpfs(sample_dir, tiny_checkpoint, tmp_path):
    """Defect 3 on a real full file system (a 64 KiB tmpfs), where the machine allows mounting one."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        before = earlier_outputs(mnt)
        rc, text = cli(["file", sample_dir / "demo.mp4", "--out", mnt / "o.mp4", "--csv", mnt / "o.csv",
                        "--jsonl", mnt / "o.jsonl", "--max-frames", "40", "--no-show", "--model", tiny_checkpoint])
        assert rc == 2, text
        assert "Traceback" not in text and "No space left on device" in text, text
        assert {p: p.read_text() for p in before} == before
        assert not (mnt / "o.mp4").exists() and hidden(mnt) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_later_run_removes_temp_files_of_killed_runs(sample_dir, tiny_checkpoint, tmp_path):
    """Defect 11: a run killed by SIGKILL leaves its hidden temp files; the next run writing the same
    outputs removes those of dead pids (and leaves a running process's own temp files alone)."""
    dead, alive = _dead_pid(), os.getpid()
    stale = [tmp_path / f".o.csv.{dead}.k2j4h5g6.part", tmp_path / f".o.mp4.{dead}.abcdefgh.part",
             tmp_path / f".o.summary.json.{dead}.zzzzzzzz.tmp"]
    live = tmp_path / f".o.csv.{alive}.q1w2e3r4.part"
    other = tmp_path / f".other.csv.{dead}.k2j4h5g6.part"  # not an output of this run
    for p in stale + [live, other]:
        p.write_text("partial")
    rc, text = cli(["file", sample_dir / "demo.mp4", "--out", tmp_path / "o.mp4", "--csv", tmp_path / "o.csv",
                    "--max-frames", "3", "--no-show", "--model", tiny_checkpoint])
    assert rc == 0, text
    assert not any(p.exists() for p in stale)
    assert live.exists() and other.exists()


def test_sigkill_mid_run_then_rerun_cleans_up(sample_dir, tiny_checkpoint, tmp_path):
    """Defect 11, end to end: SIGKILL while writing leaves a temp file (never a half-written target);
    the next run removes it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "streamseg", "file", str(sample_dir / "demo.mp4"), "--csv", str(tmp_path / "o.csv"),
            "--no-show", "--model", str(tiny_checkpoint), "--backend", "torch"]
    p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not hidden(tmp_path) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)
    p.kill()
    p.wait(timeout=30)
    left = hidden(tmp_path)
    assert left and all(n.startswith(f".o.csv.{p.pid}.") for n in left), left
    assert not (tmp_path / "o.csv").exists()
    rc, text = cli(args[3:-2] + ["--max-frames", "2"])
    assert rc == 0, text
    assert hidden(tmp_path) == [] and (tmp_path / "o.csv").exists()


def test_reconnect_is_patient_by_default():
    """Defect 11: by default a lost live source keeps trying for about 5 minutes (capped back-off), and
    `streamseg live --help` says so."""
    from typer.testing import CliRunner

    from streamseg.app.cli import app
    from streamseg.app.runner import Options
    from streamseg.inputs.sources import AVSource

    o = Options(input="tcp://127.0.0.1:9", live=True)
    src = AVSource(o.input, True, reconnect_attempts=o.reconnect_attempts, backoff_s=o.backoff_s)
    delays = src.reconnect_delays()
    assert 290 <= sum(delays) <= 330 and max(delays) == 8.0
    text = " ".join(CliRunner().invoke(app, ["live", "--help"], terminal_width=200).output.split())
    assert "about 5 minutes" in text and "default: 41" in text


@needs_ffmpeg
def test_live_pts_stay_monotonic_across_a_reconnect(sample_dir):
    """Defect 11: after a reconnect the stream's own timestamps start again; the frames' pts (the
    CSV's pts_s and the MP4's clock) are the session's capture clock and never go back."""
    from test_live_stream import Server, free_port

    from streamseg.inputs.sources import open_source

    port = free_port()
    events = []
    server = Server(sample_dir / "demo.mp4", port)
    src = open_source(f"tcp://127.0.0.1:{port}", live=True, reconnect_attempts=20, backoff_s=0.2, read_timeout_s=2,
                      on_event=lambda kind, msg: events.append(kind))
    stop = threading.Event()
    it = src.frames(stop)
    try:
        frames = [next(it) for _ in range(10)]
        server.stop()
        server = Server(sample_dir / "demo.mp4", port)
        deadline = time.monotonic() + 60
        while "reconnected" not in events:
            frames.append(next(it))
            assert time.monotonic() < deadline
        frames += [next(it) for _ in range(5)]
    finally:
        stop.set()
        server.stop()
        src.close()
    pts = [f.pts for f in frames]
    assert pts[0] == 0.0 and all(b > a for a, b in zip(pts, pts[1:])), pts
    assert all(f.pts == pytest.approx(f.t_capture - frames[0].t_capture, abs=1e-9) for f in frames)


def test_a_fifo_nobody_writes_to_is_one_line_not_a_hang(tmp_path):
    """Defect 10: `streamseg file FIFO` with no writer waited for ever; now one line and exit 2 after
    the open timeout (5 s), before any model is loaded."""
    fifo = tmp_path / "in.ts"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    rc, text = cli(["file", fifo, "--csv", tmp_path / "o.csv", "--no-show"], timeout=60)
    assert rc == 2, text
    assert "a FIFO that nothing was written to within 5 s" in text and "Traceback" not in text
    assert time.monotonic() - t0 < 50
    assert not (tmp_path / "o.csv").exists()


@needs_ffmpeg
def test_a_fifo_with_a_writer_is_read(sample_dir, tmp_path):
    """Defect 10, the other side: a FIFO fed by ffmpeg (MPEG-TS) is read as a video file."""
    from streamseg.inputs.sources import open_source

    fifo = tmp_path / "in.ts"
    os.mkfifo(fifo)
    writer = subprocess.Popen([FFMPEG, "-v", "error", "-nostdin", "-y", "-i", str(sample_dir / "demo.mp4"), "-t", "1",
                               "-c:v", "libx264", "-preset", "ultrafast", "-f", "mpegts", str(fifo)])
    try:
        src = open_source(str(fifo), live=False, open_timeout_s=30)
        frames = list(src.frames())
        src.close()
    finally:
        writer.wait(timeout=60)
    assert len(frames) == 20 and frames[0].image.shape == (468, 606, 3)


@needs_ffmpeg
def test_ctrl_c_on_a_stalled_stream_with_a_long_timeout_ends_cleanly(sample_dir, tiny_checkpoint, tmp_path):
    """Defect 2: the sender stalls (SIGSTOP: the connection stays open, no data), the read blocks for up
    to --timeout (20 s when found; 8 s here, still 6 s past the Ctrl-C, which the suite waits out),
    and Ctrl-C then closed the source under the blocked read: a segfault (rc -11). Now the source is
    closed only once the bounded read has returned: exit 130, outputs written."""
    from test_live_stream import Server, free_port

    port = free_port()
    server = Server(sample_dir / "demo.mp4", port)
    out = tmp_path / "o.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([sys.executable, "-m", "streamseg", "live", "--device", f"tcp://127.0.0.1:{port}",
                          "--csv", str(out), "--no-show", "--model", str(tiny_checkpoint), "--backend", "torch",
                          "--timeout", "8"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any(n.startswith(".o.csv.") for n in hidden(tmp_path)):
            assert p.poll() is None, p.communicate()
            time.sleep(0.1)
        time.sleep(3.0)  # frames flow, then the sender stalls
        os.kill(server.p.pid, signal.SIGSTOP)
        time.sleep(2.0)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=90)
    finally:
        if server.p.poll() is None:
            os.kill(server.p.pid, signal.SIGCONT)
        server.stop()
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err  # Ctrl-C's exit status; a crash here was -11 (SIGSEGV)
    assert "Traceback" not in err and "outputs finalised" in err and out.exists()


@needs_ffmpeg
@pytest.mark.parametrize("grows", [False, True])
def test_resolution_change_mid_file(two_sizes, tiny_checkpoint, tmp_path, grows):
    """Defect 1 (files): a clip whose resolution changes mid-stream (606x468 then 320x240, or the
    reverse) is processed whole: every frame segmented at its own size, one CSV row per frame, and
    the MP4 keeps the first frame's size, later frames scaled to fit (aspect kept, black bars)."""
    clip = two_sizes
    if grows:
        clip = tmp_path / "grows.ts"
        parts = two_sizes.parent
        clip.write_bytes((parts / "b.ts").read_bytes() + (parts / "a.ts").read_bytes())
    rc, text = cli(["file", clip, "--out", tmp_path / "o.mp4", "--csv", tmp_path / "o.csv", "--no-show",
                    "--model", tiny_checkpoint])
    assert rc == 0, text
    assert "Traceback" not in text
    import av

    with av.open(str(tmp_path / "o.mp4")) as c:
        sizes = {(f.width, f.height) for f in c.decode(video=0)}
        n = c.streams.video[0].frames
    assert sizes == ({(320, 240)} if grows else {(606, 468)})
    rows = (tmp_path / "o.csv").read_text().splitlines()[1:]
    assert len(rows) == 40 and n in (0, 40)


@pytest.fixture(scope="module")
def testsrc_clips(tmp_path_factory) -> Path:
    """Real clips by ffmpeg: 40 frames of testsrc at 25 fps as a raw Annex-B stream (no timestamps),
    and 60 frames as MKV, damaged mid-file (4000 bytes zeroed) as a bad disk or transfer leaves it."""
    if FFMPEG is None:
        pytest.skip("ffmpeg not installed")
    d = tmp_path_factory.mktemp("testsrc")
    for name, n in (("x.h264", 40), ("x.mkv", 60)):
        subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                        "-frames:v", str(n), "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", str(d / name)],
                       check=True)
    data = bytearray((d / "x.mkv").read_bytes())
    data[len(data) // 3: len(data) // 3 + 4000] = bytes(4000)
    (d / "corrupt.mkv").write_bytes(bytes(data))
    return d


@needs_ffmpeg
def test_a_raw_h264_gives_an_mp4_as_long_as_its_frames(testsrc_clips, tiny_checkpoint, tmp_path):
    """Defect 8: 40 frames at 25 fps without timestamps became a 9 s MP4 (wall-clock times); now 1.6 s.
    With --fps 10 the same frames last 4 s."""
    import av

    for extra, seconds in (([], 1.6), (["--fps", "10"], 4.0)):
        out = tmp_path / "o.mp4"
        rc, text = cli(["file", testsrc_clips / "x.h264", "--out", out, "--model", tiny_checkpoint, *extra])
        assert rc == 0 and "Traceback" not in text, text
        with av.open(str(out)) as c:
            assert c.duration / av.time_base == pytest.approx(seconds, abs=0.01)
            assert sum(1 for _ in c.decode(video=0)) == 40


@pytest.mark.parametrize("fps", ["0", "-5", "inf", "nan"])
def test_fps_is_checked_once(fps, tmp_path, sample_dir):
    rc, text = cli(["file", sample_dir / "demo.mp4", "--out", tmp_path / "o.mp4", "--fps", fps])
    assert rc == 2 and "Traceback" not in text, text
    assert f"--fps {float(fps):g}: " in text and ("finite" in text or "must be within" in text), text
    assert not (tmp_path / "o.mp4").exists()


@needs_ffmpeg
def test_a_damaged_mkv_says_how_many_frames_it_lost(testsrc_clips, tiny_checkpoint, tmp_path):
    """Defect 7: an MKV damaged mid-file gave 49 of 60 frames without a word; now a warning line at
    the end and the counts in the summary JSON."""
    rc, text = cli(["file", testsrc_clips / "corrupt.mkv", "--csv", tmp_path / "o.csv", "--model", tiny_checkpoint])
    assert rc == 0, text
    summary = json.loads((tmp_path / "o.summary.json").read_text())
    assert summary["expected_frames"] == 60 and 0 < summary["frames_seen"] < 55
    assert f"warning: decoded {summary['frames_seen']} of 60 frames" in text


@needs_ffmpeg
def test_a_truncated_mkv_warns_without_a_count_of_undecodable_packets(testsrc_clips, tiny_checkpoint, tmp_path):
    """A file cut short loses frames but no packet fails to decode: the warning says how many frames
    came of how many, and no longer adds "0 packet(s) could not be decoded"."""
    data = (testsrc_clips / "x.mkv").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    rc, text = cli(["file", cut, "--csv", tmp_path / "o.csv", "--model", tiny_checkpoint])
    assert rc == 0, text
    summary = json.loads((tmp_path / "o.summary.json").read_text())
    assert f"warning: decoded {summary['frames_seen']} of 60 frames" in text
    assert "0 packet(s)" not in text, text


def _tree(d: Path) -> dict:
    """Every file under d -> (size, mtime_ns): what a run that writes nothing leaves as it was."""
    return {str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(d.rglob("*"))}


def _streamseg(args, cwd=None, env=None, timeout=300):
    env = {**{k: v for k, v in os.environ.items() if k != "STREAMSEG_ENGINES"}, "PYTHONPATH": str(REPO), **(env or {})}
    p = subprocess.run([sys.executable, "-m", "streamseg", *map(str, args)], capture_output=True, text=True,
                       env=env, cwd=cwd, timeout=timeout)
    return p.returncode, p.stderr + p.stdout


def test_exported_artefacts_are_used_by_file_engines_without_a_rebuild(sample_dir, tiny_checkpoint, tmp_path):
    """Defect 12: `export --out DIR` wrote the dense graph only, so `file --engines DIR --backend
    onnxruntime` (CPU) then built the RoI heads graphs into DIR. Now the export holds them too and
    the folder, read-only (chmod 555), is used as it is: nothing in it is written or rebuilt.
    (Modes do not stop root, so the folder's files are compared before and after.)"""
    pytest.importorskip("onnxruntime")
    eng = tmp_path / "eng"
    rc, text = _streamseg(["export", "--format", "onnx", "--out", eng, "--compute", "cpu", "--model", tiny_checkpoint])
    assert rc == 0, text
    before = _tree(eng)
    assert any("heads-box" in n for n in before) and any("heads-mask" in n for n in before), before
    eng.chmod(0o555)
    try:
        rc, text = _streamseg(["file", sample_dir / "demo.mp4", "--csv", tmp_path / "o.csv", "--max-frames", "3",
                               "--engines", eng, "--backend", "onnxruntime", "--compute", "cpu", "--model", tiny_checkpoint])
    finally:
        eng.chmod(0o755)
    assert rc == 0 and "model: onnxruntime" in text and "rebuilding" not in text, text
    assert _tree(eng) == before


def test_backend_auto_runs_from_a_read_only_folder(sample_dir, tiny_checkpoint, tmp_path):
    """Defect 12: `--backend auto` from a read-only current folder builds its artefacts into the user
    cache ($XDG_CACHE_HOME/streamseg/engines) and writes nothing into the current folder."""
    cwd, cache = tmp_path / "ro", tmp_path / "cache"
    cwd.mkdir()
    cwd.chmod(0o555)
    try:
        rc, text = _streamseg(["file", sample_dir / "demo.mp4", "--csv", tmp_path / "o.csv", "--max-frames", "2",
                               "--compute", "cpu", "--model", tiny_checkpoint], cwd=cwd, env={"XDG_CACHE_HOME": str(cache)})
    finally:
        cwd.chmod(0o755)
    assert rc == 0 and "Traceback" not in text, text
    assert list(cwd.iterdir()) == []
    if "model: onnxruntime" in text:  # auto picks onnxruntime where it is installed
        assert list((cache / "streamseg" / "engines").glob("*.onnx"))


@pytest.mark.parametrize("delay_s", [0.3, 1.0, 2.0, 4.0])
def test_ctrl_c_in_the_first_seconds_is_one_line_and_exit_130(sample_dir, tmp_path, delay_s):
    """Defect 11b: Ctrl-C while `streamseg file` starts (imports, model load, source open) raised
    KeyboardInterrupt inside torch's imports: a traceback, or exit by SIGINT (-2) after the line was
    printed. Now it is one line and exit 130, or, once the run has begun, the outputs are finalised."""
    script = shutil.which("streamseg")  # the console script, as a user runs it; else the module
    cmd = [sys.executable, script] if script else [sys.executable, "-m", "streamseg"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen([*cmd, "file", str(sample_dir / "demo.mp4"), "--out", str(tmp_path / "o.mp4")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay_s)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "interrupted" in err or "stopped by SIGINT" in err, err
    assert hidden(tmp_path) == []  # no temp output left behind


WINDOWS_INTERRUPTED = """
import os, signal, sys, time
sys.argv = ["streamseg", *sys.argv[1:]]  # this process is the command, as its console script starts it
from streamseg.backends.base import BackendBase
from streamseg.backends.split import SplitBackend

def prepare_windows(self):  # Ctrl-C while the tracking windows' engines are built (seconds, once a model)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(2)

BackendBase.prepare_windows = SplitBackend.prepare_windows = prepare_windows
from streamseg.app.cli import main
main()
"""


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_ctrl_c_while_the_tracking_windows_are_built_exits_at_once_with_nothing_written(sample_dir, tmp_path, backend):
    """Ctrl-C while `file` built its tracking windows' engines (after the dense engine, 5-10 s on a
    fresh cache here) was only noted: the outputs were open already, and the run went on through the
    whole input (all 350 demo frames, 20 s) before it said "stopped by SIGINT". The windows are now
    built before any output opens: one line, exit 130, nothing written."""
    out = tmp_path / "o.mp4"
    r = subprocess.run([sys.executable, "-c", WINDOWS_INTERRUPTED, "file", str(sample_dir / "demo.mp4"), "--out", str(out),
                        "--backend", backend, "--compute", "cpu"], env={**os.environ, "PYTHONPATH": str(REPO)},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 130 and r.stderr.strip().splitlines()[-1] == "interrupted", r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "frames seen" not in r.stdout + r.stderr
    assert list(tmp_path.iterdir()) == []  # no output, no temp file


@pytest.mark.parametrize("device", ["/dev/video97", "/dev/null"])
def test_live_on_a_path_that_is_no_capture_device_is_one_line(device, tmp_path):
    """Defect 2b: a device path that is missing or is not a V4L2 capture device: one line, exit 2,
    before the model loads and before any output exists."""
    rc, text = cli(["live", "--device", device, "--no-show", "--csv", tmp_path / "o.csv"])
    assert rc == 2 and "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    assert not list(tmp_path.iterdir())
