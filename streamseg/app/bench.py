"""`streamseg bench`: per-stage latency of what `file` and `live` run, backend by backend, side by side.

By default it times the bundled model (streamseg/weights/default.pt) with the backend `auto` picks
(the baseline, marked "*"), then every other available backend; `--paper` times the
paper's R101 mask112 instead (untrained, BatchNorm warmed up on real images). The timed frames are
consecutive frames of a clip (the bundled demo.mp4), replayed in their order.

Stages per frame: preprocess (letterbox), dense (backbone+FPN+RPN head), proposals (anchors, top-k,
NMS), heads (RoIAlign, box and mask heads), paste (masks into the source frame), measure, overlay,
encode (H.264). A frame goes through the pipeline's own two per-frame functions, in series
(`pipeline.infer_frame`, `pipeline.write_frame` with file's analyse and draw steps and its overlay
video sink, writing into a temporary folder that is discarded), so the bench times what `file`
runs; the stage times are the backend's (`Result.speed`) and the pipeline's stamps (`Timings`).
Each backend runs `--repeat` times, interleaved (A B A B ...): the table shows the median frame p50
over the repeats and its min–max; the JSON (`BenchReport.to_dict()`, a `BenchRow` per row) keeps
every percentile, the machine and the load average read before, between repeats and after (a
loaded machine is flagged). Eager torch runs through the split path (`backends.load("torch",
split=True)`: identical outputs to `TorchBackend`, tests/test_parity.py), so its stage columns
compare with the compiled backends'.
"""
from __future__ import annotations

import os
import platform
import resource
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import pipeline
from ..choices import Backend, Precision, choice, int8_runs, resolve_precision
from .stats import percentiles
from ..types import SHOWN_DETECTIONS, Frame, Hud, Inference, Result, StreamsegError, Thresholds

STAGES = ("preprocess", "dense", "proposals", "heads", "paste", "measure", "overlay", "encode")
SHORT = {"preprocess": "pre", "dense": "dense", "proposals": "prop", "heads": "heads", "paste": "paste",
         "measure": "meas", "overlay": "draw", "encode": "enc"}
BACKEND_STAGES = ("preprocess", "dense", "proposals", "heads", "paste", "model")  # the backend's own (Result.speed)
FPS = 25.0  # the timed frames' rate in the overlay video: frame i at i / FPS s
Infer = Callable[[np.ndarray], Inference]


@dataclass
class BenchOptions:
    model: Path | None = None  # a checkpoint; None (and no backbone): the bundled model, as file and live run
    backbone: str | None = None  # an architecture timed untrained, BN warmed up (--paper: resnet101)
    mask_head: str = "112"
    backends: list[str] | None = None  # None: auto's pick, then every other available one
    precisions: list[str] | None = None  # None: fp32 on CPU, fp32+fp16 on CUDA; int8: onnxruntime on CPU
    tracking: list[bool] | None = None  # None: tracked (as file/live run), plus auto's pick on full frames
    device: str = "auto"
    frames: int = 20
    warmup: int = 3
    repeat: int = 3  # runs per backend, interleaved A B A B ...
    images: Path | None = None  # folder of .png images to time instead of the clip's frames
    engines_dir: Path | None = None
    out: Path | None = None  # the JSON report; None: default_out()
    e2e: bool = True
    e2e_video: Path | None = None  # the clip timed and replayed; None: the bundled demo
    e2e_seconds: float = 15.0
    max_detections: int = SHOWN_DETECTIONS  # as `file` and `live` run
    command: str = ""


@dataclass
class Percentiles:
    """Milliseconds (`stats.percentiles`): one stage's figures over every timed frame."""

    p50: float
    p95: float
    p99: float
    max: float
    mean: float
    n: int


def pct(xs_s: list[float]) -> Percentiles | None:
    """Seconds -> ms percentiles (stats.percentiles); None when there are no samples."""
    p = percentiles(xs_s, 1000.0)
    return Percentiles(**p) if p else None


@dataclass
class Run:
    """One timed run of one backend (`run_backend`), per timed frame: seconds per stage (a stage the
    run never reached has none), detections, whether it ran on a tracking window; and the encoder."""

    samples: dict[str, list[float]]
    detections: list[int]
    windowed: list[bool]
    encode: str  # e.g. "libx264 veryfast", or why nothing was encoded


