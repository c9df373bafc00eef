"""DICOM header values that lie (issue 18, data loss 3-5 and 7): a frame count the pixel data does
not hold, a cine cut short, pixel spacings and frame times out of any sane range. Each is read as far
as it is true, refused in one line, or replaced by a stated default: never a huge allocation, a
traceback, a non-finite number in an output or a wall-clock timestamp."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

pydicom = pytest.importorskip("pydicom")

from test_dicom import region_item, scan, write_us  # noqa: E402 - the helpers that build real ultrasound DICOMs

from streamseg.dicom import DicomSource  # noqa: E402

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
    p = subprocess.run([sys.executable, "-m", "streamseg.cli", "calibrate", "--from", str(dcm), "--depth-mm", "30",
                        "--probe", "p", "--preset", "q"], capture_output=True, text=True, env=env, timeout=120,
                       preexec_fn=_limit_memory)
    assert p.returncode == 0 and "Traceback" not in p.stderr + p.stdout, p.stderr
    src = subprocess.run([sys.executable, "-c", "import sys; from streamseg.dicom import DicomSource as S; "
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
