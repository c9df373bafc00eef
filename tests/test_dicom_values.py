"""DICOM header values that lie (issue 18, data loss 3-5 and 7): a frame count the pixel data does
not hold, a cine cut short, pixel spacings and frame times out of any sane range. Each is read as far
as it is true, refused in one line, or replaced by a stated default: never a huge allocation, a
traceback, a non-finite number in an output or a wall-clock timestamp."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

pydicom = pytest.importorskip("pydicom")

from test_dicom import region_item, scan, write_us  # noqa: E402 - the helpers that build real ultrasound DICOMs

from streamseg.inputs.dicom import DicomSource  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def edit(path: Path, **values) -> Path:
    """Rewrite attributes of a DICOM file written by write_us."""
    ds = pydicom.dcmread(path)
    for k, v in values.items():
        if v is None:
            delattr(ds, k)
        else:
            setattr(ds, k, v)
    ds.save_as(path)
    return path


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_a_dicom_claiming_2_31_frames_over_one_reads_its_one_frame_in_bounded_memory(tmp_path):
    """NumberOfFrames 2^31-1 over one frame of data built a per-frame time list first (22.7 GB, killed
    by the kernel); `calibrate --from` too. Checked against the pixel data before anything is sized."""
    dcm = edit(write_us(tmp_path / "huge.dcm", [scan(0)], frame_time_ms=50), NumberOfFrames=2**31 - 1)
    env = {**os.environ, "PYTHONPATH": str(REPO), "STREAMSEG_CONFIG_DIR": str(tmp_path / "cfg")}
    p = subprocess.run([sys.executable, "-m", "streamseg", "calibrate", "--from", str(dcm), "--depth-mm", "30",
                        "--probe", "p", "--preset", "q"], capture_output=True, text=True, env=env, timeout=120,
                       preexec_fn=_limit_memory)
    assert p.returncode == 0 and "Traceback" not in p.stderr + p.stdout, p.stderr
    src = subprocess.run([sys.executable, "-c", "import sys; from streamseg.inputs.dicom import DicomSource as S; "
                          "s = S(sys.argv[1]).open(); print(s.dicom.frames, len(s.dicom.pts), *s.stats.notes[:1])",
                          str(dcm)], capture_output=True, text=True, env=env, timeout=120, preexec_fn=_limit_memory)
    assert src.returncode == 0, src.stderr
    assert src.stdout.startswith("1 1 NumberOfFrames is 2147483647 but the pixel data holds 1 whole frame"), src.stdout


def test_a_native_cine_cut_short_decodes_its_intact_frames(tmp_path):
    """A cine whose file ends inside frame 3 of 5 decoded none of its frames ("no decodable frames")."""
    frames = [scan(i % 3)[:200, :240] for i in range(5)]
    whole = write_us(tmp_path / "cine.dcm", frames, frame_time_ms=40).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(whole[:len(whole) - 2 * 200 * 240 - 1000])
    src = DicomSource(str(cut)).open()
    got = list(src.frames())
    assert [f.pts for f in got] == pytest.approx([0.0, 0.04])
    assert (got[1].image[..., 0] == frames[1]).all()
    assert any("NumberOfFrames is 5 but the pixel data holds 2" in n for n in src.stats.notes)


def cli(args, env_extra=None, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    p = subprocess.run([sys.executable, "-m", "streamseg", *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=timeout)
    return p.returncode, p.stderr + p.stdout


@pytest.mark.parametrize("delta_cm", [float("inf"), float("nan"), 1e6, 1e-300, -0.006, 0.0])
def test_a_dicom_spacing_out_of_range_is_not_used(tmp_path, delta_cm):
    """PhysicalDeltaX/Y of inf gave "inf mm/px", csa_mm2=inf and Infinity in the summary JSON; 1e6 a CTS
    verdict "yes" at 8.6e17 mm²; 1e-300 0 mm² and "no". The range of --mm-per-px applies to it."""
    img = scan(0)
    dcm = write_us(tmp_path / "s.dcm", [img, img], regions=[region_item(0, 0, 599, 459, dx_cm=delta_cm)],
                   frame_time_ms=50)
    src = DicomSource(str(dcm)).open()
    assert src.dicom.mm_per_px is None
    assert "mm/px is outside [0.001, 10) mm per pixel" in src.dicom.spacing_problem


def test_cli_refuses_an_infinite_dicom_spacing_in_one_line(tmp_path, tiny_checkpoint):
    img = scan(0)
    dcm = write_us(tmp_path / "s.dcm", [img, img], regions=[region_item(0, 0, 599, 459, dx_cm=float("inf"))],
                   frame_time_ms=50)
    rc, text = cli(["file", dcm, "--csv", tmp_path / "o.csv", "--model", tiny_checkpoint, "--backend", "torch"])
    assert rc == 2 and "give --mm-per-px to measure anyway" in text and "Traceback" not in text, text
    assert not (tmp_path / "o.csv").exists()


def test_every_spacing_source_has_the_range_of_mm_per_px(tmp_path, monkeypatch):
    from streamseg.inputs.calibration import Calibration, check_profile, resolve, save_profile
    from streamseg.types import StreamsegError

    monkeypatch.setenv("STREAMSEG_CONFIG_DIR", str(tmp_path))
    for bad in (1e-300, 1e-5, float("inf"), 10.0):
        with pytest.raises(StreamsegError, match=r"outside \[0.001, 10\) mm per pixel"):
            resolve(mm_per_px=bad)
        with pytest.raises(StreamsegError, match="outside"):
            check_profile("p", {"mm_per_px": bad})
        with pytest.raises(StreamsegError, match="outside"):
            save_profile("p", bad)
        with pytest.raises(StreamsegError, match="outside"):
            Calibration(mm_per_px_value=bad, origin="the DICOM's ultrasound region 1").mm_per_px(468)
    with pytest.raises(StreamsegError, match="--depth-mm 0.01 over 468 px: 2.13675e-05 mm/px is outside"):
        Calibration(depth_mm=0.01).mm_per_px(468)
    assert Calibration(depth_mm=30).mm_per_px(468) == pytest.approx(30 / 468)
    rc, text = cli(["file", REPO / "streamseg" / "data" / "sample" / "demo.mp4", "--csv", tmp_path / "o.csv",
                    "--mm-per-px", "1e-300"])
    assert rc == 2 and "--mm-per-px 1e-300: must be within [0.001, 10)" in text, text


def test_no_non_finite_number_reaches_a_csv_or_json_output():
    """A one-pixel-thin mask has flattening inf: the CSV held "inf" and the JSONL `Infinity` (not JSON)."""
    import json

    import numpy as np

    from streamseg.files import json_text
    from streamseg.outputs.rows import result_row
    from streamseg.types import Detection, Frame, Measurement, Result

    m = Measurement(area_px=5, csa_mm2=0.02, perimeter_px=10.0, perimeter_mm=0.6, major_axis_px=5.0, minor_axis_px=0.0,
                    circularity=0.6, flattening=float("inf"))
    d = Detection(box=np.array([0, 0, 5, 1], np.float32), score=0.99, mask=np.ones((1, 5), bool), mask_score=1.0)
    row = result_row(Result(frame=Frame(np.zeros((4, 8, 3), np.uint8), 0, 0.0), detections=[d], measurement=m), 0.06, 0.5)
    assert row["flattening"] is None and row["csa_mm2"] == 0.02
    text = json_text({"median": float("nan"), "q": [float("inf"), np.float64("-inf"), 1.0]})
    assert json.loads(text) == {"median": None, "q": [None, None, 1.0]}


BAD_TIMES = {
    "FrameTime inf": dict(FrameTime="inf"), "FrameTime nan": dict(FrameTime="nan"),
    "FrameTime 1e300": dict(FrameTime="1e300"), "FrameTime -1e300": dict(FrameTime="-1e300"),
    "FrameTime 1e-300": dict(FrameTime="1e-300"), "FrameTime negative": dict(FrameTime="-40"),
    "vector inf": dict(FrameTime=None, FrameTimeVector=["0", "40", "inf"], FrameIncrementPointer=0x00181065),
    "vector nan": dict(FrameTime=None, FrameTimeVector=["0", "nan", "40"], FrameIncrementPointer=0x00181065),
    "vector zeros": dict(FrameTime=None, FrameTimeVector=["0", "0", "0"], FrameIncrementPointer=0x00181065),
    "CineRate 2^31-1": dict(FrameTime=None, CineRate=2**31 - 1),
    "no timing": dict(FrameTime=None),
}


def _untimed_cine(tmp_path, name, values) -> Path:
    dcm = write_us(tmp_path / f"{name.replace(' ', '_')}.dcm", [scan(i)[:120, :160] for i in range(3)], frame_time_ms=40)
    ds = pydicom.dcmread(dcm)
    with warnings.catch_warnings():  # pydicom warns that inf and nan are no valid DS: what this test writes
        warnings.simplefilter("ignore", UserWarning)
        for k, v in values.items():
            if v is None:
                if k in ds:
                    delattr(ds, k)
            elif k in ("FrameTime", "FrameTimeVector"):
                ds.add_new(0x00181063 if k == "FrameTime" else 0x00181065, "DS", v)
            else:
                setattr(ds, k, v)
        ds.save_as(dcm)
    return dcm


@pytest.mark.parametrize("name", BAD_TIMES)
def test_bad_dicom_frame_times_fall_back_to_fps_or_a_stated_default(tmp_path, name):
    """FrameTime of inf/NaN/±1e300/1e-300/negative, a FrameTimeVector with inf/NaN/zeros: tracebacks or
    wall-clock timestamps; CineRate 2^31-1: every pts 0. Now --fps, else 25 fps, with a warning."""
    dcm = _untimed_cine(tmp_path, name, BAD_TIMES[name])
    src = DicomSource(str(dcm), fps=10).open()
    assert [f.pts for f in src.frames()] == pytest.approx([0.0, 0.1, 0.2]) and src.fps == 10
    assert any("frames timed at 10 fps (from --fps)" in n for n in src.stats.notes), src.stats.notes
    src = DicomSource(str(dcm)).open()
    assert [f.pts for f in src.frames()] == pytest.approx([0.0, 0.04, 0.08]) and src.fps == 25
    assert any("frames timed at 25 fps (the default; give --fps to set it)" in n for n in src.stats.notes)
