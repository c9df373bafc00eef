"""The paper's TP/FP/FN rule on hand-made cases, and AP against pycocotools' COCOeval."""
import cv2
import numpy as np
import pytest

from streamseg.letterbox import mask_box
from streamseg.training.metrics import coco_ap, dice, hd95, paper_rule, summarize

from conftest import GT_BOX, box_mask as _mask


def _rule(boxes, scores, **kw):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return paper_rule("x", GT_BOX, _mask(GT_BOX), boxes, np.array(scores, float), [_mask(b) for b in boxes], **kw)


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
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 1)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    d2 = 2 * 90 * 60 / (100 * 60 + 90 * 60)
    assert s["dice_median"] == pytest.approx((1 + d2) / 2)


def test_dice_and_hd95_on_a_real_mask(sample_dir):
    gt = cv2.imread(str(sample_dir / "masks" / "Pz089-001.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert dice(gt, gt) == 1.0 and hd95(gt, gt) == 0.0
    shifted = np.roll(gt, 3, axis=1)
    assert 0.8 < dice(gt, shifted) < 1.0
    assert 1.0 <= hd95(gt, shifted) <= 3.0  # no boundary point is further than the shift
    grown = cv2.dilate(gt.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))).astype(bool)
    assert hd95(gt, grown) == pytest.approx(4.0, abs=0.6)  # a 4-px grown contour


def _coco_eval(per_image, iou_type, shape):
    pytest.importorskip("pycocotools")
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def enc(m):
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode()
        return rle

    images, anns, dets = [], [], []
    for i, (gts, scores, preds) in enumerate(per_image, start=1):
        images.append({"id": i, "width": shape[1], "height": shape[0]})
        for g in gts:
            box = g if iou_type == "bbox" else mask_box(g)
            x1, y1, x2, y2 = map(float, box)
            ann = {"id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)}
            if iou_type == "segm":
                ann["segmentation"] = enc(g)
                ann["area"] = float(g.sum())
            anns.append(ann)
        for s, p in zip(scores, preds):
            d = {"image_id": i, "category_id": 1, "score": float(s)}
            if iou_type == "bbox":
                d["bbox"] = [float(p[0]), float(p[1]), float(p[2] - p[0]), float(p[3] - p[1])]
            else:
                d["segmentation"] = enc(p)
            dets.append(d)
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "nerve"}]}
    gt.createIndex()
    dt = gt.loadRes(dets)
    ev = COCOeval(gt, dt, iou_type)
    ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
    ev.params.maxDets = [100]
    ev.evaluate()
    ev.accumulate()
    prec = ev.eval["precision"][:, :, 0, 0, 0]  # T x R
    return {round(float(t), 2): float(np.mean(prec[k][prec[k] > -1])) for k, t in enumerate(ev.params.iouThrs)}


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_ap_matches_pycocotools(sample_dir, iou_type):
    """Predictions made by jittering the real nerve masks of the sample, with scores and misses."""
    rng = np.random.default_rng(0)
    per_image = []
    for path in sorted((sample_dir / "masks").glob("*.png")):
        gt = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 0
        preds, scores = [], []
        for _ in range(rng.integers(0, 4)):
            dx, dy = rng.integers(-25, 26, 2)
            k = int(rng.integers(1, 9))
            m = np.roll(np.roll(gt, dx, 1), dy, 0)
            m = cv2.dilate(m.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
            preds.append(m if iou_type == "segm" else mask_box(m))
            scores.append(float(rng.uniform(0.3, 1.0)))
        per_image.append(([gt if iou_type == "segm" else mask_box(gt)], np.array(scores), preds))
    ours = coco_ap(per_image, iou_type)
    theirs = _coco_eval(per_image, iou_type, gt.shape)
    assert set(ours) == set(theirs)
    for t in ours:
        assert ours[t] == pytest.approx(theirs[t], abs=1e-9), t
    assert 0 < ours[0.5] < 1  # a non-trivial case
