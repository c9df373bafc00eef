"""What `streamseg eval` tells a user, on constructed cases with known answers: the operating point at
the display threshold, per-patient results, the Bland–Altman CSA agreement and false detections."""
import cv2
import numpy as np
import pytest

from streamseg.training import report
from streamseg.training.evaluate import is_nerve_free, user_view
from streamseg.training.metrics import (bland_altman, false_detections, operating_point, paper_rule, per_patient,
                                        reliability, shown_outcome)

from conftest import GT_BOX, box_mask as _mask


def _scan(boxes, scores, patient="P1", name="x", mask_scores=None):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    ms = np.ones(len(boxes)) if mask_scores is None else np.array(mask_scores, float)
    return paper_rule(name, GT_BOX, _mask(GT_BOX), boxes, np.array(scores, float), [_mask(b) for b in boxes], ms,
                      patient=patient)


def test_operating_point_counts_what_is_shown_at_the_display_threshold():
    scans = [
        _scan([[100, 100, 200, 160]], [0.97]),          # on the nerve, 0.97: shown and correct (not a paper TP)
        _scan([[10, 10, 60, 60]], [0.99]),              # shown on something else: wrong structure
        _scan([[120, 100, 220, 160]], [0.999]),         # box IoU 0.667 < 0.7: wrong structure
        _scan([[100, 100, 200, 160]], [0.90]),          # below the threshold: nothing shown
        _scan([], []),                                  # no detection at all: nothing shown
        _scan([[100, 100, 200, 160]], [0.95]),          # exactly at the threshold is shown (>=)
    ]
    assert scans[0].tp == 0  # the paper's rule needs > 0.98; the user still sees the right outline
    op = operating_point(scans, 0.95)
    assert op.counts == {"correct": 2, "wrong structure": 2, "nothing shown": 2}
    assert op.shares["correct"] == pytest.approx(2 / 6) and op.images == 6
    assert op.wrong_on_nerve == 1  # the loose box over the nerve; the outline on something else is not
    assert ("wrong structure (1 loose on the nerve)", "2 (33.3%)") in report.operating_rows(op)
    assert [shown_outcome(s, 0.98) for s in scans] == ["nothing shown", "wrong structure", "wrong structure",
                                                        "nothing shown", "nothing shown", "nothing shown"]


def test_the_user_view_shows_on_the_confidence_and_counts_on_the_score():
    # a sure box (0.99) on the nerve with an unsure outline (mask score 0.9): the paper's rule counts
    # it (score > 0.98), the user is not shown it at 0.95 (confidence 0.891)
    r = _scan([[100, 100, 200, 160]], [0.99], mask_scores=[0.9])
    assert r.tp == 1 and r.top_confidence == pytest.approx(0.891)
    assert shown_outcome(r, 0.95) == "nothing shown" and shown_outcome(r, 0.89) == "correct"


def test_reliability_tells_what_a_top_confidence_means():
    scans = [_scan([[100, 100, 200, 160]], [0.99], mask_scores=[0.94]), _scan([[10, 10, 60, 60]], [0.96]),
             _scan([[100, 100, 200, 160]], [0.995], mask_scores=[0.97]), _scan([], [])]
    rows = {r.bin: r for r in reliability(scans, nerve_free_scores=[0.955, 0.2])}
    assert rows["0.92-0.94"].scans == 1 and rows["0.92-0.94"].on_nerve_share == 1.0  # 0.99 x 0.94 = 0.9306
    assert rows["0.96-1.00"].scans == 2 and rows["0.96-1.00"].on_nerve_share == 0.5
    assert rows["0.94-0.96"].nerve_free == 1 and rows["0.00-0.50"].nerve_free == 1
    assert rows["0.00-0.50"].scans == 1  # no detection: confidence 0
    assert rows["0.50-0.80"].on_nerve_share is None
    assert sum(r.scans for r in rows.values()) == 4
    assert user_view(scans, 0.95, 0.7, None).reliability == reliability(scans)


