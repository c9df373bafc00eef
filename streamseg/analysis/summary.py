"""The scan summary: CSA (or px² area) per frame gathered as a `types.Sink`, the scan's numbers
(`CsaSummary`: median, IQR, the CTS flag) and a matplotlib CSA-over-time plot (matplotlib is
imported only to draw it)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_write
from ..types import CONFIDENT_SCORE, CTS_CUTOFF_MM2, NERVE_SCORE, Result


@dataclass
class CsaSummary:
    """The scan's numbers: CSA (or px² area) median and IQR over confident frames, and the CTS flag
    (None when uncalibrated or without confident frames)."""

    frames_processed: int
    frames_with_nerve: int
    confident_frames: int
    confident_threshold: float
    unit: str  # "mm²" or "px²"
    mm_per_px: float | None
    calibrated: bool
    median: float | None = None
    q1: float | None = None
    q3: float | None = None
    iqr: float | None = None
    cts_cutoff_mm2: float = CTS_CUTOFF_MM2
    cts_flag: bool | None = None


class ScanSummary:
    """Accumulates per-frame CSA; `summary()` gives the scan's numbers, `plot()` a CSA-over-time PNG.
    A `types.Sink` holding no file: the runner writes `summary()` and `write_plot()` (as
    `files.StagedFile`s) once the run is over."""

    quit_requested = False

    def __init__(self, mm_per_px: float | None, score_thresh: float = NERVE_SCORE, confident: float = CONFIDENT_SCORE,
                 cts_cutoff_mm2: float = CTS_CUTOFF_MM2):
        self.mm_per_px, self.score_thresh, self.confident, self.cutoff = mm_per_px, score_thresh, confident, cts_cutoff_mm2
        self.t, self.value, self.stable, self.conf = [], [], [], []
        self.processed = self.with_nerve = 0

    @property
    def unit(self) -> str:
        return "mm²" if self.mm_per_px is not None else "px²"

    def write(self, r: Result) -> None:
        self.processed += 1
        d, m = r.best, r.measurement
        present = d is not None and m is not None and d.confidence >= self.score_thresh
        self.with_nerve += present
        cal = self.mm_per_px is not None
        t = r.frame.pts if r.frame.pts is not None else r.frame.t_capture
        self.t.append(t)
        self.value.append((m.csa_mm2 if cal else m.area_px) if present else math.nan)
        self.stable.append(((m.csa_mm2_stable if cal else m.area_px_stable) or math.nan) if present else math.nan)
        self.conf.append(bool(present and d.confidence >= self.confident))

    def summary(self) -> CsaSummary:
        vals = np.array([v for v, c in zip(self.value, self.conf) if c], dtype=float)
        s = CsaSummary(frames_processed=self.processed, frames_with_nerve=self.with_nerve, confident_frames=int(len(vals)),
                       confident_threshold=self.confident, unit=self.unit, mm_per_px=self.mm_per_px,
                       calibrated=self.mm_per_px is not None, cts_cutoff_mm2=self.cutoff)
        if len(vals):
            q1, med, q3 = np.percentile(vals, [25, 50, 75])
            s.median, s.q1, s.q3, s.iqr = round(float(med), 3), round(float(q1), 3), round(float(q3), 3), round(float(q3 - q1), 3)
            if self.mm_per_px is not None:
                s.cts_flag = bool(med >= self.cutoff)
        return s

    def figure(self):
        """CSA (or px² area) over time, a matplotlib Figure on the Agg canvas (imported here, so the
        runtime loads matplotlib only when a summary is written): raw per frame (dots, darker when
        confident), stabilised (line), the CTS cut-off (dashed, labelled with its value)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        t = np.array(self.t, float)
        t = t - t[0] if t.size else t
        v, sv, conf = np.array(self.value, float), np.array(self.stable, float), np.array(self.conf, bool)
        cal = self.mm_per_px is not None
        name = "CSA" if cal else "area"
        ax.plot(t[conf], v[conf], ".", color="0.35", ms=4, label=f"{name} per frame (score >= {self.confident:g})")
        if (~conf).any():
            ax.plot(t[~conf], v[~conf], ".", color="0.75", ms=4, label=f"{name} per frame (less confident)")
        ax.plot(t, sv, "-", color="tab:blue", lw=2, label=f"stabilised {name} (running median)")
        if cal:
            ax.axhline(self.cutoff, color="tab:red", ls="--", lw=1.2, label=f"CTS cut-off {self.cutoff:g} mm²")
        ax.set_xlabel("time (s)")
        ax.set_ylabel(f"CSA ({self.unit})" if cal else f"area ({self.unit}, uncalibrated)")
        ax.set_title(f"{name} over time" + ("" if cal else " (uncalibrated: no pixel spacing)"))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        return fig

    def write_plot(self, path) -> None:
        """The CSA-over-time PNG written straight to `path` (a temp file: see `StagedFile`)."""
        self.figure().savefig(path, format="png")

    def plot(self, path) -> Path:
        """The CSA-over-time PNG at `path`, written atomically on its own."""
        atomic_write(Path(path), self.write_plot)
        return Path(path)
