"""Training: SGD (paper: lr 1e-3, momentum 0.9, 150 epochs), L = Lcls + Lbbox + Lmask as torchvision
computes it (plus the RPN's losses), AMP on CUDA, DistributedDataParallel under torchrun,
per-epoch validation logged to CSV/JSONL, best (val Dice) and last checkpoints, resume."""
from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..checkpoint import read_checkpoint, save_checkpoint
from ..model import ModelConfig, build_model, init_from_file
from ..types import StreamsegError
from .augment import PaperAugment
from .dataset import NerveDataset, collate, load_split, patient_split, save_split, scan_folder, select
from .negatives import MixedDataset, scan_negatives, split_negatives, top_scores


@dataclass
class TrainConfig:
    data: str
    out: str = "runs/model.pt"
    epochs: int = 150
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "constant"  # paper; "cosine" = linear warm-up then cosine decay
    warmup_iters: int = 100
    batch_size: int = 2
    workers: int = 0
    seed: int = 0
    split: str | None = None  # split JSON; created (and saved) when missing
    intensity_aug: bool = False
    hflip: bool = False
    init: str | None = None  # user-supplied state dict (COCO Mask R-CNN or ImageNet ResNet)
    resume: bool = False
    device: str = "auto"
    max_iters_per_epoch: int | None = None  # for quick tests
    val_every: int = 1
    grad_clip: float = 10.0
    negatives: str | None = None  # folder of nerve-free scans (split by group; train part used)
    negative_share: float = 0.5  # nerve-free draws per epoch, as a share of the wrist scans
    keep_epochs: bool = False  # also keep every epoch's checkpoint (OUT_eNNN.pt) for choosing later
    model: dict = field(default_factory=dict)  # ModelConfig fields


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _lr_factor(cfg: TrainConfig, it: int, total: int) -> float:
    warm = min(1.0, (it + 1) / max(1, cfg.warmup_iters)) if cfg.schedule == "cosine" else 1.0
    if cfg.schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * min(it, total) / max(1, total)))
    return 1.0


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if world > 1 else 0
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def prepare_split(cfg: TrainConfig, samples) -> dict:
    if cfg.split and Path(cfg.split).is_file():
        split = load_split(cfg.split)
    else:
        split = patient_split(samples, seed=cfg.seed)
        if cfg.split:
            save_split(cfg.split, split, samples, cfg.seed, source=str(cfg.data))
    unknown = {s.patient for s in samples} - set(split["train"]) - set(split["val"]) - set(split["test"])
    if unknown:
        raise StreamsegError(f"{cfg.split}: patients {sorted(unknown)[:5]} are in the data but not in the split")
    return split


