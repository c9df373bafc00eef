"""`streamseg bench`: per-stage latency of every available backend on real images, side by side.

Stages per frame: preprocess (letterbox), dense (backbone+FPN+RPN head), proposals (anchors, top-k,
NMS), heads (RoIAlign, box and mask heads), paste (masks into the source frame), measure, overlay,
encode (H.264). Each as p50/p95/p99/max in ms over N frames after warm-up; throughput; peak
memory; ratios to eager FP32 torch. CUDA stages are timed with CUDA events. The eager baseline
runs through the same split path as the compiled backends (`backends.load("torch", split=True)`:
identical outputs to `TorchBackend`, tests/test_parity.py), so the stage columns compare like with like.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from .types import SHOWN_DETECTIONS, Result, StreamsegError

STAGES = ("preprocess", "dense", "proposals", "heads", "paste", "measure", "overlay", "encode")


@dataclass
class BenchOptions:
    model: Path | None = None
    backbone: str = "resnet101"
    mask_head: str = "112"
    backends: list[str] | None = None  # None: every available one
    precisions: list[str] | None = None  # None: fp32 on CPU, fp32+fp16 on CUDA
    device: str = "auto"
    frames: int = 20
    warmup: int = 3
    images: Path | None = None  # folder of real images; default the bundled sample
    engines_dir: Path | None = None
    out_dir: Path = Path("benchmarks/results")
    e2e: bool = True
    e2e_video: Path | None = None
    e2e_seconds: float = 15.0
    max_detections: int = SHOWN_DETECTIONS  # as `file` and `live` run; 3 was the fixed setting of earlier runs
    command: str = ""
    extra: dict = field(default_factory=dict)


def pct(xs_s: list[float]) -> dict:
    """Seconds -> ms percentiles (nearest-rank on the sorted samples)."""
    a = np.asarray(xs_s, dtype=np.float64) * 1000.0
    if a.size == 0:
        return {}
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max()), "mean": float(a.mean()), "n": int(a.size)}


def make_model(o: BenchOptions):
    """-> (model, its ModelInfo, description). A checkpoint as trained, or an architecture with
    BatchNorm warmed up on real images."""
    from .backends.bn_warmup import bench_model, sample_images

    if o.model is not None:
        from .checkpoint import load_checkpoint

        model, info = load_checkpoint(o.model, max_detections=o.max_detections)
        return model, info, f"checkpoint {o.model}, at most {o.max_detections} detection(s)"
    images = sample_images(o.images) if o.images else sample_images()
    model, info = bench_model(o.backbone, o.mask_head, images=images, max_detections=o.max_detections)
    return model, info, (f"{o.backbone} mask{o.mask_head}, untrained, BN warmed up on {len(images)} real images, "
                         f"score threshold 0, {o.max_detections} detection(s)")


class _Encoder:
    """In-memory H.264 (libx264 veryfast, yuv420p) as the video sink writes it; None without PyAV."""

    def __init__(self, w: int, h: int):
        import av
        from fractions import Fraction

        self.av = av
        self.ctx = av.CodecContext.create("libx264", "w")
        self.ctx.width, self.ctx.height = w + w % 2, h + h % 2
        self.ctx.pix_fmt = "yuv420p"
        self.ctx.time_base = Fraction(1, 25)
        self.ctx.options = {"preset": "veryfast", "crf": "20"}
        self.ctx.thread_count = 1
        self.i = 0

    def encode(self, img: np.ndarray) -> int:
        h, w = img.shape[:2]
        if (w, h) != (self.ctx.width, self.ctx.height):
            img = np.pad(img, ((0, self.ctx.height - h), (0, self.ctx.width - w), (0, 0)), mode="edge")
        vf = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
        vf.pts = self.i
        self.i += 1
        return sum(p.size for p in self.ctx.encode(vf))


def _encoder(w: int, h: int):
    try:
        return _Encoder(w, h)
    except Exception:  # noqa: BLE001 - no PyAV / no libx264: the encode stage is reported as absent
        return None


def peak_memory(device: torch.device) -> dict:
    mem = {"process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if device.type == "cuda":
        mem["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return mem


def run_backend(be, images: list[np.ndarray], frames: int, warmup: int) -> dict:
    """Time `be` stage by stage over `frames` frames (cycling `images`) after `warmup` frames."""
    from .measure import measure
    from .overlay import Hud, Style, draw
    from .types import Frame, Timings

    style = Style(calibrated=False)
    enc = _encoder(images[0].shape[1], images[0].shape[0]) if len({im.shape for im in images}) == 1 else None
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    samples["model"], samples["frame"] = [], []
    dets_per_frame = []
    if be.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(be.device)
    for i in range(warmup + frames):
        img = images[i % len(images)]
        t0 = time.perf_counter()
        dets, st = be.infer(img)
        t1 = time.perf_counter()
        m = measure(dets[0].mask) if dets else None
        t2 = time.perf_counter()
        r = Result(frame=Frame(img, i), detections=list(dets), measurement=m, timings=Timings())
        over = draw(r, style, Hud())
        t3 = time.perf_counter()
        if enc is not None:
            enc.encode(over)
        t4 = time.perf_counter()
        if i < warmup:
            continue
        for s in ("preprocess", "dense", "proposals", "heads", "paste", "model"):
            samples[s].append(st[s])
        samples["measure"].append(t2 - t1)
        samples["overlay"].append(t3 - t2)
        if enc is not None:
            samples["encode"].append(t4 - t3)
        samples["frame"].append(t4 - t0)
        dets_per_frame.append(len(dets))
    stages = {k: pct(v) for k, v in samples.items() if v}
    mean_frame = float(np.mean(samples["frame"]))
    return {"stages": stages, "fps": 1.0 / mean_frame if mean_frame > 0 else 0.0,
            "detections_mean": float(np.mean(dets_per_frame)), "detections_min": int(min(dets_per_frame)),
            "memory": peak_memory(be.device), "encode": "libx264 veryfast" if enc is not None else "skipped (no PyAV)"}


def default_plan(device: str, backends: list[str] | None, precisions: list[str] | None) -> list[tuple[str, str]]:
    from . import backends as bk

    avail = bk.available(device)
    names = backends or [n for n in ("torch", "compiled", "onnxruntime", "tensorrt")
                         if n in avail and not (n == "compiled" and device == "cpu")]
    unknown = [n for n in names if n not in bk.BACKENDS or n == "auto"]
    if unknown:
        raise StreamsegError(f"unknown backend {unknown[0]!r}: choose from {', '.join(bk.BACKENDS[1:])}")
    precs = precisions or (["fp32", "fp16"] if device.startswith("cuda") else ["fp32"])
    for p in precs:
        if p not in ("fp32", "fp16"):
            raise StreamsegError(f"unknown precision {p!r}: fp32 or fp16")
    plan = [("torch", "fp32")]  # the baseline every ratio refers to
    for n in names:
        for p in precs:
            if (n, p) not in plan and not (p == "fp16" and not device.startswith("cuda")):
                plan.append((n, p))
    return plan


def machine() -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "load_avg": [round(x, 2) for x in os.getloadavg()]}
    import torchvision

    info["torchvision"] = torchvision.__version__
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        info["cpu"] = names[0] if names else info["cpu"]
    except OSError:
        pass
    return info


def run_plan(plan: list[tuple[str, str]], model, info, device: str, images: list[np.ndarray], o: BenchOptions,
             log=print) -> list[dict]:
    """One row per (backend, precision): its stage timings, or why it was skipped; ratios to eager FP32."""
    from . import backends

    rows = []
    for name, prec in plan:
        t = time.perf_counter()
        try:  # eager torch through the split path, so its stage columns compare with the compiled ones
            be = backends.load(name, model=model, info=info, device=device, half=prec == "fp16", split=name == "torch",
                               engines_dir=o.engines_dir, log=log)
        except StreamsegError as e:
            log(f"skipped {name}/{prec}: {e}")
            rows.append({"backend": name, "precision": prec, "skipped": str(e)})
            continue
        setup = time.perf_counter() - t
        log(f"running {name}/{prec} (setup {setup:.1f} s)")
        res = run_backend(be, images, o.frames, o.warmup)
        rows.append({"backend": name, "precision": prec, "device": device, "setup_s": setup, **res})
        del be
    base = next((r for r in rows if r["backend"] == "torch" and r["precision"] == "fp32" and "stages" in r), None)
    for r in rows:
        if base and "stages" in r:
            r["speedup_frame_p50"] = base["stages"]["frame"]["p50"] / r["stages"]["frame"]["p50"]
            r["speedup_dense_p50"] = base["stages"]["dense"]["p50"] / r["stages"]["dense"]["p50"]
    return rows


def end_to_end(rows: list[dict], model, info, device: str, o: BenchOptions, log=print) -> dict:
    """The fastest backend of `rows` (frame p50) through the live pipeline (`bench_live.run_live`)."""
    from . import backends
    from .bench_live import run_live

    best = min((r for r in rows if "stages" in r), key=lambda r: r["stages"]["frame"]["p50"])
    be = backends.load(best["backend"], model=model, info=info, device=device, half=best["precision"] == "fp16",
                       split=best["backend"] == "torch", engines_dir=o.engines_dir, log=log)
    return run_live(be, o, log)


def run(o: BenchOptions, log=print) -> dict:
    from .backends import select_device
    from .backends.bn_warmup import sample_images

    device = select_device(o.device, "--compute")
    if o.frames < 1 or o.warmup < 0:
        raise StreamsegError("--frames must be >= 1 and --warmup >= 0")
    plan = default_plan(device, o.backends, o.precisions)
    model, info, desc = make_model(o)
    images = sample_images(o.images) if o.images else sample_images()
    log(f"model: {desc}; device {device}; {o.frames} frames after {o.warmup} warm-up; plan: "
        + ", ".join(f"{n}/{p}" for n, p in plan))
    rows = run_plan(plan, model, info, device, images, o, log)
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": o.command,
              "machine": machine(), "model": {"description": desc, **info.config.to_dict()},
              "frames": o.frames, "warmup": o.warmup, "images": str(o.images or "bundled sample"), "results": rows}
    if o.e2e:
        report["end_to_end"] = end_to_end(rows, model, info, device, o, log)
    report["json"] = str(write_report(report, o.out_dir))
    return report


def write_report(report: dict, out_dir: Path) -> Path:
    from .files import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    dev = "cuda" if any(r.get("device", "").startswith("cuda") for r in report["results"]) else "cpu"
    path = out / f"bench-{report['model']['backbone']}-mask{report['model']['mask_head']}-{dev}-{stamp}.json"
    text = json.dumps(report, indent=2) + "\n"
    atomic_write(path, lambda tmp: (Path(tmp).write_text(text), os.chmod(tmp, 0o644)))
    return path


def table(report: dict):
    """A rich Table of the results (p50 per stage, frame percentiles, ratios to eager FP32)."""
    from rich.table import Table

    t = Table(title=f"streamseg bench — {report['model']['backbone']} mask{report['model']['mask_head']} "
                    f"({report['machine'].get('gpu') or report['machine']['cpu']})")
    for c in ["backend", "prec", *[f"{s}" for s in STAGES], "frame p50/p95/p99/max", "fps", "×eager dense", "×eager frame", "dets"]:
        t.add_column(c, justify="left" if c in ("backend", "prec") else "right")
    for r in report["results"]:
        if "stages" not in r:
            t.add_row(r["backend"], r["precision"], *["-"] * len(STAGES), "skipped", "", "", "", "")
            continue
        st = r["stages"]
        f = st["frame"]
        t.add_row(r["backend"], r["precision"], *[f"{st[s]['p50']:.1f}" if s in st else "-" for s in STAGES],
                  f"{f['p50']:.0f}/{f['p95']:.0f}/{f['p99']:.0f}/{f['max']:.0f}", f"{r['fps']:.2f}",
                  f"{r.get('speedup_dense_p50', float('nan')):.2f}", f"{r.get('speedup_frame_p50', float('nan')):.2f}",
                  f"{r['detections_mean']:.1f}")
    return t
