"""Timestamps of files (issue 18, data loss 7): inputs whose timestamps restart give the same
monotonic times in the CSV as in the MP4."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import av
import pytest

REPO = Path(__file__).resolve().parents[1]
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")


def cli(args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "streamseg", *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=timeout)
    return p.returncode, p.stderr + p.stdout


@needs_ffmpeg
def test_restarting_timestamps_give_the_same_monotonic_times_in_csv_and_mp4(sample_dir, tiny_checkpoint, tmp_path):
    """Two MPEG-TS files concatenated (each starting at 1.4 s): the CSV's pts_s went 2.35 -> 1.4 while the
    MP4 went on; now both continue one frame after the last."""
    for name in ("a.ts", "b.ts"):
        subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-y", "-i", str(sample_dir / "demo.mp4"), "-t", "1",
                        "-c:v", "libx264", "-preset", "ultrafast", "-an", str(tmp_path / name)], check=True)
    joined = tmp_path / "joined.ts"
    joined.write_bytes((tmp_path / "a.ts").read_bytes() + (tmp_path / "b.ts").read_bytes())
    rc, text = cli(["file", joined, "--out", tmp_path / "o.mp4", "--csv", tmp_path / "o.csv", "--no-show",
                    "--model", tiny_checkpoint, "--backend", "torch"])
    assert rc == 0, text
    with open(tmp_path / "o.csv", newline="") as f:
        csv_pts = [float(r["pts_s"]) for r in csv.DictReader(f)]
    with av.open(str(tmp_path / "o.mp4")) as c:
        mp4_pts = sorted(float(fr.pts * fr.time_base) for fr in c.decode(video=0))
    assert len(csv_pts) == len(mp4_pts) == 40
    assert all(b > a for a, b in zip(csv_pts, csv_pts[1:])), csv_pts
    assert [round(t - csv_pts[0], 3) for t in csv_pts] == [round(t - mp4_pts[0], 3) for t in mp4_pts]


@needs_ffmpeg
def test_a_complete_variable_frame_rate_mkv_gives_no_missing_frames_warning(sample_dir, tiny_checkpoint, tmp_path):
    """An MKV stores no frame count: duration x average rate (20 fps x 2.95 s = 59) was taken as the count of a
    variable-frame-rate file of 30 frames, and the complete file warned "decoded 30 of 59 frames"."""
    vfr = tmp_path / "vfr.mkv"
    subprocess.run([FFMPEG, "-v", "error", "-nostdin", "-y", "-i", str(sample_dir / "demo.mp4"), "-t", "3",
                    "-vf", "setpts='if(lt(N,30),N/10/TB,3/TB+(N-30)/40/TB)'", "-fps_mode", "vfr",
                    "-c:v", "libx264", "-preset", "ultrafast", "-an", str(vfr)], check=True)
    rc, text = cli(["file", vfr, "--csv", tmp_path / "o.csv", "--no-show", "--model", tiny_checkpoint,
                    "--backend", "torch"])
    assert rc == 0 and "frames seen 30" in text, text
    assert "warning: decoded" not in text, text


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_a_rotated_video_is_read_upright_as_ffmpeg_shows_it(sample_dir, tmp_path, rotate):
    """A display matrix (a phone's or a machine's recording turned by 90°) turns the picture: the
    frames come as FFmpeg's own player shows them (its autorotation is the reference), with the
    source's size turned too."""
    import cv2
    import numpy as np

    from streamseg.inputs.sources import open_source

    img = cv2.imread(str(sample_dir / "images" / "Pz065-001.png"))[:200, :320]
    img[:40, :40] = (255, 255, 255)  # a corner mark, so every turn is told apart
    cv2.imwrite(str(tmp_path / "f.png"), img)
    plain, turned = tmp_path / "plain.mp4", tmp_path / "turned.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-loop", "1", "-i", str(tmp_path / "f.png"), "-frames:v", "3",
                    "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", str(plain)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(plain), "-c", "copy", "-metadata:s:v:0",
                    f"rotate={rotate}", str(turned)], check=True)
    shown = tmp_path / "shown.png"  # what FFmpeg shows: it applies the rotation itself
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(turned), "-frames:v", "1", str(shown)], check=True)
    want = cv2.imread(str(shown))
    src = open_source(str(turned), live=False)
    try:
        frame = next(iter(src.frames(threading.Event())))
    finally:
        src.close()
    assert frame.image.shape == want.shape
    assert np.abs(frame.image.astype(int) - want.astype(int)).mean() < 3
    assert (src.width, src.height) == (want.shape[1], want.shape[0])
