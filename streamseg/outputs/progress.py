"""Progress shown while a command works, torch-free: a rich progress bar (done of total, rate, ETA)
on a terminal, nothing at all in logs (a console that is no terminal); and the closing list of
the files a run wrote, with their sizes.

`progress_bar(console, unit)` is what `file`, `eval`, `train` and `export` open; the code doing the
work only calls `add_task`/`update` on it (training does so without importing rich), and the
runner feeds it through a `ProgressSink`, one step per frame written."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

from ..types import Result


class RateColumn(ProgressColumn):
    """Steps per second of a task (rich's own speed column shows bytes)."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-" if speed is None else f"{speed:.1f} {self.unit}/s", style="progress.data.speed")


def progress_bar(console: Console, unit: str = "frames") -> Progress:
    """A transient bar (description, bar, done/total, percent, rate, elapsed, ETA) drawn on `console`
    when it is a terminal; disabled (draws nothing, costs nothing) when it is not."""
    return Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TextColumn(unit), TaskProgressColumn(), RateColumn(unit),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


class ProgressSink:
    """A `types.Sink` that advances one task of a progress bar per result written (nothing to end:
    the bar is transient, it goes when the command ends)."""

    quit_requested = False

    def __init__(self, progress: Progress, description: str, total: int | None):
        self.progress = progress
        self.task = progress.add_task(description, total=total)

    def write(self, result: Result) -> None:
        self.progress.update(self.task, advance=1)


def size_text(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def files_written(paths: list[Path]) -> str:
    """The closing lines of a run: every file it wrote, with its size."""
    if not paths:
        return "wrote no files"
    rows = [f"  {p}  ({size_text(Path(p).stat().st_size)})" for p in paths]
    return "\n".join([f"wrote {len(paths)} file{'s' if len(paths) > 1 else ''}:", *rows])
