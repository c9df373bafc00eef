"""Training: SGD (paper: lr 1e-3, momentum 0.9, 150 epochs), L = Lcls + Lbbox + Lmask as torchvision
computes it (plus the RPN's losses), AMP on CUDA, DistributedDataParallel under torchrun,
per-epoch validation logged to CSV/JSONL, best (val Dice) and last checkpoints, resume.

Laid out like torchvision's reference scripts: `train` is the flat main (`setup`, `resume`, then
per epoch `train_one_epoch`, `validate` on rank 0, `save_epoch`)."""
from __future__ import annotations

import csv
import json
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..model.checkpoint import read_checkpoint, save_checkpoint
from ..choices import Instances, Schedule, choice
from ..files import file_sha256
from ..model.architecture import ModelConfig, build_model, freeze_blocks, init_from_file, pretrained_weights
from ..settings import torchrun_ranks, usable_cores
from ..types import StreamsegError
from .augment import PaperAugment
from .dataset import (NerveDataset, collate, load_negative_split, load_split, patient_split, save_split, scan_folder,
                      select)
from .negatives import MixedDataset, scan_negatives, split_negatives, top_detections


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
    workers: int | None = None  # data-loading processes (None: `loader_workers`)
    seed: int = 0
    split: str | None = None  # split JSON; created (and saved) when missing
    intensity_aug: bool = False
    hflip: bool = False
    init: str | None = None  # user-supplied state dict (COCO Mask R-CNN or ImageNet ResNet)
    pretrained: bool = False  # the backbone's ImageNet weights through torchvision's weights API
    freeze_blocks: int | None = None  # the first N backbone blocks are not trained (None: 4 with `pretrained`, else 0)
    nerve_label: int | None = None  # the mask value that is nerve (masks labelling other structures too)
    instances: str = "union"  # "union": one nerve per scan; "components": one per connected component
    resume: bool = False
    device: str = "auto"
    max_iters_per_epoch: int | None = None  # for quick tests
    val_every: int = 1
    grad_clip: float = 10.0
    negatives: str | None = None  # folder of nerve-free scans (split by group; train part used)
    negative_share: float = 0.5  # nerve-free draws per epoch, as a share of the wrist scans
    keep_epochs: bool = False  # also keep every epoch's checkpoint (OUT_eNNN.pt) for choosing later
    stop_after: int | None = None  # end after this epoch; the schedule still spans `epochs` (--resume goes on)
    model: ModelConfig = field(default_factory=ModelConfig)  # the architecture to train

    def __post_init__(self):  # plain strings (the checkpoint keeps this config), each one of its choices
        self.schedule = choice(Schedule, self.schedule, "schedule").value
        self.instances = choice(Instances, self.instances, "instances").value


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_iters: int):
    """Stepped once per iteration. "constant" (paper): the lr as given. "cosine": linear warm-up over
    `warmup_iters` times a cosine decay over the whole run (torch's LinearLR and CosineAnnealingLR,
    chained: their factors multiply)."""
    from torch.optim.lr_scheduler import ChainedScheduler, ConstantLR, CosineAnnealingLR, LinearLR

    if cfg.schedule != Schedule.COSINE:
        return ConstantLR(opt, factor=1.0, total_iters=0)
    warm = max(1, cfg.warmup_iters)
    return ChainedScheduler([LinearLR(opt, 1.0 / warm, 1.0, warm - 1), CosineAnnealingLR(opt, T_max=max(1, total_iters))])


def _distributed() -> tuple[int, int, int]:
    world, local = torchrun_ranks()
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if world > 1 else 0
    return world, rank, local


def _device(name: str, world: int, local: int) -> torch.device:
    from ..backends.device import select_device

    device = torch.device(select_device(name))
    return torch.device("cuda", local) if device.type == "cuda" and world > 1 else device


