"""The cross-validation report: per fold and pooled over every held-out scan (predictions pooled,
never fold means): the paper's metrics, what a user is shown at a display threshold, the nerve-free
false-detection rates by acquisition, a reliability table, and the display and CSA-summary
thresholds chosen on the pooled predictions."""
from __future__ import annotations

from itertools import combinations

import numpy as np

from ..types import NERVE_SCORE, StreamsegError, confidence
from .metrics import (CONF_THRESH, IOU_THRESH, OUTCOMES, ImageResult, coco_ap, operating_point, paper_match,
                      reliability, shown_outcome, summarize, top_detection)

# Candidate thresholds 0.001 apart from 0.5 to 0.999: a trained model's top confidences crowd in a
# few hundredths (0.90-0.95 for score x mask score), where 0.005 steps jump over most of the choices.
GRID = tuple(round(0.5 + i / 1000, 3) for i in range(500))
MAX_WRONG = 0.03  # display threshold: at most 3 % of scans outlined off the nerve ...
MAX_NEG_SHOWN = 0.01  # ... and at most 1 % of nerve-free images showing an outline
MAX_WRONG_AMONG_SHOWN = 0.01  # CSA summary threshold: at most 1 % of the outlines it keeps are off the nerve


def image_result(scan: dict) -> ImageResult:
    """A stored held-out scan -> the paper-rule result (Dice and area from the stored detection)."""
    dets = scan["detections"]
    boxes = np.array([d["box"] for d in dets], dtype=np.float64).reshape(-1, 4)
    scores = np.array([d["score"] for d in dets], dtype=np.float64)
    gt_box = np.asarray(scan["gt_box"], dtype=np.float64)
    r = ImageResult(name=scan["name"], area_gt_px=scan["area_gt_px"], patient=scan["patient"])
    top = top_detection(gt_box, boxes, scores)
    if top is not None:
        r.top_score, r.top_iou = top.score, top.iou
        r.top_confidence = confidence(top.score, dets[top.index]["mask_score"])
        r.top_area_px, r.top_dice = dets[top.index]["area_px"], dets[top.index]["dice"]
    match, r.fp, r.fn = paper_match(gt_box, boxes, scores, CONF_THRESH, IOU_THRESH)
    if match is not None:
        r.tp, r.dice, r.area_pred_px = 1, dets[match]["dice"], dets[match]["area_px"]
    return r


def box_map(scans: list[dict], iou: float = IOU_THRESH) -> float:
    per_image = [([np.asarray(s["gt_box"])], [d["score"] for d in s["detections"]],
                  [np.asarray(d["box"]) for d in s["detections"]]) for s in scans]
    return coco_ap(per_image, "bbox", [iou])[round(iou, 2)]


def negative_rates(negs: list[dict], thresh: float) -> dict:
    """Nerve-free images shown (top confidence >= `thresh`) and over the paper's 0.98 (top score),
    overall and by acquisition."""
    groups: dict[str, list[tuple[float, float]]] = {"all": []}
    for n in negs:
        top = (n["top_score"], n["top_confidence"])
        groups["all"].append(top)
        groups.setdefault(n["group"].split("/")[0], []).append(top)
    out = {}
    for g, v in groups.items():
        shown, over = sum(c >= thresh for _s, c in v), sum(s > CONF_THRESH for s, _c in v)
        out[g] = {"images": len(v), "shown": int(shown), "over_098": int(over),
                  "shown_share": shown / len(v) if v else None, "over_098_share": over / len(v) if v else None}
    return out


def _top_area_error_median(results: list[ImageResult]) -> float | None:
    """Median |area error| of these scans' top detections, relative to the expert's area."""
    rel = [abs(r.top_area_px - r.area_gt_px) / r.area_gt_px for r in results]
    return float(np.median(rel)) if rel else None


def scores_table(scans: list[dict], negs: list[dict], thresh: float) -> dict:
    """One row of the report: paper metrics, the user's view at `thresh`, negatives."""
    results = [image_result(s) for s in scans]
    p = summarize(results)
    shown = [r for r in results if shown_outcome(r, thresh, IOU_THRESH) == "correct"]
    return {"images": len(scans), "patients": len({s["patient"] for s in scans}),
            "tp": p.tp, "fp": p.fp, "fn": p.fn, "precision": p.precision, "recall": p.recall, "map_07": box_map(scans),
            "dice_median": p.dice_median, "dice_q1": p.dice_q1, "dice_q3": p.dice_q3,
            "dice_mean": p.dice_mean, "area_abs_rel_error_median": p.area_abs_rel_error_median,
            "shown_area_abs_rel_error_median": _top_area_error_median(shown),
            "user_view": operating_point(results, thresh).to_dict(), "negatives": negative_rates(negs, thresh)}


