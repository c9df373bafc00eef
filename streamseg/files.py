"""Generic file helpers, torch-free: atomic writes, hashing, file modes, writability checks, and
one-line error text. Every file streamseg writes goes through a `StagedFile` (whole files: `atomic_write`)."""
from __future__ import annotations

import glob
import hashlib
import json
import math
import numbers
import os
import re
import stat
import tempfile
from pathlib import Path

from .types import StreamsegError


def json_text(obj, **kw) -> str:
    """JSON text for an output file: NaN and ±inf (anywhere in `obj`) become null, so the text is
    always valid JSON (json.dumps with allow_nan=False, which would refuse a non-finite number left)."""
    return json.dumps(finite(obj), allow_nan=False, **kw)


def finite(obj):
    """`obj` with every non-finite real number (float, numpy float) replaced by None; dicts, lists and
    tuples are walked (tuples become lists, as JSON has them)."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral):
        return float(obj) if math.isfinite(obj) else None
    return obj


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call write(tmp_path) then rename onto `path`, at once (a `StagedFile` finished and committed in
    one go); the target never exists half-written and gets ordinary file modes (`public_mode`)."""
    path = Path(path)
    target = output_target(path)
    if not target.parent.exists():
        raise StreamsegError(f"{path}: folder {target.parent} does not exist")
    staged = StagedFile(path, suffix=".tmp")
    try:
        write(staged.tmp)
        staged.finish()
        staged.commit()
    except PermissionError:
        raise StreamsegError(f"{path}: not writable") from None
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        staged.abort()


class StagedFile:
    """The one way streamseg writes a file all or none (every output, and `atomic_write`); a
    `types.StagedOutput`. A hidden temp file beside `path` is made at once (`temp_beside`): the owner
    writes into `tmp` (or gives `write(tmp)`, called by `finish()`); `finish()` completes it (the step
    that can fail: an OSError discards it and is raised as one line), `commit()` renames it onto
    `path` (`replace_onto`), `abort()` discards it: until the commit the target is as it was."""

    def __init__(self, path: str | os.PathLike, write=None, suffix: str = ".part"):
        self.path, self.write = Path(path), write
        self.tmp = temp_beside(self.path, suffix)

    def error(self, e: BaseException) -> StreamsegError:
        return write_error(self.path, e)

    def finish(self) -> None:
        try:
            if self.write is not None:
                self.write(self.tmp)
            public_mode(self.tmp)  # mkstemp made it 0600: the output gets the mode the umask gives (0644 under 022)
        except OSError as e:
            self.abort()
            raise self.error(e) from None
        except BaseException:
            self.abort()
            raise

    def commit(self, keep: bool = True) -> Path | None:
        """Rename the finished temp file onto the target -> the target; `keep=False` (nothing worth a
        file was written, e.g. no frame): the temp file is discarded, the target untouched -> None."""
        if not keep:
            self.abort()
            return None
        return replace_onto(self.tmp, self.path)

    def abort(self) -> None:
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def output_target(path: str | os.PathLike) -> Path:
    """The file an output named `path` really is: symlinks followed to their final target (so that
    a link stays a link and its target gets the new content). Only a regular file, or nothing yet, is
    replaced: a character or block device (/dev/null), a FIFO or a socket is refused in one line, and
    so is a symlink loop."""
    path = Path(path)
    real = Path(os.path.realpath(path))
    if os.path.islink(real):  # realpath stops at a link it cannot resolve: a loop
        raise StreamsegError(f"{path}: symlink loop")
    try:
        mode = os.stat(real).st_mode
    except OSError:  # not there yet (or a name too long: the caller's checks say so)
        return real
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):  # a folder is refused by the caller (check_writable)
        return real
    kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a special file")
    shown = f"{path} (-> {real})" if real != path.absolute() else str(path)
    raise StreamsegError(f"{shown}: is {kind}, not a regular file; outputs are written as regular files only")


def replace_onto(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Rename the finished temp file `tmp` (made by `temp_beside(path, ...)`) onto the output `path`:
    the one place where streamseg renames a temp file. A symlink is written through (the rename
    lands on its target, the link stays); anything that is not a regular file is never renamed
    over (`output_target` raises StreamsegError, and `tmp` is left for the caller to discard).
    Returns `path` as given."""
    os.replace(tmp, output_target(path))
    return Path(path)


def temp_beside(path: Path, suffix: str) -> str:
    """A new hidden temp file `.NAME.PID.XXXXXXXX<suffix>` beside `path`'s real target (`output_target`:
    the same filesystem, so `replace_onto` is one rename; the pid lets a later run tell a dead run's
    leftover from a live run's file); stale ones of the same target are removed first."""
    path = output_target(path)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return tmp


def remove_stale_temps(path) -> list[Path]:
    """Delete the temp files of `path` left by runs that died (SIGKILL, power loss): same name
    pattern as `temp_beside`, owned by a pid that no longer runs. Returns what was removed."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[A-Za-z0-9_]+\.(part|tmp)")
    removed = []
    for p in (path.parent or Path(".")).glob(glob.escape(f".{path.name}.") + "*"):
        m = pattern.fullmatch(p.name)
        if m and not _pid_alive(int(m.group(1))):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def file_sha256(path, hex_digits: int | None = None) -> str:
    """SHA-256 of the whole file; `hex_digits` shortens the hex digest (never the bytes read)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:hex_digits] if hex_digits else h.hexdigest()


def public_mode(path) -> None:
    """Temp files are created 0600; give the finished file the mode the umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


# atomic_write's temp name is ".{name}.XXXXXXXX.tmp": 14 bytes longer than the output's name
_TMP_EXTRA = len(".") + len(".XXXXXXXX.tmp")


def check_writable(path) -> Path:
    """Fail early (before any work) when an output cannot be created: a folder, a missing folder,
    a name too long for the filesystem (with atomic_write's temp name), or a folder that refuses a
    file (permissions, read-only or pseudo filesystems such as /proc: a temp file is tried)."""
    p = Path(path)
    real = output_target(p)  # a device, FIFO or socket (also behind a symlink) is refused here
    parent = real.parent
    if p.is_dir():
        raise StreamsegError(f"{p}: is a folder, expected an output file")
    if not parent.is_dir():
        raise StreamsegError(f"{p}: folder {parent} does not exist")
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(real.name)) + _TMP_EXTRA > name_max:
        raise StreamsegError(f"{p.name[:40]}...: file name too long ({len(os.fsencode(real.name))} bytes; "
                             f"at most {name_max - _TMP_EXTRA} here)")
    if real.exists() and not os.access(real, os.W_OK):
        raise StreamsegError(f"{p}: not writable")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".streamseg-check.", dir=parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise StreamsegError(f"{p}: not writable ({e.strerror or type(e).__name__})") from None
    return p


def write_error(path, e: BaseException) -> StreamsegError:
    """The one line for an error writing the output `path`."""
    return StreamsegError(f"{path}: cannot write ({why(e)})")


def why(e: BaseException) -> str:
    """Why a write failed, in a few words: an OSError's strerror, else the first line of the error."""
    return (e.strerror if isinstance(e, OSError) and e.strerror else None) or first_line(e)


def first_line(exc: BaseException, limit: int = 160) -> str:
    """An exception as one short line: its first line of text, else its type name."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
