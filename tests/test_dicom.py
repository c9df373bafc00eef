"""DICOM input (issue 12): real files from pydicom-data / pydicom's own test files, and multi-frame
ultrasound cines written here with pydicom from the bundled real wrist scans."""
from __future__ import annotations

import csv
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamseg.types import StreamsegError

REPO = Path(__file__).resolve().parents[1]
SAMPLE_IMAGES = sorted((REPO / "streamseg" / "data" / "sample" / "images").glob("*.png"))
IN_CI = os.environ.get("CI", "").lower() == "true"


def _need(module: str):
    """Skip without the package, except under CI, where the test extra installs it."""
    if IN_CI:
        return importlib.import_module(module)
    return pytest.importorskip(module)


pydicom = _need("pydicom")


def data_file(name: str) -> str:
    """A file of pydicom-data (or pydicom's own test files), never downloaded."""
    _need("data_store")  # the pydicom-data package
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} not found by pydicom.data.get_testdata_file (is pydicom-data installed?)")
        pytest.skip(f"{name} not found by pydicom.data.get_testdata_file")
    return path


def region_item(x0, y0, x1, y1, dx_cm=0.006, dy_cm=None, units=3, spatial=1, data_type=1):
    from pydicom.dataset import Dataset

    r = Dataset()
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = x0, y0, x1, y1
    r.RegionSpatialFormat, r.RegionDataType, r.RegionFlags = spatial, data_type, 0
    r.PhysicalUnitsXDirection = r.PhysicalUnitsYDirection = units
    r.PhysicalDeltaX, r.PhysicalDeltaY = dx_cm, dx_cm if dy_cm is None else dy_cm
    return r


