"""Sources: PyAV files keep count and timestamps; crop and pixel formats are normalised; bad
input is one clear StreamsegError; corrupt or truncated data decodes what it can."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from fractions import Fraction

import av
import numpy as np
import pytest

from streamseg.inputs.sources import V4L2Source, kind_of, open_source
from streamseg.types import StreamsegError

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")


def ffmpeg(*args):
    subprocess.run([FFMPEG, "-v", "error", "-y", *map(str, args)], check=True, timeout=60)


def test_kind_of():
    assert kind_of("/dev/video0") == kind_of("2") == "v4l2"
    assert kind_of("rtsp://cam/stream") == kind_of("tcp://127.0.0.1:5000") == kind_of("udp://@:1234") == "url"
    assert kind_of("clip.mp4") == "file"


def test_file_keeps_every_frame_and_its_pts(video_dir):
    path = video_dir / "Reg_Image_181206_crop.mp4"
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        truth = [float(f.pts * f.time_base) for f in c.decode(st)]
    src = open_source(str(path), live=False)
    assert (src.width, src.height) == (234, 234)
    assert src.fps == pytest.approx(19.04, abs=0.01) and src.rate == Fraction(495, 26)
    frames = list(src.frames())
    assert len(frames) == len(truth) == 495 == src.stats.expected_frames
    assert [f.index for f in frames] == list(range(495))
    assert [f.pts for f in frames] == truth
    assert all(f.image.dtype == np.uint8 and f.image.shape == (234, 234, 3) for f in frames[:5])


def test_crop_is_applied(sample_dir):
    src = open_source(str(sample_dir / "demo.mp4"), live=False, crop=(100, 50, 400, 300))
    full = open_source(str(sample_dir / "demo.mp4"), live=False)
    stop = threading.Event()
    a, b = next(src.frames(stop)), next(full.frames(stop))
    assert a.image.shape == (300, 400, 3)
    assert np.array_equal(a.image, b.image[50:350, 100:500])


@needs_ffmpeg
def test_grey_16bit_is_normalised_to_bgr8(tmp_path):
    clip = tmp_path / "grey16.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10:duration=0.5", "-pix_fmt", "gray16le", "-c:v", "ffv1", clip)
    with av.open(str(clip)) as c:
        f0 = next(c.decode(video=0))
        assert f0.format.name.startswith("gray16")
        g16 = f0.to_ndarray()
    frames = list(open_source(str(clip), live=False).frames())
    assert len(frames) == 5
    img = frames[0].image
    assert img.dtype == np.uint8 and img.shape == (64, 96, 3)
    assert np.array_equal(img[..., 0], img[..., 2])  # grey stays grey in all three channels
    assert np.abs(img[..., 0].astype(int) - (g16 >> 8).astype(int)).max() <= 2


@pytest.mark.parametrize("case,msg", [
    ("missing", "no such file"), ("text", "not a video"), ("folder", "folder"),
    ("crop", "outside"), ("url", "unreachable"), ("devnull", "not a video capture device"), ("nodev", "no such capture device"),
])
def test_bad_input_is_one_clear_error(case, msg, tmp_path, sample_dir):
    spec, crop = {
        "missing": (tmp_path / "nope.mp4", None),
        "text": (tmp_path / "notes.mp4", None),
        "folder": (tmp_path, None),
        "crop": (sample_dir / "demo.mp4", (500, 400, 200, 100)),
        "url": ("tcp://127.0.0.1:9?timeout=1000000", None),  # port 9 (discard): nothing listens here
        "devnull": ("/dev/null", None),
        "nodev": ("/dev/video97", None),
    }[case]
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 50)
    with pytest.raises(StreamsegError, match=msg) as e:
        if case == "devnull":  # a character device, but not a V4L2 capture device
            V4L2Source("/dev/null").open()
        else:
            open_source(str(spec), live=case in ("url",), crop=crop, open_timeout_s=2)
    assert "\n" not in str(e.value)


@needs_ffmpeg
def test_tiny_frames_are_refused(tmp_path):
    clip = tmp_path / "tiny.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=16x16:rate=5:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", clip)
    with pytest.raises(StreamsegError, match="16x16"):
        open_source(str(clip), live=False)


@needs_ffmpeg
def test_truncated_and_corrupt_video_decode_what_they_can(tmp_path, sample_dir):
    ts = tmp_path / "demo.ts"
    ffmpeg("-i", sample_dir / "demo.mp4", "-c", "copy", "-f", "mpegts", ts)
    data = ts.read_bytes()
    full = len(list(open_source(str(ts), live=False).frames()))
    assert full == 350

    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2])
    n_cut = len(list(open_source(str(cut), live=False).frames()))
    assert 100 < n_cut < 250

    bad = bytearray(data)
    rng = np.random.default_rng(0)
    for start in (len(data) // 4, len(data) // 2, 3 * len(data) // 4):
        bad[start:start + 20000] = rng.integers(0, 256, 20000, dtype=np.uint8).tobytes()
    corrupt = tmp_path / "corrupt.ts"
    corrupt.write_bytes(bytes(bad))
    src = open_source(str(corrupt), live=False)
    frames = list(src.frames())
    assert 200 < len(frames) <= 350  # most of it survives; no exception escapes
    assert all(f.image.shape == (468, 606, 3) for f in frames)


def test_a_file_played_live_ends_at_its_end(sample_dir):
    events = []
    src = open_source(str(sample_dir / "demo.mp4"), live=True, on_event=lambda kind, msg: events.append(kind))
    assert sum(1 for _ in src.frames()) == 350
    assert events == [] and src.stats.signal_lost == 0


@pytest.fixture(scope="module")
def testsrc(tmp_path_factory):
    """make(name, frames, *extra): a real clip of ffmpeg's testsrc (320x240 at 25 fps, H.264)."""
    d = tmp_path_factory.mktemp("testsrc")

    def make(name, frames, *extra):
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-frames:v", frames, "-c:v", "libx264",
               "-preset", "ultrafast", *extra, d / name)
        return d / name

    return make


