"""Plain data passed between the pipeline stages, and the contracts of the stages (`Source`,
`Backend`, `Sink`, `StagedOutput`: typing Protocols, so an implementation needs no base class). Imports nothing
of ours, and no torch."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Literal, Protocol

if TYPE_CHECKING:  # annotations only: `streamseg` starts without numpy, so Ctrl-C at once is handled (cli.py)
    from fractions import Fraction

    import numpy as np

    from .inputs.calibration import Calibration


# Confidence thresholds of the runtime when a checkpoint brings none (a model's own, chosen on its
# cross-validation, are in its meta and win: `Thresholds`). A detection whose confidence (score x
# mask score, `Detection.confidence`) is at least NERVE_SCORE is shown as the nerve; at least
# CONFIDENT_SCORE it also enters the stabilised CSA and the scan summary. 0.9: on the bundled
# recipe's patient-wise CV it shows an outline on 152 of 196 scans, 11 of them too loose, and 1 of 389
# nerve-free images (train/RESULTS.md); a trained model's confidences seldom reach 0.95.
NERVE_SCORE = 0.9
CONFIDENT_SCORE = 0.9
# The runtime shows one nerve, the best detection, so it asks the model for one: every further
# detection costs a pass of the 112² mask head. `streamseg bench` times the same by default.
SHOWN_DETECTIONS = 1
# The other defaults of a `file`/`live` run, each said once (the CLI's flags, runner.Options and the
# stages' own signatures read them here; tests/test_option_defaults.py keeps them in step).
CTS_CUTOFF_MM2 = 10.0  # CSA at or above it flags carpal tunnel syndrome (--cts-cutoff)
STABLE_WINDOW = 9  # confident frames in the median of the displayed CSA
OPEN_TIMEOUT_S = 5.0  # a network source answers within it
READ_TIMEOUT_S = 3.0  # a live source delivers a frame within it, else the signal is lost (--timeout)
# after a loss: attempts (--reconnect), first delay (--backoff) doubling up to the longest delay;
# 0.5+1+2+4+37*8 s: about 5 minutes of retrying (a cable unplugged and plugged back in)
RECONNECT_ATTEMPTS, BACKOFF_S, BACKOFF_MAX_S = 41, 0.5, 8.0


class StopReason(StrEnum):
    """Why a `file`/`live` run stopped before its input ended (`stopped_by`; None: the input ended).
    The values are what the summary JSON's "stopped_by" holds."""

    SIGINT = "SIGINT"
    SIGTERM = "SIGTERM"
    QUIT = "quit"  # a sink asked to quit (q or Esc in the window)
    MAX_FRAMES = "max-frames"
    DURATION = "duration"


@dataclass(frozen=True)
class Thresholds:
    """A model's operating point: a top detection scoring at least `display` is shown as the nerve,
    at least `csa` it also enters the stabilised CSA and the scan summary. `chosen_on` says where the
    numbers come from (a checkpoint's cross-validation, or the defaults above)."""

    display: float = NERVE_SCORE
    csa: float = CONFIDENT_SCORE
    chosen_on: str = "streamseg's defaults, as the checkpoint names none"


class StreamsegError(Exception):
    """An error a user can act on: the CLI prints its message as one line and exits non-zero."""


@dataclass
class Frame:
    """One source image after crop: H×W×3 uint8 BGR."""

    image: np.ndarray
    index: int
    pts: float | None = None  # presentation time in seconds (from the container/stream)
    t_capture: float = 0.0  # time.perf_counter() when the frame was read


@dataclass
class Detection:
    """The nerve found in one frame, in source pixels.

    `score` is the detector's (the box classifier's: the paper's confidence, what its Prec/Rec rule
    thresholds); `mask_score` how sure the mask head is of the outline: the mean of its RoI mask
    probabilities over the outline's pixels (SOLOv2's "maskness"; Mask Scoring R-CNN learns the same
    with a MaskIoU head). What is shown is decided on their product, `confidence`: on the patient-wise
    CV it tells outlines too loose to count from right ones better than `score` alone."""

    box: np.ndarray  # (4,) float32 x1, y1, x2, y2
    score: float
    mask: np.ndarray  # H×W bool at source resolution
    mask_score: float

    @property
    def confidence(self) -> float:
        """Compared with the display and CSA thresholds (`confidence`)."""
        return confidence(self.score, self.mask_score)


def confidence(score: float, mask_score: float) -> float:
    """What is shown is decided on: the detector's score × the mask score (`Detection`). The one
    definition, also for detections stored as numbers (evaluation, cross-validation reports)."""
    return score * mask_score


@dataclass
class Measurement:
    area_px: float
    csa_mm2: float | None  # None when uncalibrated: never a made-up mm²
    perimeter_px: float
    perimeter_mm: float | None
    major_axis_px: float
    minor_axis_px: float
    circularity: float  # 4πA/P²
    flattening: float  # major / minor axis
    csa_mm2_stable: float | None = None  # running median over confident frames (display value)
    area_px_stable: float | None = None


@dataclass
class Timings:
    """perf_counter stamps for one frame; durations are derived."""

    t_capture: float = 0.0
    t_infer_start: float = 0.0
    t_infer_end: float = 0.0
    t_analysed: float = 0.0  # the measurement done (pipeline.write_frame)
    t_overlay_end: float = 0.0
    t_written: float = 0.0  # every sink written

    @property
    def model_ms(self) -> float:
        return 1000.0 * (self.t_infer_end - self.t_infer_start)

    @property
    def end_to_end_ms(self) -> float:
        return 1000.0 * (self.t_overlay_end - self.t_capture)