def prepare_split(cfg: TrainConfig, samples) -> dict:
    if cfg.split and Path(cfg.split).is_file():
        split = load_split(cfg.split)
    else:
        split = patient_split(samples, seed=cfg.seed)
        if cfg.split:
            save_split(cfg.split, split, samples, cfg.seed, source=str(cfg.data))
    unknown = {s.patient for s in samples} - {p for part in ("train", "val", "test") for p in split[part]}
    if unknown:
        raise StreamsegError(f"{cfg.split}: patients {sorted(unknown)[:5]} are in the data but not in the split")
    return split


@dataclass
class Run:
    """What one training run holds between its steps (torchvision references keep these in main)."""

    cfg: TrainConfig
    mcfg: ModelConfig  # the architecture `model` was built from
    device: torch.device
    world: int
    rank: int
    model: torch.nn.Module
    params: list
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler  # stepped once per iteration
    scaler: torch.amp.GradScaler
    loader: torch.utils.data.DataLoader
    sampler: torch.utils.data.DistributedSampler | None
    iters_per_epoch: int
    val_s: list
    neg_val: list[Path]  # nerve-free validation images (empty without --negatives)
    meta_base: dict  # checkpoint meta shared by every epoch
    ddp: torch.nn.Module | None = None  # the model, wrapped for DistributedDataParallel under torchrun

    @property
    def total_iters(self) -> int:
        return self.iters_per_epoch * self.cfg.epochs

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def last_path(self) -> Path:
        return self.out.with_name(self.out.stem + "_last" + self.out.suffix)


def _train_set(cfg: TrainConfig, mcfg: ModelConfig, train_s, log) -> tuple[torch.utils.data.Dataset, list[Path]]:
    """The augmented wrist scans (+ nerve-free draws with --negatives) and the validation negatives.
    The negatives are split by acquisition group (seed), unless the split file lists them itself
    (a cross-validation fold)."""
    ds = NerveDataset(train_s, mcfg.image_size, PaperAugment(cfg.intensity_aug, cfg.hflip), instances=cfg.instances)
    if not cfg.negatives:
        return ds, []
    neg_split = (load_negative_split(cfg.split, cfg.negatives) if cfg.split and Path(cfg.split).is_file() else None) \
        or split_negatives(scan_negatives(cfg.negatives), seed=cfg.seed)
    ds = MixedDataset(ds, neg_split["train"], per_epoch=round(cfg.negative_share * len(ds)))
    log(f"negatives: {len(neg_split['train'])} train / {len(neg_split['val'])} val / "
        f"{len(neg_split['test'])} test images; {ds.per_epoch} nerve-free draws per epoch")
    return ds, neg_split["val"]


def _build(cfg: TrainConfig, mcfg: ModelConfig, log) -> tuple[torch.nn.Module, dict]:
    """The model to train and where its first weights came from (recorded in every checkpoint)."""
    weights, origin = None, {"kind": "random"}
    if cfg.pretrained:
        weights, file = pretrained_weights(mcfg.backbone)
        origin = {"kind": "torchvision weights", "weights": f"{type(weights).__name__}.{weights.name}",
                  "file": file.name, "sha256": file_sha256(file)}
        log(f"backbone from {origin['weights']} ({file})")
    model = build_model(mcfg, backbone_weights=weights)
    if cfg.init:
        info = init_from_file(model, cfg.init)
        origin = {"kind": "file", "file": str(cfg.init), "sha256": file_sha256(cfg.init)}
        if "lineage" in info:  # a streamseg checkpoint: what it was trained on, from which weights
            origin["trained"] = info["lineage"]
        log(f"initialised {info['loaded']} tensors from {cfg.init} ({info['skipped']} left fresh/skipped)")
    blocks = cfg.freeze_blocks if cfg.freeze_blocks is not None else (4 if cfg.pretrained else 0)
    if blocks:
        log(f"first {blocks} backbone blocks frozen ({freeze_blocks(model, blocks)} tensors)")
    return model, {**origin, "frozen_blocks": blocks}


def loader_workers(asked: int | None, device: torch.device, cores: int) -> int:
    """Data-loading processes: `asked` where given; on the CPU none (the training process has the
    cores, and a worker would take them from the model); on CUDA min(4, cores - 1), so augmentation
    and decoding run beside the GPU's steps instead of between them."""
    if asked is not None:
        return asked
    return max(0, min(4, cores - 1)) if device.type == "cuda" else 0


