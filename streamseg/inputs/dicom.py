"""DICOM input (issue 12): single- and multi-frame ultrasound exports -> BGR uint8 frames, with the
pixel spacing and crop of the Sequence of Ultrasound Regions (0018,6011).

- Pixels: pydicom's decoders (native, RLE, JPEG baseline/lossless and JPEG 2000 through the
  pylibjpeg plugins). Greyscale, RGB, YBR (`convert_color_space`) and palette colour
  (`apply_color_lut`); MONOCHROME1 is inverted; more than 8 bits are mapped to 8 by the file's
  VOI LUT or window, else by the min-max of the first frame (one mapping for the whole loop).
- Spacing: a 2D (RegionSpatialFormat 1) tissue (RegionDataType 1) region in cm (units 3); the
  largest if several. mm/px = PhysicalDelta * 10, and frames are cropped to that region. Regions
  that are all in other units or of other types are refused, never guessed. Non-square pixels are
  reported (`DicomInfo.spacing_problem`) and the runtime refuses them unless a spacing flag is given.
  PixelSpacing (0028,0030) is not used: ultrasound spacing lives in the regions.
- Cut short: a cine whose file ends inside its pixel data (native or encapsulated) is read as far
  as its whole frames go, with a note (_frames_held, _cut_encapsulated).
- Times: FrameTime (ms), FrameTimeVector (ms increments) or CineRate (fps) -> pts in seconds; when
  missing or not believable (not finite, outside 0.01..1000 fps), --fps or 25 fps, with a warning.

Torch-free; pydicom is imported inside the functions, so this module imports without it.
"""
from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..files import first_line
from .calibration import Calibration
from ..types import Frame, SourceState, SourceStats, StreamsegError

MISSING = "pydicom is not installed (pip install 'streamseg[dicom]')"
SUFFIXES = (".dcm", ".dicom")
UNITS_CM, TISSUE, SPATIAL_2D = 3, 1, 1
SQUARE_TOLERANCE = 0.01  # PhysicalDeltaX and Y may differ by 1 % and still count as square pixels
MIN_SIDE, MAX_SIDE = 32, 8192  # as sources.py
_UNIT_NAMES = {0: "none", 1: "percent", 2: "dB", 3: "cm", 4: "seconds", 5: "hertz", 6: "dB/s", 7: "cm/s",
               8: "cm²", 9: "cm²/s", 10: "cm³", 11: "cm³/s", 12: "degrees"}
_TYPE_NAMES = {0: "none", 1: "tissue", 2: "colour flow", 3: "PW Doppler", 4: "CW Doppler", 5: "Doppler mean trace",
               6: "Doppler mode trace", 7: "Doppler max trace", 8: "volume trace", 9: "Doppler volume trace", 10: "ECG trace",
               11: "pulse trace", 12: "phonocardiogram trace", 13: "grey bar", 14: "colour bar",
               15: "integrated backscatter", 16: "area trace", 17: "d(area)/dt", 18: "other physiological"}
_SPATIAL_NAMES = {0: "none", 1: "2D", 2: "M-mode", 3: "spectral", 4: "waveform", 5: "graphics"}


