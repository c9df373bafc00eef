"""Compiled artefacts in the engines folder (DEFAULT_DIR, a user cache): their names, their sidecars, and the one way each is built,
checked and opened.

Every artefact is named after what it was built from and carries a sidecar JSON (`<file>.json`):
    <backbone>-mask<M>-<sha12>-<dense|heads-box|heads-mask>-b<B>-<S>-<fp32|fp16|int8>.<onnx|engine|pt2>
The sidecar records the checkpoint's (or, for a model built from a config, the weights') sha256,
the model config, input shape, precision and the versions that matter. `ensure_artefact` reuses an
artefact only while its sidecar matches what is asked for (and an optional check passes), else
rebuilds it and writes the sidecar; `load_or_rebuild` opens it and rebuilds once if that fails.
Files are written to a temp name and renamed, so a half-written artefact never exists.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

from ..files import atomic_write, first_line
from ..model.architecture import RUNTIME_KEYS, ModelInfo
from ..settings import engines_dir
from ..types import StreamsegError

# The user cache, never the current folder: $STREAMSEG_ENGINES, else $XDG_CACHE_HOME/streamseg/engines,
# else ~/.cache/streamseg/engines (`--engines DIR` overrides it per command; `settings.engines_dir`).
DEFAULT_DIR = engines_dir()
T = TypeVar("T")


class Building(str):
    """A log line about an artefact being built now (so a run pauses). `routine`: a first build (or
    an asked-for one), saying only what is made; else a stale or broken artefact rebuilt, saying
    why. `engine_log` turns the routine ones into one notice for the lot."""

    routine: bool
    path: Path

    def __new__(cls, text: str, path: Path, routine: bool = True) -> "Building":
        line = super().__new__(cls, text)
        line.path, line.routine = Path(path), routine
        return line


def engine_log(log: Callable[[str], None]) -> Callable[[str], None]:
    """`log` for opening a backend: the first artefact built prints one line saying that the engine
    is being prepared, once, and where (a first run pauses ~20 s on a 2-core CPU while its graphs are
    exported and quantised); later routine build lines are dropped; everything else passes through."""
    told = False

    def emit(msg: str) -> None:
        nonlocal told
        if isinstance(msg, Building) and msg.routine:
            if not told:
                told = True
                took = "about 20 s on a 2-core CPU" if msg.path.suffix == ".onnx" else "it can take minutes"
                log(f"preparing the inference engine in {msg.path.parent} (once, {took}; later runs reuse it)...")
            return
        log(msg)

    return emit


def _sha(info: ModelInfo) -> str:
    if not info.sha256:
        raise ValueError("artefacts are named by the weights' sha256: fill it in first (ModelInfo.with_sha256)")
    return info.sha256


def artefact_path(info: ModelInfo, out_dir: str | Path, suffix: str, batch: int = 1, half: bool = False,
                  part: str = "dense", precision: str | None = None, size: int | None = None) -> Path:
    """`part`: dense, heads-box, heads-mask; `precision` overrides fp32/fp16 (e.g. int8); `size`
    the square input side where it is not the model's image_size (tracking windows)."""
    cfg = info.config
    prec = precision or ("fp16" if half else "fp32")
    stem = f"{cfg.backbone}-mask{cfg.mask_head}-{_sha(info)[:12]}-{part}-b{batch}-{size or cfg.image_size}-{prec}"
    return Path(out_dir) / f"{stem}.{suffix}"


def sidecar_path(path: str | Path) -> Path:
    return Path(str(path) + ".json")


def base_meta(info: ModelInfo, batch: int, half: bool) -> dict:
    """What every sidecar records: the weights, what shapes the graph, input shape, precision."""
    cfg = info.config
    return {
        "checkpoint_sha256": _sha(info),
        "config": {k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_KEYS},  # what shapes the graph
        "input_shape": [batch, 3, cfg.image_size, cfg.image_size],
        "precision": "fp16" if half else "fp32",
    }


