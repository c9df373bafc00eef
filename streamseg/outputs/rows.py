"""The row outputs, a `types.FileSink`: CSV or JSONL, one row per processed frame (`result_row`: the
best detection's raw score and box, and the shown nerve's measurements). Staged like the videos
(`video.py`: a temp file, `finish()`, then `commit()` or `abort()`).
"""
from __future__ import annotations

import csv
import math
import os
from enum import StrEnum
from pathlib import Path

from ..files import StagedFile, check_writable, json_text, write_error
from ..types import Result

FIELDS = ["frame", "pts_s", "nerve", "score", "mask_score", "confidence", "x1", "y1", "x2", "y2", "area_px",
          "area_px_stable", "mm_per_px",
          "csa_mm2", "csa_mm2_stable", "perimeter_px", "perimeter_mm", "major_axis_px", "minor_axis_px",
          "circularity", "flattening", "model_ms", "end_to_end_ms"]


class RowFormat(StrEnum):
    """How a `RowSink` writes its rows: a CSV with a header (an empty cell for no value), or JSON Lines
    (null for no value). The value is the file suffix the CLI's --csv and --jsonl are named after."""

    CSV = "csv"
    JSONL = "jsonl"


def result_row(r: Result, mm_per_px: float | None, score_thresh: float) -> dict:
    """One flat record per processed frame: the best detection's raw score, mask score and their
    product (`confidence`, what `score_thresh` is compared with) and box, and the nerve's
    measurements (mm fields only when calibrated). The measurements are those of the outline shown:
    on a frame without a shown nerve (`nerve` 0: nothing, or a best detection below `score_thresh`)
    they stay empty, so an area column never holds a number for a structure that is not shown."""
    d, m, t = r.best, r.measurement, r.timings
    row = dict.fromkeys(FIELDS)
    shown = d is not None and d.confidence >= score_thresh and m is not None
    row.update(frame=r.frame.index, pts_s=None if r.frame.pts is None else round(r.frame.pts, 6),
               nerve=int(shown), mm_per_px=mm_per_px, model_ms=round(t.model_ms, 2),
               end_to_end_ms=round(t.end_to_end_ms, 2))
    if d is not None:
        row.update(score=round(d.score, 5), mask_score=round(d.mask_score, 5), confidence=round(d.confidence, 5),
                   **{k: round(float(v), 2) for k, v in zip(("x1", "y1", "x2", "y2"), d.box)})
    if shown:
        row.update(area_px=m.area_px, area_px_stable=m.area_px_stable, csa_mm2=_r(m.csa_mm2), csa_mm2_stable=_r(m.csa_mm2_stable),
                   perimeter_px=_r(m.perimeter_px), perimeter_mm=_r(m.perimeter_mm), major_axis_px=_r(m.major_axis_px),
                   minor_axis_px=_r(m.minor_axis_px), circularity=_r(m.circularity), flattening=_r(m.flattening))
    return row


def _r(v, n=4):
    """Rounded, or None (an empty CSV cell, a JSON null) for no value or a non-finite one (flattening
    of a one-pixel-thin mask is inf): no NaN or inf is ever written."""
    return None if v is None or not math.isfinite(v) else round(float(v), n)


class RowSink:
    """CSV or JSONL (`RowFormat`), one row per processed frame; a `types.FileSink`."""

    quit_requested = False  # a file never asks to stop

    def __init__(self, path, fmt: RowFormat, mm_per_px: float | None, score_thresh: float):
        self.path = check_writable(path)
        self.format, self.mm_per_px, self.score_thresh = RowFormat(fmt), mm_per_px, score_thresh
        self.rows = 0
        self.file, self.f = None, None
        try:
            self.file = StagedFile(self.path)
            self.f = open(self.file.tmp, "w", newline="")
            if self.format is RowFormat.CSV:
                self.w = csv.DictWriter(self.f, fieldnames=FIELDS)
                self.w.writeheader()
        except OSError as e:
            if self.file is not None:
                self.abort()
            raise write_error(self.path, e) from None

    def write(self, r: Result) -> None:
        row = result_row(r, self.mm_per_px, self.score_thresh)
        try:
            if self.format is RowFormat.CSV:
                self.w.writerow({k: "" if v is None else v for k, v in row.items()})
            else:
                self.f.write(json_text(row) + "\n")
            self.f.flush()
        except OSError as e:
            raise self.file.error(e) from None
        self.rows += 1

    def finish(self) -> None:
        """Flush, sync and close the temp file (not yet the target); StreamsegError when it cannot."""
        try:
            if not self.f.closed:
                self.f.flush()
                os.fsync(self.f.fileno())
                self.f.close()
        except OSError as e:
            self.abort()
            raise self.file.error(e) from None
        self.file.finish()

    def commit(self) -> Path | None:
        """Rename the finished temp file onto the target; None (and no file) when no row was written."""
        return self.file.commit(keep=self.rows > 0)

    def abort(self) -> None:
        """Discard the temp file; the target is left as it was."""
        try:
            if self.f is not None and not self.f.closed:
                self.f.close()
        except OSError:
            pass
        self.file.abort()