def write_us(path, frames, regions=(), frame_time_ms=None, frame_time_vector=None, cine_rate=None,
             photometric=None, bits=8, window=None, pixel_spacing=None, rle=False) -> Path:
    """A valid (multi-frame) ultrasound DICOM: frames are H×W (grey) or H×W×3 (RGB) arrays."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

    arr = np.stack(frames)
    n, rgb = len(frames), arr.ndim == 4
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1" if n > 1 else "1.2.840.10008.5.1.4.1.1.6.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = "US", "Test^Wrist", "TEST"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = arr.shape[1:3]
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = photometric or ("RGB" if rgb else "MONOCHROME2")
    if rgb:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    if n > 1:
        ds.NumberOfFrames = n
        ds.FrameIncrementPointer = 0x00181065 if frame_time_vector is not None else 0x00181063
    if frame_time_ms is not None:
        ds.FrameTime = frame_time_ms
    if frame_time_vector is not None:
        ds.FrameTimeVector = list(frame_time_vector)
    if cine_rate is not None:
        ds.CineRate = cine_rate
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    if regions:
        ds.SequenceOfUltrasoundRegions = list(regions)
    arr = arr.astype(np.uint8 if bits <= 8 else np.uint16)
    ds.PixelData = arr.tobytes()
    if rle:
        ds.compress(RLELossless, arr if n > 1 else arr[0])
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def scan(i: int = 0, grey: bool = True) -> np.ndarray:
    """A bundled real wrist scan (606x468): grey H×W, or RGB H×W×3."""
    img = cv2.imread(str(SAMPLE_IMAGES[i]), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if grey else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def on_canvas(img: np.ndarray, x: int = 40, y: int = 50, size=(680, 560)) -> np.ndarray:
    """The scan inside a larger machine screen (a header bar, a side label) at x, y."""
    canvas = np.zeros((size[1], size[0]) + img.shape[2:], np.uint8)
    canvas[:20] = 200  # header text bar outside the image region
    canvas[size[1] - 30:, 10:90] = 255
    canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
    return canvas


def region_of(img, x=40, y=50, **kw):
    return region_item(x, y, x + img.shape[1] - 1, y + img.shape[0] - 1, **kw)


# --- the module itself -------------------------------------------------------------------------------
def test_module_imports_without_pydicom_or_torch_and_says_what_to_install():
    """streamseg.inputs.dicom loaded on its own (the package's __init__ imports the model, so it is bypassed):
    no torch, no pydicom at import; using it without pydicom gives the one line to act on."""
    code = ("import sys, types\n"
            "sys.modules['pydicom'] = None\n"
            f"pkg = types.ModuleType('streamseg'); pkg.__path__ = [{str(REPO / 'streamseg')!r}]\n"
            "sys.modules['streamseg'] = pkg\n"
            "import streamseg.inputs.dicom as d\n"
            "from streamseg.types import StreamsegError\n"
            "assert d.is_dicom('x.dcm') and not d.is_dicom('x.mp4')\n"
            "assert not {'torch', 'torchvision', 'cv2', 'av'} & set(sys.modules), 'heavy imports'\n"
            "try:\n    d.read_dicom('x.dcm')\nexcept StreamsegError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pydicom is not installed (pip install 'streamseg[dicom]')"


def test_is_dicom_by_magic_or_suffix(tmp_path):
    from streamseg.inputs.dicom import is_dicom

    f = write_us(tmp_path / "a.dcm", [scan()])
    renamed = tmp_path / "no_suffix"
    renamed.write_bytes(f.read_bytes())
    assert is_dicom(f) and is_dicom(renamed) and is_dicom(tmp_path / "missing.DCM")
    assert not is_dicom(SAMPLE_IMAGES[0]) and not is_dicom(REPO / "streamseg" / "data" / "sample" / "demo.mp4")
    assert not is_dicom(tmp_path / "missing.mp4") and not is_dicom(tmp_path)
    os.mkfifo(tmp_path / "pipe")
    assert not is_dicom(tmp_path / "pipe")  # returns at once, without opening it


# --- real files ----------------------------------------------------------------------------------------
def test_aloka_palette_regions_spacing_and_crop():
    """gdcm-US-ALOKA-16: 16-bit palette colour, two equal 2D tissue regions and a grey bar region."""
    from streamseg.inputs.dicom import read_dicom

    info, frames = read_dicom(data_file("gdcm-US-ALOKA-16.dcm"))
    img = next(frames)
    assert info.mm_per_px == pytest.approx(0.383, abs=5e-4) and info.spacing_problem is None
    assert info.crop == (32, 24, 304, 392)  # region 1: MinX0..MaxX1 = 32..335, MinY0..MaxY1 = 24..415 (inclusive)
    assert info.region.startswith("region 1 (2D tissue")
    assert any("2 tissue regions" in n for n in info.notes)
    assert img.shape == (392, 304, 3) and img.dtype == np.uint8 and (info.width, info.height) == (304, 392)
    assert info.frames == 1 and info.pts == [0.0] and info.fps is None
    full = next(read_dicom(data_file("gdcm-US-ALOKA-16.dcm"), use_regions=False)[1])
    assert full.shape == (480, 640, 3) and np.array_equal(full[24:416, 32:336], img)
    b, g, r = (full[..., c].astype(int) for c in range(3))
    assert ((g > r + 100) & (g > b + 100)).sum() > 50  # the green depth markers come out green
    assert 15 < img.mean() < 120  # a real image, not black or saturated


def test_rgb_uncompressed_and_jpeg2000_agree():
    from streamseg.inputs.dicom import read_dicom

    info_u, fu = read_dicom(data_file("US1_UNCR.dcm"))
    info_j, fj = read_dicom(data_file("US1_J2KR.dcm"))
    a, b = next(fu), next(fj)
    assert a.shape == b.shape == (480, 640, 3) and a.dtype == b.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 0.5  # J2K lossless (YBR_RCT)
    assert info_u.mm_per_px is None and info_u.crop is None  # no regions in these files
    lossy = next(read_dicom(data_file("US1_J2KI.dcm"))[1])
    assert np.abs(a.astype(int) - lossy.astype(int)).mean() < 3
    ref = pydicom.dcmread(data_file("US1_UNCR.dcm")).pixel_array  # RGB
    assert np.array_equal(a, ref[..., ::-1])  # BGR out


@pytest.mark.parametrize("name", [
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL
    "SC_rgb_dcmtk_+eb+cy+s2.dcm",  # JPEG baseline, YBR_FULL_422
    "SC_ybr_full_uncompressed.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless
    "SC_rgb_gdcm2k_uncompressed.dcm",
    "SC_rgb_16bit.dcm",
])
def test_colour_spaces_and_transfer_syntaxes_match_the_rgb_original(name):
    from streamseg.inputs.dicom import read_dicom

    ref = next(read_dicom(data_file("SC_rgb.dcm"))[1]).astype(int)
    img = next(read_dicom(data_file(name))[1]).astype(int)
    assert img.shape == ref.shape == (100, 100, 3)
    assert np.abs(img - ref).mean() < 3
    assert ref[5, 50, 2] > 200 and ref[5, 50, 0] < 50  # top stripe is red: BGR channel 2


def test_palette_8bit_without_preamble_and_greyscale_16bit():
    from streamseg.inputs.dicom import read_dicom

    face = next(read_dicom(data_file("OT-PAL-8-face.dcm"))[1])  # no preamble: read by its .dcm name
    assert face.shape == (480, 640, 3) and 60 < face.mean() < 160
    info, frames = read_dicom(data_file("emri_small_RLE.dcm"))  # 16-bit MONOCHROME2, RLE, 10 frames
    imgs = list(frames)
    assert len(imgs) == info.frames == 10 and imgs[0].shape == (64, 64, 3)
    assert imgs[0].min() >= 0 and imgs[0].max() > 200  # min-max to 8 bits
    assert any("no frame timing" in n and "timed at 25 fps" in n for n in info.notes)  # issue 18: a stated default
    assert info.pts == pytest.approx([i / 25 for i in range(10)])


# --- generated cines -------------------------------------------------------------------------------------
def test_grey_cine_frame_time_region_crop(tmp_path):
    from streamseg.inputs.dicom import read_dicom

    imgs = [np.roll(scan(), k, axis=1) for k in range(5)]
    f = write_us(tmp_path / "cine.dcm", [on_canvas(i) for i in imgs], [region_of(imgs[0], dx_cm=0.0062)],
                 frame_time_ms=33.3333)
    info, frames = read_dicom(f)
    out = list(frames)
    assert info.frames == len(out) == 5 and info.fps == pytest.approx(30.0, rel=1e-4)
    assert info.pts == pytest.approx([0, 0.0333333, 0.0666667, 0.1, 0.1333333], abs=1e-6)
    assert info.mm_per_px == pytest.approx(0.062) and info.crop == (40, 50, 606, 468)
    for got, want in zip(out, imgs):
        assert got.shape == (468, 606, 3) and np.array_equal(got[..., 0], want) and np.array_equal(got[..., 2], want)


def test_rgb_cine_rle_and_frame_time_vector(tmp_path):
    from streamseg.inputs.dicom import read_dicom

    imgs = [scan(i, grey=False) for i in range(4)]
    f = write_us(tmp_path / "rgb.dcm", [on_canvas(i) for i in imgs], [region_of(imgs[0])],
                 frame_time_vector=[0, 40, 60, 40], rle=True)
    assert pydicom.dcmread(f).file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    info, frames = read_dicom(f)
    out = list(frames)
    assert info.pts == pytest.approx([0, 0.04, 0.10, 0.14]) and info.fps == pytest.approx(3 / 0.14)
    for got, want in zip(out, imgs):
        assert np.array_equal(got, want[..., ::-1])


def test_cine_rate_and_monochrome1(tmp_path):
    from streamseg.inputs.dicom import read_dicom

    img = scan()
    info, frames = read_dicom(write_us(tmp_path / "m1.dcm", [img, img, img], cine_rate=25, photometric="MONOCHROME1"))
    assert info.pts == pytest.approx([0, 0.04, 0.08]) and info.fps == 25
    assert np.array_equal(next(frames)[..., 1], 255 - img)


def test_16bit_grey_uses_the_window(tmp_path):
    from streamseg.inputs.dicom import read_dicom

    ramp = np.tile(np.linspace(0, 4095, 256).astype(np.uint16), (64, 1))
    f = write_us(tmp_path / "w.dcm", [ramp], bits=12, window=(2048, 1024))
    out = next(read_dicom(f)[1])[..., 0].astype(int)
    col = lambda v: int(np.argmin(np.abs(ramp[0].astype(int) - v)))  # noqa: E731
    assert out[0, col(1000)] == 0 and out[0, col(3100)] == 255 and abs(out[0, col(2048)] - 128) <= 2
    f2 = write_us(tmp_path / "mm.dcm", [ramp // 4 + 100], bits=12)  # no window: min-max to 0..255
    out2 = next(read_dicom(f2)[1])[..., 0]
    assert out2.min() == 0 and out2.max() == 255


def test_non_cm_and_non_tissue_regions_are_refused_in_one_line(tmp_path):
    from streamseg.inputs.dicom import read_dicom

    img = scan()
    bad_units = write_us(tmp_path / "units.dcm", [img], [region_of(img, units=0)])
    with pytest.raises(StreamsegError) as e:
        read_dicom(bad_units)
    assert "cm units" in str(e.value) and "units none/none" in str(e.value) and "\n" not in str(e.value)
    doppler = write_us(tmp_path / "doppler.dcm", [img], [region_of(img, data_type=3, spatial=3)])
    with pytest.raises(StreamsegError, match="no 2D tissue"):
        read_dicom(doppler)
    # a usable region beside an unusable one is chosen, and the crop follows it
    both = write_us(tmp_path / "both.dcm", [on_canvas(img)], [region_item(0, 0, 679, 19, units=0),
                                                             region_of(img, dx_cm=0.005)])
    info, _ = read_dicom(both)
    assert info.mm_per_px == pytest.approx(0.05) and info.crop == (40, 50, 606, 468)


def test_non_square_pixels_and_pixel_spacing_without_regions(tmp_path):
    from streamseg.inputs.dicom import read_dicom

    img = scan()
    info, _ = read_dicom(write_us(tmp_path / "aniso.dcm", [img], [region_of(img, x=0, y=0, dx_cm=0.006, dy_cm=0.0062)]))
    assert info.mm_per_px is None and info.spacing_xy_mm == pytest.approx((0.06, 0.062))
    assert "not square" in info.spacing_problem and info.crop == (0, 0, 606, 468)
    info, frames = read_dicom(write_us(tmp_path / "ok.dcm", [img], [region_of(img, x=0, y=0, dx_cm=0.006, dy_cm=0.00605)]))
    assert info.mm_per_px == pytest.approx(0.06025) and info.spacing_problem is None  # within 1 %
    info, frames = read_dicom(write_us(tmp_path / "ps.dcm", [img], pixel_spacing=(0.1, 0.1)))
    assert info.mm_per_px is None and info.crop is None and next(frames).shape == (468, 606, 3)
    assert any("PixelSpacing (0028,0030) is not used" in n for n in info.notes)


def test_source_and_calibration_hooks(tmp_path):
    from streamseg.inputs.calibration import resolve
    from streamseg.inputs.dicom import DicomSource
    from streamseg.inputs.sources import open_source

    imgs = [scan(i) for i in range(3)]
    f = write_us(tmp_path / "c.dcm", [on_canvas(i) for i in imgs], [region_of(imgs[0])], frame_time_ms=50)
    notes = []
    src = open_source(str(f), live=False, on_event=lambda kind, msg: notes.append(msg))
    assert isinstance(src, DicomSource) and (src.width, src.height) == (606, 468) and src.fps == 20
    assert src.stats.expected_frames == 3 and "DICOM, 3 frames" in src.describe() and src.state == "ok"
    frames = list(src.frames())
    src.close()
    assert [fr.index for fr in frames] == [0, 1, 2] and [fr.pts for fr in frames] == pytest.approx([0, 0.05, 0.1])
    assert src.stats.frames_read == 3 and np.array_equal(frames[2].image[..., 0], imgs[2])
    cal = src.calibration(resolve(), notes.append)
    assert cal.mm_per_px(src.height) == pytest.approx(0.06) and "DICOM" in cal.describe(src.height)
    explicit = src.calibration(resolve(mm_per_px=0.05), notes.append)
    assert explicit.mm_per_px(src.height) == 0.05 and "is not used" in notes[-1]
    cropped = open_source(str(f), live=False, crop=(40, 50, 300, 200))  # --crop replaces the region's crop
    assert (cropped.width, cropped.height) == (300, 200) and cropped.dicom.mm_per_px == pytest.approx(0.06)
    aniso = open_source(str(write_us(tmp_path / "a.dcm", [imgs[0]], [region_of(imgs[0], x=0, y=0, dy_cm=0.007)])),
                        live=False)
    with pytest.raises(StreamsegError, match="not square.*--mm-per-px"):
        aniso.calibration(resolve(), notes.append)
    assert aniso.calibration(resolve(mm_per_px=0.06), notes.append).mm_per_px(1) == 0.06


def test_damaged_files_give_one_line(tmp_path):
    from streamseg.inputs.sources import open_source

    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    with pytest.raises(StreamsegError) as e:
        open_source(str(junk), live=False)
    assert "junk.dcm" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(StreamsegError, match="no such file"):
        open_source(str(tmp_path / "missing.dcm"), live=False)


def test_missing_decoder_plugin_says_what_to_install(monkeypatch):
    import pydicom.pixels

    from streamseg.inputs.dicom import read_dicom

    class NoPlugins:
        is_available = False

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: NoPlugins())
    with pytest.raises(StreamsegError, match=r"no decoder for JPEG 2000.*pip install 'streamseg\[dicom\]'"):
        read_dicom(data_file("US1_J2KR.dcm"))


def test_eval_data_folder_reads_dicom_images_uncropped(tmp_path):
    from streamseg.training.dataset import load_pair, scan_folder

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    img = scan(0)
    write_us(tmp_path / "images" / "Pz002-001.dcm", [on_canvas(img)], [region_of(img)])
    mask = np.zeros((560, 680), np.uint8)
    mask[200:260, 300:380] = 255
    cv2.imwrite(str(tmp_path / "masks" / "Pz002-001.png"), mask)
    samples = scan_folder(tmp_path)
    assert [s.name for s in samples] == ["Pz002-001"] and samples[0].patient == "Pz002"
    image, m = load_pair(samples[0])
    assert image.shape == (560, 680, 3) and m.shape == (560, 680) and m.sum() == 60 * 80
    assert np.array_equal(image[50:518, 40:646, 0], img)  # full-image coordinates, not the region crop


def test_bundled_demo_dicom():
    from streamseg.inputs.dicom import read_dicom

    path = REPO / "streamseg" / "data" / "sample" / "demo.dcm"
    assert path.stat().st_size < 300_000
    info, frames = read_dicom(path)
    imgs = list(frames)
    assert info.transfer_syntax.startswith("JPEG Baseline") and len(imgs) == info.frames == len(SAMPLE_IMAGES)
    assert info.mm_per_px == pytest.approx(0.06) and (info.width, info.height) == (606, 468) and info.fps == 2
    ref = scan(0)
    assert np.abs(imgs[0][..., 1].astype(int) - ref).mean() < 3  # JPEG: close to the real scan


# --- the command line -------------------------------------------------------------------------------------
def _streamseg() -> list[str]:
    exe = Path(sys.executable).with_name("streamseg")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "streamseg"]


def _run(args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "STREAMSEG_CONFIG_DIR": str(cwd)}
    return subprocess.run(_streamseg() + args, capture_output=True, text=True, cwd=cwd, env=env, timeout=900)


@pytest.mark.slow
def test_cli_file_on_a_dicom_cine_reports_csa_in_mm2(tmp_path):
    """6 frames of a real wrist scan (slow probe motion) in a calibrated cine: mm² with no flag."""
    img = scan(0)
    frames = [on_canvas(np.roll(np.roll(img, 2 * k, axis=1), k, axis=0)) for k in range(6)]
    f = write_us(tmp_path / "wrist.dcm", frames, [region_of(img, dx_cm=0.006)], frame_time_ms=50)
    # the calibration is checked, not the model's operating point: shown and counted from 0.5
    out = _run(["file", str(f), "--out", "o.mp4", "--csv", "o.csv", "--backend", "torch", "--score-thresh", "0.5",
                "--confident", "0.5"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "0.06 mm/px from the DICOM's ultrasound region 1" in out.stderr
    with open(tmp_path / "o.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and [float(r["pts_s"]) for r in rows] == pytest.approx([0, .05, .1, .15, .2, .25])
    measured = [r for r in rows if r["area_px"]]
    assert measured and all(r["csa_mm2"] and float(r["mm_per_px"]) == pytest.approx(0.06) for r in measured)
    for r in measured:
        assert float(r["csa_mm2"]) == pytest.approx(float(r["area_px"]) * 0.06 ** 2, rel=1e-3)
    summary = json.loads((tmp_path / "o.summary.json").read_text())
    assert summary["unit"] == "mm²" and summary["calibrated"] and summary["frames_seen"] == 6
    import av

    with av.open(str(tmp_path / "o.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 6


def test_cli_refuses_non_cm_regions_with_one_line(tmp_path):
    img = scan()
    f = write_us(tmp_path / "bad.dcm", [img, img], [region_of(img, x=0, y=0, units=4)], frame_time_ms=50)
    out = _run(["file", str(f), "--out", "o.mp4", "--csv", "o.csv"], tmp_path)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "cm units" in lines[0]
    assert "Traceback" not in out.stderr and not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.csv").exists()
