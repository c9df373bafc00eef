"""`streamseg file`: every frame processed and written in order with its timestamp; CSV/JSONL one row
per frame; calibrated and uncalibrated units; Ctrl-C/SIGTERM finalise; bad input is one line and
leaves nothing behind."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction

import av
import pytest
from typer.testing import CliRunner

from streamseg.app.cli import app


def probe(path):
    """(frame count, average rate, codec, pix_fmt, pts list) of the first video stream, decoded."""
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        pts = [p.pts for p in c.demux(st) if p.pts is not None]
        codec, fmt, rate, tb = st.codec_context.name, st.codec_context.pix_fmt, st.average_rate, st.time_base
    with av.open(str(path)) as c:
        n = sum(1 for _ in c.decode(video=0))
    return n, Fraction(rate), codec, fmt, sorted(Fraction(p) * tb for p in pts)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def invoke(args):
    """In-process CLI run on the eager torch backend (no compiled artefacts built as a side effect)."""
    r = CliRunner().invoke(app, [str(a) for a in args] + ["--backend", "torch"])
    return r.exit_code, r.output


@pytest.mark.slow
def test_whole_clip_keeps_count_rate_and_timestamps(video_dir, tiny_checkpoint, tmp_path):
    """The issue's done-criterion: 495 frames at 19.04 fps in, the same out (H.264), CSV one row per frame."""
    clip = video_dir / "Reg_Image_181206_crop.mp4"
    out, table = tmp_path / "o.mp4", tmp_path / "o.csv"
    code, text = invoke(["file", clip, "--out", out, "--csv", table, "--no-show", "--model", tiny_checkpoint])
    assert code == 0, text
    n_in, rate_in, _, _, pts_in = probe(clip)
    n_out, rate_out, codec, fmt, pts_out = probe(out)
    assert n_in == n_out == 495
    assert float(rate_out) == pytest.approx(19.04, abs=0.005) and rate_out == rate_in
    assert codec == "h264" and fmt == "yuv420p"
    assert pts_out == pts_in  # same timestamps, frame for frame
    r = rows(table)
    assert [int(x["frame"]) for x in r] == list(range(495))
    assert [float(x["pts_s"]) for x in r] == pytest.approx([float(p) for p in pts_in], abs=1e-6)
    summary = json.loads((tmp_path / "o.summary.json").read_text())
    assert summary["frames_seen"] == summary["frames_processed"] == summary["video_frames"] == 495
    assert (tmp_path / "o.csa.png").stat().st_size > 0
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp files left


def test_uncalibrated_run_never_reports_mm(sample_dir, small_checkpoint, tmp_path):
    out, table, lines = tmp_path / "u.mp4", tmp_path / "u.csv", tmp_path / "u.jsonl"
    code, text = invoke(["file", sample_dir / "demo.mp4", "--out", out, "--csv", table, "--jsonl", lines, "--no-show",
                         "--model", small_checkpoint, "--max-frames", "4", "--confident", "0"])
    assert code == 0, text
    assert "mm²" not in text and "mm^2" not in text and "px²" in text and "uncalibrated" in text
    r = rows(table)
    assert len(r) == 4 and probe(out)[0] == 4
    assert all(x["csa_mm2"] == x["csa_mm2_stable"] == x["perimeter_mm"] == x["mm_per_px"] == "" for x in r)
    js = [json.loads(s) for s in lines.read_text().splitlines()]
    assert [j["frame"] for j in js] == [0, 1, 2, 3] and all(j["csa_mm2"] is None for j in js)
    assert [j["score"] for j in js] == [float(x["score"]) if x["score"] else None for x in r]
    s = json.loads((tmp_path / "u.summary.json").read_text())
    assert s["unit"] == "px²" and s["cts_flag"] is None and s["calibrated"] is False


def test_the_pipeline_runs_one_detection_the_best(sample_dir, small_checkpoint, tmp_path, monkeypatch):
    """The pipeline shows one nerve, so it asks the backend for one detection (each extra one costs a
    112² mask-head pass); it is the checkpoint's best, the same one a higher cap puts first."""
    from streamseg import backends
    from streamseg.model.checkpoint import load_checkpoint

    opened = []
    real = backends.load
    monkeypatch.setattr(backends, "load", lambda *a, **k: opened.append(real(*a, **k)) or opened[-1])
    out, lines = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    code, text = invoke(["file", sample_dir / "demo.mp4", "--out", out, "--jsonl", lines, "--no-show",
                         "--model", small_checkpoint, "--max-frames", "2", "--score-thresh", "0"])
    assert code == 0, text
    [be] = opened
    assert be.config.max_detections == 1 and load_checkpoint(small_checkpoint)[1].config.max_detections == 2
    with av.open(str(sample_dir / "demo.mp4")) as c:
        first = next(c.decode(video=0)).to_ndarray(format="bgr24")
    both = backends.load("torch", small_checkpoint).infer(first).detections
    got = json.loads(lines.read_text().splitlines()[0])
    assert len(both) == 2 and got["score"] == pytest.approx(both[0].score, abs=1e-5)


