"""Pixel spacing (one isotropic mm/px) from a flag, from the imaged depth, or from a saved profile.

Profiles live in `profiles.json` in the user config dir (`$STREAMSEG_CONFIG_DIR`, else
`$XDG_CONFIG_HOME/streamseg`, else `~/.config/streamseg`), one entry per probe+preset:
`{"name": {"mm_per_px": 0.05, "crop": [x, y, w, h] | null, "depth_mm": 40 | null, ...}}`.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write, check_writable, json_text
from ..settings import config_dir
from ..types import StreamsegError

PROFILES_FILE = "profiles.json"
# Every spacing streamseg measures with (--mm-per-px, --depth-mm over the crop height, a profile, a
# DICOM's ultrasound region) lies in [MM_PER_PX_MIN, MM_PER_PX_MAX): 1 µm to 1 cm per pixel.
MM_PER_PX_MIN, MM_PER_PX_MAX = 0.001, 10.0
MM_PER_PX_SPAN = f"[{MM_PER_PX_MIN:g}, {MM_PER_PX_MAX:g}) mm per pixel"


def spacing_out_of_range(mm_per_px) -> str | None:
    """Why `mm_per_px` cannot be a pixel spacing (not a finite number within MM_PER_PX_SPAN), or None."""
    try:
        v = float(mm_per_px)
    except (TypeError, ValueError):
        return f"{mm_per_px!r} is not a number"
    if not math.isfinite(v) or not (MM_PER_PX_MIN <= v < MM_PER_PX_MAX):
        return f"{v:g} mm/px is outside {MM_PER_PX_SPAN}"
    return None


def check_spacing(mm_per_px, what: str) -> float:
    """`mm_per_px` as a float, or StreamsegError "WHAT: why" when it is out of range."""
    why = spacing_out_of_range(mm_per_px)
    if why:
        raise StreamsegError(f"{what}: {why}")
    return float(mm_per_px)


def parse_crop(text: str | None) -> tuple[int, int, int, int] | None:
    """'x,y,w,h' -> (x, y, w, h) of non-negative ints with w, h > 0."""
    if text is None or text == "":
        return None
    parts = text.replace(" ", "").split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise StreamsegError(f"--crop {text!r}: expected x,y,w,h (four integers)") from None
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise StreamsegError(f"--crop {text!r}: x, y must be >= 0 and w, h > 0")
    return x, y, w, h


@dataclass
class Calibration:
    """How the spacing is known. `mm_per_px(frame_h)` resolves it once the crop height is known."""

    mm_per_px_value: float | None = None
    depth_mm: float | None = None
    profile: str | None = None
    crop: tuple[int, int, int, int] | None = None  # the profile's crop, if it has one
    origin: str | None = None  # where mm_per_px_value came from when no flag gave it (a DICOM region)
    assumed: bool = False  # the source says its spacing is assumed, not measured (the bundled demo.dcm)

    @property
    def calibrated(self) -> bool:
        return self.mm_per_px_value is not None or self.depth_mm is not None

    def mm_per_px(self, frame_h: int) -> float | None:
        if self.mm_per_px_value is not None:
            return check_spacing(self.mm_per_px_value, self.origin or "spacing")
        if self.depth_mm is not None:
            return check_spacing(self.depth_mm / frame_h, f"--depth-mm {self.depth_mm:g} over {frame_h} px")
        return None

    def describe(self, frame_h: int | None = None) -> str:
        if not self.calibrated:
            return "uncalibrated (areas in px²)"
        how = self.origin or (f"profile {self.profile!r}" if self.profile else
               f"depth {self.depth_mm:g} mm over the crop height" if self.depth_mm is not None else "--mm-per-px")
        v = self.mm_per_px(frame_h) if frame_h else self.mm_per_px_value
        said = ", which the file says is ASSUMED, not measured" if self.assumed else ""
        return f"{v:.5g} mm/px from {how}{said}" if v is not None else f"from {how}{said}"


def resolve(mm_per_px: float | None = None, depth_mm: float | None = None, profile: str | None = None) -> Calibration:
    """At most one of the three; none -> uncalibrated."""
    given = [n for n, v in (("--mm-per-px", mm_per_px), ("--depth-mm", depth_mm), ("--profile", profile)) if v is not None]
    if len(given) > 1:
        raise StreamsegError(f"give one spacing source, not {' and '.join(given)}")
    if mm_per_px is not None:
        return Calibration(mm_per_px_value=check_spacing(mm_per_px, "--mm-per-px"))
    if depth_mm is not None:
        if not (0 < depth_mm <= 500):
            raise StreamsegError(f"--depth-mm {depth_mm:g}: expected an imaged depth in (0, 500] mm")
        return Calibration(depth_mm=float(depth_mm))
    if profile is not None:
        p = load_profile(profile)
        crop = tuple(p["crop"]) if p.get("crop") else None
        return Calibration(mm_per_px_value=float(p["mm_per_px"]), profile=profile, crop=crop)
    return Calibration()


def load_profiles() -> dict:
    path = config_dir() / PROFILES_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StreamsegError(f"{path}: unreadable profiles file ({type(e).__name__})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise StreamsegError(f"{path}: not a profiles file (expected a JSON object of profiles, each an object)")
    for name, p in data.items():
        check_profile(name, p)
    return data


def check_profile(name: str, p: dict) -> None:
    """A saved profile has a spacing within MM_PER_PX_SPAN and, if any, a crop of four integers."""
    try:
        v = float(p["mm_per_px"])
    except (KeyError, TypeError, ValueError):
        raise StreamsegError(f"profile {name!r} has no valid mm_per_px") from None
    check_spacing(v, f"profile {name!r}: mm_per_px")
    crop = p.get("crop")
    if crop is not None and not (isinstance(crop, list) and len(crop) == 4 and all(type(c) is int for c in crop)):
        raise StreamsegError(f"profile {name!r}: crop {crop!r} is not [x, y, w, h] (four integers)")
    if crop is not None:
        parse_crop(",".join(map(str, crop)))


def load_profile(name: str) -> dict:
    profiles = load_profiles()
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none saved yet (streamseg calibrate --probe P --preset S ...)"
        raise StreamsegError(f"no calibration profile {name!r} in {config_dir() / PROFILES_FILE}; known: {known}")
    return profiles[name]


def save_profile(name: str, mm_per_px: float, crop=None, depth_mm: float | None = None,
                 probe: str | None = None, preset: str | None = None, note: str | None = None) -> Path:
    """Add or replace one profile; the file is written atomically."""
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise StreamsegError(f"profile name {name!r}: use letters, digits, '-', '_' or '.'")
    mm_per_px = check_spacing(mm_per_px, f"profile {name!r}")
    d = config_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StreamsegError(f"{d}: cannot create config folder ({e.strerror})") from None
    check_writable(d / PROFILES_FILE)  # a read-only config folder: one line before anything is read or made
    profiles = load_profiles()
    profiles[name] = {
        "mm_per_px": float(mm_per_px),
        "crop": list(crop) if crop else None,
        "depth_mm": depth_mm,
        "probe": probe,
        "preset": preset,
        "note": note,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = d / PROFILES_FILE
    text = json_text(profiles, indent=2, sort_keys=True) + "\n"

    def write(tmp):
        Path(tmp).write_text(text)

    atomic_write(path, write)
    return path


def profile_name(name: str | None, probe: str | None, preset: str | None) -> str:
    """The name a profile is saved under: NAME if given, else PROBE_PRESET (both needed)."""
    if name is not None:
        return name
    if not probe or not preset:
        raise StreamsegError("name the profile: give --probe and --preset (saved as PROBE_PRESET) or a NAME")
    return f"{probe}_{preset}"


def calibrate_profile(name: str, mm_per_px: float | None = None, depth_mm: float | None = None,
                      known_mm: float | None = None, known_px: float | None = None, crop: str | None = None,
                      image_from: str | None = None, probe: str | None = None, preset: str | None = None):
    """Work out mm/px from exactly one of: a spacing, an imaged depth over the crop height (from
    --crop or the first frame of --from), or a known distance in mm and px; save it as `name`."""
    ways = [w for w, given in (("--mm-per-px", mm_per_px is not None), ("--depth-mm", depth_mm is not None),
                               ("--known-mm/--known-px", known_mm is not None or known_px is not None)) if given]
    if len(ways) != 1:
        raise StreamsegError("give exactly one of --mm-per-px, --depth-mm, or --known-mm with --known-px"
                             + (f" (got {' and '.join(ways)})" if ways else ""))
    box = parse_crop(crop)
    if known_mm is not None or known_px is not None:
        if not known_mm or not known_px or known_mm <= 0 or known_px <= 0:
            raise StreamsegError("--known-mm and --known-px go together and must both be > 0")
        mm_per_px = known_mm / known_px
    elif depth_mm is not None:
        if not (0 < depth_mm <= 500):
            raise StreamsegError(f"--depth-mm {depth_mm:g}: expected an imaged depth in (0, 500] mm")
        if image_from is not None:
            h = grab_height(image_from, box)
        elif box is not None:
            h = box[3]
        else:
            raise StreamsegError("--depth-mm needs the image height: give --crop x,y,w,h or --from GRAB")
        mm_per_px = depth_mm / h
    if image_from is not None and depth_mm is None:
        grab_height(image_from, box)  # the crop must fit the grab, whatever gave the spacing
    check_spacing(mm_per_px, "--mm-per-px" if ways[0] == "--mm-per-px" else f"the spacing from {ways[0]}")
    path = save_profile(name, mm_per_px, crop=box, depth_mm=depth_mm, probe=probe, preset=preset)
    return path, load_profiles()[name]


def grab_height(spec: str, box) -> int:
    """Height of the (cropped) first frame of a grab: an image, a video or a DICOM file. A missing
    file or a crop that does not fit the frame is one StreamsegError."""
    from .sources import open_source

    src = open_source(spec, live=False, crop=box)
    try:
        return src.height
    finally:
        src.close()
