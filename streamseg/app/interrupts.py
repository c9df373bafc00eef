"""Ctrl-C (SIGINT) and SIGTERM: every switch of their handlers is made here.

- Start-up. While the `streamseg` command starts (imports, model load, source open) nothing is
  written yet, so Ctrl-C prints one line and exits 130 at once (`exit_at_once_on_interrupt`): a
  KeyboardInterrupt there would land inside a half-done library import (torch), print a traceback
  or leave the interpreter to die by SIGINT at exit. The package installs it first thing when the
  process is the command (`streamseg/__init__.py`). `cli.friendly` then gives every command
  KeyboardInterrupt back (`interrupt_raises`: "interrupted", exit 130), except `file` and `live`,
  which (re)install the exit at once until the runner opens their outputs.
- A run's outputs. `runner.run` holds one `RunSignals` from the opening of the outputs to their
  commit: while the outputs are opened Ctrl-C raises KeyboardInterrupt (and what was opened is
  discarded); while the pipeline runs, its own handler takes the signals (`signals_to`: the first
  stops capture, what was read is still written); from then to the commit, later signals are only
  noted (`RunSignals.hold`), so nothing cuts the finalising short. On leaving, the handlers are
  restored, or, for the command, ignored until it exits (`until_exit`).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import ExitStack, contextmanager
from collections.abc import Iterator  # not typing: this module loads before the start-up handler is in place

EXIT_CODE = 130  # 128 + SIGINT


def started_as_the_command() -> bool:
    """Is this process the `streamseg` command (the console script, `python -m streamseg` or `-m streamseg.app.cli`),
    rather than code or tests importing the package?"""
    argv = sys.orig_argv  # the interpreter's own arguments (-m NAME), Python >= 3.10
    if sys.argv and os.path.basename(sys.argv[0]) == "streamseg":
        return True
    return any(a == "-m" and b in ("streamseg", "streamseg.app.cli") for a, b in zip(argv, argv[1:]))


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


@contextmanager
def signals_to(handler) -> Iterator[None]:
    """SIGINT and SIGTERM call `handler` within the block (from the main thread only), then are restored."""
    old = {}
    if _main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class RunSignals:
    """The signals of one run's outputs, a context manager (`runner.run`; see above). Entering it,
    Ctrl-C raises KeyboardInterrupt again; `hold()` (at the pipeline's start) notes SIGINT and
    SIGTERM in `received` from then on, never raising them (the pipeline routes them to its own
    handler while it runs, with `signals_to`). Leaving it restores the handlers, or with
    `until_exit` ignores both (SIG_IGN, which Python keeps through its own shutdown, where it would
    reset a Python handler to the default and die by the signal), so the command ends with its
    summary line and exit code."""

    def __init__(self, until_exit: bool = False):
        self.until_exit = until_exit
        self.received: list[str] = []
        self._held = ExitStack()

    def __enter__(self) -> "RunSignals":
        interrupt_raises()
        return self

    def hold(self) -> None:
        self._held.enter_context(signals_to(self._note))

    def _note(self, signum, frame) -> None:
        self.received.append(signal.Signals(signum).name)
        if len(self.received) == 1:
            try:
                sys.stderr.write(f"{self.received[0]}: finishing the outputs, please wait\n")
                sys.stderr.flush()
            except OSError:
                pass

    def __exit__(self, *exc) -> None:
        if self.until_exit and _main_thread():
            self._held.pop_all()
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_IGN)
        else:
            self._held.close()
