"""The `streamseg` command: a thin typer shell. Each command parses flags and calls one function;
a StreamsegError becomes one red line and exit code 2."""
from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

if TYPE_CHECKING:
    from .runner import Options

try:  # typer >= 0.25 carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_errors

from ..files import first_line
from ..choices import (Backbone, Backend, BoxKind, ExportFormat, FnRule, Instances, MaskHead, Norm,
                      Precision, Schedule, Subset, Tracking, resolve_precision)
from .interrupts import exit_at_once_on_interrupt, interrupt_raises
from ..memory import memory_error, report as report_memory_error
from .checks import check_compute, check_numbers, check_out_dir, check_outputs, spacing_flag
from ..types import (BACKOFF_S, CTS_CUTOFF_MM2, READ_TIMEOUT_S, RECONNECT_ATTEMPTS, SHOWN_DETECTIONS, StopReason,
                     StreamsegError)

# the compute device, one flag name on every command; its choices are the metavar, so not repeated here
COMPUTE_HELP = "where the network runs (auto: the GPU when one is visible, else the CPU)"
console = Console(stderr=True, soft_wrap=True)  # one error = one line, never wrapped


def print_error(message: str) -> None:
    """`error: MESSAGE` as one red line on stderr; the message (user text: paths, flag values) is
    escaped, so rich prints it as written and never reads it as markup."""
    console.print(f"[bold red]error:[/] {escape(' '.join(str(message).splitlines()))}", highlight=False)


class UsageLine(click_errors.ClickException):
    """A usage error (unknown option, bad value, missing argument) as one line, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        print_error(self.message)


class OneLineUsage(TyperGroup):
    """The command group, whose usage errors are one line (with where to find help) instead of
    click's three (usage, hint, error); `streamseg` alone still prints the help."""

    @staticmethod
    def _one_line(e):
        if isinstance(e, getattr(click_errors, "NoArgsIsHelpError", ())):
            return e
        where = f" (see {e.ctx.command_path} --help)" if e.ctx is not None else ""
        return UsageLine(e.format_message() + where)

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click_errors.UsageError as e:
            raise self._one_line(e) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click_errors.UsageError as e:
            raise self._one_line(e) from None


# plain (click) help: the rich help of typer 0.29 labels every flag `<bool>`; choices show as <a|b|c>.
# Click wraps help at min(terminal width, max_content_width) - 2, and max_content_width defaults to 80:
# a large one lets the help use the terminal's whole width (subcommands inherit it from this group).
HELP_MAX_WIDTH = 160
app = typer.Typer(cls=OneLineUsage, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"max_content_width": HELP_MAX_WIDTH},
                  help="Real-time median-nerve segmentation for wrist ultrasound.")

def os_error_line(e: OSError) -> str:
    """An OSError from a path the user gave (a symlink loop, a name too long, no permission) as one
    line: the path (shortened when it is very long) and the system's reason."""
    name = e.filename if e.filename is not None else ""
    name = os.fsdecode(name) if isinstance(name, bytes) else str(name)
    if len(name) > 80:
        name = f"{name[:40]}...{name[-30:]}"
    reason = e.strerror or first_line(e)
    return f"{name}: {reason}" if name else reason


def friendly(fn=None, *, until_outputs_open: bool = False):
    """Turn StreamsegError, an OSError on a user's path, running out of memory (and Ctrl-C) into one
    clear line and a non-zero exit, never a traceback. Ctrl-C raises KeyboardInterrupt in the
    command; with `until_outputs_open` (`file`, `live`) it exits at once until `runner.run` opens
    the outputs (nothing to finalise before: streamseg/app/interrupts.py)."""
    if fn is None:
        return functools.partial(friendly, until_outputs_open=until_outputs_open)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        exit_at_once_on_interrupt() if until_outputs_open else interrupt_raises()
        try:
            return fn(*args, **kwargs)
        except StreamsegError as e:
            print_error(str(e))
            raise typer.Exit(2)
        except (MemoryError, RuntimeError, ImportError, OSError, SystemError) as e:
            line = memory_error(e)
            if line:
                print_error(line)
                raise typer.Exit(1)
            if not isinstance(e, OSError):
                raise
            print_error(os_error_line(e))
            raise typer.Exit(2)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130)

    return wrapper


