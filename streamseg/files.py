"""Generic file helpers, torch-free: atomic writes, hashing, file modes, writability checks, and
one-line error text. Every output of streamseg is written through `atomic_write`."""
from __future__ import annotations

import glob
import hashlib
import os
import re
import tempfile
from pathlib import Path

from .types import StreamsegError


def user_cache(*parts: str) -> Path:
    """A folder in the user's cache: $XDG_CACHE_HOME/streamseg/<parts> (else ~/.cache/streamseg/...)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "streamseg", *parts)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call write(tmp_path) then rename onto `path`; the target never exists half-written and gets
    ordinary file modes (`public_mode`)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise StreamsegError(f"{path}: folder {path.parent} does not exist")
    tmp = temp_beside(path, ".tmp")
    try:
        write(tmp)
        public_mode(tmp)  # mkstemp made it 0600: the output gets the mode the umask gives (0644 under 022)
        os.replace(tmp, path)
    except PermissionError:
        raise StreamsegError(f"{path}: not writable") from None
    except OSError as e:
        raise StreamsegError(f"{path}: cannot write ({e.strerror or first_line(e)})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def temp_beside(path: Path, suffix: str) -> str:
    """A new hidden temp file `.NAME.PID.XXXXXXXX<suffix>` beside `path` (the pid lets a later run tell
    a dead run's leftover from a live run's file); stale ones of the same target are removed first."""
    path = Path(path)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent or ".")
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
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise StreamsegError(f"{p}: is a folder, expected an output file")
    if not parent.is_dir():
        raise StreamsegError(f"{p}: folder {parent} does not exist")
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(p.name)) + _TMP_EXTRA > name_max:
        raise StreamsegError(f"{p.name[:40]}...: file name too long ({len(os.fsencode(p.name))} bytes; "
                             f"at most {name_max - _TMP_EXTRA} here)")
    if p.exists() and not os.access(p, os.W_OK):
        raise StreamsegError(f"{p}: not writable")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".streamseg-check.", dir=parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise StreamsegError(f"{p}: not writable ({e.strerror or type(e).__name__})") from None
    return p


def first_line(exc: BaseException, limit: int = 160) -> str:
    """An exception as one short line: its first line of text, else its type name."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]