def _loader(cfg: TrainConfig, ds, world: int, device: torch.device):
    sampler = torch.utils.data.DistributedSampler(ds, shuffle=True, seed=cfg.seed) if world > 1 else None
    gen = torch.Generator().manual_seed(cfg.seed)
    workers = loader_workers(cfg.workers, device, usable_cores())
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                                         num_workers=workers, collate_fn=collate, drop_last=len(ds) > cfg.batch_size,
                                         generator=gen, persistent_workers=workers > 0,
                                         pin_memory=device.type == "cuda")  # pinned: the copies to the GPU overlap
    return loader, sampler


def setup(cfg: TrainConfig, log=print) -> Run:
    """Device, seed, patient split, model (+ --init), optimizer and data loader of a run."""
    world, rank, local = _distributed()
    device = _device(cfg.device, world, local)
    _seed_all(cfg.seed + rank)
    samples = scan_folder(cfg.data, cfg.nerve_label)
    split = prepare_split(cfg, samples)
    train_s, val_s = select(samples, split["train"]), select(samples, split["val"])
    if not train_s:
        raise StreamsegError(f"{cfg.data}: the split leaves no training images")
    mcfg = cfg.model
    model, origin = _build(cfg, mcfg, log)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    ds, neg_val = _train_set(cfg, mcfg, train_s, log)
    loader, sampler = _loader(cfg, ds, world, device)
    meta_base = {"train": {k: v for k, v in asdict(cfg).items() if k != "model"},
                 "data": {"source": str(cfg.data), "images": len(samples), "patients": len({s.patient for s in samples}),
                          "train_images": len(train_s), "val_images": len(val_s)}, "split": split,
                 "initial_weights": origin}
    iters = min(len(loader), cfg.max_iters_per_epoch or len(loader))
    return Run(cfg, mcfg, device, world, rank, model, params, opt, sched=make_scheduler(opt, cfg, iters * cfg.epochs),
               scaler=torch.amp.GradScaler("cuda", enabled=device.type == "cuda"), loader=loader, sampler=sampler,
               iters_per_epoch=iters, val_s=val_s,
               neg_val=neg_val, meta_base=meta_base)


def resume(run: Run, log=print) -> tuple[int, float]:
    """(first epoch, best score so far): from OUT_last.pt with --resume, else (0, -1)."""
    if not (run.cfg.resume and run.last_path.is_file()):
        return 0, -1.0
    from ..files import first_line
    from ..model.architecture import RUNTIME_KEYS

    blob = read_checkpoint(run.last_path)
    state = (blob.get("meta") or {}).get("train_state")
    if not isinstance(state, dict) or not {"epoch", "best", "optimizer"} <= state.keys():
        raise StreamsegError(f"{run.last_path}: holds no training state to resume (not saved by streamseg train)")
    ours = run.mcfg.to_dict()
    differ = [k for k, v in blob["config"].items() if k in ours and k not in RUNTIME_KEYS and v != ours[k]]
    if differ:
        k = differ[0]
        raise StreamsegError(f"{run.last_path}: made for another model ({k} {blob['config'][k]!r}, this run "
                             f"{ours[k]!r}): give the same architecture flags, or train without --resume")
    try:
        run.model.load_state_dict(blob["state_dict"])
        run.opt.load_state_dict(state["optimizer"])
        _restore_schedule(run, state)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise StreamsegError(f"{run.last_path}: does not fit this run ({first_line(e, 120)})") from None
    log(f"resumed from {run.last_path} after epoch {state['epoch'] + 1}")
    return state["epoch"] + 1, state["best"]


def _restore_schedule(run: Run, state: dict) -> None:
    """The lr schedule and the AMP scale where the run stopped."""
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    if "scheduler" in state:
        run.sched.load_state_dict(state["scheduler"])
        return
    with warnings.catch_warnings():  # a checkpoint written before the scheduler was saved: step it there
        warnings.simplefilter("ignore", UserWarning)  # "scheduler.step() before optimizer.step()"
        for _ in range((state["epoch"] + 1) * run.iters_per_epoch):
            run.sched.step()


