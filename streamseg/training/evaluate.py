"""Evaluation as the paper reports it, end to end in source pixels (the same letterbox, backend
and mask paste the runtime uses)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..backends.torch_eager import TorchBackend
from ..model.checkpoint import load_checkpoint
from ..letterbox import mask_box
from ..model.architecture import ModelConfig, ModelInfo
from ..types import StreamsegError
from . import report
from .dataset import Sample, load_pair, load_split, scan_folder, select
from .metrics import (CONF_THRESH, IOU_THRESH, ImageResult, bland_altman, coco_ap, false_detections,
                      operating_point, paper_rule, per_patient, reliability, shown_outcome, summarize)
from .negatives import scan_negatives, split_negatives, top_detections
from .results import CsaAgreement, EvalReport, EvalScores, NerveFreeReport, UserView


def predict_samples(model: torch.nn.Module, samples: list[Sample], device="cpu", progress=None, *,
                    config: ModelConfig, mirror: bool = False):
    """-> list of (sample, image, gt_mask, detections); `config` is the one `model` was built from.
    `mirror`: detections of the image and its mirror merged (`tta.mirror_merged`)."""
    from .tta import mirror_merged

    backend = TorchBackend(model, ModelInfo(config), device=str(device))
    task = progress.add_task("eval", total=len(samples)) if progress else None
    out = []
    for s in samples:
        img, gt = load_pair(s)
        dets = mirror_merged(backend.infer, img) if mirror else backend.infer(img).detections
        out.append((s, img, gt, dets))
        if task is not None:
            progress.update(task, advance=1)
    return out


def score_predictions(preds, conf: float = CONF_THRESH, iou: float = IOU_THRESH, fn_rule: str = "paper",
                      mm_per_px: float | None = None) -> tuple[EvalScores, list[ImageResult]]:
    per_image, ap_box, ap_seg = [], [], []
    top1 = []
    for s, _img, gt, dets in preds:
        gt_box = mask_box(gt)
        boxes = np.array([d.box for d in dets], dtype=np.float32).reshape(-1, 4)
        scores = np.array([d.score for d in dets], dtype=np.float64)
        masks = [d.mask for d in dets]
        r = paper_rule(s.name, gt_box, gt, boxes, scores, masks, np.array([d.mask_score for d in dets]), conf, iou,
                       fn_rule, patient=s.patient)
        per_image.append(r)
        top1.append(r.top_dice or 0.0)
        ap_box.append(([gt_box], scores, list(boxes)))
        ap_seg.append(([gt], scores, masks))
    paper = summarize(per_image)
    box_ap, seg_ap = coco_ap(ap_box, "bbox"), coco_ap(ap_seg, "segm")
    a = mm_per_px ** 2 if mm_per_px else None
    scores = EvalScores(
        paper=paper,
        map=box_ap[round(iou, 2)] if round(iou, 2) in box_ap else coco_ap(ap_box, "bbox", [iou])[iou],
        map_50=box_ap[0.5], map_75=box_ap[0.75], map_50_95=float(np.mean(list(box_ap.values()))),
        mask_map_50=seg_ap[0.5], mask_map_75=seg_ap[0.75], mask_map_50_95=float(np.mean(list(seg_ap.values()))),
        top1_dice_mean=float(np.mean(top1)) if top1 else None,
        conf_thresh=conf, iou_thresh=iou, fn_rule=fn_rule, mm_per_px=mm_per_px,
        area_error_mean_mm2=_scaled(paper.area_error_mean_px2, a),
        area_abs_error_median_mm2=_scaled(paper.area_abs_error_median_px2, a))
    return scores, per_image


def _scaled(v: float | None, a: float | None) -> float | None:
    return None if v is None or a is None else v * a


def evaluate_model(model, samples, device="cpu", progress=None, *, config: ModelConfig, **kw):
    was_training = model.training
    model.eval()
    preds = predict_samples(model, samples, device, progress, config=config)
    if was_training:
        model.train()
    return score_predictions(preds, **kw)


def is_nerve_free(data) -> bool:
    """A folder of images without masks: `images/` and no `masks/`, or a negatives folder
    (manifest.csv + subfolders, as ../shared/data/negatives)."""
    root = Path(data)
    return (root.is_dir() and not (root / "masks").is_dir()
            and ((root / "images").is_dir() or (root / "manifest.csv").is_file()))


def _check_targets(json_out, out_dir) -> None:
    for target in (json_out, out_dir):
        if target is not None and not Path(target).parent.exists():
            raise StreamsegError(f"{target}: folder {Path(target).parent} does not exist")
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise StreamsegError(f"{out_dir}: --out-dir is a file, not a folder")
    if json_out is not None and Path(json_out).is_dir():
        raise StreamsegError(f"{json_out}: --json is a folder, not a file")


def _labelled_samples(data, split, subset):
    samples = scan_folder(data)
    if split is None:
        if subset is not None:
            raise StreamsegError("--subset needs --split for scans with masks (train/split.json)")
        return samples
    parts = load_split(split)
    subset = subset or "test"
    if subset not in parts:
        raise StreamsegError(f"unknown subset {subset!r}: choose train, val or test")
    samples = select(samples, parts[subset])
    if not samples:
        raise StreamsegError(f"{split}: no image of {data} is in the {subset} subset")
    return samples


def nerve_free_paths(data, split=None, subset=None) -> list[Path]:
    """The images of a nerve-free folder; with `subset`, only that part of `split_negatives` (by
    acquisition group, seed 0: the split `streamseg train` uses for its negatives)."""
    if split is not None:
        raise StreamsegError("--split covers the wrist scans; a nerve-free folder is split with --subset alone")
    root = Path(data)
    paths = scan_negatives(root / "images" if (root / "images").is_dir() else root)
    if subset is not None:
        if subset not in ("train", "val", "test"):
            raise StreamsegError(f"unknown subset {subset!r}: choose train, val or test")
        paths = split_negatives(paths)[subset]
    if not paths:
        raise StreamsegError(f"{data}: no images" + (f" in the {subset} subset" if subset else ""))
    return paths


def shown_areas(per_image: list[ImageResult], score_thresh: float, iou: float) -> tuple[list[float], list[float]]:
    """(expert's, shown outline's) areas in px² on the scans whose shown outline is on the nerve."""
    shown = [r for r in per_image if shown_outcome(r, score_thresh, iou) == "correct"]
    return [r.area_gt_px for r in shown], [r.top_area_px for r in shown]


def user_view(per_image: list[ImageResult], score_thresh: float, iou: float, mm_per_px: float | None) -> UserView:
    """What a user reads: the operating point at the display threshold, per-patient results and the
    CSA agreement (Bland–Altman) of the outline shown where it is on the nerve ("correct")."""
    expert, model = shown_areas(per_image, score_thresh, iou)
    agreement = CsaAgreement(px2=bland_altman(expert, model))
    if mm_per_px:
        a = mm_per_px ** 2
        agreement.mm2 = bland_altman([v * a for v in expert], [v * a for v in model])
    return UserView(operating_point=operating_point(per_image, score_thresh, iou),
                    reliability=reliability(per_image, iou=iou),
                    per_patient=per_patient(per_image), csa_agreement=agreement)


def run_eval(data, model_path=None, split=None, subset=None, json_out=None, out_dir=None, mm_per_px=None,
             conf=CONF_THRESH, iou=IOU_THRESH, fn_rule="paper", device="cpu", progress=None,
             box: str = "mask", score_thresh: float | None = None) -> EvalReport | NerveFreeReport:
    """`streamseg eval`: evaluate a checkpoint (default: the bundled one) on a data folder and write
    the JSON and, in out_dir, the per-image and per-patient CSVs and the figures. A folder without
    masks is nerve-free: it reports false detections instead (`run_negatives`). `score_thresh`: the
    display threshold (None: the checkpoint's own, `ModelInfo.thresholds`)."""
    _check_targets(json_out, out_dir)
    if is_nerve_free(data):
        return run_negatives(data, model_path, split, subset, json_out, out_dir, conf, device, score_thresh)
    samples = _labelled_samples(data, split, subset)
    model, info = load_checkpoint(model_path, device=device, box_from_mask=(box == "mask"))
    preds = predict_samples(model, samples, device, progress, config=info.config)
    scores, per_image = score_predictions(preds, conf, iou, fn_rule, mm_per_px)
    score_thresh = info.thresholds.display if score_thresh is None else score_thresh
    rep = EvalReport(scores=scores, view=user_view(per_image, score_thresh, iou, mm_per_px), model=info.source,
                     data=str(data), box=box, subset=(subset or "test") if split is not None else "all",
                     per_image=per_image)
    if json_out:
        report.write_json(json_out, rep.to_dict())
    if out_dir:
        _write_figures(Path(out_dir), rep, preds, shown_areas(per_image, score_thresh, iou), info.config.mask_head)
    return rep


def _write_figures(out: Path, rep: EvalReport, preds, areas: tuple[list[float], list[float]], mask_head) -> None:
    """--out-dir: the per-image and per-patient CSVs, the Dice boxplot, the worst cases and the
    Bland–Altman plot of the CSA (in mm² with a pixel spacing)."""
    mm_per_px, per_image = rep.scores.mm_per_px, rep.per_image
    out.mkdir(parents=True, exist_ok=True)
    report.write_per_image_csv(out / "per_image.csv", per_image, mm_per_px)
    report.write_per_patient_csv(out / "per_patient.csv", rep.view.per_patient)
    report.dice_boxplot(out / "dice_boxplot.png",
                        {f"mask{mask_head}": [r.dice for r in per_image if r.dice is not None]})
    report.worst_cases_sheet(out / "worst_cases.png", preds, per_image)
    expert, shown = areas
    agreement = rep.view.csa_agreement
    unit, a, stats = ("mm²", mm_per_px ** 2, agreement.mm2) if mm_per_px else ("px²", 1.0, agreement.px2)
    report.bland_altman_plot(out / "bland_altman.png", [v * a for v in expert], [v * a for v in shown], stats, unit)


def run_negatives(data, model_path, split, subset, json_out, out_dir, conf, device, score_thresh) -> NerveFreeReport:
    """False detections on nerve-free images: the top detection of each, and the shares whose score is
    over the paper's confidence and whose confidence is over the display threshold."""
    paths = nerve_free_paths(data, split, subset)
    model, info = load_checkpoint(model_path, device=device)
    model.eval()
    tops = top_detections(model, paths, device, config=info.config)
    score_thresh = info.thresholds.display if score_thresh is None else score_thresh
    rep = NerveFreeReport(model=info.source, data=str(data), subset=subset or "all",
                          false_detections=false_detections(tops, score_thresh, conf), images=paths, tops=tops)
    if json_out:
        report.write_json(json_out, rep.to_dict())
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        report.score_histogram(out / "score_histogram.png", tops, score_thresh, conf)
    return rep
