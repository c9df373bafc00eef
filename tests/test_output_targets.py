"""Outputs that are not regular files (issue 18, data loss 1 and 2): a device, a FIFO or a socket
named as an output is refused in one line and never renamed over; a symlink stays a symlink and its
target gets the new content; a second signal while the outputs are being finalised does not lose
the run."""
from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamseg.files import atomic_write, check_writable
from streamseg.files import StagedFile
from streamseg.outputs.rows import RowFormat, RowSink
from streamseg.types import StreamsegError

REPO = Path(__file__).resolve().parents[1]
FFMPEG = shutil.which("ffmpeg")


def cli(args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "streamseg", *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=timeout)
    return p.returncode, p.stderr + p.stdout


def char_device(path: Path) -> Path:
    """A copy of /dev/null (same major/minor) at `path`; skips where mknod is not allowed."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.stat("/dev/null").st_rdev)
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    return path


def special(kind: str, tmp_path: Path) -> Path:
    p = tmp_path / f"{kind}.csv"
    if kind == "fifo":
        os.mkfifo(p)
    else:
        char_device(p)
    return p


def is_kind(p: Path, kind: str) -> bool:
    mode = os.lstat(p).st_mode
    return stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode)


@pytest.mark.parametrize("kind", ["fifo", "chardev"])
def test_atomic_write_never_renames_over_a_device_or_fifo(kind, tmp_path):
    p = special(kind, tmp_path)
    with pytest.raises(StreamsegError, match="not a regular file"):
        atomic_write(p, lambda tmp: Path(tmp).write_text("x\n"))
    assert is_kind(p, kind)
    assert [q.name for q in tmp_path.iterdir()] == [p.name]  # no temp file left
    with pytest.raises(StreamsegError, match="not a regular file"):
        check_writable(p)


@pytest.mark.parametrize("kind", ["fifo", "chardev"])
def test_a_target_that_became_a_fifo_or_device_before_the_commit_is_not_renamed_over(kind, tmp_path):
    """The sinks' commit and StagedFile's commit go through the same check as atomic_write."""
    target = tmp_path / f"{kind}.csv"
    sink = RowSink(target, RowFormat.CSV, None, 0.5)
    staged = StagedFile(tmp_path / "s.json", lambda tmp: Path(tmp).write_text("{}\n"))
    sink.rows = 1
    sink.finish()
    staged.finish()
    special(kind, tmp_path)
    with pytest.raises(StreamsegError, match="not a regular file"):
        sink.commit()
    assert is_kind(target, kind)
    (tmp_path / "s.json").unlink(missing_ok=True)
    os.mkfifo(tmp_path / "s.json")
    with pytest.raises(StreamsegError, match="not a regular file"):
        staged.commit()
    assert stat.S_ISFIFO(os.lstat(tmp_path / "s.json").st_mode)
    sink.abort()
    staged.abort()
    assert sorted(q.name for q in tmp_path.iterdir()) == sorted([target.name, "s.json"])


def test_atomic_write_through_a_symlink_keeps_the_link(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "t.json"
    target.write_text("old\n")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write(link, lambda tmp: Path(tmp).write_text("new\n"))
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new\n"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "real" / "later.json")
    atomic_write(dangling, lambda tmp: Path(tmp).write_text("made\n"))
    assert dangling.is_symlink() and (tmp_path / "real" / "later.json").read_text() == "made\n"
    assert sorted(q.name for q in (tmp_path / "real").iterdir()) == ["later.json", "t.json"]


def test_a_symlink_loop_is_one_line(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.symlink_to(b)
    b.symlink_to(a)
    from streamseg.files import output_target

    with pytest.raises(StreamsegError, match="symlink loop"):
        output_target(a)


def test_file_refuses_a_device_csv_and_writes_through_a_symlink(sample_dir, tiny_checkpoint, tmp_path):
    """`streamseg file --csv DEVICE` renamed a regular file over the device (as root, `--csv /dev/null`
    would have replaced the system's /dev/null); a symlinked --csv was replaced by a plain file."""
    dev = char_device(tmp_path / "null.csv")
    rc, text = cli(["file", sample_dir / "demo.mp4", "--csv", dev, "--max-frames", "2", "--no-show",
                    "--model", tiny_checkpoint, "--backend", "torch"])
    assert rc == 2 and "not a regular file" in text and "Traceback" not in text, text
    assert is_kind(dev, "chardev")
    (tmp_path / "real").mkdir()
    link = tmp_path / "o.csv"
    link.symlink_to(tmp_path / "real" / "o.csv")
    rc, text = cli(["file", sample_dir / "demo.mp4", "--csv", link, "--max-frames", "2", "--no-show",
                    "--model", tiny_checkpoint, "--backend", "torch"])
    assert rc == 0, text
    assert link.is_symlink() and len((tmp_path / "real" / "o.csv").read_text().splitlines()) == 3


def _part_rows(tmp_path: Path, name: str) -> int:
    """Rows written so far into the run's temp file of `name` (its `.NAME.PID.*.part`)."""
    parts = list(tmp_path.glob(f".{name}.*.part"))
    try:
        return len(parts[0].read_text().splitlines()) - 1 if parts else -1
    except OSError:
        return -1


@pytest.mark.parametrize("first,later", [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT),
                                         (signal.SIGINT, signal.SIGTERM)])
def test_a_second_signal_while_finalising_keeps_the_outputs(sample_dir, tiny_checkpoint, tmp_path, first, later):
    """Two signals 0.1-0.3 s apart lost the whole run: the second hit the finalising (encoder flush,
    summary, plot, renames) and discarded everything, or killed the process and left `.part` files.
    Now the first signal stops capture and every later one is noted while the outputs are committed."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    outs = {n: tmp_path / n for n in ("o.mp4", "o.csv", "o.jsonl")}
    p = subprocess.Popen([sys.executable, "-m", "streamseg", "file", str(sample_dir / "demo.mp4"), "--no-show",
                          "--out", str(outs["o.mp4"]), "--csv", str(outs["o.csv"]), "--jsonl", str(outs["o.jsonl"]),
                          "--model", str(tiny_checkpoint), "--backend", "torch"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while _part_rows(tmp_path, "o.csv") < 5 and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.poll() is None, p.communicate()
        p.send_signal(first)
        time.sleep(0.1)
        while p.poll() is None and time.monotonic() < deadline:  # later signals all through the finalising
            p.send_signal(later)
            time.sleep(0.1)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == (130 if first == signal.SIGINT else 143), err
    assert "Traceback" not in err and f"stopped by {first.name}; outputs finalised" in err, err
    assert hidden_files(tmp_path) == []
    rows = len(outs["o.csv"].read_text().splitlines()) - 1
    assert rows >= 5 and len(outs["o.jsonl"].read_text().splitlines()) == rows
    assert outs["o.mp4"].stat().st_size > 0 and (tmp_path / "o.summary.json").exists()
    assert (tmp_path / "o.csa.png").exists()


def hidden_files(tmp_path: Path) -> list[str]:
    return sorted(q.name for q in tmp_path.iterdir() if q.name.startswith("."))