def _wrap(run: Run) -> torch.nn.Module:
    if run.world == 1:
        return run.model
    device_ids = [run.device] if run.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(run.model, device_ids=device_ids)


def _step(run: Run, images, targets, epoch: int, i: int) -> tuple[dict, torch.Tensor]:
    """One optimizer step (AMP on CUDA, gradient clipping); the losses it took."""
    images = [im.to(run.device, non_blocking=True) for im in images]
    targets = [{k: v.to(run.device) for k, v in t.items()} for t in targets]
    with torch.autocast(run.device.type, dtype=torch.float16, enabled=run.device.type == "cuda"):
        losses = run.ddp(images, targets)
    loss = sum(losses.values())
    if not run.scaler.is_enabled():  # the CPU: checked every step (a float() costs nothing there)
        _check_finite(float(loss.detach()), epoch, f"step {i + 1}")
    # on CUDA the GPU is never waited for here: AMP's scaler skips a step whose gradients are not
    # finite, and the epoch's summed losses are checked once at its end (`train_one_epoch`)
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.opt)
    torch.nn.utils.clip_grad_norm_(run.params, run.cfg.grad_clip)
    run.scaler.step(run.opt)
    run.scaler.update()
    return losses, loss


def _check_finite(loss: float, epoch: int, where: str) -> None:
    if not np.isfinite(loss):
        raise StreamsegError(f"loss became {loss} at epoch {epoch + 1}, {where}: lower --lr")


LOSS_SHOWN_EVERY = 20  # steps between the progress bar's loss readings on a GPU (each one waits for it)


def train_one_epoch(run: Run, epoch: int, progress=None, task=None) -> dict[str, float]:
    """One pass (at most --max-iters-per-epoch steps); the mean of each loss and of their sum. The
    sums stay on the device, read once at the end (and every LOSS_SHOWN_EVERY steps for the bar on
    a GPU), so the host queues steps without waiting for each one."""
    cfg = run.cfg
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    run.ddp.train()
    sums: dict[str, torch.Tensor] = {}
    n, lr = 0, run.opt.param_groups[0]["lr"]
    for i, (images, targets) in enumerate(run.loader):
        if i >= run.iters_per_epoch:
            break
        lr = run.opt.param_groups[0]["lr"]  # the lr of the epoch's last step
        losses, loss = _step(run, images, targets, epoch, i)
        run.sched.step()
        for k, v in [*losses.items(), ("loss", loss)]:
            sums[k] = sums[k] + v.detach().float() if k in sums else v.detach().float()
        n += 1
        if task is not None:
            shown = {}
            if not run.scaler.is_enabled() or n % LOSS_SHOWN_EVERY == 0:
                shown = {"description": f"epoch {epoch + 1}/{cfg.epochs} loss {float(sums['loss']) / n:.3f}"}
            progress.update(task, advance=1, **shown)
    means = {k: float(v) / max(n, 1) for k, v in sums.items()}
    if "loss" in means:
        _check_finite(means["loss"], epoch, "in its summed losses")
    return {"lr": lr, **{k: round(v, 5) for k, v in means.items()}}


def validate(model: torch.nn.Module, mcfg: ModelConfig, samples, negatives: list[Path], device) -> dict[str, float]:
    """The validation columns of a log row: paper metrics on the validation patients (val_*) and the
    share of nerve-free validation images whose top detection scores above 0.98 / 0.95."""
    from .evaluate import evaluate_model  # late: evaluate imports the runtime backends

    model.eval()
    scores, _ = evaluate_model(model, samples, device=device, config=mcfg)
    p = scores.paper
    cols = {"val_dice_median": p.dice_median, "val_dice_mean": p.dice_mean, "val_precision": p.precision,
            "val_recall": p.recall, "val_top1_dice_mean": scores.top1_dice_mean, "val_map": scores.map}
    if negatives:
        tops = np.array([s for s, _c in top_detections(model, negatives, device=device, config=mcfg)])
        cols.update({"val_neg_over_098": float((tops > 0.98).mean()), "val_neg_over_095": float((tops > 0.95).mean())})
    model.train()
    return cols


