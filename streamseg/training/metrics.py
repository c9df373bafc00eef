"""The paper's metrics, in source pixels.

- TP/FP/FN (Di Cosmo et al., III-C): a predicted box is a TP if its confidence is > 0.98 and it
  overlaps the ground-truth box with IoU >= 0.7 (one TP per ground truth, best score first); any
  other prediction above the confidence is an FP; an FN is a ground truth for which no box is
  predicted at all (`fn_rule="paper"`), or, with `fn_rule="strict"`, any ground truth left unmatched.
- Dice on TPs only; HD95 and area error alongside.
- AP from pycocotools' COCOeval (101-point interpolated precision, greedy matching by score,
  maxDets=100, no crowd), for boxes and masks at any IoU threshold.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..types import confidence

CONF_THRESH = 0.98
IOU_THRESH = 0.7
COCO_IOUS = np.linspace(0.5, 0.95, 10)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """N×4, M×4 x1y1x2y2 -> N×M IoU (continuous areas, as COCO)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def mask_iou(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i, ma in enumerate(a):
        for j, mb in enumerate(b):
            union = np.logical_or(ma, mb).sum()
            out[i, j] = np.logical_and(ma, mb).sum() / union if union else 0.0
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / s) if s else 1.0


def _boundary_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances from each boundary pixel of a to the nearest boundary pixel of b."""
    kernel = np.ones((3, 3), np.uint8)
    ba = a & ~cv2.erode(a.astype(np.uint8), kernel).astype(bool)
    bb = b & ~cv2.erode(b.astype(np.uint8), kernel).astype(bool)
    dist_to_b = cv2.distanceTransform((~bb).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist_to_b[ba]


def hd95(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric 95th-percentile Hausdorff distance between mask boundaries (px)."""
    if not a.any() or not b.any():
        return float("nan")
    d = np.concatenate([_boundary_distances(a, b), _boundary_distances(b, a)])
    return float(np.percentile(d, 95))


@dataclass
class ImageResult:
    """One image's paper-rule outcome."""

    name: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    dice: float | None = None  # on the TP only
    hd95: float | None = None
    area_gt_px: float = 0.0
    area_pred_px: float | None = None
    top_score: float | None = None
    top_confidence: float | None = None  # its score × mask score: what the display threshold is compared with
    top_iou: float | None = None
    top_area_px: float | None = None  # pixels of the top detection's mask (what a user is shown)
    top_dice: float | None = None  # Dice of the top detection's mask, TP or not
    patient: str = ""


@dataclass(frozen=True)
class TopDetection:
    """An image's top-scoring detection, the one a user is shown: its index among the detections,
    its score and its box IoU with the expert's box."""

    index: int
    score: float
    iou: float


