"""The `streamseg` command: a thin typer shell. Each command parses flags and calls one function;
a StreamsegError becomes one red line and exit code 2."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from .types import StreamsegError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Real-time median-nerve segmentation for wrist ultrasound.")
console = Console(stderr=True)


def friendly(fn):
    """Turn StreamsegError (and Ctrl-C) into one clear line and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StreamsegError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(2)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130)

    return wrapper


def not_built(issue: str):
    console.print(f"[yellow]not built yet:[/] this command arrives with the {issue} issue")
    raise typer.Exit(3)


@app.command()
@friendly
def live(device: str = typer.Option("/dev/video0", help="/dev/videoN, an index, or a URL")):
    """Segment a live source (frame grabber or network stream)."""
    not_built("real-time pipeline")


@app.command()
@friendly
def file(input: Path = typer.Argument(..., help="video file")):
    """Segment a recorded video file."""
    not_built("real-time pipeline")


@app.command()
@friendly
def bench():
    """Benchmark the backends, stage by stage."""
    not_built("compiled-inference")


@app.command()
@friendly
def export():
    """Export the model to ONNX / TensorRT / compiled artefacts."""
    not_built("compiled-inference")


@app.command()
@friendly
def train(
    data: Path = typer.Option(..., help="folder with images/ + masks/ (+ manifest.csv), or a COCO .json"),
    out: Path = typer.Option(Path("runs/model.pt"), help="best checkpoint (the last one goes beside it as *_last.pt)"),
    backbone: str = typer.Option("resnet101", help="resnet101 | resnet50 | resnet18 | mobilenet_v3_large"),
    mask_head: str = typer.Option("112", help="112 (paper) | 56 | 28"),
    epochs: int = typer.Option(150),
    lr: float = typer.Option(1e-3),
    schedule: str = typer.Option("constant", help="constant (paper) | cosine (warm-up + cosine decay)"),
    batch_size: int = typer.Option(2),
    norm: str = typer.Option("batch", help="batch | group | frozen (frozen only with --init)"),
    split: Optional[Path] = typer.Option(None, help="patient split JSON (written if missing)"),
    init: Optional[Path] = typer.Option(None, help="initialise from a COCO Mask R-CNN or ImageNet ResNet state dict"),
    intensity_aug: bool = typer.Option(False, help="gain/gamma/speckle augmentation on top of the paper's"),
    hflip: bool = typer.Option(False, help="random horizontal flips on top of the paper's augmentation"),
    box_head_width: int = typer.Option(1024, help="box head MLP width (1024 = torchvision)"),
    mask_head_width: int = typer.Option(256, help="mask head filters (256 = Table I)"),
    resume: bool = typer.Option(False, help="continue from OUT's *_last.pt"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
    workers: int = typer.Option(0),
    max_iters_per_epoch: Optional[int] = typer.Option(None, hidden=True),
):
    """Train the paper's Mask R-CNN on labelled scans (patient-wise split)."""
    from rich.progress import Progress

    from .training.loop import TrainConfig, train as run_train

    cfg = TrainConfig(
        data=str(data), out=str(out), epochs=epochs, lr=lr, schedule=schedule, batch_size=batch_size,
        seed=seed, split=str(split) if split else None, intensity_aug=intensity_aug, hflip=hflip,
        init=str(init) if init else None, resume=resume, device=device, workers=workers,
        max_iters_per_epoch=max_iters_per_epoch,
        model={"backbone": backbone, "mask_head": mask_head, "norm": norm, "box_head_width": box_head_width,
               "mask_head_width": mask_head_width},
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with Progress(console=console, transient=True) as progress:
        summary = run_train(cfg, progress=progress, log=lambda s: progress.console.print(s, highlight=False))
    console.print(f"best checkpoint: {summary['best']}  (val top-1 Dice {summary['best_score']:.3f}), "
                  f"last: {summary['last']}, {summary['seconds'] / 60:.1f} min")


@app.command("eval")
@friendly
def eval_(
    data: Path = typer.Option(..., help="folder with images/ + masks/, or a COCO .json"),
    model: Optional[Path] = typer.Option(None, help="checkpoint (default: the bundled model)"),
    split: Optional[Path] = typer.Option(None, help="patient split JSON; evaluate only --subset of it"),
    subset: str = typer.Option("test", help="train | val | test (with --split)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write every number as JSON"),
    out_dir: Optional[Path] = typer.Option(None, help="write per_image.csv, dice_boxplot.png, worst_cases.png here"),
    mm_per_px: Optional[float] = typer.Option(None, help="pixel spacing, to report area errors in mm²"),
    conf: float = typer.Option(0.98, help="confidence a TP must exceed (paper: 0.98)"),
    iou: float = typer.Option(0.7, help="box IoU a TP must reach (paper: 0.7)"),
    fn_rule: str = typer.Option("paper", help="paper: FN only when no box at all | strict: any unmatched nerve"),
    device: str = typer.Option("cpu"),
):
    """Evaluate a checkpoint with the paper's metrics (Prec/Rec, mAP, Dice median+IQR, HD95, area error)."""
    from rich.progress import Progress
    from rich.table import Table

    from .training.evaluate import run_eval
    from .training.report import summary_rows

    if fn_rule not in ("paper", "strict"):
        raise StreamsegError(f"unknown --fn-rule {fn_rule!r}: paper or strict")
    with Progress(console=console, transient=True) as progress:
        summary, _ = run_eval(data, model, split, subset, json_out, out_dir, mm_per_px, conf, iou, fn_rule, device,
                              progress)
    table = Table(title=f"{summary['model']} on {summary['data']} ({summary['subset']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in summary_rows(summary):
        table.add_row(k, v)
    Console().print(table)


@app.command()
@friendly
def ablation(
    data: Path = typer.Option(..., help="folder with images/ + masks/"),
    out_dir: Path = typer.Option(Path("runs/ablation"), help="checkpoints and split go here"),
    backbone: str = typer.Option("resnet101"),
    epochs: int = typer.Option(150),
    lr: float = typer.Option(1e-3),
    schedule: str = typer.Option("constant"),
    batch_size: int = typer.Option(2),
    split: Optional[Path] = typer.Option(None, help="patient split JSON (written into OUT_DIR if not given)"),
    seed: int = typer.Option(0),
    max_iters_per_epoch: Optional[int] = typer.Option(None, hidden=True),
):
    """The paper's ablation: train mask28, mask56, mask112 alike and print Table II."""
    from rich.progress import Progress
    from rich.table import Table

    from .training.ablation import run_ablation
    from .training.loop import TrainConfig
    from .training.report import PAPER

    base = TrainConfig(data=str(data), epochs=epochs, lr=lr, schedule=schedule, batch_size=batch_size, seed=seed,
                       split=str(split) if split else None, max_iters_per_epoch=max_iters_per_epoch,
                       model={"backbone": backbone})
    with Progress(console=console, transient=True) as progress:
        results = run_ablation(base, str(out_dir), progress, log=lambda s: None)
    table = Table(title="Table II (test patients): this run | paper")
    for col in ("model", "mAP", "Rec", "Prec", "Dice median (IQR)", "paper mAP / Rec / Prec"):
        table.add_column(col)
    for name, s in results.items():
        p = PAPER[name]
        dm = "–" if s["dice_median"] is None else f"{s['dice_median']:.3f} ({s['dice_iqr']:.3f})"
        table.add_row(name, f"{s['map']:.3f}", f"{s['recall']:.3f}", f"{s['precision']:.3f}", dm,
                      f"{p['map']:.3f} / {p['recall']:.3f} / {p['precision']:.3f}")
    Console().print(table)


def main():
    app()


if __name__ == "__main__":
    sys.exit(main())
