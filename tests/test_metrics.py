"""The paper's TP/FP/FN rule and AP (pycocotools) on hand-made cases."""
import cv2
import numpy as np
import pytest

from streamseg.training.metrics import coco_ap, dice, hd95, paper_rule, summarize

from conftest import GT_BOX, box_mask as _mask


def _rule(boxes, scores, **kw):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return paper_rule("x", GT_BOX, _mask(GT_BOX), boxes, np.array(scores, float), [_mask(b) for b in boxes],
                      np.ones(len(boxes)), **kw)


def test_tp_needs_iou_07_and_confidence_above_098():
    r = _rule([[100, 100, 200, 160]], [0.99])
    assert (r.tp, r.fp, r.fn) == (1, 0, 0) and r.dice == pytest.approx(1.0)
    r = _rule([[100, 100, 200, 160]], [0.98])  # not higher than 0.98: no prediction at all
    assert (r.tp, r.fp, r.fn) == (0, 0, 1)
    r = _rule([[120, 100, 220, 160]], [0.999])  # IoU 80/120 = 0.667 < 0.7: an FP, not a TP
    assert (r.tp, r.fp, r.fn) == (0, 1, 0)
    r = _rule([[115, 100, 215, 160]], [0.999])  # IoU 85/115 = 0.739
    assert (r.tp, r.fp, r.fn) == (1, 0, 0)


def test_second_box_on_the_same_nerve_is_an_fp_and_strict_rule_counts_misses():
    r = _rule([[100, 100, 200, 160], [102, 100, 200, 160]], [0.995, 0.99])
    assert (r.tp, r.fp, r.fn) == (1, 1, 0)
    r = _rule([[0, 0, 50, 50]], [0.999], fn_rule="strict")
    assert (r.tp, r.fp, r.fn) == (0, 1, 1)
    r = _rule([], [])
    assert (r.tp, r.fp, r.fn) == (0, 0, 1)


def test_summary_precision_recall_and_dice_stats():
    rs = [_rule([[100, 100, 200, 160]], [0.99]), _rule([[110, 100, 200, 160]], [0.99]), _rule([], []),
          _rule([[0, 0, 40, 40]], [0.999])]
    s = summarize(rs)
    assert (s.tp, s.fp, s.fn) == (2, 1, 1)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    d2 = 2 * 90 * 60 / (100 * 60 + 90 * 60)
    assert s.dice_median == pytest.approx((1 + d2) / 2)


def test_dice_and_hd95_on_a_real_mask(sample_dir):
    gt = cv2.imread(str(sample_dir / "masks" / "Pz089-001.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert dice(gt, gt) == 1.0 and hd95(gt, gt) == 0.0
    shifted = np.roll(gt, 3, axis=1)
    assert 0.8 < dice(gt, shifted) < 1.0
    assert 1.0 <= hd95(gt, shifted) <= 3.0  # no boundary point is further than the shift
    grown = cv2.dilate(gt.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))).astype(bool)
    assert hd95(gt, grown) == pytest.approx(4.0, abs=0.6)  # a 4-px grown contour


def _box_case(iou_type):
    """Image 1: one TP (0.9). Image 2: an FP (0.95) above a TP (0.5). By score: FP, TP, TP, so the
    interpolated precision is 2/3 at every recall: AP = 2/3 (1.0 if the FP were scored lowest)."""
    gt = [[100, 100, 200, 160]]
    fp = [300, 300, 360, 340]
    cases = [(gt, [0.9], [gt[0]]), (gt, [0.95, 0.5], [fp, gt[0]])]
    if iou_type == "bbox":
        return [([np.array(g, float) for g in gts], np.array(s), [np.array(p, float) for p in ps]) for gts, s, ps in cases]
    return [([_mask(g, (480, 480)) for g in gts], np.array(s), [_mask(p, (480, 480)) for p in ps]) for gts, s, ps in cases]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_ap_ranks_detections_by_score_over_all_images(iou_type):
    per_image = _box_case(iou_type)
    assert coco_ap(per_image, iou_type, [0.5, 0.7])[0.7] == pytest.approx(2 / 3)
    per_image[1] = (per_image[1][0], np.array([0.05, 0.5]), per_image[1][2])  # the FP now scored last
    assert coco_ap(per_image, iou_type, [0.7]) == {0.7: pytest.approx(1.0)}
    shifted = [(g, s, [np.roll(p, 40, axis=-1) if iou_type == "segm" else p + [40, 0, 40, 0] for p in ps])
               for g, s, ps in per_image]  # every detection 40 px right: IoU 60/140 < 0.5
    assert coco_ap(shifted, iou_type, [0.5])[0.5] == 0.0
    assert coco_ap([(per_image[0][0], np.array([]), [])], iou_type, [0.7]) == {0.7: 0.0}


@pytest.mark.parametrize("boxes, scores", [
    ([[10, 10, 60, 60], [102, 100, 200, 160], [100, 100, 200, 150]], [0.5, 0.995, 0.99]),  # top is not first; a 2nd box is an FP
    ([[120, 100, 220, 160]], [0.97]),  # shown, not a TP
    ([], []),
])
def test_a_stored_cv_scan_scores_as_its_masks_do(boxes, scores):
    """cv_report.image_result (detections stored as box, score, Dice and area) and paper_rule (on the
    masks) take the same top detection and apply the same rule."""
    from streamseg.training.cv_report import image_result

    gt = _mask(GT_BOX)
    masks = [_mask(b) for b in boxes]
    scan = {"name": "x", "patient": "p", "gt_box": GT_BOX.tolist(), "area_gt_px": float(gt.sum()),
            "detections": [{"box": b, "score": s, "mask_score": 1.0, "dice": dice(m, gt), "area_px": float(m.sum())}
                           for b, s, m in zip(boxes, scores, masks)]}
    stored, r = image_result(scan), _rule(boxes, scores)
    fields = ("tp", "fp", "fn", "dice", "area_pred_px", "top_score", "top_confidence", "top_iou", "top_area_px",
              "top_dice")
    assert {f: vars(stored)[f] for f in fields} == {f: vars(r)[f] for f in fields}
