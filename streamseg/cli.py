"""The `streamseg` command: a thin typer shell. Each command parses flags and calls one function;
a StreamsegError becomes one red line and exit code 2."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from .types import StreamsegError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Real-time median-nerve segmentation for wrist ultrasound.")
console = Console(stderr=True)


def friendly(fn):
    """Turn StreamsegError (and Ctrl-C) into one clear line and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StreamsegError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(2)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130)

    return wrapper


def not_built(issue: str):
    console.print(f"[yellow]not built yet:[/] this command arrives with the {issue} issue")
    raise typer.Exit(3)


@app.command()
@friendly
def live(device: str = typer.Option("/dev/video0", help="/dev/videoN, an index, or a URL")):
    """Segment a live source (frame grabber or network stream)."""
    not_built("real-time pipeline")


@app.command()
@friendly
def file(input: Path = typer.Argument(..., help="video file")):
    """Segment a recorded video file."""
    not_built("real-time pipeline")


@app.command()
@friendly
def bench():
    """Benchmark the backends, stage by stage."""
    not_built("compiled-inference")


@app.command()
@friendly
def export():
    """Export the model to ONNX / TensorRT / compiled artefacts."""
    not_built("compiled-inference")


def main():
    app()


if __name__ == "__main__":
    sys.exit(main())
