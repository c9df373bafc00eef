"""Which outputs one `file`/`live` run writes to: `open_outputs(spec, geometry)` opens the sinks a
plain `OutputSpec` asks for (the overlay and input videos, the CSV and JSONL rows, the progress bar's
sink, the `--show` window) and returns them as `Outputs`, which the runner hands to the pipeline,
then finishes (every file output completed as its temp file, the window closed) or aborts. The
runner commits the finished files with the summary's (`types.StagedOutput`, all or none). A new
file output is opened here."""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ..types import NERVE_SCORE, FileSink, Sink, StagedOutput
from .display import WindowSink
from .overlay import lost_screen
from .progress import ProgressSink
from .rows import RowFormat, RowSink
from .video import RawVideoSink, VideoSink

if TYPE_CHECKING:
    from rich.progress import Progress


@dataclass(frozen=True)
class OutputSpec:
    """What a run asks to write: the overlay video (`out`), the input's frames (`save_input`), the
    rows (`csv`, `jsonl`, measured with `mm_per_px`, a nerve shown at `score_thresh`), the window
    (`show`, saving its snapshots in `snapshot_dir`) and the progress bar's task (`progress_label`,
    `progress_total` frames, None: unknown); `encode_threads`: libx264's, for the videos
    (`settings.encode_threads`)."""

    out: Path | None = None
    save_input: Path | None = None
    csv: Path | None = None
    jsonl: Path | None = None
    show: bool = False
    snapshot_dir: Path = Path(".")
    mm_per_px: float | None = None
    score_thresh: float = NERVE_SCORE
    progress_label: str = "frames"
    progress_total: int | None = None
    encode_threads: int = 1


@dataclass(frozen=True)
class Geometry:
    """The source's frames as the videos keep them: size after crop, exact rate, and the time base of
    the pts (None: a 1/90000 clock, as for a live source)."""

    width: int
    height: int
    rate: Fraction | float | None
    time_base: Fraction | None = None


@dataclass
class Outputs:
    """What one run writes to, in the order each result is written: the file outputs (finished and
    committed together), the sinks that hold nothing to end (the scan summary, the progress bar),
    and the window (closed when the run ends)."""

    geometry: Geometry
    files: list[FileSink] = field(default_factory=list)
    others: list[Sink] = field(default_factory=list)
    window: WindowSink | None = None
    video: VideoSink | None = None  # the overlay video (also in `files`): the report gives its frame count

    def all(self) -> list[Sink]:
        return [*self.files, *self.others, *([self.window] if self.window is not None else [])]

    @property
    def video_frames(self) -> int | None:
        """Frames in the overlay video; None without one."""
        return self.video.frames if self.video is not None else None

    def on_tick(self) -> Callable[[bool], None] | None:
        """The pipeline's `on_tick`: while the source is lost, the window shows its last image
        dimmed, with SIGNAL LOST; between frames it still handles the keys. None without a window."""
        window, g = self.window, self.geometry
        if window is None:
            return None

        def tick(lost: bool) -> None:
            if lost:
                window.show(lost_screen(window.last, g.width, g.height))
            else:
                window.poll()

        return tick

    def finish(self) -> list[StagedOutput]:
        """Complete every output file as a temp file and close the window; raise the first error."""
        first_error = None
        for end in [f.finish for f in self.files] + ([self.window.close] if self.window is not None else []):
            try:
                end()
            except Exception as e:  # noqa: BLE001 - finish the others, then report the first
                first_error = first_error or e
        if first_error is not None:
            raise first_error
        return list(self.files)

    def abort(self) -> None:
        """Discard every output's temp file (the targets stay as they were) and close the window."""
        abort(self.files, self.window)


def abort(files: Sequence[StagedOutput], window: WindowSink | None = None) -> None:
    """Discard each file's temp file (its target stays as it was) and close the window, whatever fails."""
    for end in [f.abort for f in files] + ([window.close] if window is not None else []):
        try:
            end()
        except Exception:  # noqa: BLE001 - discarding anyway
            pass


def open_outputs(spec: OutputSpec, geometry: Geometry, others: Sequence[Sink] = (), progress: Progress | None = None,
                 on_event: Callable[[str, str], None] | None = None) -> Outputs:
    """The sinks `spec` asks for, then `others` (written after the files: the scan summary), the
    progress bar's sink when `progress` is given, and the window; `on_event(kind, message)`: the
    window's events. On a failure, the files already opened are discarded."""
    outputs = Outputs(geometry)
    g = geometry
    try:
        if spec.out is not None:
            outputs.video = VideoSink(spec.out, g.width, g.height, g.rate, g.time_base, threads=spec.encode_threads)
            outputs.files.append(outputs.video)
        if spec.save_input is not None:
            outputs.files.append(RawVideoSink(spec.save_input, g.width, g.height, g.rate, g.time_base,
                                              threads=spec.encode_threads))
        for path, fmt in ((spec.csv, RowFormat.CSV), (spec.jsonl, RowFormat.JSONL)):
            if path is not None:
                outputs.files.append(RowSink(path, fmt, spec.mm_per_px, spec.score_thresh))
        outputs.others.extend(others)
        if progress is not None:
            outputs.others.append(ProgressSink(progress, spec.progress_label, spec.progress_total))
        if spec.show:
            outputs.window = WindowSink(snapshot_dir=spec.snapshot_dir, on_event=on_event)
    except BaseException:
        abort(outputs.files)
        raise
    return outputs
