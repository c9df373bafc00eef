"""Evaluation outputs: rich table, JSON, per-image CSV, a Dice boxplot like the paper's Fig. 3,
and an overlay sheet of the worst cases. Drawn with OpenCV (no plotting dependency)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np

from ..files import atomic_write
from .metrics import ImageResult

PAPER = {"mask112": {"map": 0.903, "recall": 0.903, "precision": 0.903, "dice_median": 0.931, "dice_iqr": 0.027},
         "mask56": {"map": 0.871, "recall": 0.879, "precision": 0.848},
         "mask28": {"map": 0.896, "recall": 0.875, "precision": 0.896}}


def write_json(path, doc: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1, default=_plain) + "\n"))


def _plain(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


def write_per_image_csv(path, results: list[ImageResult], mm_per_px: float | None = None) -> None:
    cols = ["image", "patient", "tp", "fp", "fn", "dice", "hd95_px", "area_gt_px2", "area_pred_px2", "top_score",
            "top_box_iou"] + (["area_gt_mm2", "area_pred_mm2"] if mm_per_px else [])

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in results:
                row = [r.name, r.extra.get("patient", ""), r.tp, r.fp, r.fn, _f(r.dice), _f(r.hd95), r.area_gt_px,
                       _f(r.area_pred_px), _f(r.top_score), _f(r.top_iou)]
                if mm_per_px:
                    a = mm_per_px ** 2
                    row += [_f(r.area_gt_px * a), _f(r.area_pred_px * a if r.area_pred_px is not None else None)]
                w.writerow(row)

    atomic_write(path, write)


def _f(v):
    return "" if v is None else f"{v:.6g}"


def dice_boxplot(path, groups: dict[str, list[float]], title: str = "Dice on true positives") -> None:
    """Boxplot (median, IQR box, 1.5·IQR whiskers, outliers) per group, like the paper's Fig. 3."""
    w, h, left, top, bottom = 160 + 140 * len(groups), 420, 70, 40, 50
    img = np.full((h, w, 3), 255, np.uint8)
    lo, hi = 0.5, 1.0
    vals_all = [v for vs in groups.values() for v in vs]
    if vals_all:
        lo = min(lo, np.floor(min(vals_all) * 10) / 10)

    def y(v):
        return int(top + (hi - v) / (hi - lo) * (h - top - bottom))

    for t in np.linspace(lo, hi, int(round((hi - lo) / 0.1)) + 1):
        cv2.line(img, (left, y(t)), (w - 20, y(t)), (225, 225, 225), 1)
        cv2.putText(img, f"{t:.1f}", (10, y(t) + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(img, title, (left, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (name, vs) in enumerate(groups.items()):
        cx = left + 70 + 140 * i
        cv2.putText(img, f"{name} (n={len(vs)})", (cx - 55, h - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        if not vs:
            continue
        a = np.asarray(vs)
        q1, med, q3 = np.percentile(a, [25, 50, 75])
        iqr = q3 - q1
        wl, wh = a[a >= q1 - 1.5 * iqr].min(), a[a <= q3 + 1.5 * iqr].max()
        cv2.line(img, (cx, y(wl)), (cx, y(q1)), (0, 0, 0), 1)
        cv2.line(img, (cx, y(q3)), (cx, y(wh)), (0, 0, 0), 1)
        for v in (wl, wh):
            cv2.line(img, (cx - 15, y(v)), (cx + 15, y(v)), (0, 0, 0), 1)
        cv2.rectangle(img, (cx - 35, y(q3)), (cx + 35, y(q1)), (200, 150, 60), -1)
        cv2.rectangle(img, (cx - 35, y(q3)), (cx + 35, y(q1)), (0, 0, 0), 1)
        cv2.line(img, (cx - 35, y(med)), (cx + 35, y(med)), (0, 0, 200), 2)
        for v in a[(a < wl) | (a > wh)]:
            cv2.circle(img, (cx, y(v)), 3, (0, 0, 0), 1, cv2.LINE_AA)
    _write_png(path, img)


def worst_cases_sheet(path, preds, results: list[ImageResult], n: int = 6, thumb: int = 300) -> None:
    """Overlay sheet of the n worst images (FN first, then lowest Dice): green = truth, red = prediction."""
    by_name = {p[0].name: p for p in preds}
    ranked = sorted(results, key=lambda r: (r.tp == 1, r.dice if r.dice is not None else -1.0))[:n]
    tiles = []
    for r in ranked:
        _s, img, gt, dets = by_name[r.name]
        tile = img.copy()
        for mask, colour in ((gt, (0, 220, 0)), (dets[0].mask if dets else None, (0, 0, 255))):
            if mask is None:
                continue
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(tile, contours, -1, colour, 2)
        scale = thumb / max(tile.shape[:2])
        tile = cv2.resize(tile, (round(tile.shape[1] * scale), round(tile.shape[0] * scale)))
        label = f"{r.name} " + (f"Dice {r.dice:.3f}" if r.dice is not None else
                                f"{'FN' if r.fn else 'FP'} score {r.top_score or 0:.2f} IoU {r.top_iou or 0:.2f}")
        cv2.putText(tile, label, (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        canvas = np.zeros((thumb, thumb, 3), np.uint8)
        canvas[: tile.shape[0], : tile.shape[1]] = tile
        tiles.append(canvas)
    if not tiles:
        return
    while len(tiles) % 3:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i:i + 3]) for i in range(0, len(tiles), 3)]
    _write_png(path, np.vstack(rows))


def _write_png(path, img) -> None:
    def write(tmp):
        ok, buf = cv2.imencode(".png", img)
        if not ok:
            raise OSError("PNG encoding failed")
        Path(tmp).write_bytes(buf.tobytes())

    atomic_write(path, write)


def summary_rows(summary: dict) -> list[tuple[str, str]]:
    def f(k, fmt="{:.3f}"):
        v = summary.get(k)
        return "–" if v is None else fmt.format(v)

    rows = [("images (TP / FP / FN)", f"{summary['images']} ({summary['tp']} / {summary['fp']} / {summary['fn']})"),
            ("Precision", f("precision")), ("Recall", f("recall")),
            (f"mAP (box, IoU {summary['iou_thresh']})", f("map")), ("mAP box @0.5 / @0.5:0.95", f"{f('map_50')} / {f('map_50_95')}"),
            ("mAP mask @0.5 / @0.5:0.95", f"{f('mask_map_50')} / {f('mask_map_50_95')}"),
            ("Dice median (IQR)", f"{f('dice_median')} ({f('dice_iqr')})"),
            ("Dice mean ± sd", f"{f('dice_mean')} ± {f('dice_sd')}"),
            ("top-1 Dice mean (all images)", f("top1_dice_mean")),
            ("HD95 median (px)", f("hd95_median_px", "{:.1f}")),
            ("area error mean / median |err| (px²)", f"{f('area_error_mean_px2', '{:.0f}')} / {f('area_abs_error_median_px2', '{:.0f}')}"),
            ("median |relative area error|", f("area_abs_rel_error_median"))]
    if "area_abs_error_median_mm2" in summary:
        rows.append(("area error mean / median |err| (mm²)",
                     f"{f('area_error_mean_mm2', '{:.2f}')} / {f('area_abs_error_median_mm2', '{:.2f}')}"))
    return rows
