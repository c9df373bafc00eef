"""Ctrl-C while the `streamseg` command starts (imports, model load, source open): nothing is written
yet, so it exits at once with one line and code 130. A KeyboardInterrupt raised there would land
inside a half-done library import (torch), print a traceback or leave the interpreter to die by
SIGINT at exit. The package installs this first thing, when the process is the command
(`streamseg/__init__.py`); `cli.friendly` restores KeyboardInterrupt for every command but `file`
and `live`, which keep it until `runner.run` opens the outputs. From the moment outputs are opened, Ctrl-C raises KeyboardInterrupt again (and the
pipeline catches SIGINT itself), so every output is finalised or discarded. Once the pipeline runs,
`SignalsHeld` keeps SIGINT and SIGTERM from aborting the outputs until they are committed: the first
signal stops capture (the pipeline's own handler), later ones while the files are finalised are
only noted."""
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


class SignalsHeld:
    """From `hold()` until `release()` SIGINT and SIGTERM are noted in `received`, never raised: the
    outputs' finalising and commit (runner.run) cannot be cut short by a second Ctrl-C or a SIGTERM.
    The pipeline installs its own handler over this one while it runs and restores this one after."""

    def __init__(self):
        self.received: list[str] = []
        self._old: dict[int, object] = {}

    def hold(self) -> None:
        if _main_thread() and not self._old:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._note)

    def _note(self, signum, frame) -> None:
        self.received.append(signal.Signals(signum).name)
        if len(self.received) == 1:
            try:
                sys.stderr.write(f"{self.received[0]}: finishing the outputs, please wait\n")
                sys.stderr.flush()
            except OSError:
                pass

    def until_exit(self) -> None:
        """The command's outputs are committed: later signals are ignored (SIG_IGN, which Python keeps
        through its own shutdown, where it would reset a Python handler to the default and die by the
        signal) so that it ends with its summary line and exit code."""
        if _main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_IGN)

    def release(self) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old.clear()