def top_detection(gt_box: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> TopDetection | None:
    """The top-scoring detection of one image and its box IoU with `gt_box`; None without detections."""
    if not len(scores):
        return None
    top = int(np.argmax(np.asarray(scores)))
    return TopDetection(top, float(scores[top]), float(box_iou(boxes[top], gt_box)[0, 0]))


def paper_match(gt_box: np.ndarray, boxes: np.ndarray, scores: np.ndarray, conf: float = CONF_THRESH,
                iou: float = IOU_THRESH, fn_rule: str = "paper") -> tuple[int | None, int, int]:
    """The TP/FP/FN rule on one image with one ground-truth nerve -> (index of the detection that
    is the TP or None, number of FPs, FN 0/1)."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    keep = [int(i) for i in order if scores[i] > conf]
    match, fp = None, 0
    for i in keep:
        if match is None and box_iou(boxes[i], gt_box)[0, 0] >= iou:
            match = i
        else:
            fp += 1
    fn = int(match is None and (not keep or fn_rule == "strict"))
    return match, fp, fn


def paper_rule(name: str, gt_box: np.ndarray, gt_mask: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
               masks: list[np.ndarray], mask_scores: np.ndarray, conf: float = CONF_THRESH, iou: float = IOU_THRESH,
               fn_rule: str = "paper", patient: str = "") -> ImageResult:
    """Apply the TP/FP/FN rule (on the detector's `scores`) to one image with one ground-truth nerve;
    the top detection's confidence (score × its mask score) is kept for the user's view."""
    r = ImageResult(name=name, area_gt_px=float(gt_mask.sum()), patient=patient)
    top = top_detection(gt_box, boxes, scores)
    if top is not None:
        r.top_score, r.top_iou = top.score, top.iou
        r.top_confidence = confidence(top.score, float(mask_scores[top.index]))
        r.top_area_px = float(masks[top.index].sum())
        r.top_dice = dice(masks[top.index], gt_mask)
    match, r.fp, r.fn = paper_match(gt_box, boxes, scores, conf, iou, fn_rule)
    if match is not None:
        r.tp = 1
        r.dice = dice(masks[match], gt_mask)
        r.hd95 = hd95(masks[match], gt_mask)
        r.area_pred_px = float(masks[match].sum())
    return r


def _coco_rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    return rle


def _coco_datasets(per_image, iou_type: str) -> tuple[dict, list[dict]]:
    """(ground-truth COCO dataset, detection list) for one category, boxes as x1y1x2y2 or bool masks."""
    images, anns, dets = [], [], []
    for i, (gts, scores, preds) in enumerate(per_image, start=1):
        shape = np.asarray(gts[0]).shape if iou_type == "segm" and len(gts) else (1, 1)
        images.append({"id": i, "height": int(shape[0]), "width": int(shape[1])})
        for g in gts:
            ann = {"id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": 0}
            if iou_type == "segm":
                ann.update(segmentation=_coco_rle(g), area=float(np.sum(g)))
            else:
                x1, y1, x2, y2 = map(float, g)
                ann.update(bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1))
            anns.append(ann)
        for score, p in zip(scores, preds):
            d = {"image_id": i, "category_id": 1, "score": float(score)}
            if iou_type == "segm":
                d["segmentation"] = _coco_rle(p)
            else:
                d["bbox"] = [float(p[0]), float(p[1]), float(p[2] - p[0]), float(p[3] - p[1])]
            dets.append(d)
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "nerve"}]}, dets


def coco_ap(per_image: list[tuple[list[np.ndarray], np.ndarray, list]], iou_type: str = "bbox",
            iou_thresholds=COCO_IOUS, max_dets: int = 100) -> dict[float, float]:
    """AP per IoU threshold from pycocotools' COCOeval (one category, area 'all', maxDets 100).

    per_image: [(gts, det_scores, dets)] where gts/dets are boxes (x1y1x2y2) or bool masks."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    thresholds = [float(round(t, 2)) for t in iou_thresholds]
    gt_doc, dets = _coco_datasets(per_image, iou_type)
    if not gt_doc["annotations"] or not dets:
        return {t: (0.0 if gt_doc["annotations"] else float("nan")) for t in thresholds}
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress
        gt = COCO()
        gt.dataset = gt_doc
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), iou_type)
        ev.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
        ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [[0, 1e10]], ["all"], [max_dets]
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"][:, :, 0, 0, 0]  # T x R
    return {t: float(np.mean(prec[k][prec[k] > -1])) if (prec[k] > -1).any() else 0.0
            for k, t in enumerate(thresholds)}