def train(cfg: TrainConfig, progress=None, log=print) -> dict:
    """Train and return a summary (paths, best val metrics, seconds)."""
    from ..backends.device import select_device
    from .evaluate import evaluate_model  # late: evaluate imports the runtime backends

    world, rank, local = _distributed()
    device = torch.device(select_device(cfg.device))
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local)
    _seed_all(cfg.seed + rank)
    samples = scan_folder(cfg.data)
    split = prepare_split(cfg, samples)
    train_s, val_s = select(samples, split["train"]), select(samples, split["val"])
    if not train_s:
        raise StreamsegError(f"{cfg.data}: the split leaves no training images")

    out = Path(cfg.out)
    last_path = out.with_name(out.stem + "_last" + out.suffix)
    mcfg = ModelConfig.from_dict(cfg.model)
    model = build_model(mcfg)
    if cfg.init:
        info = init_from_file(model, cfg.init)
        log(f"initialised {info['loaded']} tensors from {cfg.init} ({info['skipped']} left fresh/skipped)")
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    ds = NerveDataset(train_s, mcfg.image_size, PaperAugment(cfg.intensity_aug, cfg.hflip))
    neg_split = None
    if cfg.negatives:
        neg_split = split_negatives(scan_negatives(cfg.negatives), seed=cfg.seed)
        ds = MixedDataset(ds, neg_split["train"], per_epoch=round(cfg.negative_share * len(ds)))
        log(f"negatives: {len(neg_split['train'])} train / {len(neg_split['val'])} val / "
            f"{len(neg_split['test'])} test images; {ds.per_epoch} nerve-free draws per epoch")
    sampler = torch.utils.data.DistributedSampler(ds, shuffle=True, seed=cfg.seed) if world > 1 else None
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                                         num_workers=cfg.workers, collate_fn=collate, drop_last=len(ds) > cfg.batch_size,
                                         generator=gen, persistent_workers=cfg.workers > 0)
    iters_per_epoch = min(len(loader), cfg.max_iters_per_epoch or len(loader))
    total_iters = iters_per_epoch * cfg.epochs
    start_epoch, best, history = 0, -1.0, []
    if cfg.resume and last_path.is_file():
        blob = read_checkpoint(last_path)
        model.load_state_dict(blob["state_dict"])
        state = blob["meta"]["train_state"]
        opt.load_state_dict(state["optimizer"])
        start_epoch, best = state["epoch"] + 1, state["best"]
        log(f"resumed from {last_path} at epoch {start_epoch}")
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if world > 1 else model
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    log_csv, log_jsonl = out.with_suffix(".csv"), out.with_suffix(".jsonl")
    t_start = time.time()
    task = progress.add_task("train", total=total_iters, completed=start_epoch * iters_per_epoch) if progress and rank == 0 else None
    meta_base = {"train": {k: v for k, v in asdict(cfg).items() if k != "model"},
                 "data": {"source": str(cfg.data), "images": len(samples), "patients": len({s.patient for s in samples}),
                          "train_images": len(train_s), "val_images": len(val_s)}, "split": split}
    for epoch in range(start_epoch, cfg.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        ddp.train()
        sums: dict[str, float] = {}
        n = 0
        for i, (images, targets) in enumerate(loader):
            if i >= iters_per_epoch:
                break
            it = epoch * iters_per_epoch + i
            for g in opt.param_groups:
                g["lr"] = cfg.lr * _lr_factor(cfg, it, total_iters)
            images = [im.to(device, non_blocking=True) for im in images]
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                losses = ddp(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise StreamsegError(f"loss became {loss.item()} at epoch {epoch + 1}, step {i + 1}: lower --lr")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            n += 1
            if task is not None:
                progress.update(task, advance=1, description=f"epoch {epoch + 1}/{cfg.epochs} loss {sums['loss'] / n:.3f}")
        row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t_start, 1),
               **{k: round(v / max(n, 1), 5) for k, v in sums.items()}}
        if rank == 0:
            if val_s and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                model.eval()
                summary, _ = evaluate_model(model, val_s, device=device, config=mcfg)
                row.update({f"val_{k}": summary[k] for k in ("dice_median", "dice_mean", "precision", "recall",
                                                             "top1_dice_mean", "map")})
                if neg_split and neg_split["val"]:
                    tops = np.array(top_scores(model, neg_split["val"], device=device, config=mcfg))
                    row.update({"val_neg_over_098": float((tops > 0.98).mean()),
                                "val_neg_over_095": float((tops > 0.95).mean())})
                model.train()
            history.append(row)
            _append_logs(log_csv, log_jsonl, row)
            score = row.get("val_top1_dice_mean", -row["loss"])
            meta = {**meta_base, "epoch": epoch + 1, "history_tail": history[-3:]}
            if score is not None and score > best:
                best = score
                save_checkpoint(out, model, {**meta, "best_val_top1_dice_mean": score}, config=mcfg)
            if cfg.keep_epochs:
                save_checkpoint(out.with_name(f"{out.stem}_e{epoch + 1:03d}{out.suffix}"), model, meta, config=mcfg)
            save_checkpoint(last_path, model, {**meta, "train_state": {"epoch": epoch, "best": best,
                                                                        "optimizer": opt.state_dict()}}, config=mcfg)
            log(json.dumps(row))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"best": str(out), "last": str(last_path), "best_score": best, "seconds": time.time() - t_start,
            "history": history}


def _append_logs(csv_path: Path, jsonl_path: Path, row: dict) -> None:
    with open(jsonl_path, "a") as f:
        f.write(json.dumps(row) + "\n")
    new = not csv_path.exists()
    if not new:  # a later epoch may add validation columns: rewrite from the JSONL when the header grows
        with open(csv_path, newline="") as f:
            header = next(csv.reader(f), [])
        if set(row) - set(header):
            rows = [json.loads(line) for line in open(jsonl_path)]
            keys = list(dict.fromkeys(k for r in rows for k in r))
            with open(csv_path, "w", newline="") as f:
                w = csv.DictWriter(f, keys)
                w.writeheader()
                w.writerows(rows)
            return
    with open(csv_path, "a", newline="") as f:
        w = csv.DictWriter(f, list(row) if new else header)
        if new:
            w.writeheader()
        w.writerow(row)
