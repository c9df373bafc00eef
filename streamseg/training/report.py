"""Evaluation outputs: rich table, JSON, per-image CSV, a Dice boxplot like the paper's Fig. 3,
an overlay sheet of the worst cases, a Bland–Altman plot of the CSA and, on nerve-free images, a
histogram of the top score. Figures are drawn with matplotlib on the Agg canvas."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..files import atomic_write, json_text
from .metrics import BlandAltman, FalseDetections, ImageResult, OperatingPoint, PaperScores, ReliabilityBin
from .results import EvalScores

PAPER = {"mask112": {"map": 0.903, "recall": 0.903, "precision": 0.903, "dice_median": 0.931, "dice_iqr": 0.027},
         "mask56": {"map": 0.871, "recall": 0.879, "precision": 0.848},
         "mask28": {"map": 0.896, "recall": 0.875, "precision": 0.896}}


def write_json(path, doc: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json_text(doc, indent=1, default=_plain) + "\n"))


def _plain(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


def write_per_image_csv(path, results: list[ImageResult], mm_per_px: float | None = None) -> None:
    cols = ["image", "patient", "tp", "fp", "fn", "dice", "hd95_px", "area_gt_px2", "area_pred_px2", "top_score",
            "top_confidence", "top_box_iou"] + (["area_gt_mm2", "area_pred_mm2"] if mm_per_px else [])

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in results:
                row = [r.name, r.patient, r.tp, r.fp, r.fn, _f(r.dice), _f(r.hd95), r.area_gt_px,
                       _f(r.area_pred_px), _f(r.top_score), _f(r.top_confidence), _f(r.top_iou)]
                if mm_per_px:
                    a = mm_per_px ** 2
                    row += [_f(r.area_gt_px * a), _f(r.area_pred_px * a if r.area_pred_px is not None else None)]
                w.writerow(row)

    atomic_write(path, write)


def _f(v):
    return "" if v is None else f"{v:.6g}"


def _figure(*size):
    """A matplotlib Figure on the non-interactive Agg canvas (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(path, fig) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def dice_boxplot(path, groups: dict[str, list[float]], title: str = "Dice on true positives") -> None:
    """Boxplot (median, IQR box, 1.5·IQR whiskers, outliers) per group, like the paper's Fig. 3."""
    fig = _figure(2.5 + 1.5 * len(groups), 4.5)
    ax = fig.add_subplot()
    names = list(groups)
    ax.boxplot([groups[k] for k in names], whis=1.5, widths=0.5, patch_artist=True,
               boxprops={"facecolor": "#8fb3de"}, medianprops={"color": "#c00000", "linewidth": 2})
    ax.set_xticks(range(1, len(names) + 1), [f"{k}\n(n={len(groups[k])})" for k in names])
    ax.set_ylabel("Dice (unitless, 0–1)")
    ax.set_xlabel("model (mask head)")
    ax.set_title(title)
    ax.grid(axis="y", color="#dddddd")
    ax.plot([], [], color="#c00000", linewidth=2, label="median")
    ax.plot([], [], "s", color="#8fb3de", label="IQR (box), whiskers 1.5·IQR")
    ax.legend(loc="lower left", fontsize="small")
    _save(path, fig)


def worst_cases_sheet(path, preds, results: list[ImageResult], n: int = 6) -> None:
    """Overlay sheet of the n worst images (FN first, then lowest Dice): green = expert, red = model."""
    by_name = {p[0].name: p for p in preds}
    ranked = sorted(results, key=lambda r: (r.tp == 1, r.dice if r.dice is not None else -1.0))[:n]
    if not ranked:
        return
    cols = min(3, len(ranked))
    rows = (len(ranked) + cols - 1) // cols
    fig = _figure(3.6 * cols, 3.6 * rows + 0.5)
    for k, r in enumerate(ranked):
        _s, img, gt, dets = by_name[r.name]
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(img[..., ::-1] if img.ndim == 3 else img, cmap="gray")
        ax.contour(gt, levels=[0.5], colors=["#00c000"], linewidths=1.5)
        if dets:
            ax.contour(dets[0].mask, levels=[0.5], colors=["#ff2020"], linewidths=1.5)
        ax.set_title(f"{r.name}\n" + (f"Dice {r.dice:.3f}" if r.dice is not None else
                     f"{'FN' if r.fn else 'FP'}: score {r.top_score or 0:.2f}, box IoU {r.top_iou or 0:.2f}"),
                     fontsize="small")
        ax.set_axis_off()
    from matplotlib.lines import Line2D

    fig.legend(handles=[Line2D([], [], color="#00c000", label="expert (ground truth)"),
                        Line2D([], [], color="#ff2020", label="model (top detection)")],
               loc="outside lower center", ncols=2)
    fig.suptitle("Worst cases (misses first, then lowest Dice)")
    _save(path, fig)


def bland_altman_plot(path, expert, predicted, stats: BlandAltman, unit: str = "px²") -> None:
    """Bland–Altman: mean of expert and model area (x) against model − expert (y), with the bias
    and the 95 % limits of agreement drawn and labelled."""
    e, p = np.asarray(expert, float), np.asarray(predicted, float)
    fig = _figure(6.5, 4.5)
    ax = fig.add_subplot()
    ax.scatter((e + p) / 2, p - e, s=14, alpha=0.7, color="#1f5fa8", label=f"scans (n={len(e)})")
    if stats.n:
        for y, name, style in ((stats.bias, "bias", "-"), (stats.loa_high, "+1.96 sd", "--"),
                               (stats.loa_low, "−1.96 sd", "--")):
            ax.axhline(y, color="#c00000", linestyle=style, linewidth=1)
            ax.annotate(f"{name}: {y:.2f} {unit}" if unit == "mm²" else f"{name}: {y:.0f} {unit}", xy=(1, y), xycoords=("axes fraction", "data"),
                        xytext=(-4, 3), textcoords="offset points", ha="right", fontsize="small", color="#c00000")
    ax.axhline(0, color="#888888", linewidth=0.8)
    ax.set_xlabel(f"mean of expert and model area ({unit})")
    ax.set_ylabel(f"model − expert area ({unit})")
    ax.set_title("CSA agreement (Bland–Altman, 95 % limits of agreement)")
    ax.legend(loc="upper left", fontsize="small")
    _save(path, fig)


def score_histogram(path, tops, thresh: float, conf: float) -> None:
    """Histograms of the top detection's score (against the paper's confidence) and confidence
    (score × mask score, against the display threshold) on nerve-free images."""
    t = np.asarray(tops, float).reshape(-1, 2)
    fig = _figure(6.5, 4.2)
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 41)
    ax.hist(t[:, 0], bins=bins, color="#8fb3de", edgecolor="#1f5fa8", label=f"score (n={len(t)} nerve-free images)")
    ax.hist(t[:, 1], bins=bins, histtype="step", color="#e08000", label="confidence (score × mask score)")
    ax.axvline(thresh, color="#e08000", linestyle="--", label=f"display threshold {thresh:g} (confidence)")
    ax.axvline(conf, color="#c00000", linestyle="-", label=f"paper confidence {conf:g} (score)")
    ax.set_xlabel("top detection (0 = nothing detected)")
    ax.set_ylabel("images")
    ax.set_title("False detections on nerve-free images")
    ax.legend(loc="upper center", fontsize="small")
    _save(path, fig)