@dataclass
class PaperScores:
    """The paper's metrics over a set of images (`summarize`); the field order is the JSON's."""

    images: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    dice_median: float | None
    dice_q1: float | None
    dice_q3: float | None
    dice_iqr: float | None
    dice_mean: float | None
    dice_sd: float | None
    hd95_median_px: float | None
    hd95_mean_px: float | None
    area_error_mean_px2: float | None
    area_abs_error_median_px2: float | None
    area_abs_rel_error_median: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(results: list[ImageResult]) -> PaperScores:
    """Aggregate paper metrics: precision, recall, Dice median/IQR/mean/sd, HD95, area error."""
    tp = sum(r.tp for r in results)
    fp = sum(r.fp for r in results)
    fn = sum(r.fn for r in results)
    d = np.array([r.dice for r in results if r.dice is not None], dtype=float)
    h = np.array([r.hd95 for r in results if r.hd95 is not None], dtype=float)
    err = np.array([r.area_pred_px - r.area_gt_px for r in results if r.area_pred_px is not None], dtype=float)
    rel = np.array([(r.area_pred_px - r.area_gt_px) / r.area_gt_px for r in results if r.area_pred_px is not None])

    def q(a, p):
        return float(np.percentile(a, p)) if len(a) else None

    return PaperScores(
        images=len(results), tp=tp, fp=fp, fn=fn,
        precision=tp / (tp + fp) if tp + fp else 0.0,
        recall=tp / (tp + fn) if tp + fn else 0.0,
        dice_median=q(d, 50), dice_q1=q(d, 25), dice_q3=q(d, 75),
        dice_iqr=q(d, 75) - q(d, 25) if len(d) else None,
        dice_mean=float(d.mean()) if len(d) else None, dice_sd=float(d.std()) if len(d) else None,
        hd95_median_px=q(h, 50), hd95_mean_px=float(np.nanmean(h)) if len(h) else None,
        area_error_mean_px2=float(err.mean()) if len(err) else None,
        area_abs_error_median_px2=q(np.abs(err), 50),
        area_abs_rel_error_median=q(np.abs(rel), 50),
    )


# --- what a user reads: the one outline shown at the display threshold ---------------------------
OUTCOMES = ("correct", "wrong structure", "nothing shown")


def shown_outcome(r: ImageResult, thresh: float, iou: float = IOU_THRESH) -> str:
    """What the runtime shows on a scan with a nerve: only its top detection, if its confidence
    (score × mask score) is >= thresh.

    "correct": shown, and its box (the tight box of the shown outline) has box IoU >= `iou` with the
    expert's box; "wrong structure": shown, box IoU < `iou` (the outline is on something else, or
    covers the nerve too loosely to count); "nothing shown": the top detection's confidence is under
    thresh, or there is none."""
    if r.top_confidence is None or r.top_confidence < thresh:
        return "nothing shown"
    return "correct" if (r.top_iou or 0.0) >= iou else "wrong structure"


@dataclass
class OperatingPoint:
    """What a user is shown at one display threshold: counts and shares of `OUTCOMES` over the scans
    with a nerve (keyed by outcome, in `OUTCOMES` order; a share is None when there is no scan)."""

    score_thresh: float
    iou_thresh: float
    images: int
    counts: dict[str, int]
    shares: dict[str, float | None]
    wrong_on_nerve: int = 0  # of the "wrong structure": a loose outline over the nerve (0 < box IoU < iou)

    def to_dict(self) -> dict:
        return asdict(self)


def operating_point(results: list[ImageResult], thresh: float, iou: float = IOU_THRESH) -> OperatingPoint:
    """Counts and shares of the three outcomes over the scans with a nerve, and how many of the
    wrong-structure outlines overlap the expert's box (on the nerve, too loose to count)."""
    counts = {k: 0 for k in OUTCOMES}
    on_nerve = 0
    for r in results:
        outcome = shown_outcome(r, thresh, iou)
        counts[outcome] += 1
        on_nerve += outcome == "wrong structure" and (r.top_iou or 0.0) > 0.0
    n = len(results)
    return OperatingPoint(score_thresh=thresh, iou_thresh=iou, images=n, counts=counts,
                          shares={k: (v / n if n else None) for k, v in counts.items()}, wrong_on_nerve=on_nerve)


# confidences (score x mask score) of a trained model crowd at 0.85-0.95: the bins are finest there
RELIABILITY_BINS = (0.0, 0.5, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 1.0001)