# --- real-time pipeline: file, live, calibrate (issue 3) ------------------------------------------
_OUT = typer.Option(None, "--out", "-o", help="overlay video (H.264 .mp4)")
_RAW = typer.Option(None, "--save-input", help="the input's frames without the overlay (.mp4): same frames and timestamps")
_CSV = typer.Option(None, "--csv", help="one CSV row per processed frame")
_JSONL = typer.Option(None, "--jsonl", help="one JSON line per processed frame")
_MODEL = typer.Option(None, "--model", "-m", help="checkpoint (default: the bundled model)")
_BACKEND = typer.Option(Backend.AUTO, "--backend", help="inference backend")
_PRECISION = typer.Option(Precision.AUTO, "--precision", help="auto: int8 where onnxruntime runs on the CPU, fp16 for "
                          "the compiled backends on CUDA, else fp32. fp16: an NVIDIA GPU (--compute cuda). "
                          "int8: an INT8 dense graph (dense part 2.2-2.6x faster, same detections on the test "
                          "patients, median Dice -0.003; README); fp32: as trained")
_MMPX = typer.Option(None, "--mm-per-px", help="pixel spacing in mm")
_DEPTH = typer.Option(None, "--depth-mm", help="imaged depth (mm) spanning the crop height")
_PROFILE = typer.Option(None, "--profile", help="saved calibration profile (streamseg calibrate)")
_CROP = typer.Option(None, "--crop", help="x,y,w,h of the ultrasound image in the frame")
_MAXF = typer.Option(None, "--max-frames", help="stop after N frames")
_CUTOFF = typer.Option(CTS_CUTOFF_MM2, "--cts-cutoff", help="CTS flag cut-off, mm²")
_SCORE = typer.Option(None, "--score-thresh", help="confidence (score × mask score) at which a detection is shown as the "
                      "nerve (default: the model's, chosen on its cross-validation; 0.9 for a checkpoint that names none)")
_TRACK = typer.Option(True, "--track/--no-track", help="after a confident nerve, run the model on a window around it "
                      "until it is lost (faster); --no-track runs the full frame every time")
_CONF = typer.Option(None, "--confident", help="confidence for frames counted in the CSA summary (default: the model's)")


def _compute(default: str = "auto"):
    """The compute device flag: one name and one help text on every command."""
    return typer.Option(default, "--compute", help=COMPUTE_HELP, metavar="<cpu|cuda|cuda:N|auto>")


def _pipeline(o: Options) -> None:
    """Run file/live and report: one summary line; exit 128+signal when stopped by a signal,
    1 when a live source was lost for good."""
    from ..outputs.progress import progress_bar
    from .runner import run

    bar = None if o.live else progress_bar(console)  # file: frames done of the total; live runs until stopped
    with bar or contextlib.nullcontext():
        # from the pipeline's start to the exit: the first signal stops capture, later ones never cut the outputs short
        r = run(o, log=lambda msg: console.print(msg, highlight=False, markup=False), progress=bar,
                ignore_signals_after=True)
    c = r.csa
    if c.median is None:
        csa = f"CSA: no confident frames (confidence >= {c.confident_threshold:g})"
    else:
        unit = c.unit + ("" if c.calibrated else " (uncalibrated)")
        csa = f"CSA median {c.median:g} {unit}, IQR {c.q1:g}–{c.q3:g} over {c.confident_frames} confident frames"
        if c.cts_flag is not None:
            csa += f"; CTS flag: {'yes' if c.cts_flag else 'no'} (cut-off {c.cts_cutoff_mm2:g} mm²)"
        if c.calibrated and r.spacing_assumed:
            csa += ", on the file's ASSUMED pixel spacing"
    console.print(f"frames seen {r.frames_seen}, processed {c.frames_processed}, with nerve {c.frames_with_nerve}, "
                  f"dropped {r.dropped}, {r.processed_fps:.2f} fps. {csa}", highlight=False, markup=False)
    if r.stopped_by in (StopReason.SIGINT, StopReason.SIGTERM):
        console.print(f"[yellow]stopped by {r.stopped_by}; outputs finalised[/]")
        raise typer.Exit(130 if r.stopped_by == StopReason.SIGINT else 143)
    if r.source_lost:
        console.print("[red]live source lost; outputs finalised[/]")
        raise typer.Exit(1)


_ENGINES = typer.Option(None, "--engines", help="compiled artefacts folder: built there on first use, reused after "
                        "(default: $XDG_CACHE_HOME/streamseg/engines); an `export --out DIR` folder, even read-only")