def read_sidecar(path: str | Path) -> dict | None:
    try:
        return json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        return None


def write_sidecar(path: str | Path, meta: dict) -> None:
    atomic_write(sidecar_path(path), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2, sort_keys=True)))


def mismatch(path: str | Path, expected: dict) -> str | None:
    """Why the artefact at `path` cannot be reused for `expected` (None when it can)."""
    if not Path(path).is_file():
        return "missing"
    meta = read_sidecar(path)
    if meta is None:
        return "no readable sidecar"
    for k, v in expected.items():
        if meta.get(k) != v:
            return f"{k} differs ({meta.get(k)!r} != {v!r})"
    return None


def ensure_dir(out_dir: str | Path) -> Path:
    """The folder artefacts are written to (`export --out`), created, and writable."""
    out = Path(out_dir)
    why = _unwritable(out)
    if why:
        raise StreamsegError(f"{out}: cannot write artefacts there ({why})")
    return out


def _unwritable(out: Path) -> str | None:
    """Why artefacts cannot be written into `out` (created here when missing), or None."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create it: {e.strerror or type(e).__name__}"
    return None if os.access(out, os.W_OK | os.X_OK) else "not writable"


_TEMP_DIR: list[Path] = []  # this process's stand-in for an engines folder it cannot write


def build_dir(out_dir: Path, log=None) -> Path:
    """Where an artefact of `out_dir` is built: `out_dir`, or where that cannot be written (a
    read-only cache, another user's folder) a temporary folder for this process, removed at exit,
    with one warning line (the artefacts already in `out_dir` are still used)."""
    why = _unwritable(out_dir)
    if not why:
        return out_dir
    if not _TEMP_DIR:
        _TEMP_DIR.append(Path(tempfile.mkdtemp(prefix="streamseg-engines-")))
        atexit.register(shutil.rmtree, _TEMP_DIR[0], True)
        (log or _to_stderr)(f"warning: engines folder {out_dir}: {why}; building into a temporary folder for "
                            "this run only (give --engines DIR, a folder you can write, to keep them)")
    return _TEMP_DIR[0]


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _why_rebuild(path: Path, expected: dict, force: bool, check) -> str | None:
    return "forced" if force else (mismatch(path, expected) or (check(path) if check else None))


def ensure_artefact(path: Path, expected: dict, build: Callable[[Path], dict | None], *, force: bool = False,
                    check: Callable[[Path], str | None] | None = None, log=None) -> Path:
    """The artefact at `path`, reused while its sidecar matches `expected` and `check(path)` finds
    nothing wrong; otherwise (or when `force`) `build(path)` writes it, with one log line saying why
    a stale one is rebuilt. The sidecar is `expected` plus what `build` returns (e.g. output names).
    Where `path`'s folder cannot be written, it is built in a temporary folder (`build_dir`) and
    that path is returned."""
    why = _why_rebuild(path, expected, force, check)
    if not why:
        return path
    folder = build_dir(path.parent, log)
    if folder != path.parent:  # a folder it cannot write: the process's temporary one (built there already?)
        path = folder / path.name
        why = _why_rebuild(path, expected, force, check)
        if not why:
            return path
    if log:
        log(Building(f"building {path.name}", path) if why in ("missing", "forced")
            else Building(f"rebuilding {path.name}: {why}", path, routine=False))
    extra = build(path)
    write_sidecar(path, {**expected, **(extra or {})})
    return path


def load_or_rebuild(ensure: Callable[[bool], Path], open_: Callable[[Path], T], log=None) -> T:
    """open_(ensure(False)); where the artefact does not load (stale, corrupt), rebuild it once
    (ensure(True)) and open that."""
    path = ensure(False)
    try:
        return open_(path)
    except Exception as e:  # noqa: BLE001 - any failure to load a cached artefact means: rebuild it
        if log:
            log(Building(f"rebuilding {path.name}: it does not load ({first_line(e, 120)})", path, routine=False))
    return open_(ensure(True))