@dataclass
class ReliabilityBin:
    """One row of the reliability table: the scans whose top detection's confidence falls in `bin`,
    the share of them outlined on the nerve (None: no scan there), and the nerve-free images there."""

    bin: str
    scans: int
    on_nerve_share: float | None
    nerve_free: int

    def to_dict(self) -> dict:
        return asdict(self)


def reliability(results: list[ImageResult], nerve_free_scores=(), iou: float = IOU_THRESH) -> list[ReliabilityBin]:
    """What the shown confidence means: per bin, the scans whose top detection's confidence falls
    there, the share of those outlined on the nerve (box IoU >= `iou`), and the nerve-free images
    whose top confidence falls there (`nerve_free_scores`: their top detections' confidences)."""
    tops = [(r.top_confidence or 0.0, (r.top_iou or 0.0) >= iou) for r in results]
    neg = [float(t) for t in nerve_free_scores]
    rows = []
    for lo, hi in zip(RELIABILITY_BINS[:-1], RELIABILITY_BINS[1:]):
        inside = [ok for t, ok in tops if lo <= t < hi]
        rows.append(ReliabilityBin(bin=f"{lo:.2f}-{min(hi, 1.0):.2f}", scans=len(inside),
                                   on_nerve_share=(sum(inside) / len(inside)) if inside else None,
                                   nerve_free=sum(lo <= t < hi for t in neg)))
    return rows


@dataclass
class BlandAltman:
    """Agreement of two area measurements in one unit (`bland_altman`); None where there is no pair."""

    n: int
    bias: float | None
    sd: float | None
    loa_low: float | None
    loa_high: float | None
    mae: float | None
    rel_abs_error_median: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def bland_altman(expert, predicted) -> BlandAltman:
    """Agreement of two area measurements (same unit): bias = mean(predicted - expert), limits of
    agreement = bias ± 1.96·sd (sample sd, ddof=1), MAE, and median |relative error| vs the expert."""
    e, p = np.asarray(expert, dtype=float), np.asarray(predicted, dtype=float)
    n = len(e)
    if n == 0:
        return BlandAltman(n=0, bias=None, sd=None, loa_low=None, loa_high=None, mae=None, rel_abs_error_median=None)
    d = p - e
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    bias = float(d.mean())
    return BlandAltman(n=n, bias=bias, sd=sd, loa_low=bias - 1.96 * sd, loa_high=bias + 1.96 * sd,
                       mae=float(np.abs(d).mean()), rel_abs_error_median=float(np.median(np.abs(d) / e)))


def per_patient(results: list[ImageResult]) -> dict[str, PaperScores]:
    """`summarize` per patient (each image by its `patient`, else its own name)."""
    groups: dict[str, list[ImageResult]] = {}
    for r in results:
        groups.setdefault(r.patient or r.name, []).append(r)
    return {p: summarize(rs) for p, rs in sorted(groups.items())}


@dataclass
class FalseDetections:
    """Top scores on nerve-free images against the paper's confidence and the display threshold."""

    images: int
    conf_thresh: float
    score_thresh: float
    over_conf: int
    over_conf_share: float | None
    shown: int
    shown_share: float | None
    max_score: float | None
    max_confidence: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def false_detections(tops: list[tuple[float, float]], thresh: float, conf: float = CONF_THRESH) -> FalseDetections:
    """On nerve-free images (per image its top detection's (score, confidence), (0, 0) when nothing
    is detected): the share whose score is > conf (the paper's rule) and whose confidence is
    >= thresh (what a user would be shown), and the maxima."""
    t = np.asarray(tops, dtype=float).reshape(-1, 2)
    s, c = t[:, 0], t[:, 1]
    n = len(s)
    return FalseDetections(images=n, conf_thresh=conf, score_thresh=thresh,
                           over_conf=int((s > conf).sum()), over_conf_share=float((s > conf).mean()) if n else None,
                           shown=int((c >= thresh).sum()), shown_share=float((c >= thresh).mean()) if n else None,
                           max_score=float(s.max()) if n else None, max_confidence=float(c.max()) if n else None)