@app.command()
@friendly(until_outputs_open=True)
def live(
    input: str = typer.Option("/dev/video0", "--device", "-d", help="/dev/videoN, an index, or a URL (rtsp/udp/tcp/http)"),
    out: Optional[Path] = _OUT, save_input: Optional[Path] = _RAW, csv: Optional[Path] = _CSV, jsonl: Optional[Path] = _JSONL,
    model: Optional[Path] = _MODEL, backend: Backend = _BACKEND, compute: str = _compute(),
    precision: Precision = _PRECISION,
    show: Optional[bool] = typer.Option(None, "--show/--no-show", help="window (default: on when a display exists)"),
    mm_per_px: Optional[float] = _MMPX, depth_mm: Optional[float] = _DEPTH, profile: Optional[str] = _PROFILE,
    crop: Optional[str] = _CROP, max_frames: Optional[int] = _MAXF,
    duration_s: Optional[float] = typer.Option(None, "--duration", help="stop after S seconds"),
    cts_cutoff_mm2: float = _CUTOFF, score_thresh: Optional[float] = _SCORE, confident: Optional[float] = _CONF,
    width: Optional[int] = typer.Option(None, "--width", help="capture width to request (V4L2)"),
    height: Optional[int] = typer.Option(None, "--height", help="capture height to request (V4L2)"),
    fps: Optional[float] = typer.Option(None, "--fps", help="capture frame rate to request (V4L2)"),
    reconnect_attempts: int = typer.Option(RECONNECT_ATTEMPTS, "--reconnect", help="reconnect attempts after the "
                                           "signal is lost; the default keeps trying for about 5 minutes (a cable "
                                           "unplugged and plugged back in)"),
    backoff_s: float = typer.Option(BACKOFF_S, "--backoff", help="first reconnect delay, s (doubles, max 8 s between attempts)"),
    read_timeout_s: float = typer.Option(READ_TIMEOUT_S, "--timeout", help="network read timeout, s"), track: bool = _TRACK,
    engines: Optional[Path] = _ENGINES,
):
    """Segment a live source: a frame grabber or a network stream.

    The newest frame always wins: older ones are dropped and counted, so the lag never grows."""
    from ..outputs.display import has_display
    from .runner import Options

    _pipeline(Options(
        input=input, live=True, out=out, save_input=save_input, csv=csv, jsonl=jsonl, model=model, backend=backend,
        compute=compute, precision=precision, show=has_display() if show is None else show, mm_per_px=mm_per_px,
        depth_mm=depth_mm, profile=profile, crop=crop, max_frames=max_frames, duration_s=duration_s,
        cts_cutoff_mm2=cts_cutoff_mm2, score_thresh=score_thresh, confident=confident, width=width, height=height,
        fps=fps, reconnect_attempts=reconnect_attempts, backoff_s=backoff_s, read_timeout_s=read_timeout_s,
        engines=engines, track=track))


@app.command()
@friendly(until_outputs_open=True)
def file(
    input: Path = typer.Argument(..., help="video file (any container/codec FFmpeg decodes) or DICOM (.dcm)"),
    out: Optional[Path] = _OUT, save_input: Optional[Path] = _RAW, csv: Optional[Path] = _CSV, jsonl: Optional[Path] = _JSONL,
    model: Optional[Path] = _MODEL, backend: Backend = _BACKEND, compute: str = _compute(),
    precision: Precision = _PRECISION,
    show: bool = typer.Option(False, "--show/--no-show", help="show a window while processing"),
    mm_per_px: Optional[float] = _MMPX, depth_mm: Optional[float] = _DEPTH, profile: Optional[str] = _PROFILE,
    crop: Optional[str] = _CROP, max_frames: Optional[int] = _MAXF,
    cts_cutoff_mm2: float = _CUTOFF, score_thresh: Optional[float] = _SCORE, confident: Optional[float] = _CONF, track: bool = _TRACK,
    fps: Optional[float] = typer.Option(None, "--fps", help="frame rate of an input whose frames carry no "
                                        "timestamps (raw .h264/.hevc); default: the rate the stream declares. "
                                        "Inputs with timestamps keep theirs"),
    engines: Optional[Path] = _ENGINES,
):
    """Segment a recorded video or DICOM file, frame by frame.

    Every frame, in order: the overlay keeps the input's frame count and timestamps."""
    from .runner import Options

    _pipeline(Options(
        input=str(input), live=False, out=out, save_input=save_input, csv=csv, jsonl=jsonl, model=model,
        backend=backend, compute=compute, precision=precision, show=show, mm_per_px=mm_per_px, depth_mm=depth_mm,
        profile=profile, crop=crop, max_frames=max_frames, cts_cutoff_mm2=cts_cutoff_mm2, score_thresh=score_thresh,
        confident=confident, fps=fps, engines=engines, track=track))


