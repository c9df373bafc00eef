"""Evaluation as the paper reports it, end to end in source pixels (the same letterbox, backend
and mask paste the runtime uses)."""
from __future__ import annotations

import numpy as np
import torch

from ..backends.torch_eager import TorchBackend
from ..letterbox import mask_box
from ..model import ModelConfig, ModelInfo
from .dataset import Sample, load_pair
from .metrics import CONF_THRESH, IOU_THRESH, ImageResult, coco_ap, dice, paper_rule, summarize


def predict_samples(model: torch.nn.Module, samples: list[Sample], device="cpu", progress=None, *,
                    config: ModelConfig):
    """-> list of (sample, image, gt_mask, detections); `config` is the one `model` was built from."""
    backend = TorchBackend(model, ModelInfo(config), device=str(device))
    task = progress.add_task("eval", total=len(samples)) if progress else None
    out = []
    for s in samples:
        img, gt = load_pair(s)
        dets = backend.predict_one(img)
        out.append((s, img, gt, dets))
        if task is not None:
            progress.update(task, advance=1)
    return out


def score_predictions(preds, conf: float = CONF_THRESH, iou: float = IOU_THRESH, fn_rule: str = "paper",
                      mm_per_px: float | None = None) -> tuple[dict, list[ImageResult]]:
    per_image, ap_box, ap_seg = [], [], []
    top1 = []
    for s, _img, gt, dets in preds:
        gt_box = mask_box(gt)
        boxes = np.array([d.box for d in dets], dtype=np.float32).reshape(-1, 4)
        scores = np.array([d.score for d in dets], dtype=np.float64)
        masks = [d.mask for d in dets]
        r = paper_rule(s.name, gt_box, gt, boxes, scores, masks, conf, iou, fn_rule)
        r.extra["patient"] = s.patient
        per_image.append(r)
        top1.append(dice(masks[0], gt) if masks else 0.0)
        ap_box.append(([gt_box], scores, list(boxes)))
        ap_seg.append(([gt], scores, masks))
    summary = summarize(per_image)
    box_ap, seg_ap = coco_ap(ap_box, "bbox"), coco_ap(ap_seg, "segm")
    summary.update({
        "map": box_ap[round(iou, 2)] if round(iou, 2) in box_ap else coco_ap(ap_box, "bbox", [iou])[iou],
        "map_50": box_ap[0.5], "map_75": box_ap[0.75], "map_50_95": float(np.mean(list(box_ap.values()))),
        "mask_map_50": seg_ap[0.5], "mask_map_75": seg_ap[0.75], "mask_map_50_95": float(np.mean(list(seg_ap.values()))),
        "top1_dice_mean": float(np.mean(top1)) if top1 else None,
        "conf_thresh": conf, "iou_thresh": iou, "fn_rule": fn_rule,
    })
    if mm_per_px:
        a = mm_per_px ** 2
        summary["mm_per_px"] = mm_per_px
        for k in ("area_error_mean_px2", "area_abs_error_median_px2"):
            if summary[k] is not None:
                summary[k.replace("px2", "mm2")] = summary[k] * a
    return summary, per_image


def evaluate_model(model, samples, device="cpu", progress=None, *, config: ModelConfig, **kw):
    was_training = model.training
    model.eval()
    preds = predict_samples(model, samples, device, progress, config=config)
    if was_training:
        model.train()
    return score_predictions(preds, **kw)


def run_eval(data, model_path=None, split=None, subset="test", json_out=None, out_dir=None, mm_per_px=None,
             conf=CONF_THRESH, iou=IOU_THRESH, fn_rule="paper", device="cpu", progress=None,
             box: str = "mask") -> tuple[dict, list]:
    """`streamseg eval`: evaluate a checkpoint (default: the bundled one) on a data folder and write
    the JSON, per-image CSV, Dice boxplot and worst-case sheet."""
    from pathlib import Path

    from ..checkpoint import load_checkpoint
    from ..types import StreamsegError
    from . import report
    from .dataset import load_split, scan_folder, select

    samples = scan_folder(data)
    if split is not None:
        parts = load_split(split)
        if subset not in parts:
            raise StreamsegError(f"unknown subset {subset!r}: choose train, val or test")
        samples = select(samples, parts[subset])
        if not samples:
            raise StreamsegError(f"{split}: no image of {data} is in the {subset} subset")
    for target in (json_out, out_dir):
        if target is not None and not Path(target).parent.exists():
            raise StreamsegError(f"{target}: folder {Path(target).parent} does not exist")
    model, info = load_checkpoint(model_path, device=device, box_from_mask=(box == "mask"))
    preds = predict_samples(model, samples, device, progress, config=info.config)
    summary, per_image = score_predictions(preds, conf, iou, fn_rule, mm_per_px)
    summary["model"] = info.source
    summary["data"] = str(data)
    summary["subset"] = subset if split is not None else "all"
    summary["box"] = box
    if json_out:
        report.write_json(json_out, {"summary": summary, "per_image": [vars(r) for r in per_image]})
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        report.write_per_image_csv(out / "per_image.csv", per_image, mm_per_px)
        report.dice_boxplot(out / "dice_boxplot.png",
                            {f"mask{info.config.mask_head}": [r.dice for r in per_image if r.dice is not None]})
        report.worst_cases_sheet(out / "worst_cases.png", preds, per_image)
    return summary, per_image
