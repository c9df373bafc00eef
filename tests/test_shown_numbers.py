"""Numbers a user reads say what they are (issue 18): an area column holds a number only for the
outline that is shown, and a spacing the input itself calls assumed is never passed off as measured."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamseg.analysis.measure import Analyser
from streamseg.outputs.rows import RowFormat, RowSink, result_row
from streamseg.types import NERVE_SCORE, Detection, Frame, Result

REPO = Path(__file__).resolve().parent.parent
DEMO_DCM = REPO / "streamseg" / "data" / "sample" / "demo.dcm"
MEASURED = ("area_px", "area_px_stable", "csa_mm2", "csa_mm2_stable", "perimeter_px", "perimeter_mm",
            "major_axis_px", "minor_axis_px", "circularity", "flattening")


def _result(index: int, score: float, analyse: Analyser, mask_score: float = 1.0) -> Result:
    mask = np.zeros((120, 160), bool)
    mask[40:80, 50:110] = True
    dets = [Detection(np.array([50, 40, 110, 80], np.float32), score, mask, mask_score)]
    return Result(Frame(np.zeros((120, 160, 3), np.uint8), index, pts=index / 25), dets, analyse(dets))


def test_a_frame_without_a_shown_nerve_has_no_area_in_the_csv_or_jsonl(tmp_path):
    """A row with nerve=0 carried csa_mm2 from a detection scoring 0.08 (the ALOKA DICOM): the
    measurement columns now stay empty (null in JSONL) unless the outline is shown; the score and
    box of the best detection stay, so the row still says what was found and how sure it was."""
    analyse = Analyser(mm_per_px=0.06)
    results = [_result(0, 0.99, analyse), _result(1, 0.08, analyse), _result(2, NERVE_SCORE, analyse)]
    assert results[1].measurement is not None and results[1].measurement.csa_mm2 > 0  # measured, but not shown
    rows = [result_row(r, 0.06, NERVE_SCORE) for r in results]
    assert [r["nerve"] for r in rows] == [1, 0, 1]
    assert all(rows[1][k] is None for k in MEASURED), rows[1]
    assert rows[1]["score"] == 0.08 and rows[1]["x1"] == 50.0 and rows[1]["mm_per_px"] == 0.06
    assert rows[0]["csa_mm2"] == pytest.approx(2400 * 0.0036) and rows[2]["area_px"] == 2400

    for kind in RowFormat:
        sink = RowSink(tmp_path / f"o.{kind}", kind, 0.06, NERVE_SCORE)
        for r in results:
            sink.write(r)
        sink.finish()
        text = Path(sink.file.tmp).read_text()
        got = list(csv.DictReader(text.splitlines())) if kind is RowFormat.CSV else [json.loads(ln) for ln in text.splitlines()]
        empty = "" if kind is RowFormat.CSV else None
        assert all(got[1][k] == empty for k in MEASURED) and got[0]["csa_mm2"] not in ("", None), (kind, got[1])
        sink.abort()


def test_an_outline_is_shown_on_its_confidence_score_times_mask_score():
    """A sure detection (0.99) whose mask head is unsure of the outline (mean probability 0.9 over
    it) is not shown at 0.95, nor tracked, nor counted in the CSA; the row says all three numbers."""
    from streamseg.analysis.summary import ScanSummary
    from streamseg.analysis.tracking import Tracker

    analyse = Analyser(mm_per_px=0.06)
    sure, loose = _result(0, 0.99, analyse, mask_score=0.99), _result(1, 0.99, analyse, mask_score=0.9)
    rows = [result_row(r, 0.06, 0.95) for r in (sure, loose)]
    assert [r["nerve"] for r in rows] == [1, 0]
    assert (rows[1]["score"], rows[1]["mask_score"], rows[1]["confidence"]) == (0.99, 0.9, pytest.approx(0.891))
    assert rows[1]["area_px"] is None and rows[0]["area_px"] == 2400
    summary = ScanSummary(0.06, 0.95, 0.95)
    for r in (sure, loose):
        summary.write(r)
    assert (summary.with_nerve, sum(summary.conf)) == (1, 1)
    tracker = Tracker(threshold=0.95)
    assert tracker.update(sure.detections, (0, 0, 80, 80)) and not tracker.update(loose.detections, (0, 0, 80, 80))


def _pydicom():
    return pytest.importorskip("pydicom")


def test_the_demo_dicoms_assumed_spacing_is_said_wherever_its_mm2_are(tmp_path):
    """demo.dcm printed "0.06 mm/px from the DICOM's ultrasound region" and a CTS verdict with nothing
    saying the spacing is the demo's assumption, which its ImageComments state."""
    pydicom = _pydicom()
    from streamseg.inputs.calibration import Calibration
    from streamseg.inputs.dicom import DicomSource, dicom_info

    ds = pydicom.dcmread(str(DEMO_DCM))
    assert "ASSUMED" in ds.ImageComments  # the file's own description says so (train/make_demo_dicom.py)
    source = DicomSource(str(DEMO_DCM)).open()
    notes = []
    cal = source.calibration(Calibration(), notes.append)
    source.close()
    assert cal.assumed and cal.mm_per_px(source.height) == pytest.approx(0.06)
    assert "ASSUMED, not measured" in cal.describe(source.height)
    assert len(notes) == 1 and "pixel spacing is assumed, not measured" in notes[0] and "CTS flag" in notes[0]

    del ds.ImageComments  # the same file without that description: a spacing like any other, no note
    info = dicom_info(ds, "plain.dcm")
    assert info.mm_per_px == pytest.approx(0.06) and info.spacing_assumed is None
    ds.SeriesDescription = "demo series, pixel spacing assumed"
    assert dicom_info(ds, "x.dcm").spacing_assumed == "demo series, pixel spacing assumed"

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", "from streamseg.app.cli import main; main()", "file", str(DEMO_DCM),
                        "--csv", str(tmp_path / "d.csv"), "--backend", "torch", "--no-track", "--max-frames", "2",
                        "--score-thresh", "0.5", "--confident", "0.5"],  # the wording, whatever the model's confidence
                       capture_output=True, text=True, env=env, timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "which the file says is ASSUMED, not measured" in out and "pixel spacing is assumed" in out
    assert "CTS flag" in out and "on the file's ASSUMED pixel spacing" in out, out
    assert json.loads((tmp_path / "d.summary.json").read_text())["spacing_assumed"] is True