def write_per_patient_csv(path, patients: dict[str, PaperScores]) -> None:
    cols = ["patient", "images", "tp", "fp", "fn", "precision", "recall", "dice_median", "dice_mean"]

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for p, s in patients.items():
                w.writerow([p, s.images, s.tp, s.fp, s.fn, _f(s.precision), _f(s.recall), _f(s.dice_median),
                            _f(s.dice_mean)])

    atomic_write(path, write)


def summary_rows(scores: EvalScores) -> list[tuple[str, str]]:
    p = scores.paper

    def f(v, fmt="{:.3f}"):
        return "–" if v is None else fmt.format(v)

    rows = [("images (TP / FP / FN)", f"{p.images} ({p.tp} / {p.fp} / {p.fn})"),
            ("Precision", f(p.precision)), ("Recall", f(p.recall)),
            (f"mAP (box, IoU {scores.iou_thresh})", f(scores.map)),
            ("mAP box @0.5 / @0.5:0.95", f"{f(scores.map_50)} / {f(scores.map_50_95)}"),
            ("mAP mask @0.5 / @0.5:0.95", f"{f(scores.mask_map_50)} / {f(scores.mask_map_50_95)}"),
            ("Dice median (IQR)", f"{f(p.dice_median)} ({f(p.dice_iqr)})"),
            ("Dice mean ± sd", f"{f(p.dice_mean)} ± {f(p.dice_sd)}"),
            ("top-1 Dice mean (all images)", f(scores.top1_dice_mean)),
            ("HD95 median (px)", f(p.hd95_median_px, "{:.1f}")),
            ("area error mean / median |err| (px²)",
             f"{f(p.area_error_mean_px2, '{:.0f}')} / {f(p.area_abs_error_median_px2, '{:.0f}')}"),
            ("median |relative area error|", f(p.area_abs_rel_error_median))]
    if scores.area_abs_error_median_mm2 is not None:
        rows.append(("area error mean / median |err| (mm²)",
                     f"{f(scores.area_error_mean_mm2, '{:.2f}')} / {f(scores.area_abs_error_median_mm2, '{:.2f}')}"))
    return rows