@app.command()
@friendly
def calibrate(
    name: Optional[str] = typer.Argument(None, help="profile name (default: PROBE_PRESET, e.g. ml6-15_wrist)"),
    probe: Optional[str] = typer.Option(None, "--probe", help="probe name, e.g. ml6-15"),
    preset: Optional[str] = typer.Option(None, "--preset", help="machine preset, e.g. wrist"),
    mm_per_px: Optional[float] = _MMPX,
    depth_mm: Optional[float] = typer.Option(None, "--depth-mm", help="imaged depth (mm) spanning the crop height"),
    known_mm: Optional[float] = typer.Option(None, "--known-mm", help="a distance in mm (e.g. between depth-scale ticks)..."),
    known_px: Optional[float] = typer.Option(None, "--known-px", help="...and the same distance in pixels"),
    crop: Optional[str] = _CROP,
    image_from: Optional[str] = typer.Option(None, "--from", help="a grab (image, video or DICOM) the crop must fit; "
                                             "without --crop its height is what --depth-mm spans"),
    list_: bool = typer.Option(False, "--list", help="list saved profiles"),
):
    """Save a probe and preset's pixel spacing as a profile.

    The profile (mm/px and crop) is named PROBE_PRESET; use it with --profile."""
    from ..inputs.calibration import calibrate_profile, config_dir, load_profiles, profile_name

    asked = any(v is not None for v in (name, probe, preset, mm_per_px, depth_mm, known_mm, known_px, crop, image_from))
    if list_ or not asked:
        if list_ and asked:
            raise StreamsegError("--list lists the saved profiles: give it alone")
        profiles = load_profiles()
        console.print(f"profiles in {config_dir()}: " + (", ".join(
            f"{k} ({v['mm_per_px']:.5g} mm/px{', crop ' + ','.join(map(str, v['crop'])) if v.get('crop') else ''})"
            for k, v in sorted(profiles.items())) or "none"), highlight=False, markup=False)
        return
    name = profile_name(name, probe, preset)
    path, p = calibrate_profile(name, mm_per_px=mm_per_px, depth_mm=depth_mm, known_mm=known_mm, known_px=known_px,
                                crop=crop, image_from=image_from, probe=probe, preset=preset)
    console.print(f"saved profile {name}: {p['mm_per_px']:.6g} mm/px"
                  f"{', crop ' + ','.join(map(str, p['crop'])) if p['crop'] else ''} -> {path} "
                  f"(use it with --profile {name})", highlight=False, markup=False)


def _on_off(values: list[str] | None) -> list[bool] | None:
    """bench --tracking: "on"/"off" -> True/False, checked once here."""
    if values is None:
        return None
    bad = [v for v in values if v not in tuple(Tracking)]
    if bad:
        raise StreamsegError(f"--tracking {bad[0]!r}: a comma list of {', '.join(Tracking)}")
    return [v == Tracking.ON for v in values]


def _command_line(fn, values: dict) -> str:
    """`streamseg <command>` with the options the user changed from their defaults (for reports)."""
    import inspect

    args = []
    for name, p in inspect.signature(fn).parameters.items():
        default = getattr(p.default, "default", p.default)
        if name in values and values[name] != default:
            v = values[name]
            args.append(f"--{name.replace('_', '-')}" if v is True else
                        f"--no-{name.replace('_', '-')}" if v is False else f"--{name.replace('_', '-')} {v}")
    return " ".join(["streamseg", fn.__name__, *args])