@dataclass
class Hud:
    """The figures the overlay prints along the bottom of every frame (filled by the pipeline)."""

    source_fps: float | None = None
    processed_fps: float | None = None
    model_ms: float | None = None
    end_to_end_ms: float | None = None
    dropped: int = 0
    signal_lost: int = 0  # losses so far (the window shows SIGNAL LOST while lost: overlay.lost_screen)


@dataclass
class Result:
    """One frame on its way through the pipeline: inference fills `detections`, `timings` and
    `speed`; the analyse step `measurement`; the overlay stage `overlay`; then the sinks read it."""

    frame: Frame
    detections: list[Detection] = field(default_factory=list)  # best first, as the backend returns them
    measurement: Measurement | None = None  # of the best detection (None: no detection, or an empty mask)
    timings: Timings = field(default_factory=Timings)
    speed: dict[str, float] = field(default_factory=dict)  # ms per backend stage for this frame (preprocess, model, paste, ...)
    overlay: np.ndarray | None = None  # BGR image drawn by the overlay stage
    @property
    def best(self) -> Detection | None:
        """The detection the runtime shows and measures: the backend's best (None when there is none)."""
        return self.detections[0] if self.detections else None


SourceState = Literal["ok", "lost"]


@dataclass
class SourceStats:
    """What a source counts while it runs (reported in the scan summary)."""

    frames_read: int = 0
    decode_errors: int = 0  # packets/frames that could not be decoded
    signal_lost: int = 0
    reconnect_attempts: int = 0
    reconnects: int = 0  # successful
    expected_frames: int | None = None  # from the container, when it says (a count, or duration x rate)
    expected_slack: int = 0  # how far the expectation may be off: 1 when estimated from duration x rate
    notes: list[str] = field(default_factory=list)


class Source(Protocol):
    """Frames from one input (`sources.open_source`: files, streams, V4L2 grabbers, DICOM files),
    opened and checked (first frame read) before it is handed on.

    `frames(stop)` yields cropped BGR frames until the input ends or `stop` is set; `state` says
    whether the signal is there now (a live source reconnecting is "lost"); `stats` counts.
    `calibration(given, log)` is the spacing to measure with: `given` (from the flags), or the
    input's own where it carries one (a DICOM's ultrasound region) and no flag gives one."""

    fps: float | None  # nominal frame rate; None when the input does not say
    rate: Fraction | None  # the same, exact (the output video's rate)
    time_base: Fraction | None  # of the frames' pts (the output video keeps it); None: a 1/90000 clock
    width: int  # after crop
    height: int
    stats: SourceStats

    @property
    def state(self) -> SourceState: ...

    def frames(self, stop: threading.Event) -> Iterator[Frame]: ...

    def describe(self) -> str: ...

    def calibration(self, given: Calibration, log: Callable[[str], None]) -> Calibration: ...

    def close(self) -> None: ...


@dataclass
class Inference:
    """What a backend returns for one image: its detections in source pixels, best first, and the
    seconds each stage of that call took (preprocess, model, paste, and inner stages such as dense,
    proposals, heads; `track` where the tracking policy chose a window)."""

    detections: list[Detection]
    stages: dict[str, float] = field(default_factory=dict)


Precision = Literal["fp32", "fp16", "int8"]


class Backend(Protocol):
    """How the network runs (`backends/`): `infer(image, roi=None) -> Inference`, a BGR image of any
    size in, detections in source pixels out, best first, with the seconds each stage took. With
    `roi` (x0, y0, x1, y1, source pixels) it runs only that window, at the full frame's scale
    (`image_size / max(H, W)`) in a smaller square input, one of `roi_sizes` (empty: the backend
    runs full frames only); detections still come back in full-frame pixels (`letterbox.Letterbox`).
    `precision` is what the network runs at: "fp32", "fp16" or "int8". `thresholds`: the model's
    operating point (its checkpoint's, else the defaults), used where the user gives none."""

    name: str
    precision: Precision
    roi_sizes: tuple[int, ...]

    @property
    def image_size(self) -> int: ...

    @property
    def thresholds(self) -> Thresholds: ...

    def describe(self) -> str: ...

    def infer(self, image: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> Inference: ...

    def prepare_windows(self) -> None:
        """Build what the window inputs need now (e.g. one compiled graph per size), not at the
        first tracked frame: called where tracking is on, before the first frame."""


class Sink(Protocol):
    """Where results go: the pipeline calls `write(result)` once per frame and reads
    `quit_requested`, which turns True when the user asks to stop (the window's q or Esc; False for
    sinks that cannot ask). A sink that writes a file is a `FileSink`; the window is closed by the
    runner that opened it (`display.py`); the scan summary and the progress bar hold nothing to end."""

    @property
    def quit_requested(self) -> bool: ...

    def write(self, result: Result) -> None: ...


class StagedOutput(Protocol):
    """A file output, all or none (`files.StagedFile`): it is written to a hidden temp file beside
    `path`; `finish()` completes the temp file (the step that can fail: disk full), `commit()` renames
    it onto `path` and returns the file written (None, and no file, for an output given nothing to
    write), `abort()` discards it and leaves the target as it was. The runner finishes every output
    of a run first and commits only when all finished."""

    path: Path

    def finish(self) -> None: ...

    def commit(self) -> Path | None: ...

    def abort(self) -> None: ...


class FileSink(Sink, StagedOutput, Protocol):
    """A sink writing a file frame by frame (`outputs/`: the videos, the CSV/JSONL rows)."""
