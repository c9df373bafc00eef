"""Running out of memory (a small `ulimit -v`, a full machine) is one line, "error: not enough
memory (...)", exit code 1, never a traceback: `memory_error` tells such a failure from others
(MemoryError, torch's "DefaultCPUAllocator: can't allocate memory" or CUDA "out of memory"
RuntimeError, a library that cannot be mapped, ENOMEM); `cli.friendly` reports it for every command,
`cli.main` while the command line is parsed, and `one_line_when_out_of_memory` (installed first
thing when the process is the `streamseg` command) while the command's own modules are imported. Imports nothing of ours."""
from __future__ import annotations

import errno
import re
import sys

_MAPPED = re.compile(r"([^/\s:]+\.so[.\d]*): failed to map segment")


def memory_error(e: BaseException) -> str | None:
    """The one line to print when `e` is an allocation that failed, else None."""
    if isinstance(e, MemoryError):
        return "not enough memory"
    text = str(e)
    m = _MAPPED.search(text)
    if isinstance(e, (ImportError, OSError)) and m:
        return f"not enough memory (loading {m.group(1)})"
    if isinstance(e, OSError) and e.errno == errno.ENOMEM:
        return "not enough memory"
    if isinstance(e, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text):
        return f"not enough memory ({'GPU' if 'CUDA' in text else 'CPU'} allocation failed)"
    if isinstance(e, SystemError) and "without" in text and "exception" in text:  # C code whose allocation failed
        return "not enough memory (a compiled module failed without saying why, as it does when an allocation fails)"
    if isinstance(e, RuntimeError) and "operator torchvision::" in text and "does not exist" in text:
        return ("torchvision's compiled operators did not load (not enough memory, or a torchvision "
                "that does not match torch)")
    return None


def report(e: BaseException) -> bool:
    """Print `e`'s one line to stderr (plainly: rich may need the memory that is missing) when it is
    a failure to allocate; whether it was."""
    line = memory_error(e)
    if line is not None:
        sys.stderr.write(f"error: {line}\n")
        sys.stderr.flush()
    return line is not None


def _hook(kind, value, tb) -> None:
    if not report(value):
        sys.__excepthook__(kind, value, tb)


def one_line_when_out_of_memory() -> None:
    """An uncaught failure to allocate (while the command's imports load) prints one line, exit 1."""
    sys.excepthook = _hook
