"""Inputs that reached a traceback or printed more than the one promised error line (issue 18,
"Inputs that still reach a traceback"): user text read as rich markup, symlink loops and names too
long, click's three-line usage errors, an empty --device. Each case: one `error:` line on stderr,
the user's text as written, exit code 2."""
from __future__ import annotations

import os
import shutil

import pytest
from typer.testing import CliRunner

from streamseg.app.cli import app


def _one_line(args, cwd, monkeypatch, code=2) -> str:
    monkeypatch.chdir(cwd)
    r = CliRunner().invoke(app, args)
    err = r.stderr.strip().splitlines()
    assert r.exit_code == code, (args, r.exit_code, r.output, r.exception)
    assert len(err) == 1 and err[0].startswith("error:"), (args, r.stderr)
    assert r.exception is None or isinstance(r.exception, SystemExit), (args, repr(r.exception))
    return err[0]


@pytest.fixture
def work(tmp_path, monkeypatch, sample_dir):
    monkeypatch.setenv("STREAMSEG_CONFIG_DIR", str(tmp_path / "cfg"))
    shutil.copy(sample_dir / "demo.mp4", tmp_path / "demo.mp4")
    return tmp_path


MARKUP_CASES = {  # the value the user typed, as it must appear in the error line
    "file name with a closing tag": (["file", "x[/x].mp4"], "x[/x].mp4"),
    "file name with a style tag": (["file", "scan[blink]1.mp4"], "scan[blink]1.mp4"),
    "crop": (["file", "demo.mp4", "--crop", "[/x]"], "[/x]"),
    "profile": (["file", "demo.mp4", "--profile", "[/x]"], "[/x]"),
    "compute": (["file", "demo.mp4", "--compute", "[/x]"], "[/x]"),
    "calibrate name": (["calibrate", "a[/x]", "--mm-per-px", "0.1"], "a[/x]"),
    "csv in a missing folder": (["file", "demo.mp4", "--csv", "[bold]no/o.csv"], "[bold]no/o.csv"),
}


@pytest.mark.parametrize("args, shown", MARKUP_CASES.values(), ids=MARKUP_CASES.keys())
def test_user_text_is_printed_as_written_never_as_markup(work, monkeypatch, args, shown):
    assert shown in _one_line(args, work, monkeypatch)


def test_a_symlink_loop_is_one_line(work, monkeypatch):
    os.symlink("loop", work / "loop")
    os.symlink("loop.csv", work / "loop.csv")
    assert "symlink loop" in _one_line(["file", "loop"], work, monkeypatch)
    assert "symlink loop" in _one_line(["file", "demo.mp4", "--csv", "loop.csv"], work, monkeypatch)
    assert "symlink loop" in _one_line(["live", "--device", "loop", "--no-show"], work, monkeypatch)


@pytest.mark.parametrize("args", [["file", "a" * 300 + ".mp4"], ["file", "a/" * 3000 + "x.mp4"],
                                  ["file", "demo.mp4", "--csv", "a/" * 3000 + "x.csv"]],
                         ids=["input name 300 bytes", "input path 6000 bytes", "csv path 6000 bytes"])
def test_a_path_longer_than_the_system_allows_is_one_line(work, monkeypatch, args):
    line = _one_line(args, work, monkeypatch)
    assert "too long" in line.lower() and len(line) < 200, line


USAGE_CASES = {
    "missing argument": ["file"],
    "unknown option": ["file", "demo.mp4", "--bogus"],
    "unknown command": ["nope"],
    "not an integer": ["file", "demo.mp4", "--max-frames", "abc"],
    "not a choice": ["file", "demo.mp4", "--backend", "tpu"],
}


@pytest.mark.parametrize("args", USAGE_CASES.values(), ids=USAGE_CASES.keys())
def test_a_usage_error_is_one_line_with_where_help_is(work, monkeypatch, args):
    assert "--help" in _one_line(args, work, monkeypatch)


def test_the_bare_command_still_prints_its_help(work, monkeypatch):
    monkeypatch.chdir(work)
    r = CliRunner().invoke(app, [])
    assert "Usage:" in r.output and "Commands" in r.output


def test_an_empty_device_says_so(work, monkeypatch):
    line = _one_line(["live", "--device", "", "--no-show"], work, monkeypatch)
    assert "empty" in line and "folder" not in line


@pytest.mark.parametrize("kind, words", [("folder", "is a folder"), ("fifo", "not a regular file"),
                                         ("device", "not a regular file"), ("missing", "not found")])
def test_a_model_that_is_not_a_file_says_what_it_is(work, monkeypatch, kind, words):
    model = {"folder": str(work), "fifo": str(work / "fifo"), "device": "/dev/zero", "missing": "nope.pt"}[kind]
    if kind == "fifo":
        os.mkfifo(work / "fifo")
    line = _one_line(["file", "demo.mp4", "--model", model, "--max-frames", "1"], work, monkeypatch)
    assert words in line and (kind == "missing" or "not found" not in line), line


def _corrupt_first_frame(src, dst, frames: int | None = None):
    """The bundled JPEG DICOM with its first frame's JPEG data replaced by garbage (and only the first
    `frames` frames kept)."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(src)
    data = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))[:frames]
    data[0] = b"\xff\xd8 not a jpeg " * 8
    ds.PixelData = encapsulate(data)
    ds.NumberOfFrames = len(data)
    ds.save_as(dst)
    return dst


def test_a_dicom_whose_only_frame_fails_is_one_line_without_a_note(work, monkeypatch, sample_dir):
    _corrupt_first_frame(sample_dir / "demo.dcm", work / "bad.dcm", frames=1)
    line = _one_line(["file", "bad.dcm", "--max-frames", "1"], work, monkeypatch)
    assert "no decodable frames" in line and "frame 1" in line


def test_a_dicom_whose_first_frame_fails_notes_it_once_and_goes_on(work, sample_dir):
    from streamseg.inputs.dicom import DicomSource

    events = []
    src = DicomSource(str(_corrupt_first_frame(sample_dir / "demo.dcm", work / "bad.dcm")), False,
                      on_event=lambda kind, msg: events.append(kind)).open()
    assert events.count("decode_error") == 1 and len(list(src.frames())) == src.dicom.frames - 1


def test_a_udp_read_timeout_says_no_data_for_n_seconds(sample_dir):
    """ffmpeg sends 4 s of MPEG-TS over UDP (a keyframe every 5 frames), then stops: the source reports the silence in words, not
    as FFmpeg's "[Errno 1414092869] Immediate exit requested"."""
    import socket
    import subprocess

    from streamseg.inputs.sources import open_source

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"udp://127.0.0.1:{port}"
    sender = subprocess.Popen([ffmpeg, "-v", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i",
                               str(sample_dir / "demo.mp4"), "-t", "4", "-c:v", "libx264", "-preset", "ultrafast",
                               "-g", "5", "-an", "-f", "mpegts", url],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = []
    try:
        src = open_source(url, live=True, open_timeout_s=5, read_timeout_s=1, reconnect_attempts=0,
                          on_event=lambda kind, msg: events.append(msg))
        frames = sum(1 for _ in src.frames())
        src.close()
    finally:
        sender.wait(timeout=30)
    lost = [m for m in events if m.startswith("signal lost")]
    assert frames > 0 and lost, events
    assert lost[0] == f"signal lost (no data from {url} for 1 s)", lost