@app.command()
@friendly
def bench(
    model: Optional[Path] = typer.Option(None, help="checkpoint to time (default: the bundled model, as file and live run)"),
    paper: bool = typer.Option(False, "--paper", help="time the paper's R101 mask112 instead: untrained, BatchNorm "
                               "warmed up on real images (= --backbone resnet101)"),
    backbone: Optional[Backbone] = typer.Option(None, help="time this architecture instead, untrained like --paper"),
    mask_head: Optional[MaskHead] = typer.Option(None, help="mask head with --paper/--backbone (default 112)"),
    backend: Optional[str] = typer.Option(None, help=f"comma list of {','.join(Backend)}; the first is the baseline (default: "
                                          "auto's pick, then every other available one)"),
    precision: Optional[str] = typer.Option(None, help=f"comma list of {','.join(Precision)} (auto: what file and live "
                                            "run; default: that, plus fp32 full frames on the CPU, fp32 and fp16 on "
                                            "CUDA; fp16: CUDA; int8: onnxruntime on the CPU)"),
    tracking: Optional[str] = typer.Option(None, help=f"comma list of {','.join(Tracking)}: windows around the nerve as file/live "
                                           "run (on), or the full frame every time (off). Default: on, plus off "
                                           "for the first backend"),
    compute: str = _compute(),
    frames: int = typer.Option(20, help="timed frames per run: consecutive frames of the clip, in order"),
    warmup: int = typer.Option(3, help="untimed frames first, each run"),
    repeat: int = typer.Option(3, help="runs per backend, interleaved (A B A B ...); the table shows the median "
                               "frame p50 and its min–max"),
    images: Optional[Path] = typer.Option(None, help="folder of .png images to time instead of the clip's frames"),
    engines: Optional[Path] = typer.Option(None, help="artefact folder (default: $XDG_CACHE_HOME/streamseg/engines)"),
    out: Optional[Path] = typer.Option(None, help="JSON report (default: $XDG_CACHE_HOME/streamseg/bench/"
                                       "bench-<time>.json, else ~/.cache/...)"),
    e2e: bool = typer.Option(True, help="also replay the clip at its frame rate through the live pipeline"),
    video: Optional[Path] = typer.Option(None, help="clip timed and replayed (default: the bundled demo.mp4)"),
    e2e_seconds: float = typer.Option(15.0, help="length of the end-to-end replay"),
    max_detections: int = typer.Option(SHOWN_DETECTIONS, min=1, help="detections per frame (default: as file/live run; each costs one mask-head pass)"),
):
    """Time the model stage by stage, backend by backend.

    What file and live run (the bundled model, auto's backend first) against the other backends;
    --paper times the paper's R101."""
    compute = check_compute(compute)
    check_numbers([("--frames", frames, 1, 100000), ("--warmup", warmup, 0, 100000), ("--repeat", repeat, 1, 1000),
                   ("--e2e-seconds", e2e_seconds, 0, 3600, dict(lo_open=True))])
    if paper and backbone not in (None, Backbone.RESNET101):
        raise StreamsegError(f"--paper is the resnet101 model: drop --paper or --backbone {backbone}")
    arch = Backbone.RESNET101 if paper else backbone
    if model is not None and arch is not None:
        raise StreamsegError("--model times a checkpoint, --paper/--backbone an untrained architecture: give one")
    if mask_head is not None and arch is None:
        raise StreamsegError("--mask-head goes with --paper or --backbone (a checkpoint has its own)")
    check_outputs({"--out": out}, inputs=(model, video))
    values = dict(locals())  # for the report's command line
    from rich.progress import Progress

    from .bench import BenchOptions, print_report, run

    split = lambda v: [x.strip() for x in v.split(",") if x.strip()] if v else None  # noqa: E731
    o = BenchOptions(model=model, backbone=arch, mask_head=mask_head or MaskHead.M112, backends=split(backend),
                     precisions=split(precision), tracking=_on_off(split(tracking)), device=compute, frames=frames, warmup=warmup, repeat=repeat,
                     images=images, engines_dir=engines, out=out, e2e=e2e, e2e_video=video, e2e_seconds=e2e_seconds,
                     max_detections=max_detections, command=_command_line(bench, values))
    log = lambda m: console.print(m, highlight=False, markup=False)  # noqa: E731
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        report = run(o, log=log, progress=progress)
    table_console = Console(highlight=False)
    print_report(report, table_console if table_console.is_terminal else Console(width=100, highlight=False), log)


@app.command()
@friendly
def export(
    format: ExportFormat = typer.Option(ExportFormat.ONNX, "--format", help="onnx, engine (TensorRT) or compiled (AOTInductor)"),
    precision: Precision = typer.Option(Precision.AUTO, "--precision", help="int8: also an INT8 copy of the ONNX graphs "
                                        "(CPU; calibrated on the bundled training-patient scans); fp16: FP16 artefacts "
                                        "for a GPU (compiled: built on that GPU); auto: what file and live run "
                                        "on this machine (onnx on the CPU: int8; engine/compiled on CUDA: fp16), else fp32"),
    model: Optional[Path] = typer.Option(None, help="checkpoint (default: the bundled model)"),
    out: Optional[Path] = typer.Option(None, help="artefact folder (default: the user cache, "
                                       "$XDG_CACHE_HOME/streamseg/engines); usable later as --engines DIR"),
    compute: str = _compute(),
):
    """Build ONNX / TensorRT / compiled artefacts ahead of time.

    --compute matters for compiled only. The folder serves file and live as --engines DIR."""
    compute = check_compute(compute)
    from ..backends.artefacts import DEFAULT_DIR
    from ..backends.device import select_device
    from ..backends.export import build

    device = select_device(compute, "--compute")  # the device the graphs are for
    precision = resolve_precision(precision, format, device, export=True)  # auto: what file and live run there

    out = DEFAULT_DIR if out is None else out
    check_out_dir("--out", out)
    from ..model.checkpoint import load_checkpoint

    if format == "engine":
        from ..backends.tensorrt import import_tensorrt

        import_tensorrt()
    m, info = load_checkpoint(model)
    from ..backends.artefacts import Building

    def log(msg: str) -> None:  # what is built is listed at the end; a stale artefact's reason is shown
        if not (isinstance(msg, Building) and msg.routine):
            console.print(msg, highlight=False, markup=False)
    from ..outputs.progress import progress_bar

    with progress_bar(console, "artefacts") as bar:  # one step, of unknown length: spinner and time elapsed
        bar.add_task(f"export {format}", total=None)
        built = build(m, info, format, out, device=device, log=log, precision=precision)
    for p in built:
        console.print(f"built {p} ({p.stat().st_size / 2**20:.1f} MiB)", highlight=False, markup=False)