def test_depth_calibration_and_crop(sample_dir, small_checkpoint, tmp_path):
    out, table = tmp_path / "c.mp4", tmp_path / "c.csv"
    code, text = invoke(["file", sample_dir / "demo.mp4", "--out", out, "--csv", table, "--no-show", "--model",
                         small_checkpoint, "--max-frames", "3", "--crop", "100,50,400,300", "--depth-mm", "30",
                         "--score-thresh", "0"])  # untrained: show its best box, so that every frame has an area
    assert code == 0, text
    with av.open(str(out)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (400, 300)
    checked = 0
    for x in rows(table):
        assert float(x["mm_per_px"]) == pytest.approx(0.1)
        if x["area_px"]:
            assert float(x["csa_mm2"]) == pytest.approx(float(x["area_px"]) * 0.01, rel=1e-3)
            checked += 1
    assert checked > 0, "no frame had a mask: the CSA check never ran"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_file_finalises_outputs(video_dir, tiny_checkpoint, tmp_path, sig):
    out, table = tmp_path / "s.mp4", tmp_path / "s.csv"
    p = subprocess.Popen([sys.executable, "-m", "streamseg", "file", str(video_dir / "Reg_Image_181206_crop.mp4"),
                          "--out", str(out), "--csv", str(table), "--no-show", "--model", str(tiny_checkpoint), "--backend", "torch"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    def lines_so_far():  # the CSV is renamed into place at the end: while running, its rows are in the temp beside it
        parts = sorted(tmp_path.glob(f".{table.name}.*.part"))
        return len(parts[-1].read_text().splitlines()) if parts else 0

    while time.monotonic() < deadline and lines_so_far() < 6:
        assert p.poll() is None, p.communicate()
        time.sleep(0.1)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err
    assert "Traceback" not in err and f"stopped by {sig.name}" in err
    r = rows(table)
    assert 5 <= len(r) < 495
    assert [int(x["frame"]) for x in r] == list(range(len(r)))
    n, _, codec, _, _ = probe(out)
    assert codec == "h264" and n == len(r)  # playable, and the CSV holds every written frame
    assert not [q for q in os.listdir(tmp_path) if q.startswith(".")]


@pytest.mark.parametrize("case,msg", [
    ("missing", "no such file"), ("not_video", "not a video"), ("crop", "outside"),
    ("no_folder", "does not exist"), ("out_is_dir", "is a folder"), ("two_spacings", "not --mm-per-px and --depth-mm"),
    ("bad_model", "checkpoint not found"), ("bad_suffix", "--out must end in"),
])
def test_bad_input_is_one_line_and_leaves_nothing(case, msg, sample_dir, small_checkpoint, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "notes.mp4").write_text("not a video\n")
    (work / "dir.mp4").mkdir()
    clip, extra, out = sample_dir / "demo.mp4", [], work / "o.mp4"
    if case == "missing":
        clip = tmp_path / "nope.mp4"
    elif case == "not_video":
        clip = tmp_path / "notes.mp4"
    elif case == "crop":
        extra = ["--crop", "500,400,300,300"]
    elif case == "no_folder":
        out = work / "absent" / "o.mp4"
    elif case == "out_is_dir":
        out = work / "dir.mp4"
    elif case == "two_spacings":
        extra = ["--mm-per-px", "0.1", "--depth-mm", "30"]
    elif case == "bad_model":
        extra = ["--model", tmp_path / "nope.pt"]
    elif case == "bad_suffix":
        out = work / "o.avi"
    if case != "bad_model":
        extra += ["--model", small_checkpoint]
    code, text = invoke(["file", clip, "--out", out, "--csv", work / "o.csv", "--no-show", "--max-frames", "2", *extra])
    assert code == 2, text
    assert msg in text and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1
    assert sorted(os.listdir(work)) == ["dir.mp4"]  # nothing written, not even a temp file