def choose_thresholds(scans: list[dict], negs: list[dict]) -> dict:
    """Display threshold: the most scans outlined on the nerve, with wrong structure <= 3 % of scans
    and <= 1 % of nerve-free images shown (ties: the higher threshold); if no threshold meets both,
    the one with the fewest wrong outlines among those meeting the nerve-free limit. CSA summary
    threshold: the lowest at or above the display threshold whose kept outlines are <= 1 % off the
    nerve."""
    results = [image_result(s) for s in scans]
    neg = np.array([n["top_confidence"] for n in negs], dtype=float)
    rows = []
    for t in GRID:
        op = operating_point(results, t).shares
        rows.append((t, op["correct"], op["wrong structure"], float((neg >= t).mean()) if len(neg) else 0.0))
    feasible = [r for r in rows if r[2] <= MAX_WRONG and r[3] <= MAX_NEG_SHOWN]
    if feasible:
        display, met = max(feasible, key=lambda r: (r[1], r[0]))[0], True
    else:
        neg_ok = [r for r in rows if r[3] <= MAX_NEG_SHOWN] or rows
        display, met = min(neg_ok, key=lambda r: (r[2], -r[1], r[0]))[0], False
    summary = next((t for t, c, w, _n in rows if t >= display and (c + w) > 0 and w / (c + w) <= MAX_WRONG_AMONG_SHOWN),
                   None)
    return {"display": display, "display_targets_met": met, "csa_summary": summary,
            "rule": {"max_wrong": MAX_WRONG, "max_nerve_free_shown": MAX_NEG_SHOWN,
                     "max_wrong_among_kept": MAX_WRONG_AMONG_SHOWN,
                     "grid": [GRID[0], GRID[-1], 0.001]}}


def pooled_report(preds: list[dict], k: int) -> dict:
    """Per-fold rows and the pooled row, at the chosen display threshold and at today's."""
    scans = [s for p in preds for s in p["scans"]]
    negs = [n for p in preds for n in p["negatives"]]
    chosen = choose_thresholds(scans, negs)
    t = chosen["display"]
    return {"folds_done": sorted(p["fold"] for p in preds), "folds": k, "epochs": preds[0]["epochs"],
            "thresholds": chosen, "runtime_display_threshold": NERVE_SCORE,
            "per_fold": [{"fold": p["fold"], "train_seconds": p.get("train_seconds"),
                          **scores_table(p["scans"], p["negatives"], t)} for p in preds],
            "pooled": scores_table(scans, negs, t),
            "pooled_at_runtime_threshold": scores_table(scans, negs, NERVE_SCORE),
            "reliability": [b.to_dict() for b in reliability([image_result(s) for s in scans],
                                                             [n["top_confidence"] for n in negs])]}


