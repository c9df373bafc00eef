"""Ctrl-C while the `streamseg` command starts (imports, model load, source open): nothing is written
yet, so it exits at once with one line and code 130. A KeyboardInterrupt raised there would land
inside a half-done library import (torch), print a traceback or leave the interpreter to die by
SIGINT at exit. The package installs this first thing, when the process is the command
(`streamseg/__init__.py`); `cli.friendly` restores KeyboardInterrupt for every command but `file`
and `live`, which keep it until `runner.run` opens the outputs. From the moment outputs are opened, Ctrl-C raises KeyboardInterrupt again (and the
pipeline catches SIGINT itself), so every output is finalised or discarded."""
from __future__ import annotations

import os
import signal
import sys
import threading

EXIT_CODE = 130  # 128 + SIGINT


def started_as_the_command() -> bool:
    """Is this process the `streamseg` command (the console script, or `python -m streamseg[.cli]`),
    rather than code or tests importing the package?"""
    argv = sys.orig_argv  # the interpreter's own arguments (-m NAME), Python >= 3.10
    if sys.argv and os.path.basename(sys.argv[0]) == "streamseg":
        return True
    return any(a == "-m" and b in ("streamseg", "streamseg.cli") for a, b in zip(argv, argv[1:]))


def _exit_at_once(signum, frame) -> None:
    try:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_CODE)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def exit_at_once_on_interrupt() -> None:
    """From now on Ctrl-C prints one line and exits 130 at once (main thread; nothing may be open)."""
    if _main_thread():
        signal.signal(signal.SIGINT, _exit_at_once)


def interrupt_raises() -> None:
    """Ctrl-C raises KeyboardInterrupt again (Python's default), where `exit_at_once_on_interrupt` was set."""
    if _main_thread() and signal.getsignal(signal.SIGINT) is _exit_at_once:
        signal.signal(signal.SIGINT, signal.default_int_handler)