@dataclass
class FrameP50:
    """The frame's p50 (ms) of each repeat, their median and range: the table's frame and min–max."""

    median: float
    min: float
    max: float
    repeats: list[float]


@dataclass
class Summary:
    """The repeats of one backend (`summarise`)."""

    stages: dict[str, Percentiles]  # over every timed frame of every repeat; only stages that ran
    frame_p50: FrameP50
    fps: float  # 1000 / frame_p50.median, so the fps and frame columns agree
    fps_of_mean: float  # 1000 / the mean frame ms (a few slow frames pull it down)
    detections_mean: float
    detections_min: int
    encode: str
    windowed_share: float  # frames run on a tracking window


def default_out(now: datetime | None = None) -> Path:
    """$XDG_CACHE_HOME/streamseg/bench/bench-<local time>.json (else ~/.cache/...): never the source tree."""
    from ..settings import user_cache

    return user_cache("bench") / f"bench-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}.json"


def make_model(o: BenchOptions):
    """-> (model, its ModelInfo, description). A checkpoint as trained (the bundled one by default),
    or an architecture with BatchNorm warmed up on real images."""
    from ..backends.bn_warmup import bench_model, sample_images
    from ..model.checkpoint import DEFAULT_WEIGHTS, load_checkpoint

    if o.backbone is None:
        model, info = load_checkpoint(o.model, max_detections=o.max_detections)
        name = f"checkpoint {o.model}" if o.model is not None else f"the bundled model ({DEFAULT_WEIGHTS.name})"
        return model, info, f"{name}, {info.config.backbone}, at most {o.max_detections} detection(s)"
    images = sample_images(o.images) if o.images else sample_images()
    model, info = bench_model(o.backbone, o.mask_head, images=images, max_detections=o.max_detections)
    return model, info, (f"{o.backbone} mask{o.mask_head}, untrained, BN warmed up on {len(images)} real images, "
                         f"score threshold 0, {o.max_detections} detection(s)")


def bench_frames(o: BenchOptions, log=print) -> tuple[list[np.ndarray], str]:
    """The warm-up + timed frames, in their order: consecutive frames of the clip (o.e2e_video, default
    the bundled demo; looped when shorter), or the .png images of o.images (sorted, cycled)."""
    from ..backends.bn_warmup import sample_images
    from .bench_live import DEMO

    n = o.warmup + o.frames
    if o.images is not None:
        imgs = sample_images(o.images)
        return [imgs[i % len(imgs)] for i in range(n)], f"{len(imgs)} images of {o.images}, in name order"
    video = Path(o.e2e_video or DEMO)
    try:
        from ..inputs.sources import open_source
    except ImportError as e:  # e.g. no PyAV on a GPU box
        log(f"no clip decoder ({e}): timing the bundled sample images instead")
        imgs = sample_images()
        return [imgs[i % len(imgs)] for i in range(n)], "the bundled sample images (no PyAV)"
    src = open_source(str(video), live=False)
    try:
        clip = []
        for f in src.frames(threading.Event()):
            clip.append(f.image)
            if len(clip) == n:
                break
    finally:
        src.close()
    if not clip:
        raise StreamsegError(f"{video}: no frames decoded")
    return [clip[i % len(clip)] for i in range(n)], f"{video.name} frames 0–{len(clip) - 1} in order"