def cross_fitted(preds: list[dict]) -> dict | None:
    """The display rule checked on scans it was not chosen on: for every way of halving the folds,
    the threshold `choose_thresholds` picks on one half's pooled predictions, counted on the other
    half (4 folds: 6 halvings, every scan counted 3 times). None with fewer than 2 folds."""
    folds = sorted(p["fold"] for p in preds)
    if len(folds) < 2:
        return None
    by_fold = {p["fold"]: p for p in preds}
    counts, chosen = {k: 0 for k in OUTCOMES}, []
    for half in combinations(folds, len(folds) // 2):
        pick = [by_fold[f] for f in half]
        t = choose_thresholds([s for p in pick for s in p["scans"]], [n for p in pick for n in p["negatives"]])
        chosen.append(t["display"])
        held = [image_result(s) for f in folds if f not in half for s in by_fold[f]["scans"]]
        for k, v in operating_point(held, t["display"]).counts.items():
            counts[k] += v
    return {"halvings": len(chosen), "thresholds": chosen, "counts": counts}


def compared(recipes: dict[str, list[dict]], thresh: float) -> dict:
    """Recipes' held-out predictions pooled over the folds all of them have done, at one display
    threshold: each recipe's report row, plus its top detections on the nerve (box IoU >= 0.7,
    whatever their score) with their median Dice and median |area error|, and its own display rule
    cross-fitted over halves of those folds (`cross_fitted`)."""
    common = set.intersection(*({p["fold"] for p in preds} for preds in recipes.values()))
    if not common:
        raise StreamsegError("no fold is done by every recipe")
    rows = {}
    for name, preds in recipes.items():
        kept = [p for p in preds if p["fold"] in common]
        scans, negs = [s for p in kept for s in p["scans"]], [n for p in kept for n in p["negatives"]]
        on = [r for r in map(image_result, scans) if (r.top_iou or 0.0) >= IOU_THRESH]
        rows[name] = {**scores_table(scans, negs, thresh), "top_on_nerve": len(on),
                      "top_on_nerve_dice_median": float(np.median([r.top_dice for r in on])) if on else None,
                      "top_on_nerve_area_abs_rel_error_median": _top_area_error_median(on),
                      "cross_fitted": cross_fitted(kept)}
    return {"folds": sorted(common), "threshold": thresh, "recipes": rows}


def _f(v, digits=3, pct=False) -> str:
    if v is None:
        return "—"
    return f"{100 * v:.1f} %" if pct else f"{v:.{digits}f}"


def _row(label: str, r: dict) -> str:
    uv, neg = r["user_view"], r["negatives"]["all"]
    c = uv["counts"]
    groups = ", ".join(f"{g} {v['shown']}/{v['images']}" for g, v in r["negatives"].items() if g != "all")
    return (f"| {label} | {r['patients']} / {r['images']} | {r['tp']}/{r['fp']}/{r['fn']} | {_f(r['precision'])} | "
            f"{_f(r['recall'])} | {_f(r['map_07'])} | {_f(r['dice_median'])} ({_f(r['dice_q1'])}–{_f(r['dice_q3'])}) | "
            f"{_f(r['dice_mean'])} | {_f(r['area_abs_rel_error_median'], pct=True)} | "
            f"{c['correct']} / {c['wrong structure']} ({uv['wrong_on_nerve']}) / {c['nothing shown']} | "
            f"{neg['shown']}/{neg['images']} ({groups}) | {neg['over_098']}/{neg['images']} |")


def report_markdown(rep: dict) -> str:
    t = rep["thresholds"]
    head = ("| fold | patients / scans | TP/FP/FN | Prec | Rec | mAP@0.7 | Dice median (IQR) | Dice mean | "
            "median abs. area error | correct / wrong (of which loose on the nerve) / nothing at display | "
            "nerve-free shown | nerve-free > 0.98 |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = [_row(f"{p['fold']}", p) for p in rep["per_fold"]]
    rows.append(_row("**pooled**", rep["pooled"]))
    rows.append(_row(f"pooled at {rep['runtime_display_threshold']}", rep["pooled_at_runtime_threshold"]))
    rel = "\n".join(f"| {b['bin']} | {b['scans']} | {_f(b['on_nerve_share'], pct=True)} | {b['nerve_free']} |"
                    for b in rep["reliability"])
    secs = [p["train_seconds"] for p in rep["per_fold"] if p["train_seconds"]]
    return (f"Folds done: {rep['folds_done']} of {rep['folds']} ({rep['epochs']} epochs each"
            + (f"; training {np.mean(secs) / 60:.0f} min a fold" if secs else "") + ").\n"
            f"Display threshold chosen on the pooled predictions: **{t['display']}** "
            f"(targets {'met' if t['display_targets_met'] else 'not met'}); CSA summary threshold: "
            f"**{t['csa_summary']}**. Rows at the chosen display threshold unless named.\n\n"
            + head + "\n".join(rows) + "\n\nReliability of the top detection (pooled):\n\n"
            "| top confidence (score × mask score) | scans | on the nerve | nerve-free images |\n"
            "|---|---|---|---|\n" + rel + "\n")


def _cross_fitted_cell(cf: dict | None) -> str:
    if cf is None:
        return "—"
    c = cf["counts"]
    return (f"{c['correct']} / {c['wrong structure']} / {c['nothing shown']} over {cf['halvings']} halvings "
            f"({min(cf['thresholds']):.3f}–{max(cf['thresholds']):.3f})")


def compared_markdown(rep: dict) -> str:
    """`compared` as a table, one row a recipe."""
    head = (f"Folds {rep['folds']}, display threshold {rep['threshold']} (score × mask score)\n\n"
            "| recipe | scans | Prec | Rec | mAP@0.7 | top on the nerve | its Dice median | its area error median | "
            "correct / wrong / nothing shown | nerve-free shown | own rule, chosen on half the folds: correct / "
            "wrong / nothing on the other half (thresholds) |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for name, r in rep["recipes"].items():
        c, neg = r["user_view"]["counts"], r["negatives"]["all"]
        lines.append(f"| {name} | {r['images']} | {_f(r['precision'])} | {_f(r['recall'])} | {_f(r['map_07'])} | "
                     f"{r['top_on_nerve']} | {_f(r['top_on_nerve_dice_median'])} | "
                     f"{_f(r['top_on_nerve_area_abs_rel_error_median'], pct=True)} | "
                     f"{c['correct']} / {c['wrong structure']} / {c['nothing shown']} | "
                     f"{neg['shown']}/{neg['images']} | {_cross_fitted_cell(r['cross_fitted'])} |")
    return head + "\n".join(lines) + "\n"