def save_epoch(run: Run, epoch: int, row: dict, history: list[dict], best: float, log=print) -> float:
    """Log the epoch's row (CSV, JSONL, `log`) and write OUT (when the score is the best so far),
    OUT_eNNN (--keep-epochs) and OUT_last (with the state --resume needs); returns the best score."""
    history.append(row)
    _append_logs(run.out.with_suffix(".csv"), run.out.with_suffix(".jsonl"), row)
    score = row.get("val_top1_dice_mean", -row["loss"])
    meta = {**run.meta_base, "epoch": epoch + 1, "history_tail": history[-3:]}
    if score is not None and score > best:
        best = score
        save_checkpoint(run.out, run.model, {**meta, "best_val_top1_dice_mean": score}, config=run.mcfg)
    if run.cfg.keep_epochs:
        epoch_path = run.out.with_name(f"{run.out.stem}_e{epoch + 1:03d}{run.out.suffix}")
        save_checkpoint(epoch_path, run.model, meta, config=run.mcfg)
    state = {"epoch": epoch, "best": best, "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
             "scaler": run.scaler.state_dict()}
    save_checkpoint(run.last_path, run.model, {**meta, "train_state": state}, config=run.mcfg)
    log(json.dumps(row))
    return best


@dataclass
class TrainReport:
    """What a training call leaves: its checkpoints, the best score, its time and its epochs' rows."""

    best: Path  # the best validation top-1 Dice so far (lowest loss without validation)
    last: Path  # the last epoch's weights with the state --resume needs
    best_score: float
    seconds: float
    history: list[dict]  # one row per epoch trained in this call (the logs hold every epoch)


def train(cfg: TrainConfig, progress=None, log=print) -> TrainReport:
    """Train (or go on with --resume) and report where the checkpoints are."""
    run = setup(cfg, log)
    start_epoch, best = resume(run, log)
    run.ddp = _wrap(run)
    history: list[dict] = []
    t_start = time.time()
    task = progress.add_task("train", total=run.total_iters, completed=start_epoch * run.iters_per_epoch) \
        if progress and run.rank == 0 else None
    for epoch in range(start_epoch, min(cfg.epochs, cfg.stop_after or cfg.epochs)):
        losses = train_one_epoch(run, epoch, progress, task)
        row = {"epoch": epoch + 1, **losses, "seconds": round(time.time() - t_start, 1)}
        if run.rank == 0:
            if run.val_s and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                row.update(validate(run.model, run.mcfg, run.val_s, run.neg_val, run.device))
            best = save_epoch(run, epoch, row, history, best, log)
    if run.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return TrainReport(run.out, run.last_path, best, time.time() - t_start, history)


def _append_logs(csv_path: Path, jsonl_path: Path, row: dict) -> None:
    with open(jsonl_path, "a") as f:
        f.write(json.dumps(row) + "\n")
    header = _csv_header(csv_path)
    if header is None:
        _write_csv(csv_path, "a", list(row), [row], with_header=True)
    elif set(row) <= set(header):
        _write_csv(csv_path, "a", header, [row], with_header=False)
    else:  # a later epoch may add validation columns: rewrite from the JSONL when the header grows
        rows = [json.loads(line) for line in open(jsonl_path)]
        _write_csv(csv_path, "w", list(dict.fromkeys(k for r in rows for k in r)), rows, with_header=True)


def _csv_header(path: Path) -> list[str] | None:
    if not path.exists():
        return None
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


def _write_csv(path: Path, mode: str, keys: list[str], rows: list[dict], with_header: bool) -> None:
    with open(path, mode, newline="") as f:
        w = csv.DictWriter(f, keys)
        if with_header:
            w.writeheader()
        w.writerows(rows)