def peak_memory(device: torch.device) -> dict:
    mem = {"process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if device.type == "cuda":
        mem["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return mem


def make_infer(be, track: bool = False) -> Infer:
    """The callable a run times, `infer(image) -> Inference`, built fresh for
    each run so the tracker starts clean: as `file` and `live` run it (`tracking.track`) when `track`,
    else the backend's own `infer` on every full frame."""
    from ..analysis.tracking import track as tracked_infer

    return tracked_infer(be, be.thresholds.display) if track else be.infer


def run_backend(infer: Infer, images: list[np.ndarray], warmup: int, tick=None,
                thresholds: Thresholds | None = None) -> Run:
    """Time `infer` over `images` in their order through what `file` runs per frame, in series:
    `pipeline.infer_frame`, then `pipeline.write_frame` with its analyse and overlay steps
    (`bench_live.output_stages`, uncalibrated, at `thresholds`: the backend's, default the runtime's)
    and the overlay video (`outputs.video.VideoSink`, into a temporary folder, aborted after). The
    first `warmup` frames are untimed; `tick()` after every frame."""
    from .bench_live import output_stages

    analyse, render = output_stages(thresholds or Thresholds(), live=False)
    run = Run({s: [] for s in (*STAGES, "model", "frame")}, [], [], "skipped (no PyAV)")
    with tempfile.TemporaryDirectory(prefix="streamseg-bench-") as tmp:
        sink = _video_sink(Path(tmp) / "overlay.mp4", images[0])
        try:
            if sink is not None:
                run.encode = f"{sink.stream.codec_context.name} {sink.stream.options['preset']}"
            hud = Hud(source_fps=FPS)
            for i, img in enumerate(images):
                r = pipeline.infer_frame(infer, Frame(img, i, pts=i / FPS, t_capture=time.perf_counter()))
                pipeline.write_frame(r, analyse, render, hud, [sink] if sink is not None else [])
                if tick is not None:
                    tick()
                if i >= warmup:
                    _record(run, r, encoded=sink is not None)
        finally:
            if sink is not None:
                sink.abort()
    return run


def _video_sink(path: Path, first: np.ndarray):
    """The overlay video `file --out` writes, sized for `first`; None without PyAV or libx264 (the
    encode stage is then absent from the report)."""
    try:
        from ..outputs.video import VideoSink

        return VideoSink(path, first.shape[1], first.shape[0], FPS)
    except Exception:  # noqa: BLE001 - no PyAV / no libx264: the encode stage is reported as absent
        return None


def _record(run: Run, r: Result, encoded: bool) -> None:
    """One timed frame into `run`: the backend's stage times (`Result.speed`, ms), then the output
    stage's from the stamps `pipeline.write_frame` made (measure: from the end of inference)."""
    t = r.timings
    for s in BACKEND_STAGES:
        if s in r.speed:
            run.samples[s].append(r.speed[s] / 1000.0)
    run.samples["measure"].append(t.t_analysed - t.t_infer_end)
    run.samples["overlay"].append(t.t_overlay_end - t.t_analysed)
    if encoded:
        run.samples["encode"].append(t.t_written - t.t_overlay_end)
    run.samples["frame"].append(t.t_written - t.t_infer_start)
    run.detections.append(len(r.detections))
    run.windowed.append("track" in r.speed)  # tracking.tracked marks a frame run on a window


def summarise(runs: list[Run]) -> Summary:
    """The repeats of one backend -> percentiles over all their frames, and the spread of frame p50."""
    stages = {s: pct([x for r in runs for x in r.samples[s]]) for s in runs[0].samples}
    stages = {s: p for s, p in stages.items() if p is not None}
    p50s = [pct(r.samples["frame"]).p50 for r in runs]
    dets = [d for r in runs for d in r.detections]
    median_p50, mean_frame = float(np.median(p50s)), stages["frame"].mean
    return Summary(stages, FrameP50(median_p50, min(p50s), max(p50s), p50s),
                   fps=1000.0 / median_p50 if median_p50 > 0 else 0.0,
                   fps_of_mean=1000.0 / mean_frame if mean_frame > 0 else 0.0,
                   detections_mean=float(np.mean(dets)), detections_min=int(min(dets)), encode=runs[0].encode,
                   windowed_share=float(np.mean([w for r in runs for w in r.windowed])))


def time_backend(be, images: list[np.ndarray], frames: int, warmup: int) -> tuple[Summary, dict]:
    """One run of `be` over `warmup` + `frames` of `images` (cycled, in order) -> its summary and
    peak memory (benchmarks/gpu_check.py times each backend so)."""
    seq = [images[i % len(images)] for i in range(warmup + frames)]
    return summarise([run_backend(make_infer(be), seq, warmup, thresholds=be.thresholds)]), peak_memory(be.device)


# Row labels: short enough never to wrap in the table (SHORT_BACKEND, precision, windows/full), explicit
# with the legend printed under it (LEGEND).
SHORT_BACKEND = {"onnxruntime": "ort", "tensorrt": "trt", "compiled": "aoti", "torch": "torch"}
AUTO_MARK = "*"
LEGEND = ("* what file and live run (auto's backend and precision, tracking windows). ×base: against the first "
          "row. ort = onnxruntime, trt = tensorrt, aoti = compiled (AOTInductor); win: windows around the nerve "
          "(tracking), full: the full frame every time.")


def row_label(backend: str, precision: str, track: bool, auto: bool = False) -> str:
    """E.g. "ort int8 win*" (what file and live run on a CPU: auto's pick, INT8, tracking windows) or
    "torch fp32 full"."""
    return f"{SHORT_BACKEND.get(backend, backend)} {precision} {'win' if track else 'full'}{AUTO_MARK if auto else ''}"


@dataclass
class Entry:
    """One line of the plan: what is opened and how it is labelled (`row_label`)."""

    backend: str
    precision: str
    label: str
    track: bool = False


@dataclass
class BenchRow:
    """One row of the report: a plan entry on `device`, skipped (with why) or timed. `to_dict()` is
    its JSON object, with the summary's fields flat in it."""

    label: str
    backend: str
    precision: str
    track: bool
    device: str
    skipped: str | None = None  # why it could not be opened
    setup_s: float | None = None  # opening it (artefacts loaded or built)
    memory: dict[str, float] | None = None  # peak_memory after its last repeat
    summary: Summary | None = None
    speedup_frame_p50: float | None = None  # the baseline's frame p50 / this row's
    speedup_dense_p50: float | None = None  # the same for the dense stage, when both rows have one

    def to_dict(self) -> dict:
        head = {"label": self.label, "backend": self.backend, "precision": self.precision, "track": self.track,
                "device": self.device}
        if self.summary is None:
            return {**head, "skipped": self.skipped}
        dense = {} if self.speedup_dense_p50 is None else {"speedup_dense_p50": self.speedup_dense_p50}
        return {**head, "setup_s": self.setup_s, "memory": self.memory, **asdict(self.summary),
                "speedup_frame_p50": self.speedup_frame_p50, **dense}


def _combos(real: str, first: bool, cuda: bool, precs: list[str] | None, tracking: list[bool] | None):
    """(precision, track) pairs timed for backend `real`. Default: as file/live run it (tracked, at
    the default precision: INT8 for onnxruntime on the CPU, `choices.resolve_precision`), and for
    the first backend also the full-frame FP32 path (what ran before tracking and INT8)."""
    if precs is None and tracking is None:
        combos = [(p, True) for p in (["fp32", "fp16"] if cuda else [resolve_precision("auto", real, "cpu").value])]
        return combos + ([("fp32", False)] if first else [])
    return [(p, t) for p in precs or (["fp32", "fp16"] if cuda else ["fp32"]) for t in tracking or [True]]


def default_plan(device: str, backends: list[str] | None, precisions: list[str] | None,
                 tracking: list[bool] | None = None) -> list[Entry]:
    """Auto's pick first (the baseline), then every other available backend; or the `backends` asked
    for, in their order (the first is the baseline; "auto" may be one of them). Each in `precisions`
    and `tracking` (True: windows around the nerve, as file/live run; False: the full frame every
    time); by default as `_combos` says."""
    from .. import backends as bk

    avail = bk.available(device)
    names = backends or ["auto", *avail[1:]]
    names = [choice(Backend, n, "backend").value for n in names]
    precisions = precisions and [choice(Precision, p, "precision").value for p in precisions]
    cuda = device.startswith("cuda")
    plan: list[Entry] = []
    for i, n in enumerate(dict.fromkeys(names)):
        real = avail[0] if n == "auto" else n
        for p, track in _combos(real, i == 0, cuda, precisions, tracking):
            p = resolve_precision(p, real, device).value if p == Precision.AUTO else p
            if (p == "fp16" and not cuda) or (p == "int8" and not int8_runs(real, device)):
                continue
            if any(e.backend == real and e.precision == p and e.track == track for e in plan):
                continue
            as_run = n == "auto" and track and p == resolve_precision("auto", real, device)  # what file/live run
            plan.append(Entry(real, p, row_label(real, p, track, auto=as_run), track))
    if not plan:
        raise StreamsegError("nothing to time: fp16 needs --compute cuda, int8 onnxruntime on the CPU")
    return plan


def load_threshold(cores: int) -> float:
    """The 1-min load average above which the machine counts as loaded: 1.25 × cores, and at least
    cores + 0.5 (2 cores: 2.5). The bench's own threads count in the readings taken while it runs."""
    return max(1.25 * cores, cores + 0.5)


@dataclass
class LoadReading:
    """One reading of the load average (`os.getloadavg`), rounded; JSON keys when, 1m, 5m, 15m."""

    when: str  # "before", "after repeat N", "after"
    one_min: float
    five_min: float
    fifteen_min: float

    def to_dict(self) -> dict:
        return {"when": self.when, "1m": self.one_min, "5m": self.five_min, "15m": self.fifteen_min}


def read_load(loadavg: Callable[[], tuple[float, float, float]], when: str) -> LoadReading:
    one, five, fifteen = loadavg()
    return LoadReading(when, round(one, 2), round(five, 2), round(fifteen, 2))


@dataclass
class LoadVerdict:
    """Whether any reading's 1-min load exceeded `load_threshold(cores)`, with the warning line to print."""

    cores: int
    threshold_1m: float
    max_1m: float
    loaded: bool
    warning: str | None
    samples: list[LoadReading]

    def to_dict(self) -> dict:
        return {"cores": self.cores, "threshold_1m": self.threshold_1m, "max_1m": self.max_1m, "loaded": self.loaded,
                "warning": self.warning, "samples": [s.to_dict() for s in self.samples]}


def load_verdict(samples: list[LoadReading], cores: int) -> LoadVerdict:
    """The verdict on `samples` for a machine of `cores` cores."""
    thr = load_threshold(cores)
    peak = max(s.one_min for s in samples)
    loaded = peak > thr
    warning = (f"warning: loaded machine: 1-min load average up to {peak:.2f} on {cores} cores (flagged above "
               f"{thr:g}); other work shares the cores, so these timings are slower than an idle machine gives"
               if loaded else None)
    return LoadVerdict(cores, thr, peak, loaded, warning, samples)


@dataclass
class Machine:
    """What the bench ran on; the JSON leaves out onnxruntime and gpu where there is none."""

    cpu: str
    cores: int | None
    torch_threads: int
    python: str
    torch: str
    torchvision: str
    onnxruntime: str | None = None
    gpu: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("onnxruntime", "gpu"):
            if d[k] is None:
                del d[k]
        return d


def machine() -> Machine:
    import torchvision

    m = Machine(_cpu_name(), os.cpu_count(), torch.get_num_threads(), platform.python_version(), torch.__version__,
                torchvision.__version__)
    try:
        import onnxruntime

        m.onnxruntime = onnxruntime.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        m.gpu = torch.cuda.get_device_name(0)
    return m


def _cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` says."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        if names:
            return names[0]
    except OSError:
        pass
    return platform.processor() or platform.machine()


def open_plan(plan: list[Entry], model, info, device: str, o: BenchOptions, log=print) -> list[tuple[BenchRow, object]]:
    """Open every backend of the plan -> (its row, the backend or None when it was skipped, with why)."""
    from .. import backends
    from ..backends.artefacts import engine_log
    from ..settings import Settings

    opened, build_log = [], engine_log(log)  # one line when graphs are built, not one per graph
    settings = Settings.from_env()
    settings.apply()
    for e in plan:
        row = BenchRow(e.label, e.backend, e.precision, e.track, device)
        t = time.perf_counter()
        try:  # eager torch through the split path, so its stage columns compare with the compiled ones
            be = backends.load(e.backend, model=model, info=info, device=device, precision=e.precision,
                               split=e.backend == "torch", engines_dir=o.engines_dir, log=build_log, settings=settings)
        except StreamsegError as err:
            log(f"skipped {e.label}: {err}")
            row.skipped = str(err)
            opened.append((row, None))
            continue
        if e.track:
            be.prepare_windows()  # as file/live do before the first frame
        row.setup_s = time.perf_counter() - t
        log(f"opened {e.label} ({be.describe()}, setup {row.setup_s:.1f} s)")
        opened.append((row, be))
    return opened


def time_plan(opened, images: list[np.ndarray], o: BenchOptions, loads: list[LoadReading], loadavg,
              progress=None) -> None:
    """Run every opened backend `o.repeat` times, interleaved (A B A B ...), reading the load after
    each round into `loads` (the last reading is "after"); fills each row with its summary
    (`summarise`), memory and speed relative to the first row (the baseline)."""
    live = [(row, be) for row, be in opened if be is not None]
    runs: list[list[Run]] = [[] for _ in live]
    task = progress.add_task("timing", total=o.repeat * len(live) * len(images)) if progress is not None else None
    tick = (lambda: progress.advance(task)) if progress is not None else None
    for r in range(o.repeat):
        for (row, be), row_runs in zip(live, runs):
            if progress is not None:
                progress.update(task, description=f"{row.label} ({r + 1}/{o.repeat})")
            if be.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(be.device)
            row_runs.append(run_backend(make_infer(be, row.track), images, o.warmup, tick, be.thresholds))
            row.memory = peak_memory(be.device)
        loads.append(read_load(loadavg, "after" if r == o.repeat - 1 else f"after repeat {r + 1}"))
    for (row, _), row_runs in zip(live, runs):
        row.summary = summarise(row_runs)
    _speedups([row for row, _ in live])


def _speedups(rows: list[BenchRow]) -> None:
    """Each timed row's speed against the first (the baseline): frame p50, and dense p50 where both have it."""
    base = rows[0].summary if rows else None
    for row in rows:
        s = row.summary
        row.speedup_frame_p50 = base.frame_p50.median / s.frame_p50.median
        if "dense" in s.stages and "dense" in base.stages:
            row.speedup_dense_p50 = base.stages["dense"].p50 / s.stages["dense"].p50


def end_to_end(opened, o: BenchOptions, log=print) -> dict:
    """The fastest opened backend (median frame p50) through the live pipeline (`bench_live.run_live`)."""
    from .bench_live import run_live

    row, be = min(((r, b) for r, b in opened if b is not None), key=lambda rb: rb[0].summary.frame_p50.median)
    return {"label": row.label, **run_live(be, o, log, infer=make_infer(be, row.track))}


@dataclass
class BenchReport:
    """What `run` returns and writes; `to_dict()` is the JSON (users and benchmarks/RESULTS.md read
    its keys)."""

    date: str
    command: str
    machine: Machine
    load: LoadVerdict
    model: dict  # description, source and the architecture (ModelConfig.to_dict())
    frames: int
    warmup: int
    repeat: int
    frames_source: str
    results: list[BenchRow]
    end_to_end: dict | None = None  # the replay (bench_live.run_live) with its row's label; None: --no-e2e
    json: str | None = None  # where the report was written

    def to_dict(self) -> dict:
        d = {"date": self.date, "command": self.command, "machine": self.machine.to_dict(),
             "load": self.load.to_dict(), "model": self.model, "frames": self.frames, "warmup": self.warmup,
             "repeat": self.repeat, "frames_source": self.frames_source,
             "results": [r.to_dict() for r in self.results]}
        if self.end_to_end is not None:
            d["end_to_end"] = self.end_to_end
        if self.json is not None:
            d["json"] = self.json
        return d


def run(o: BenchOptions, log=print, progress=None, loadavg=os.getloadavg) -> BenchReport:
    """Time the plan, write the JSON report (o.out, else `default_out()`) and return the report.
    `progress`: a rich Progress to advance per frame (or None); `loadavg`: () -> (1, 5, 15-min load)."""
    from ..backends import select_device

    loads = [read_load(loadavg, "before")]
    device = select_device(o.device, "--compute")
    if o.frames < 1 or o.warmup < 0 or o.repeat < 1:
        raise StreamsegError("--frames and --repeat must be >= 1 and --warmup >= 0")
    plan = default_plan(device, o.backends, o.precisions, o.tracking)
    model, info, desc = make_model(o)
    images, source = bench_frames(o, log)
    log(f"model: {desc}; device {device}; {o.frames} frames of {source} after {o.warmup} warm-up, "
        f"{o.repeat} repeat(s) interleaved; plan: {', '.join(e.label for e in plan)} (the first is the baseline)")
    opened = open_plan(plan, model, info, device, o, log)
    if all(be is None for _, be in opened):
        raise StreamsegError("no backend could be opened: " + "; ".join(r.skipped for r, _ in opened))
    time_plan(opened, images, o, loads, loadavg, progress)
    report = BenchReport(datetime.now(timezone.utc).isoformat(timespec="seconds"), o.command, machine(),
                         load_verdict(loads, os.cpu_count() or 1),
                         {"description": desc, "source": info.source, **info.config.to_dict()},
                         o.frames, o.warmup, o.repeat, source, [row for row, _ in opened])
    if o.e2e:
        report.end_to_end = end_to_end(opened, o, log)
    report.json = str(write_report(report, o.out))
    return report


def write_report(report: BenchReport, out: Path | None) -> Path:
    """The report as JSON at `out` (its folder must exist), or at `default_out()` (folder created)."""
    from ..files import atomic_write, json_text

    path = Path(out) if out is not None else default_out()
    if out is None:
        path.parent.mkdir(parents=True, exist_ok=True)
    text = json_text({**report.to_dict(), "json": str(path)}, indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def _ms(v: float) -> str:
    """Milliseconds in at most 4 characters (3 significant digits below 100; whole seconds from 10 s)."""
    if v >= 9999.5:
        return f"{v / 1000:.0f}s"
    return f"{v:.0f}" if v >= 99.95 else f"{v:.1f}" if v >= 0.995 else f"{v:.2f}"


def _fps(v: float) -> str:
    return f"{v:.0f}" if v >= 99.95 else f"{v:.1f}" if v >= 9.995 else f"{v:.2f}"


def table(report: BenchReport):
    """A rich Table that fits 100 columns: p50 per stage, the frame's p50 (median over the repeats)
    with its min–max, p95, p99, fps and speed relative to the first row (the baseline)."""
    from rich import box
    from rich.table import Table

    m = report.model
    where = report.machine.gpu or f"{report.machine.cores}-core CPU"
    t = Table(title=f"{m['backbone']} mask{m['mask_head']} on {where}, {report.frames} frames × {report.repeat} "
                    "repeats. ms: p50 per stage; per frame p50 (median of the repeats' p50) and its min–max, p95, "
                    "p99; fps = 1000 / frame; speed ×base = baseline p50 / p50", box=box.SIMPLE_HEAD,
              padding=(0, 0), show_edge=False, title_justify="left", caption=LEGEND, caption_justify="left")
    t.add_column("backend", no_wrap=True)  # row_label: at most 15 characters
    for s in STAGES:
        t.add_column(SHORT[s], justify="right", no_wrap=True)
    for c in ("frame", "min–max", "p95", "p99", "fps", "×base"):
        t.add_column(c, justify="right", no_wrap=True)
    for r in report.results:
        if r.summary is None:
            t.add_row(r.label, *["-"] * len(STAGES), "-", "skipped", "", "", "", "")
            continue
        st, f = r.summary.stages, r.summary.frame_p50
        t.add_row(r.label, *[_ms(st[s].p50) if s in st else "-" for s in STAGES], _ms(f.median),
                  f"{_ms(f.min)}–{_ms(f.max)}", _ms(st["frame"].p95), _ms(st["frame"].p99),
                  _fps(r.summary.fps), f"{r.speedup_frame_p50:.2f}")
    return t


def print_report(report: BenchReport, console, log) -> None:
    """The table on `console`; under it the load warning, the end-to-end line and where the JSON went (`log`)."""
    console.print(table(report))
    for r in report.results:
        if r.skipped is not None:
            log(f"skipped {r.label}: {r.skipped}")
    if report.load.warning:
        log(report.load.warning)
    e = report.end_to_end or {}
    if e.get("capture_to_overlay_ms"):
        c = e["capture_to_overlay_ms"]
        log(f"end-to-end ({e['label']}, {e['source_fps']:g} fps source): capture->overlay p50 {c['p50']:.0f} / "
            f"p95 {c['p95']:.0f} / p99 {c['p99']:.0f} ms; {e['processed']} processed, {e['dropped']} of "
            f"{e['frames_released']} dropped")
    log(f"wrote {report.json}")