def is_dicom(path) -> bool:
    """A DICOM file: the 128-byte preamble followed by b"DICM", or a .dcm/.dicom name."""
    p = Path(path)
    if p.suffix.lower() in SUFFIXES:
        return True
    try:
        if not p.is_file():  # never open a pipe or device just to look (it could block)
            return False
        with open(p, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise StreamsegError(MISSING) from None
    if int(pydicom.__version__.split(".")[0]) < 3:
        raise StreamsegError(f"pydicom {pydicom.__version__} is too old: streamseg needs pydicom >= 3 "
                             "(pip install 'streamseg[dicom]')")
    return pydicom


@dataclass
class Region:
    """One item of the Sequence of Ultrasound Regions, in full-image pixels (Max* inclusive)."""

    number: int  # 1-based position in the sequence
    x: int
    y: int
    w: int
    h: int
    spatial: int
    data_type: int
    units: tuple[int, int]
    delta_mm: tuple[float, float] | None  # (x, y) mm per pixel, when the units are cm

    def describe(self) -> str:
        kind = f"{_SPATIAL_NAMES.get(self.spatial, self.spatial)} {_TYPE_NAMES.get(self.data_type, self.data_type)}"
        units = "/".join(_UNIT_NAMES.get(u, str(u)) for u in self.units)
        return f"region {self.number} ({kind}, units {units}, {self.w}x{self.h} at {self.x},{self.y})"


@dataclass
class DicomInfo:
    """What a DICOM file holds, as streamseg reads it. width/height are after the crop."""

    path: str
    frames: int
    width: int
    height: int
    fps: float | None
    mm_per_px: float | None  # None: no usable region, or non-square pixels (see spacing_problem)
    crop: tuple[int, int, int, int] | None  # x, y, w, h in the full image
    region: str | None  # the chosen region, described
    region_number: int | None = None  # its 1-based position in the Sequence of Ultrasound Regions
    notes: list[str] = field(default_factory=list)
    pts: list[float] | None = None  # seconds per frame; None when the file has no frame timing
    spacing_xy_mm: tuple[float, float] | None = None  # the region's (x, y) spacing, square or not
    spacing_problem: str | None = None  # why mm_per_px is None although a region has a spacing
    spacing_assumed: str | None = None  # the file's description, where it says the spacing is assumed (demo.dcm)
    full_size: tuple[int, int] = (0, 0)  # (width, height) before the crop
    photometric: str = ""
    transfer_syntax: str = ""


def _dataset(path: str):
    """dcmread with one-line errors (force=True: a .dcm without the preamble is read too)."""
    pydicom = _pydicom()
    p = Path(path)
    if not p.exists():
        raise StreamsegError(f"{path}: no such file")
    if p.is_dir():
        raise StreamsegError(f"{path}: is a folder, not a DICOM file")
    try:
        with warnings.catch_warnings():  # a file cut inside encapsulated pixel data: _cut_encapsulated reads it
            warnings.filterwarnings("ignore", "End of file reached before delimiter", UserWarning)
            ds = pydicom.dcmread(p, force=True)
    except PermissionError:
        raise StreamsegError(f"{path}: not readable") from None
    except Exception as e:  # noqa: BLE001 - pydicom raises many kinds on damaged files
        raise StreamsegError(f"{path}: not a readable DICOM file ({first_line(e)})") from None
    if "PixelData" not in ds and _encapsulated(ds):
        ds = _cut_encapsulated(p, path) or ds
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise StreamsegError(f"{path}: DICOM file without an image (no Pixel Data)")
    if "PixelData" not in ds:
        raise StreamsegError(f"{path}: float pixel data is not an ultrasound image (not supported)")
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        implicit, little = ds.original_encoding  # no meta header: the encoding pydicom read it with
        ds.file_meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if implicit else
                                          pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
    return ds


def _encapsulated(ds) -> bool:
    ts = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    return ts is not None and ts.is_encapsulated


def _cut_encapsulated(p: Path, path: str):
    """A file that ends inside its encapsulated Pixel Data (a compressed cine cut short): pydicom's
    dataset comes back empty. Read the header up to the (7FE0,0010) tag, and give it the whole frames
    (_whole_frames) of the items after the tag as its Pixel Data, one fragment per frame with a Basic
    Offset Table; _frames_held then notes how many of NumberOfFrames it holds. None: not such a file."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

    pydicom = _pydicom()
    try:
        with open(p, "rb") as f:
            ds = pydicom.dcmread(f, force=True, stop_before_pixels=True)  # leaves `f` at the Pixel Data's tag
            head, value = f.read(12), f.read()
    except Exception:  # noqa: BLE001 - the caller's error stands
        return None
    if head[:4] != b"\xe0\x7f\x10\x00" or head[4:6] not in (b"OB", b"OW") or head[8:] != b"\xff\xff\xff\xff":
        return None
    n = max(_number(ds.get("NumberOfFrames") or 1), 1)
    jpeg = ds.file_meta.TransferSyntaxUID in JPEGTransferSyntaxes + JPEGLSTransferSyntaxes + JPEG2000TransferSyntaxes
    frames = _whole_frames(value, int(n) if math.isfinite(n) else 1, jpeg, ds.get("ExtendedOffsetTable"),
                           ds.get("ExtendedOffsetTableLengths"))
    if not frames:
        raise StreamsegError(f"{path}: the file ends inside its compressed pixel data ({len(value)} bytes), "
                             "before its first whole frame")
    for key in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):  # they point into the old items
        if key in ds:
            del ds[key]
    ds.PixelData = encapsulate(frames, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def _whole_frames(value: bytes, n: int, jpeg: bool, eot: bytes | None = None, eot_lengths: bytes | None = None
                  ) -> list[bytes]:
    """The frames of the encapsulated items `value` (the Basic Offset Table item first) whose fragments
    are all there, at most `n`. With an Extended Offset Table or a Basic Offset Table, the frames that
    end before the last complete item (the last listed frame of a file without the Sequence Delimiter
    cannot be told whole and is left out). Without either: for `jpeg` data (JPEG, JPEG-LS, JPEG 2000)
    the runs of fragments that end with an EOI/EOC marker, as pydicom tells them apart; else one
    frame per complete fragment (RLE: the standard's one fragment per frame)."""
    from io import BytesIO
    from itertools import islice

    from pydicom.encaps import generate_fragments, generate_frames, parse_basic_offsets

    buf = BytesIO(value)
    try:
        offsets = parse_basic_offsets(buf)
    except Exception:  # noqa: BLE001 - cut inside the Basic Offset Table
        return []
    start = end = buf.tell()  # end: after the last complete item
    fragments, held = generate_fragments(buf), []
    while True:
        at = buf.tell()
        try:
            if len(fragment := next(fragments)) != int.from_bytes(value[at + 4:at + 8], "little"):
                break  # its value is cut short
        except (StopIteration, ValueError):  # the end, a cut item header or a damaged item
            break
        end = buf.tell()
        held.append(fragment)
    done = end - start  # as the tables count: from the first fragment's item tag
    if eot and eot_lengths:
        lengths = np.frombuffer(eot_lengths, "<u8")
        whole = sum(1 for o, ln in zip(np.frombuffer(eot, "<u8"), lengths) if o + 8 + ln <= done)
        tables = (bytes(eot), bytes(eot_lengths))
    elif offsets:
        whole, tables = sum(1 for o in offsets[1:] if o <= done), None
    else:
        return _split_fragments(held, jpeg)[:n]
    whole = min(whole, n)
    if whole == 0:
        return []
    return list(islice(generate_frames(value[:end], number_of_frames=whole, extended_offsets=tables), whole))


def _split_fragments(fragments: list[bytes], jpeg: bool) -> list[bytes]:
    """Whole frames of fragments without an offset table (_whole_frames)."""
    if not jpeg:
        return fragments
    frames, run = [], []
    for fragment in fragments:
        run.append(fragment)
        if b"\xff\xd9" in fragment[-10:]:  # pydicom's test for a frame's last fragment (generate_fragmented_frames)
            frames.append(b"".join(run))
            run = []
    return frames


def regions(ds) -> list[Region]:
    """The Sequence of Ultrasound Regions, as Region objects (empty when the file has none)."""
    out = []
    for i, r in enumerate(ds.get("SequenceOfUltrasoundRegions") or [], start=1):
        try:
            x0, y0 = int(r.RegionLocationMinX0), int(r.RegionLocationMinY0)
            x1, y1 = int(r.RegionLocationMaxX1), int(r.RegionLocationMaxY1)
        except (AttributeError, TypeError, ValueError):
            continue  # a region without a location cannot be used
        units = (int(r.get("PhysicalUnitsXDirection", 0) or 0), int(r.get("PhysicalUnitsYDirection", 0) or 0))
        dx, dy = r.get("PhysicalDeltaX"), r.get("PhysicalDeltaY")
        delta = None
        if units == (UNITS_CM, UNITS_CM) and dx is not None and dy is not None:  # its range: spacing()
            delta = (float(dx) * 10.0, float(dy) * 10.0)
        out.append(Region(i, x0, y0, x1 - x0 + 1, y1 - y0 + 1, int(r.get("RegionSpatialFormat", 0) or 0),
                          int(r.get("RegionDataType", 0) or 0), units, delta))
    return out


def choose_region(found: list[Region], path: str = "") -> tuple[Region | None, list[str]]:
    """The largest 2D tissue region in cm (the first of equal ones) and notes; None when the file
    has no regions; StreamsegError when it has regions but none is usable (never a guess)."""
    if not found:
        return None, []
    usable = [r for r in found if r.spatial == SPATIAL_2D and r.data_type == TISSUE and r.delta_mm is not None
              and r.w > 0 and r.h > 0]
    if not usable:
        raise StreamsegError(f"{path}: no 2D tissue ultrasound region with cm units and a spacing, so no mm² can be "
                             f"measured; found {'; '.join(r.describe() for r in found)}")
    best = max(usable, key=lambda r: (spacing(r)[0] is not None, r.w * r.h, -r.number))  # a valid spacing first
    notes = []
    if len(usable) > 1:
        notes.append(f"{len(usable)} tissue regions; using region {best.number} (the largest"
                     f"{', the first of equal ones' if sum(r.w * r.h == best.w * best.h for r in usable) > 1 else ''})")
    return best, notes


def spacing(region: Region) -> tuple[float | None, str | None]:
    """(isotropic mm/px, None) for square pixels with a spacing in the range every spacing must lie in
    (calibration.MM_PER_PX_SPAN, as --mm-per-px), else (None, why CSA cannot use it)."""
    from .calibration import spacing_out_of_range

    dx, dy = region.delta_mm
    for axis, v in (("X", dx), ("Y", dy)):
        why = spacing_out_of_range(v)
        if why:
            return None, f"PhysicalDelta{axis} of {region.describe()} gives {why}, so CSA in mm² cannot use it"
    if abs(dx - dy) > SQUARE_TOLERANCE * max(dx, dy):
        return None, (f"pixels are not square in {region.describe()}: {dx:.5g} x {dy:.5g} mm "
                      f"(differ by {100 * abs(dx - dy) / max(dx, dy):.1f} %), so CSA in mm² cannot use this spacing")
    return (dx + dy) / 2.0, None


FPS_MIN, FPS_MAX = 0.01, 1000.0  # a frame rate streamseg believes (--fps allows up to 1000)
FRAME_MS_MIN, FRAME_MS_MAX = 1000.0 / FPS_MAX, 1000.0 / FPS_MIN
DEFAULT_FPS = 25.0  # frames without a believable time, and no --fps (FFmpeg's rate for a raw stream)


def frame_times(ds, n: int, fps: float | None = None) -> tuple[list[float] | None, float | None, str, str | None]:
    """(pts in seconds per frame, nominal fps, where they come from, a warning or None). A single frame
    is at 0. The file's FrameTimeVector, FrameTime or CineRate when believable (finite, within
    FPS_MIN..FPS_MAX); else `fps` (--fps), else DEFAULT_FPS, with a warning saying so."""
    if n == 1:
        return [0.0], None, "single frame", None
    pts, rate, how, problems = _file_times(ds, n)
    if pts is not None:
        return pts, rate, how, None
    rate = float(fps) if fps else DEFAULT_FPS
    why = "; ".join(problems) or "no frame timing (FrameTime, FrameTimeVector, CineRate) in the file"
    given = "from --fps" if fps else "the default; give --fps to set it"
    return [i / rate for i in range(n)], rate, "--fps" if fps else "default", f"{why}: frames timed at {rate:g} fps ({given})"


def _number(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _file_times(ds, n: int) -> tuple[list[float] | None, float | None, str, list[str]]:
    """The file's own frame times, or (None, None, "", why each present one is not believable)."""
    problems: list[str] = []
    ptr = ds.get("FrameIncrementPointer")  # AT, VM 1-n: which attribute holds the frame times
    pointer = {int(t) for t in (ptr if isinstance(ptr, Sequence) else [ptr] if ptr is not None else [])}
    vector = [_number(v) for v in (ds.get("FrameTimeVector") or [])][:n]  # a cine cut short: its first n
    if len(vector) == n - 1:
        vector = [0.0] + vector  # the standard's first increment is 0; some writers leave it out
    vector_ok = len(vector) == n and all(FRAME_MS_MIN <= v <= FRAME_MS_MAX for v in vector[1:])
    if vector and not vector_ok:
        problems.append(f"FrameTimeVector is not {n - 1} increments within [{FRAME_MS_MIN:g}, {FRAME_MS_MAX:g}] ms")
    ft = _number(ds.get("FrameTime")) if ds.get("FrameTime") is not None else None
    ft_ok = ft is not None and FRAME_MS_MIN <= ft <= FRAME_MS_MAX
    if ft is not None and not ft_ok:
        problems.append(f"FrameTime {ft:g} ms is outside [{FRAME_MS_MIN:g}, {FRAME_MS_MAX:g}] ms")
    if vector_ok and (0x00181065 in pointer or not ft_ok):
        pts = [float(t) for t in (np.cumsum(vector) - vector[0]) / 1000.0]  # the first frame at 0
        return pts, (n - 1) / pts[-1], "FrameTimeVector", problems
    if ft_ok:
        return [i * ft / 1000.0 for i in range(n)], 1000.0 / ft, "FrameTime", problems
    for key in ("CineRate", "RecommendedDisplayFrameRate"):
        if ds.get(key) is None:
            continue
        rate = _number(ds.get(key))
        if FPS_MIN <= rate <= FPS_MAX:
            return [i / rate for i in range(n)], rate, key, problems
        problems.append(f"{key} {rate:g} is outside [{FPS_MIN:g}, {FPS_MAX:g}] fps")
    return None, None, "", problems


def _check_crop(crop, w: int, h: int, path: str) -> tuple[int, int, int, int]:
    x, y, cw, ch = (int(v) for v in crop)
    if x < 0 or y < 0 or cw <= 0 or ch <= 0 or x + cw > w or y + ch > h:
        raise StreamsegError(f"crop {x},{y},{cw},{ch} lies outside the {w}x{h} frame of {path}")
    if min(cw, ch) < MIN_SIDE or max(cw, ch) > MAX_SIDE:
        raise StreamsegError(f"{path}: frame {cw}x{ch} is outside the supported {MIN_SIDE}..{MAX_SIDE} px per side")
    return x, y, cw, ch


_NO_REGION = dict(mm_per_px=None, crop=None, region=None, region_number=None, spacing_xy_mm=None, spacing_problem=None)


def _region_info(ds, path: str, w: int, h: int, notes: list[str]) -> dict:
    """Spacing and crop from the regions (see the module docstring)."""
    region, more = choose_region(regions(ds), path)
    notes += more
    if region is None:
        if "PixelSpacing" in ds:
            notes.append("PixelSpacing (0028,0030) is not used: ultrasound spacing lives in the Sequence of "
                         "Ultrasound Regions, which this file lacks")
        notes.append("no ultrasound regions: frames are not cropped and the spacing is unknown (give --mm-per-px)")
        return dict(_NO_REGION)
    x0, y0 = max(region.x, 0), max(region.y, 0)
    x1, y1 = min(region.x + region.w, w), min(region.y + region.h, h)
    if (x0, y0, x1, y1) != (region.x, region.y, region.x + region.w, region.y + region.h):
        notes.append(f"{region.describe()} reaches outside the {w}x{h} image; cropped to the image")
    mm, problem = spacing(region)
    return dict(mm_per_px=mm, crop=(x0, y0, x1 - x0, y1 - y0), region=region.describe(), region_number=region.number,
                spacing_xy_mm=region.delta_mm, spacing_problem=problem)


def _decoder(ds, path: str):
    from pydicom.pixels import get_decoder

    ts = ds.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise StreamsegError(f"{path}: pixel data in {ts.name} ({ts}) cannot be decoded by pydicom") from None
    if not decoder.is_available:
        raise StreamsegError(f"{path}: no decoder for {ts.name} pixel data is installed "
                             "(pip install 'streamseg[dicom]' adds the JPEG, JPEG 2000 and RLE decoders)")
    return decoder


def read_dicom(path, use_regions: bool = True, crop=None) -> tuple[DicomInfo, Iterator[np.ndarray]]:
    """Open a DICOM file -> (DicomInfo, lazy iterator of H×W×3 uint8 BGR frames, cropped).

    use_regions=False ignores the ultrasound regions (no crop, no spacing, no refusal): for images
    whose masks are in full-image coordinates. `crop` (x, y, w, h in the full image) replaces the
    region's crop; the region's spacing still applies. Bad files raise StreamsegError (one line),
    also while iterating (a frame that cannot be decoded)."""
    path = str(path)
    ds = _dataset(path)
    info = dicom_info(ds, path, use_regions, crop)
    return info, (img for _, img in _decode(ds, info))


def assumed_spacing(ds) -> str | None:
    """The file's own words where its description (ImageComments, SeriesDescription, StudyDescription)
    says that its pixel spacing is assumed, not measured, as the bundled demo.dcm's does; else None."""
    for key in ("ImageComments", "SeriesDescription", "StudyDescription"):
        text = str(ds.get(key) or "")
        if "assumed" in text.lower() and ("spacing" in text.lower() or "mm/px" in text.lower()):
            return text
    return None


def dicom_info(ds, path: str, use_regions: bool = True, crop=None, fps: float | None = None) -> DicomInfo:
    """DicomInfo of a dataset read by pydicom (see read_dicom); checks that a decoder exists. `fps`
    (--fps) times the frames when the file's own timing is missing or not believable."""
    _decoder(ds, path)
    try:
        n, h, w = int(ds.get("NumberOfFrames") or 1), int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise StreamsegError(f"{path}: DICOM image without valid Rows/Columns/NumberOfFrames") from None
    notes: list[str] = []
    n = _frames_held(ds, n, h, w, path, notes)  # before anything is sized by the frame count
    geo = _region_info(ds, path, w, h, notes) if use_regions else dict(_NO_REGION)
    if crop is not None:
        if geo["crop"] is not None:
            notes.append(f"the given crop {','.join(map(str, crop))} replaces the region's {','.join(map(str, geo['crop']))}")
        geo["crop"] = tuple(crop)
    box = _check_crop(geo["crop"] or (0, 0, w, h), w, h, path)
    geo["crop"] = box if geo["crop"] is not None else None
    pts, fps, _, warning = frame_times(ds, n, fps)
    if warning:
        notes.append(warning)
    return DicomInfo(path=path, frames=n, width=box[2], height=box[3], fps=fps, notes=notes, pts=pts,
                     full_size=(w, h), photometric=str(ds.get("PhotometricInterpretation", "")),
                     transfer_syntax=ds.file_meta.TransferSyntaxUID.name,
                     spacing_assumed=assumed_spacing(ds) if geo["mm_per_px"] is not None else None, **geo)


def _frames_held(ds, n: int, h: int, w: int, path: str, notes: list[str]) -> int:
    """How many of the NumberOfFrames `n` the pixel data really holds (whole frames of native data;
    at most one frame per fragment of encapsulated data). A file that claims more frames than it
    holds (a cine cut short, or a bad header) is read as far as its data goes, with a note, and the
    dataset's NumberOfFrames is set to that so the decoder reads them."""
    if n < 1 or h < 1 or w < 1:
        raise StreamsegError(f"{path}: DICOM image of {n} frame(s) of {w}x{h} pixels")
    data = ds.PixelData
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        from pydicom.encaps import parse_fragments

        try:
            held = max(parse_fragments(data)[0] - 1, 0)  # the first item is the Basic Offset Table
        except Exception:  # noqa: BLE001 - a damaged item list: the decoder reports the frames it cannot read
            held = n
    else:
        bits = w * h * int(ds.get("SamplesPerPixel") or 1) * int(ds.get("BitsAllocated") or 8)
        if str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
            bits = bits * 2 // 3  # two chroma samples per two pixels
        held = len(data) * 8 // max(bits, 1)
    if held >= n:
        return n
    if held == 0:
        raise StreamsegError(f"{path}: the pixel data holds no whole frame of {w}x{h} "
                             f"({len(data)} bytes for {n} frame(s))")
    notes.append(f"NumberOfFrames is {n} but the pixel data holds {held} whole frame(s): reading those")
    ds.NumberOfFrames = held
    return held


def _decode(ds, info: DicomInfo, on_error: Callable[[int, Exception], None] | None = None
            ) -> Iterator[tuple[int, np.ndarray]]:
    """Decode frame by frame -> (frame number, BGR uint8 cropped to info.crop). A frame that fails
    to decode raises StreamsegError, or is reported to `on_error(index, exc)` and skipped."""
    decoder = _decoder(ds, info.path)
    x, y, w, h = info.crop or (0, 0, info.full_size[0], info.full_size[1])
    to8 = None
    for i in range(info.frames):
        try:
            with warnings.catch_warnings():  # the excess bytes of a cine cut short (_frames_held) are noted already
                warnings.simplefilter("ignore", UserWarning)
                arr, props = decoder.as_array(ds, index=i, raw=True)
            pi = str(props.get("photometric_interpretation") or info.photometric)
            if to8 is None:
                to8 = _to_8bit(ds, pi, arr, info.path)
            img = to8(arr)
        except StreamsegError:
            raise
        except Exception as e:  # noqa: BLE001 - decoder plugins raise many kinds
            if on_error is None:
                raise StreamsegError(f"{info.path}: frame {i + 1} of {info.frames} cannot be decoded "
                                     f"({info.transfer_syntax}: {first_line(e)})") from None
            on_error(i, e)
            continue
        yield i, np.ascontiguousarray(img[y:y + h, x:x + w])


def _to_8bit(ds, pi: str, first: np.ndarray, path: str) -> Callable[[np.ndarray], np.ndarray]:
    """The conversion of every frame of this file to BGR uint8, set up once from the first frame."""
    from pydicom.pixels import apply_color_lut, convert_color_space

    bits = int(ds.get("BitsStored") or first.dtype.itemsize * 8)
    if pi in ("MONOCHROME1", "MONOCHROME2"):
        gray = _gray_lut(ds, first, bits)
        flip = pi == "MONOCHROME1"
        return lambda a: np.repeat((255 - gray(a) if flip else gray(a))[..., None], 3, axis=2)
    if pi == "PALETTE COLOR":
        depth = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return lambda a: _rgb8(apply_color_lut(a, ds), depth)[..., ::-1]
    if pi in ("YBR_FULL", "YBR_FULL_422"):
        return lambda a: _rgb8(convert_color_space(a, "YBR_FULL", "RGB"), bits)[..., ::-1]
    if pi == "RGB":
        return lambda a: _rgb8(a, bits)[..., ::-1]
    raise StreamsegError(f"{path}: photometric interpretation {pi!r} is not supported")


def _rgb8(a: np.ndarray, bits: int) -> np.ndarray:
    if a.dtype == np.uint8 or bits <= 8:
        return a.astype(np.uint8, copy=False)
    return (a >> (bits - 8)).astype(np.uint8)


def _gray_lut(ds, first: np.ndarray, bits: int) -> Callable[[np.ndarray], np.ndarray]:
    """Stored greyscale values -> uint8. 8-bit unsigned data as it is, fewer bits spread; deeper data through the
    file's VOI LUT or window (after the modality rescale) when it has one, else linearly from the
    Smallest/LargestImagePixelValue or the first frame's min-max (one mapping for the whole loop)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    signed = int(ds.get("PixelRepresentation") or 0) == 1
    if bits == 8 and not signed:
        return lambda a: a.astype(np.uint8, copy=False)
    if bits < 8 and not signed:  # e.g. 1-bit: spread over 0..255
        table = np.round(np.arange(1 << bits) * (255.0 / ((1 << bits) - 1))).astype(np.uint8)
        return lambda a: table[np.clip(a, 0, len(table) - 1)]
    bits = min(bits, 16)  # a table over every stored value; deeper data is clipped to 16 bits
    lo_in = -(1 << (bits - 1)) if signed else 0
    domain = np.arange(lo_in, lo_in + (1 << bits), dtype=np.int64)
    has_voi = bool(ds.get("VOILUTSequence")) or ("WindowCenter" in ds and "WindowWidth" in ds)
    if has_voi:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = np.asarray(apply_voi_lut(apply_modality_lut(domain, ds), ds), dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
    else:
        values = domain.astype(np.float64)
        lo = float(ds.get("SmallestImagePixelValue", first.min()))
        hi = float(ds.get("LargestImagePixelValue", first.max()))
    table = np.clip((values - lo) * (255.0 / max(hi - lo, 1e-9)) + 0.5, 0, 255).astype(np.uint8)
    return lambda a: table[np.clip(a.astype(np.int64) - lo_in, 0, len(table) - 1)]


class DicomSource:
    """A DICOM file as a pipeline source (a `types.Source`; `open()` reads the header and the first
    frame), with its own pixel spacing (`calibration`). `dicom` is the DicomInfo (spacing, crop, notes).
    Frames are cropped to the ultrasound region, or to `crop` (full-image pixels) when given."""

    def __init__(self, spec: str, live: bool = False, crop=None, on_event: Callable[[str, str], None] | None = None,
                 fps: float | None = None):
        self.spec = str(spec)
        self.fallback_fps = fps  # --fps: the rate when the file's own frame times are missing or not believable
        self.live = live
        self.crop = crop
        self.on_event = on_event or (lambda kind, msg: None)
        self.stats = SourceStats()
        self.fps: float | None = None
        self.rate: Fraction | None = None
        self.time_base: Fraction | None = None
        self.width = self.height = 0
        self.state: SourceState = "ok"
        self.dicom: DicomInfo | None = None
        self._it: Iterator[tuple[int, np.ndarray]] | None = None
        self._pending: tuple[int, np.ndarray] | None = None
        self._first_error: str | None = None
        self._opened = False  # the first frame decoded (decode errors before it are told by open)

    def open(self) -> "DicomSource":
        """Read the header and decode the first frame, so a bad file fails here with one line."""
        ds = _dataset(self.spec)
        info = dicom_info(ds, self.spec, crop=self.crop, fps=self.fallback_fps)
        self._it = _decode(ds, info, on_error=self._decode_error)
        self.dicom = info
        self.width, self.height = info.width, info.height
        self.fps = info.fps
        self.rate = Fraction(info.fps).limit_denominator(1001) if info.fps else None
        self.stats.expected_frames = info.frames
        self.stats.notes.extend(info.notes)
        self._pending = next(self._it, None)
        if self._pending is None:  # the error line says it all: no note before it
            why = f" ({self._first_error})" if self._first_error else ""
            raise StreamsegError(f"{self.spec}: no decodable frames in the DICOM file{why}")
        self._opened = True
        if self._first_error:  # frames before the first good one were skipped: said once the file opens
            self.on_event("decode_error", f"{self.spec}: {self._first_error} (frame skipped)")
        for note in info.notes:
            self.on_event("note", f"{self.spec}: {note}")
        return self

    def _decode_error(self, index: int, e: Exception) -> None:
        self.stats.decode_errors += 1
        if self._first_error is None:  # the runner reports the count at the end
            self._first_error = f"frame {index + 1}: {first_line(e)}"
            if self._opened:
                self.on_event("decode_error", f"{self.spec}: {self._first_error} (frame skipped)")

    def frames(self, stop: threading.Event | None = None) -> Iterator[Frame]:
        stop = stop or threading.Event()
        if self._it is None:
            self.open()
        pts = self.dicom.pts
        index = 0
        while not stop.is_set():
            item, self._pending = (self._pending, None) if self._pending is not None else (next(self._it, None), None)
            if item is None:
                return
            number, img = item  # a frame that could not be decoded is skipped; the others keep their times
            self.stats.frames_read += 1
            yield Frame(image=img, index=index, pts=pts[number] if pts else None, t_capture=time.perf_counter())
            index += 1

    def close(self) -> None:
        self._it = None

    def describe(self) -> str:
        fps = f"{self.fps:.2f} fps" if self.fps else "unknown fps"
        info = self.dicom
        where = f"; {info.region}" if info is not None and info.region else ""
        frames = f"DICOM, {info.frames} frame{'s' if info.frames != 1 else ''}" if info is not None else "DICOM"
        return f"{self.spec} ({self.width}x{self.height}, {fps}; {frames}{where})"

    def calibration(self, given: Calibration, log: Callable[[str], None]) -> Calibration:
        """The spacing of the ultrasound region when no flag gives one. An explicit
        --mm-per-px/--depth-mm/--profile wins (with a note); non-square pixels without a flag are
        refused; a file without a usable region: `given` unchanged."""
        info = self.dicom
        if info is None or (info.mm_per_px is None and info.spacing_problem is None):
            return given
        own = f"{info.mm_per_px:.5g} mm/px" if info.mm_per_px is not None else "non-square pixels"
        if given.calibrated:
            log(f"note: the DICOM's own spacing ({own}, {info.region}) is not used: {given.describe(self.height)}")
            return given
        if info.spacing_problem is not None:
            raise StreamsegError(f"{info.path}: {info.spacing_problem}; give --mm-per-px to measure anyway")
        if info.spacing_assumed:
            log(f"note: {info.path}: its description says the pixel spacing is assumed, not measured, so every mm² "
                f"and the CTS flag rest on that assumption (the file: \"{info.spacing_assumed}\")")
        return replace(given, mm_per_px_value=info.mm_per_px, origin=f"the DICOM's ultrasound region {info.region_number}",
                       assumed=bool(info.spacing_assumed))