@needs_ffmpeg
@pytest.mark.parametrize("name", ["x.mkv", "x.ts", "x.mp4"])
def test_every_container_says_how_many_frames_it_holds(testsrc, name):
    """Defect 7: only MP4 stored a frame count; MKV and TS now give duration x rate (one frame slack)."""
    src = open_source(str(testsrc(name, 60, "-g", "10")), live=False)
    assert sum(1 for _ in src.frames()) == 60
    assert src.stats.expected_frames == 60
    assert src.stats.expected_slack == (0 if name == "x.mp4" else 1)


@needs_ffmpeg
@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_a_damaged_mkv_reports_the_frames_it_should_have(testsrc, tmp_path, how):
    """Defect 7: an MKV cut short or damaged mid-file decoded 30 or 49 of its 60 frames and nothing
    said how many it should have held (expected_frames None)."""
    data = bytearray(testsrc("whole.mkv", 60, "-g", "10").read_bytes())
    if how == "truncated":
        data = data[: len(data) * 6 // 10]
    else:
        data[len(data) // 3: len(data) // 3 + 4000] = bytes(4000)
    damaged = tmp_path / f"{how}.mkv"
    damaged.write_bytes(bytes(data))
    src = open_source(str(damaged), live=False)
    n = sum(1 for _ in src.frames())
    assert 0 < n < 55
    assert src.stats.expected_frames == 60 and n + src.stats.expected_slack < 60


@needs_ffmpeg
def test_a_raw_h264_stream_is_timed_by_its_rate_not_the_wall_clock(testsrc):
    """Defect 8: an Annex-B .h264 has no timestamps; frame n is at n / 25 s (the stream's rate), or at
    n / --fps when given. Before, pts were None and the output video used the wall clock."""
    clip = testsrc("x.h264", 40)
    src = open_source(str(clip), live=False)
    pts = [f.pts for f in src.frames()]
    assert len(pts) == 40 and pts[0] == 0.0 and pts[-1] == pytest.approx(39 / 25)
    src = open_source(str(clip), live=False, fps=10)
    pts = [f.pts for f in src.frames()]
    assert pts[-1] == pytest.approx(3.9) and src.fps == 10 and src.rate == 10


def test_v4l2_reads_are_bounded_by_the_read_timeout(monkeypatch):
    """Defect 2b (by design: no capture device here): OpenCV's V4L2 backend waits up to 10 s per
    frame unless OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT says otherwise; the source sets it (and one read
    attempt) from its read timeout before its first read, keeping what the user set."""
    monkeypatch.delenv("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", raising=False)
    monkeypatch.delenv("OPENCV_VIDEOIO_V4L_READ_ATTEMPTS", raising=False)
    with pytest.raises(StreamsegError, match="no such capture device"):
        open_source("/dev/video97", live=True, read_timeout_s=2.5)
    assert os.environ["OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT"] == "3"
    assert os.environ["OPENCV_VIDEOIO_V4L_READ_ATTEMPTS"] == "1"
    monkeypatch.setenv("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", "7")
    with pytest.raises(StreamsegError):
        V4L2Source("/dev/null", read_timeout_s=1).open()
    assert os.environ["OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT"] == "7"
