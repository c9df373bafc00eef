"""Plain data passed between the pipeline stages. Imports nothing of ours."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


# Score thresholds of the runtime. A detection scoring at least NERVE_SCORE is shown as the nerve;
# at least CONFIDENT_SCORE it also enters the stabilised CSA and the scan summary. For the bundled
# model 0.95 keeps 92 % of the nerves of the validation patients, while the share of frames of two
# nerve-free lung clips shown as a "nerve" falls from 90 % / 49 % (at 0.5) to 29 % / 1 %:
# see train/RESULTS.md.
NERVE_SCORE = 0.95
CONFIDENT_SCORE = 0.95
# The runtime shows one nerve, the best detection, so it asks the model for one: every further
# detection costs a pass of the 112² mask head. `streamseg bench` times the same by default.
SHOWN_DETECTIONS = 1


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
    """The nerve found in one frame, in source pixels."""

    box: np.ndarray  # (4,) float32 x1, y1, x2, y2
    score: float
    mask: np.ndarray  # H×W bool at source resolution


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
    t_overlay_end: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage, filled by backends

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
    signal_lost: int = 0
    lost_now: bool = False


@dataclass
class Result:
    frame: Frame
    detection: Detection | None
    measurement: Measurement | None
    timings: Timings = field(default_factory=Timings)
    overlay: np.ndarray | None = None  # BGR image drawn by the overlay stage