def _v(v, fmt="{:.3f}"):
    return "–" if v is None else fmt.format(v)


def operating_rows(op: OperatingPoint) -> list[tuple[str, str]]:
    """The outcome a user sees per scan with a nerve: count and share; the wrong-structure row says
    how many of those outlines lie over the nerve, too loosely to count (box IoU under the rule's)."""
    def label(k: str) -> str:
        return f"{k} ({op.wrong_on_nerve} loose on the nerve)" if k == "wrong structure" else k
    return [(label(k), f"{op.counts[k]} ({_v(op.shares[k], '{:.1%}')})") for k in op.counts]


def reliability_rows(rows: list[ReliabilityBin]) -> list[tuple[str, str, str]]:
    """Top-confidence bin, scans there, share of them outlined on the nerve."""
    return [(r.bin, str(r.scans), _v(r.on_nerve_share, "{:.0%}")) for r in rows]


def agreement_rows(ba: BlandAltman, unit: str) -> list[tuple[str, str]]:
    f = "{:.2f}" if unit == "mm²" else "{:.0f}"
    return [(f"scans compared ({unit})", str(ba.n)), (f"bias, model − expert ({unit})", _v(ba.bias, f)),
            (f"95 % limits of agreement ({unit})", f"{_v(ba.loa_low, f)} … {_v(ba.loa_high, f)}"),
            (f"MAE ({unit})", _v(ba.mae, f)), ("median |relative area error|", _v(ba.rel_abs_error_median))]


def patient_rows(patients: dict[str, PaperScores]) -> list[tuple[str, ...]]:
    return [(p, str(s.images), _v(s.precision), _v(s.recall), _v(s.dice_median)) for p, s in patients.items()]


def negatives_rows(fd: FalseDetections) -> list[tuple[str, str]]:
    return [("nerve-free images", str(fd.images)),
            (f"top score > {fd.conf_thresh:g} (paper rule)", f"{fd.over_conf} ({_v(fd.over_conf_share, '{:.1%}')})"),
            (f"top confidence >= {fd.score_thresh:g} (shown)", f"{fd.shown} ({_v(fd.shown_share, '{:.1%}')})"),
            ("max score", _v(fd.max_score)), ("max confidence", _v(fd.max_confidence))]