def test_bland_altman_against_a_hand_computation():
    ba = bland_altman([100, 200, 300], [110, 190, 330])
    # differences 10, -10, 30: mean 10, sample sd sqrt((0² + 20² + 20²) / 2) = 20
    assert ba.n == 3 and ba.bias == pytest.approx(10.0) and ba.sd == pytest.approx(20.0)
    assert ba.loa_low == pytest.approx(10 - 1.96 * 20) and ba.loa_high == pytest.approx(10 + 1.96 * 20)
    assert ba.mae == pytest.approx(50 / 3)
    assert ba.rel_abs_error_median == pytest.approx(0.1)  # |rel| 0.1, 0.05, 0.1
    assert bland_altman([], []).bias is None


def test_csa_agreement_uses_the_shown_outline_on_correct_scans_and_scales_to_mm2():
    scans = [_scan([[100, 100, 200, 170]], [0.97]),     # shown, correct: 100x70 vs expert 100x60
             _scan([[100, 100, 200, 150]], [0.99]),     # correct: 100x50
             _scan([[10, 10, 60, 60]], [0.99])]         # wrong structure: left out of the agreement
    view = user_view(scans, 0.95, 0.7, mm_per_px=0.1)
    px = view.csa_agreement.px2
    assert px.n == 2 and px.bias == pytest.approx(0.0) and px.mae == pytest.approx(1000.0)
    mm = view.csa_agreement.mm2
    assert mm.mae == pytest.approx(10.0) and mm.loa_high == pytest.approx(px.loa_high * 0.01)


def test_per_patient_results():
    scans = [_scan([[100, 100, 200, 160]], [0.99], "A"), _scan([], [], "A"), _scan([[10, 10, 60, 60]], [0.999], "B")]
    p = per_patient(scans)
    assert list(p) == ["A", "B"]
    assert (p["A"].precision, p["A"].recall, p["A"].dice_median) == (1.0, 0.5, pytest.approx(1.0))
    assert (p["B"].tp, p["B"].fp, p["B"].fn) == (0, 1, 0)
    assert report.patient_rows(p)[0] == ("A", "2", "1.000", "0.500", "1.000")


def test_false_detection_rates_use_both_thresholds():
    # (score, confidence): the paper's rule on the score, what is shown on the confidence
    fd = false_detections([(0.0, 0.0), (0.5, 0.5), (0.95, 0.95), (0.98, 0.98), (0.99, 0.94)], thresh=0.95, conf=0.98)
    assert (fd.over_conf, fd.shown, fd.images) == (1, 2, 5)  # > 0.98 strictly; >= 0.95 (0.99 x mask 0.95 is not shown)
    assert fd.over_conf_share == pytest.approx(0.2) and fd.shown_share == pytest.approx(0.4)
    assert fd.max_score == 0.99 and fd.max_confidence == 0.98


def test_figures_are_written_whole(tmp_path):
    ba = bland_altman([100, 200, 300], [110, 190, 330])
    report.bland_altman_plot(tmp_path / "ba.png", [100, 200, 300], [110, 190, 330], ba)
    report.score_histogram(tmp_path / "h.png", [(0.1, 0.1), (0.97, 0.9), (0.99, 0.97)], 0.95, 0.98)
    report.dice_boxplot(tmp_path / "d.png", {"mask112": [0.9, 0.92, 0.95, 0.7]})
    for name in ("ba.png", "h.png", "d.png"):
        img = cv2.imread(str(tmp_path / name))
        assert img is not None and img.shape[0] > 200 and img.std() > 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ba.png", "d.png", "h.png"]  # no temp files left


def test_a_folder_without_masks_is_nerve_free(tmp_path, sample_dir):
    (tmp_path / "images").mkdir()
    assert is_nerve_free(tmp_path) and not is_nerve_free(sample_dir)
    (tmp_path / "masks").mkdir()
    assert not is_nerve_free(tmp_path)
