"""Checks on command-line values, in one place, torch-free: numbers (finite, in range), compute
device names, and output paths (writable, not the input, not another output). Each failure is one
StreamsegError line, raised before any work starts."""
from __future__ import annotations

import math
import re
from pathlib import Path

from ..inputs.calibration import MM_PER_PX_MAX, MM_PER_PX_MIN
from ..files import check_writable
from ..types import StreamsegError

COMPUTE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_number(flag: str, value, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False) -> None:
    """`value` (None = not given) is finite and within [lo, hi]; `lo_open`/`hi_open` exclude the bound."""
    if value is None:
        return
    if not math.isfinite(value):
        raise StreamsegError(f"{flag} {value}: expected a finite number")
    low = lo is not None and (value <= lo if lo_open else value < lo)
    high = hi is not None and (value >= hi if hi_open else value > hi)
    if low or high:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        span = f"{left}{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}{right}"
        raise StreamsegError(f"{flag} {value:g}: must be within {span}")


def spacing_flag(value, flag: str = "--mm-per-px") -> tuple:
    """The `check_numbers` row of a pixel-spacing flag: calibration's one range, [MM_PER_PX_MIN, MM_PER_PX_MAX)."""
    return (flag, value, MM_PER_PX_MIN, MM_PER_PX_MAX, dict(hi_open=True))


def check_numbers(checks) -> None:
    """check_number over (flag, value, lo, hi[, options]) rows."""
    for flag, value, lo, hi, *kw in checks:
        check_number(flag, value, lo, hi, **(kw[0] if kw else {}))


def check_compute(name: str, flag: str = "--compute") -> str:
    """auto | cpu | cuda | cuda:N (whether CUDA exists is asked where torch is loaded)."""
    if not COMPUTE_RE.match(str(name)):
        raise StreamsegError(f"{flag} {name!r}: choose cpu, cuda, cuda:N or auto")
    return str(name)


def resolved(path) -> Path:
    """`path` made absolute with its links followed; a symlink loop or a name the system refuses
    (too long) is one StreamsegError line."""
    try:
        return Path(path).resolve()
    except RuntimeError:  # Python < 3.13 reports a loop so: "Symlink loop from '...'"
        raise StreamsegError(f"{path}: a symlink loop (a link that leads back to itself)") from None
    except OSError as e:
        raise StreamsegError(f"{path}: {e.strerror or type(e).__name__}") from None


def check_outputs(outputs: dict[str, Path | None], inputs: list | tuple = ()) -> list[Path]:
    """Every output given (flag -> path) is writable, is no input and is no other output (paths
    resolved, so `o.csv` and `./o.csv` collide). Returns the paths given."""
    seen: dict[Path, str] = {}
    ins = {resolved(p): str(p) for p in inputs if p is not None}
    for flag, p in outputs.items():
        if p is None:
            continue
        r = resolved(p)
        if r in ins:
            raise StreamsegError(f"{p}: {flag} would overwrite the input {ins[r]}")
        if r in seen:
            raise StreamsegError(f"{p}: {flag} and {seen[r]} are the same file")
        seen[r] = flag
    for p in outputs.values():
        if p is not None:
            check_writable(p)
    return [Path(p) for p in outputs.values() if p is not None]


def check_out_dir(flag: str, path: Path | None) -> None:
    """A folder outputs go into: a folder or not yet there (it is created), never a file; its
    nearest existing parent must be writable."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise StreamsegError(f"{flag} {p}: is a file, expected a folder")
    probe = p if p.is_dir() else next((q for q in p.parents if q.is_dir()), Path("."))
    check_writable(probe / ".streamseg-write-check")
