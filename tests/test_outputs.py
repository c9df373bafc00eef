"""What a sonographer sees and keeps (issue 12): the raw input video (--save-input), the progress bar
and the closing list of files, the summary JSON and CSA plot in the all-or-none commit, the plot's
labels and units, the superscript ² in the overlay, and the HUD's wording in file and live mode.

A stand-in backend (a fixed ellipse as the nerve) keeps the pipeline runs quick; the frames are the
bundled real demo clip. The saved input is then run by the real CLI on a real checkpoint."""
from __future__ import annotations

import io
import os
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from streamseg.outputs import overlay
from streamseg.app.cli import app
from streamseg.outputs.overlay import Style, draw, hud_text
from streamseg.outputs.progress import files_written, progress_bar
from streamseg.app.runner import Options, run
from streamseg.analysis.summary import ScanSummary
from streamseg.types import Detection, Frame, Hud, Inference, Measurement, Result, StreamsegError, Thresholds


class EllipseBackend:
    """A `types.Backend` that finds one nerve, a fixed ellipse, in every frame."""

    name, precision = "ellipse", "fp32"
    roi_sizes: tuple[int, ...] = ()  # full frames only: tracking never asks for a window
    image_size = 512
    thresholds = Thresholds()  # the runtime's defaults, as a checkpoint without its own

    def describe(self) -> str:
        return "ellipse stand-in"

    def prepare_windows(self) -> None:
        pass

    def infer(self, image, roi=None):
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.ellipse(mask, (image.shape[1] // 3, image.shape[0] // 3), (40, 22), 0, 0, 360, 1, -1)
        return Inference([Detection(np.array([0, 0, 10, 10], np.float32), 0.99, mask.astype(bool), 1.0)], {"model": 0.001})


def probe(path):
    """(decoded frame count, sorted pts in seconds) of the first video stream."""
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        pts = sorted(Fraction(p.pts) * st.time_base for p in c.demux(st) if p.pts is not None)
    with av.open(str(path)) as c:
        n = sum(1 for _ in c.decode(video=0))
    return n, pts


def first_frame(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="bgr24")


def scan(sample_dir, tmp_path, **kw) -> Options:
    return Options(input=str(sample_dir / "demo.mp4"), live=False, max_frames=6, mm_per_px=0.06, **kw)


# --- 1. --save-input -------------------------------------------------------------------------------
def test_save_input_matches_the_overlay_and_runs_again(sample_dir, tiny_checkpoint, tmp_path):
    out, raw = tmp_path / "o.mp4", tmp_path / "raw.mp4"
    report = run(scan(sample_dir, tmp_path, out=out, save_input=raw), log=lambda m: None, backend=EllipseBackend())
    n, pts = probe(out)
    assert n == 6 and probe(raw) == (n, pts)  # same frame count and timestamps as the overlay
    assert str(raw) in report.written
    src = first_frame(sample_dir / "demo.mp4")
    diff_raw = np.abs(first_frame(raw).astype(int) - src).mean()
    diff_overlay = np.abs(first_frame(out).astype(int) - src).mean()
    # the input as it came in (one H.264 encode: mean |diff| 2.6 measured), not the overlay (8.4 measured)
    assert diff_raw < 4.0 and diff_overlay > 2 * diff_raw
    r = CliRunner().invoke(app, ["file", str(raw), "--csv", str(tmp_path / "again.csv"), "--model", str(tiny_checkpoint),
                                 "--backend", "torch", "--max-frames", "3", "--no-show"])
    assert r.exit_code == 0, r.output
    assert len((tmp_path / "again.csv").read_text().splitlines()) == 1 + 3


@pytest.mark.parametrize("other", ["input", "--out", "--csv"])
def test_save_input_refuses_a_path_in_use(other, sample_dir, tmp_path):
    clip = sample_dir / "demo.mp4"
    kw = {"input": dict(save_input=clip), "--out": dict(out=tmp_path / "a.mp4", save_input=tmp_path / "a.mp4"),
          "--csv": dict(csv=tmp_path / "a.mp4", save_input=tmp_path / "./a.mp4")}[other]
    with pytest.raises(StreamsegError, match="--save-input"):
        Options(input=str(clip), live=False, **kw)
    with pytest.raises(StreamsegError, match=r"--save-input must end in \.mp4"):
        Options(input=str(clip), live=False, save_input=tmp_path / "raw.csv")


def test_save_input_on_the_cli_is_refused_in_one_line(sample_dir):
    clip = sample_dir / "demo.mp4"
    r = CliRunner().invoke(app, ["file", str(clip), "--save-input", str(clip), "--no-show"])
    assert r.exit_code == 2 and "would overwrite the input" in r.output and "Traceback" not in r.output


# --- 3. summary and plot commit with the others -----------------------------------------------------
def test_a_failed_run_leaves_the_earlier_summary_and_plot(sample_dir, tmp_path, monkeypatch):
    out = tmp_path / "o.mp4"
    outputs = [out, tmp_path / "o.csv", tmp_path / "o.summary.json", tmp_path / "o.csa.png"]
    run(scan(sample_dir, tmp_path, out=out, csv=outputs[1]), log=lambda m: None, backend=EllipseBackend())
    before = [p.read_bytes() for p in outputs]

    def full_disk(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ScanSummary, "write_plot", full_disk)
    with pytest.raises(StreamsegError, match="o.csa.png: cannot write"):
        run(scan(sample_dir, tmp_path, out=out, csv=outputs[1], cts_cutoff_mm2=20.0), log=lambda m: None,
            backend=EllipseBackend())
    assert [p.read_bytes() for p in outputs] == before  # the summary JSON too: all or none
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in outputs)  # no temp file left


# --- 2. progress, and the list of files written ----------------------------------------------------
@pytest.mark.parametrize("terminal", [True, False])
def test_progress_bar_on_a_terminal_only(terminal, sample_dir, tmp_path):
    buf = io.StringIO()
    bar = progress_bar(Console(file=buf, force_terminal=terminal, width=150, color_system=None))
    with bar:
        report = run(scan(sample_dir, tmp_path, csv=tmp_path / "o.csv"), log=lambda m: None,
                     backend=EllipseBackend(), progress=bar)
    assert report.csa.frames_processed == 6
    text = buf.getvalue()
    if terminal:
        assert "6/6 frames" in text and "frames/s" in text and "ETA" in text
    else:
        assert text == ""  # logs get no bar


def test_the_run_lists_every_file_it_wrote_with_sizes(sample_dir, tmp_path):
    logged = []
    report = run(scan(sample_dir, tmp_path, out=tmp_path / "o.mp4", save_input=tmp_path / "raw.mp4",
                      csv=tmp_path / "o.csv", jsonl=tmp_path / "o.jsonl"), log=logged.append, backend=EllipseBackend())
    names = ["o.mp4", "raw.mp4", "o.csv", "o.jsonl", "o.summary.json", "o.csa.png"]
    assert [os.path.basename(p) for p in report.written] == names
    listing = logged[-1]
    assert listing.startswith("wrote 6 files:") and not any(m.startswith("wrote ") for m in logged[:-1])
    for p in report.written:
        size = os.path.getsize(p)
        assert f"{p}  (" in listing and size > 0
    assert "B)" in files_written([tmp_path / "o.csv"])


# --- 4. the plot, and the ² in the overlay ----------------------------------------------------------
def summary_with(mm_per_px):
    s = ScanSummary(mm_per_px, cts_cutoff_mm2=10.0)
    img = np.zeros((200, 200, 3), np.uint8)
    for i, score in enumerate([0.99, 0.99, 0.5, 0.99]):
        m = Measurement(area_px=3000.0 + i, csa_mm2=None if mm_per_px is None else 10.8 + i, perimeter_px=1.0,
                        perimeter_mm=None, major_axis_px=1.0, minor_axis_px=1.0, circularity=1.0, flattening=1.0)
        m.csa_mm2_stable, m.area_px_stable = m.csa_mm2, m.area_px
        det = Detection(np.zeros(4, np.float32), score, np.ones((200, 200), bool), 1.0)
        s.write(Result(Frame(img, i, pts=5.0 + 0.05 * i), [det], m))
    return s


def test_csa_plot_has_labels_units_legend_and_the_cut_off(tmp_path):
    ax = summary_with(0.06).figure().axes[0]
    assert ax.get_xlabel() == "time (s)" and ax.get_ylabel() == "CSA (mm²)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "CTS cut-off 10 mm²" in legend and any("stabilised" in t for t in legend)
    assert ax.get_xlim()[0] <= 0.0 < 0.15 <= ax.get_xlim()[1]  # time from the first frame, in s
    ax = summary_with(None).figure().axes[0]
    assert ax.get_ylabel() == "area (px², uncalibrated)"
    assert not any("cut-off" in t.get_text() for t in ax.get_legend().get_texts())  # no mm² without calibration
    png = summary_with(0.06).plot(tmp_path / "p.png")
    img = cv2.imread(str(png))
    assert img.shape == (360, 900, 3) and img.std() > 10


def test_units_are_written_with_a_superscript_two(sample_dir, monkeypatch):
    image = cv2.imread(str(next((sample_dir / "images").glob("*.png"))))
    drawn = []
    real = overlay._text
    monkeypatch.setattr(overlay, "_text", lambda img, s, *a, **k: (drawn.append(s), real(img, s, *a, **k))[1])
    r = Result(Frame(image, 0), EllipseBackend().infer(image).detections)
    from streamseg.analysis.measure import Analyser
    r.measurement = Analyser(0.06)(r.detections)
    draw(r, Style(calibrated=True), Hud())
    draw(r, Style(calibrated=False), Hud())
    assert any("mm²" in s for s in drawn) and any("px²" in s for s in drawn)
    assert not any("^" in s for s in drawn)

    # the "2" is drawn small and raised, right after the unit: in the upper half of the line
    a, b = np.zeros((60, 200, 3), np.uint8), np.zeros((60, 200, 3), np.uint8)
    overlay._text(a, "mm²", (10, 40), 1.0, (255, 255, 255), 2)
    overlay._text(b, "mm", (10, 40), 1.0, (255, 255, 255), 2)
    w_mm, h, _ = overlay.text_size("mm", 1.0, 2)
    right = (slice(None), slice(10 + w_mm, None))
    assert b[right].max() == 0 and a[right].max() == 255
    ys = np.nonzero(a[right].max(axis=(1, 2)))[0]
    assert ys.max() < 40 - h // 3  # it ends well above the baseline: a superscript


# --- 5. the HUD's words ------------------------------------------------------------------------------
def test_hud_shows_lag_live_and_processing_speed_for_a_file():
    hud = Hud(source_fps=20.0, processed_fps=4.2, model_ms=230.0, end_to_end_ms=2359.0, dropped=3)
    live = hud_text(hud, live=True)
    assert "lag 2359 ms" in live and "model 230 ms" in live and "drop 3" in live and "e2e" not in live
    file = hud_text(hud, live=False)
    assert file == "proc 4.2 fps | model 230 ms | src 20.0 fps"  # no queueing time passed off as lag
    assert "lag" not in file and "2359" not in file and "drop" not in file


@pytest.mark.parametrize("terminal", [True, False])
def test_eval_shows_images_done_on_a_terminal_only(terminal, sample_dir, tiny_checkpoint, monkeypatch):
    import streamseg.app.cli as cli

    buf = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buf, force_terminal=terminal, width=150, color_system=None))
    r = CliRunner().invoke(app, ["eval", "--data", str(sample_dir), "--model", str(tiny_checkpoint)])
    assert r.exit_code == 0, r.output
    n = len(list((sample_dir / "images").glob("*.png")))
    assert (f"{n}/{n} images" in buf.getvalue()) is terminal and "images/s" not in r.output


def test_the_runtime_loads_matplotlib_only_to_draw_the_plot():
    import subprocess
    import sys

    code = ("import sys, streamseg.app.runner, streamseg.outputs.video, streamseg.outputs.rows, streamseg.outputs.display, streamseg.analysis.summary, streamseg.outputs.overlay, streamseg.outputs.progress; "
            "print('matplotlib' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_live_save_input_matches_the_overlay(sample_dir, tmp_path):
    """Live (a real ffmpeg serving the demo clip over TCP): the raw video has the overlay's frames
    and timestamps (the capture clock)."""
    from test_live_stream import FFMPEG, Server, free_port

    if FFMPEG is None:
        pytest.skip("ffmpeg not installed")
    port = free_port()
    server = Server(sample_dir / "demo.mp4", port)
    try:
        out, raw = tmp_path / "o.mp4", tmp_path / "raw.mp4"
        run(Options(input=f"tcp://127.0.0.1:{port}", live=True, max_frames=12, out=out, save_input=raw),
            log=lambda m: None, backend=EllipseBackend())
    finally:
        server.stop()
    n, pts = probe(out)
    assert n == 12 and probe(raw) == (n, pts)