# the training options `train` and `ablation` share (the paper's values as defaults)
_EPOCHS = typer.Option(150, help="passes over the training images (paper: 150)")
_LR = typer.Option(1e-3, help="learning rate, SGD with momentum (paper: 0.001)")
_SCHEDULE = typer.Option(Schedule.CONSTANT, help="constant (paper) or cosine (warm-up + cosine decay)")
_BATCH = typer.Option(2, help="images per step (paper: 2)")
_SEED = typer.Option(0, help="random seed (split, initialisation, augmentation, order)")
_MAX_ITERS = typer.Option(None, hidden=True)  # tests: a few steps an epoch


@app.command()
@friendly
def train(
    data: Path = typer.Option(..., help="folder with images/ + masks/ (+ manifest.csv), or a COCO .json"),
    out: Path = typer.Option(Path("runs/model.pt"), help="best checkpoint (the last one goes beside it as *_last.pt)"),
    backbone: Backbone = typer.Option(Backbone.RESNET101, help="backbone (paper: resnet101)"),
    mask_head: MaskHead = typer.Option(MaskHead.M112, help="mask head resolution (paper: 112)"),
    epochs: int = _EPOCHS,
    lr: float = _LR,
    schedule: Schedule = _SCHEDULE,
    batch_size: int = _BATCH,
    norm: Norm = typer.Option(Norm.BATCH, help="normalisation (frozen only with --init)"),
    split: Optional[Path] = typer.Option(None, help="patient split JSON (written if missing)"),
    init: Optional[Path] = typer.Option(None, help="initialise from a COCO Mask R-CNN or ImageNet ResNet state dict, or fine-tune a streamseg checkpoint"),
    pretrained: bool = typer.Option(False, help="start the backbone from torchvision's ImageNet weights (mobilenet_v2; read from torch's cache, never downloaded)"),
    freeze_blocks: Optional[int] = typer.Option(None, help="the first N backbone blocks are not trained (default: 4, the stem and stride-4 stage, with --pretrained; else 0)"),
    nerve_label: Optional[int] = typer.Option(None, help="the mask value that is nerve, for masks that label other structures too (usgra-seg: 1); default: any value > 0"),
    instances: Instances = typer.Option(Instances.UNION, help="union: one nerve per scan (the median nerve); components: each connected component its own nerve"),
    folds: Optional[int] = typer.Option(None, help="patient-wise K-fold cross-validation (K >= 2): one model per fold in OUT's folder, resumable, pooled report cv.md"),
    intensity_aug: bool = typer.Option(False, help="gain/gamma/speckle augmentation on top of the paper's"),
    hflip: bool = typer.Option(False, help="random horizontal flips on top of the paper's augmentation"),
    negatives: Optional[Path] = typer.Option(None, help="folder of nerve-free scans to train on (its train split)"),
    negative_share: float = typer.Option(0.5, min=0.0, max=4.0, help="nerve-free draws per epoch, per wrist scan"),
    keep_epochs: bool = typer.Option(False, help="also keep every epoch's checkpoint (OUT_eNNN.pt)"),
    stop_after: Optional[int] = typer.Option(None, min=1, help="end after this epoch; the schedule still spans --epochs"),
    box_head_width: int = typer.Option(1024, help="box head MLP width (1024 = torchvision)"),
    box_iou: float = typer.Option(0.5, help="box IoU with the expert's box from which a proposal trains the box and mask heads as the nerve (below: background; 0.5 = torchvision)"),
    mask_head_width: int = typer.Option(256, help="mask head filters (256 = Table I)"),
    fpn_channels: int = typer.Option(256, help="FPN width (256 = torchvision/paper)"),
    resume: bool = typer.Option(False, help="continue from OUT's *_last.pt"),
    seed: int = _SEED,
    compute: str = _compute(),
    workers: Optional[int] = typer.Option(None, help="data-loading worker processes (0: load in the training process; "
                                          "default: 0 on the CPU, min(4, cores - 1) on CUDA, pinned memory there)"),
    max_iters_per_epoch: Optional[int] = _MAX_ITERS,
):
    """Train the paper's Mask R-CNN on labelled scans.

    Patients are split into train, val and test (--split), never one patient in two."""
    from ..backends.device import select_device

    check_numbers([("--epochs", epochs, 1, 100000), ("--lr", lr, 0, 10, dict(lo_open=True)),
                   ("--batch-size", batch_size, 1, 1024), ("--workers", workers, 0, 256),
                   ("--box-head-width", box_head_width, 1, 65536), ("--mask-head-width", mask_head_width, 1, 65536),
                   ("--fpn-channels", fpn_channels, 1, 65536), ("--negative-share", negative_share, 0, 4),
                   ("--box-iou", box_iou, 0.05, 0.95),
                   ("--freeze-blocks", freeze_blocks or 0, 0, 64), ("--folds", folds or 2, 2, 100),
                   ("--nerve-label", nerve_label or 1, 1, 65535)])
    _check_train_inputs(out, data, split, negatives, folds, pretrained, init)
    select_device(check_compute(compute), "--compute")
    from ..model.architecture import ModelConfig
    from ..training.loop import TrainConfig

    cfg = TrainConfig(
        data=str(data), out=str(out), epochs=epochs, lr=lr, schedule=schedule, batch_size=batch_size,
        seed=seed, split=str(split) if split else None, intensity_aug=intensity_aug, hflip=hflip,
        init=str(init) if init else None, resume=resume, device=compute, workers=workers,
        max_iters_per_epoch=max_iters_per_epoch, negatives=str(negatives) if negatives else None,
        negative_share=negative_share, keep_epochs=keep_epochs, stop_after=stop_after,
        pretrained=pretrained, freeze_blocks=freeze_blocks, nerve_label=nerve_label, instances=instances,
        model=ModelConfig(backbone=backbone, mask_head=mask_head, norm=norm, box_head_width=box_head_width,
                          mask_head_width=mask_head_width, fpn_channels=fpn_channels, box_iou=box_iou),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    _run_training(cfg, out, folds, seed)


def _check_train_inputs(out: Path, data: Path, split: Path | None, negatives: Path | None, folds: int | None,
                        pretrained: bool, init: Path | None) -> None:
    if folds and split:
        raise StreamsegError("--folds makes its own patient folds: leave out --split")
    if pretrained and init:
        raise StreamsegError("--pretrained and --init both set the first weights: choose one")
    check_out_dir("--out", out.parent)  # created by train when missing
    if out.parent.is_dir():
        check_outputs({"--out": out}, inputs=(data, init, split, negatives))


def _run_training(cfg, out: Path, folds: int | None, seed: int) -> None:
    """One training run, or with `folds` the patient-wise cross-validation in OUT's folder."""
    from ..outputs.progress import progress_bar
    from ..training.loop import train as run_train

    log = lambda s: console.print(s, highlight=False, markup=False)  # noqa: E731
    with progress_bar(console, "iterations") as progress:
        if folds:
            from ..training.cv import run_cv

            report = run_cv(cfg, out.parent, folds, seed, progress=progress, log=log)
            console.print(f"cross-validation report: {out.parent / 'cv.md'} ({len(report['folds_done'])} folds)",
                          highlight=False, markup=False)
            return
        summary = run_train(cfg, progress=progress, log=log)
    console.print(f"best checkpoint: {summary.best}  (val top-1 Dice {summary.best_score:.3f}), "
                  f"last: {summary.last}, {summary.seconds / 60:.1f} min", highlight=False, markup=False)


@app.command("eval")
@friendly
def eval_(
    data: Path = typer.Option(..., help="folder with images/ + masks/, or a COCO .json; a folder without masks "
                                        "(images/ only, or manifest.csv + subfolders) is nerve-free"),
    model: Optional[Path] = typer.Option(None, help="checkpoint (default: the bundled model)"),
    split: Optional[Path] = typer.Option(None, help="patient split JSON of the wrist scans; evaluate only --subset of it"),
    subset: Optional[Subset] = typer.Option(None, help="train | val | test: with --split (default test), or of a "
                                                       "nerve-free folder (split by acquisition group, seed 0)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write every number as JSON"),
    out_dir: Optional[Path] = typer.Option(None, help="write the CSVs and figures here"),
    mm_per_px: Optional[float] = typer.Option(None, help="pixel spacing, to report areas in mm²"),
    conf: float = typer.Option(0.98, help="confidence a TP must exceed (paper: 0.98)"),
    iou: float = typer.Option(0.7, help="box IoU a TP must reach (paper: 0.7)"),
    fn_rule: FnRule = typer.Option(FnRule.PAPER, help="paper: FN only when no box at all; strict: any unmatched nerve"),
    box: BoxKind = typer.Option(BoxKind.MASK, help="box scored: mask (tight box of the mask, the default) or regressed (box head)"),
    score_thresh: Optional[float] = _SCORE,
    compute: str = _compute(),
):
    """Score a model with the paper's metrics on labelled scans.

    Prec/Rec, mAP, Dice median+IQR, HD95, area error; what a user sees at the display threshold,
    per-patient results and CSA agreement; or the false detections on a nerve-free folder."""
    from ..backends.device import select_device
    from ..outputs.progress import progress_bar
    from ..training.evaluate import run_eval

    check_numbers([spacing_flag(mm_per_px), ("--conf", conf, 0, 1),
                   ("--iou", iou, 0, 1), ("--score-thresh", score_thresh, 0, 1)])
    check_outputs({"--json": json_out}, inputs=(data,))
    check_out_dir("--out-dir", out_dir)
    device = select_device(check_compute(compute), "--compute")
    with progress_bar(console, "images") as progress:
        result = run_eval(data, model, split, subset, json_out, out_dir, mm_per_px, conf, iou, fn_rule,
                          device, progress, box=box, score_thresh=score_thresh)
    _print_eval(result)


def _print_eval(result) -> None:
    """The tables of an `EvalReport`, or the false detections of a `NerveFreeReport`."""
    from rich.table import Table

    from ..training import report
    from ..training.results import NerveFreeReport

    def table(title, rows, columns=("metric", "value")):
        t = Table(title=escape(title))  # paths and patient names are the user's text, never markup
        for i, c in enumerate(columns):
            t.add_column(c, justify="left" if i == 0 else "right")
        for row in rows:
            t.add_row(*map(escape, row))
        Console().print(t)

    where = f"{result.model} on {result.data} ({result.subset})"
    if isinstance(result, NerveFreeReport):
        table(f"False detections: {where}", report.negatives_rows(result.false_detections))
        return
    view = result.view
    table(where, report.summary_rows(result.scores))
    op = view.operating_point
    table(f"What a user sees (top detection shown at confidence >= {op.score_thresh:g}; correct = box IoU >= "
          f"{op.iou_thresh:g} with the expert's)", report.operating_rows(op), ("outcome", "scans (share)"))
    table("What a shown confidence means (scans by their top detection's score × mask score)",
          report.reliability_rows(view.reliability), ("top confidence", "scans", "on the nerve"))
    ba = view.csa_agreement
    rows = report.agreement_rows(ba.px2, "px²") + (report.agreement_rows(ba.mm2, "mm²") if ba.mm2 is not None else [])
    table("CSA agreement on the correct scans (model − expert)", rows)
    table("Per patient", report.patient_rows(view.per_patient), ("patient", "images", "Prec", "Rec", "Dice median"))


@app.command()
@friendly
def ablation(
    data: Path = typer.Option(..., help="folder with images/ + masks/"),
    out_dir: Path = typer.Option(Path("runs/ablation"), help="checkpoints and split go here"),
    backbone: Backbone = typer.Option(Backbone.RESNET101, help="backbone of the three models (paper: resnet101)"),
    epochs: int = _EPOCHS,
    lr: float = _LR,
    schedule: Schedule = _SCHEDULE,
    batch_size: int = _BATCH,
    split: Optional[Path] = typer.Option(None, help="patient split JSON (written into OUT_DIR if not given)"),
    seed: int = _SEED,
    max_iters_per_epoch: Optional[int] = _MAX_ITERS,
):
    """The paper's ablation: mask28, mask56 and mask112 alike.

    Trains the three mask heads with the same settings and prints Table II."""
    from rich.progress import Progress
    from rich.table import Table

    from ..model.architecture import ModelConfig
    from ..training.ablation import run_ablation
    from ..training.loop import TrainConfig
    from ..training.report import PAPER

    base = TrainConfig(data=str(data), epochs=epochs, lr=lr, schedule=schedule, batch_size=batch_size, seed=seed,
                       split=str(split) if split else None, max_iters_per_epoch=max_iters_per_epoch,
                       model=ModelConfig(backbone=backbone))
    with Progress(console=console, transient=True) as progress:
        results = run_ablation(base, str(out_dir), progress, log=lambda s: None)
    table = Table(title="Table II (test patients): this run | paper")
    for col in ("model", "mAP", "Rec", "Prec", "Dice median (IQR)", "paper mAP / Rec / Prec"):
        table.add_column(col)
    for name, s in results.items():
        p, paper = PAPER[name], s.paper
        dm = "–" if paper.dice_median is None else f"{paper.dice_median:.3f} ({paper.dice_iqr:.3f})"
        table.add_row(name, f"{s.map:.3f}", f"{paper.recall:.3f}", f"{paper.precision:.3f}", dm,
                      f"{p['map']:.3f} / {p['recall']:.3f} / {p['precision']:.3f}")
    Console().print(table)


def remove_empty_torch_cache_at_exit() -> None:
    """torch (2.9) makes `$TMPDIR/torchinductor_<user>` as soon as torchvision is imported, though
    only the `compiled` backend writes there: at exit, remove it where this run made it and left it
    empty (rmdir removes nothing else)."""
    import atexit
    import tempfile

    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("torchinductor_*"))

    def tidy():
        for d in set(tmp.glob("torchinductor_*")) - before:
            with contextlib.suppress(OSError):
                d.rmdir()

    atexit.register(tidy)


def main():
    remove_empty_torch_cache_at_exit()
    try:
        app()
    except (MemoryError, ImportError, OSError, RuntimeError, SystemError) as e:  # outside a command: parsing the line
        if report_memory_error(e):
            sys.exit(1)
        raise


if __name__ == "__main__":
    sys.exit(main())
