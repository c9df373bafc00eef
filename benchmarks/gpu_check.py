"""GPU check (issue 21): the one prepared command that measures streamseg's CUDA path. Run it
through benchmarks/gpu_check.sh. Steps, in this order:

  1-2. bundled model (trained) and the paper's R101 mask112 (untrained), eager torch FP32 and FP16:
       parity with eager FP32 (bundled: detections, same count and mask Dice >= 0.99 on the sample
       scans; R101: the dense outputs' error) and the stage table (gpu_check_models)
  5.   `streamseg train --compute cuda`, the compact recipe, 2 epochs on the sample (s per epoch)
  3.   a >= 3000-frame clip looping the demo; `streamseg file` on it with the CUDA defaults into a
       fresh engines folder (first start: builds the compiled artefact), then again (cached start)
  1-2. the bundled model on the CUDA default backend (compiled FP16, its artefact now cached)
  4.   the clip replayed at its rate through the live pipeline (dropped share, capture->overlay)
  1-2. every other backend and precision available (compiled artefacts take minutes to build).
Each step starts only while the time budget (GPU_CHECK_BUDGET_S, 400 s from the start) leaves the
time it may take, else it is skipped with that reason; each result is saved to $OUT/gpu_check.json
at once, so a run cut short keeps what it measured. A plain table ends it. Exit 0, 1 when a parity
check failed, 3 without CUDA. GPU_CHECK_ONLY=word,word runs only the steps whose names hold one of
them; GPU_CHECK_KEEP=1 keeps the work folder (clip, videos, engines, training run).

GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 is the CPU smoke mode (tests/test_gpu_check.py): every step
on the CPU with tiny sizes (2 scans, 3 timed frames, a 30-frame clip, 1 training step an epoch,
a small architecture for R101), eager torch FP32 only (compared with unsplit eager torch): the same
JSON keys, numbers that test the plumbing, not the GPU."""
# (no `from __future__ import annotations`: tests/test_bench.py runs this file as an unregistered
# module, where dataclasses cannot resolve string annotations)

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Callable

T_START = time.perf_counter()  # the budget counts from here, the heavy imports included

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

import gpu_check_models as gm  # noqa: E402
import gpu_check_runs as gr  # noqa: E402
from gpu_check_table import print_tables  # noqa: E402
from streamseg import backends  # noqa: E402
from streamseg.app.bench import BenchOptions, bench_frames, machine  # noqa: E402
from streamseg.settings import Settings  # noqa: E402
from streamseg.types import StreamsegError  # noqa: E402

BUILD_S = {"bundled": 150.0, "paper": 240.0}  # an AOTInductor/TensorRT build, estimated (issue 21: ~2 min)


@dataclass(frozen=True)
class Sizes:
    scans: int = 7  # sample scans for parity
    frames: int = 50  # timed frames per row (after `warmup`)
    warmup: int = 10
    clip_frames: int = 3000
    live_s: float = 15.0
    train_iters: int | None = None  # --max-iters-per-epoch
    precisions: tuple[str, ...] = ("fp32", "fp16")


QUICK = Sizes(scans=2, frames=3, warmup=1, clip_frames=12, live_s=1.5, train_iters=1, precisions=("fp32",))


@dataclass
class Step:
    name: str
    need_s: Callable[[], float]  # the seconds it may take: it starts only while the budget leaves them
    run: Callable[[], str]  # measures, stores its result in the report, returns a one-line summary


class Check:
    """One run: the report (saved after every step), the time budget and what steps share."""

    def __init__(self, device: str, quick: bool, out: Path, budget_s: float):
        self.t0, self.device, self.quick, self.budget_s = T_START, device, quick, budget_s
        self.sizes = QUICK if quick else Sizes()
        if not device.startswith("cuda"):
            self.sizes = replace(self.sizes, precisions=("fp32",))  # FP16 runs on CUDA only
        self.out = out
        self.work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        self.engines = self.work / "engines"  # fresh: the first `file` start builds into it
        self.models: dict[str, gm.Loaded] = {}
        self._frames: list | None = None
        self.report = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": device, "quick": quick,
            "budget_s": budget_s, "sizes": asdict(self.sizes), "machine": machine().to_dict(),
            "available": backends.available(device), "bundled": {"model": None, "rows": []},
            "paper": {"model": None, "rows": []}, "clip": None, "file": {"first_start": None, "cached_start": None},
            "live": None, "train": None, "steps": [], "parity_ok": None, "wall_s": None}

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)

    def save(self) -> Path:
        path = self.out / "gpu_check.json"
        tmp = path.with_name(".gpu_check.json.tmp")
        tmp.write_text(json.dumps(self.report, indent=2, default=str) + "\n")
        os.replace(tmp, path)
        return path

    def run(self, step: Step) -> None:
        rec = {"name": step.name, "status": "skipped", "seconds": 0.0}
        self.report["steps"].append(rec)
        need = step.need_s()
        if need > self.left():
            rec["reason"] = f"time budget: needs up to {need:.0f} s, {max(0.0, self.left()):.0f} s left"
        else:
            t = time.perf_counter()
            print(f"gpu_check: {step.name} ...", flush=True)
            try:
                rec.update(status="done", summary=step.run())
            except (StreamsegError, gr.StepError) as e:
                rec.update(status="failed", reason=str(e)[:300])
            except Exception as e:  # noqa: BLE001 - one step's failure is recorded; the others still run
                rec.update(status="failed", reason=f"{type(e).__name__}: {str(e)[:300]}")
            rec["seconds"] = round(time.perf_counter() - t, 2)
        print(f"gpu_check: {step.name}: {rec['status']} ({rec['seconds']:.0f} s) "
              f"{rec.get('summary') or rec.get('reason', '')}", flush=True)
        self.save()

    def frames(self) -> list:
        """The timed frames: consecutive frames of the demo (the sample scans without PyAV)."""
        if self._frames is None:
            s = self.sizes
            self._frames, _ = bench_frames(BenchOptions(frames=s.frames, warmup=s.warmup), log=print)
        return self._frames

    def loaded(self, label: str) -> gm.Loaded:
        if label not in self.models:
            n = self.sizes.scans
            m = gm.load_bundled(self.device, n) if label == "bundled" else gm.load_paper(self.device, n, self.quick)
            self.models[label] = m
            self.report[label]["model"] = m.description
        return self.models[label]


def row_step(c: Check, label: str, backend: str, precision: str) -> str:
    """One model x backend x precision: parity, then the stage table (gm.run_row)."""
    s = c.sizes
    row = gm.run_row(c.loaded(label), backend, precision, c.device, c.engines, c.frames(), s.frames, s.warmup, print)
    c.report[label]["rows"].append(row)
    return gm.row_line(row)


def row_need(c: Check, label: str, backend: str, precision: str) -> float:
    if c.quick:
        return 0.0
    load = 0.0 if label in c.models else 30.0
    build = gm.needs_build(c.models[label], backend, precision, c.device, c.engines) if label in c.models \
        else backend != "torch"
    return 30.0 + load + (BUILD_S[label] if build else 0.0)


def clip_path(c: Check) -> Path:
    return c.work / f"demo-loop-{c.sizes.clip_frames}.mp4"


def clip_step(c: Check) -> str:
    c.report["clip"] = clip = gr.make_clip(clip_path(c), c.sizes.clip_frames)
    return f"{clip['frames']} frames at {clip['fps']:g} fps, {clip['writer']}, {clip['seconds']:.0f} s"


def file_step(c: Check, key: str, reserve_s: float, cap_s: float) -> str:
    """`streamseg file` on the clip (CUDA defaults; eager torch in the quick mode), killed after
    min(cap_s, what the budget leaves beyond reserve_s)."""
    if c.report["clip"] is None:
        raise gr.StepError("no clip (its step did not run)")
    timeout = cap_s if c.quick else min(cap_s, max(c.left() - reserve_s, 45.0), c.left() - 5.0)
    r = gr.file_run(clip_path(c), c.work, key, c.device, "torch" if c.quick else None, c.engines, timeout)
    c.report["file"][key] = r
    return (f"{r['command_wall_s']:.1f} s in all, warm-up {r['warmup_s']:.1f} s, "
            f"{r['processed_fps']:.1f} fps processed, {r['dropped']} dropped")


def live_step(c: Check) -> str:
    if c.report["clip"] is None:
        raise gr.StepError("no clip (its step did not run)")
    r = gr.live_replay(clip_path(c), c.device, "torch" if c.quick else "auto", c.engines, c.sizes.live_s,
                       c.sizes.warmup, print)
    c.report["live"] = r
    e2e = r["capture_to_overlay_ms"] or {}
    return (f"{r['describe']}: dropped {r['dropped_fraction']:.1%} of {r['frames_released']}, capture->overlay "
            f"p50 {e2e.get('p50', float('nan')):.1f} p99 {e2e.get('p99', float('nan')):.1f} ms")


def train_step(c: Check) -> str:
    timeout = 600.0 if c.quick else min(150.0, c.left() - 5.0)
    r = gr.train_run(c.work, c.device, 2, c.sizes.train_iters, timeout)
    c.report["train"] = r
    return f"epochs {r['epoch_s']} s (cumulative stamps' differences), {r['command_wall_s']:.0f} s in all"


def plan(c: Check) -> list[Step]:
    """The steps in their order (see the module's docstring)."""
    precs, avail = c.sizes.precisions, c.report["available"]
    backends_ = ["torch"] if c.quick else [b for b in ("torch", "compiled", "onnxruntime", "tensorrt") if b in avail]

    def row(label, backend, prec) -> Step:
        return Step(f"{label} {backend} {prec}", partial(row_need, c, label, backend, prec),
                    partial(row_step, c, label, backend, prec))

    first = [row(m, "torch", p) for m in ("bundled", "paper") for p in precs]
    first.append(Step("train", lambda: 0.0 if c.quick else 60.0, partial(train_step, c)))
    runs = [Step("clip", lambda: 0.0 if c.quick else 30.0, partial(clip_step, c)),
            Step("file first start", lambda: 0.0 if c.quick else 200.0, partial(file_step, c, "first_start", 100.0, 330.0)),
            Step("file cached start", lambda: 0.0 if c.quick else 60.0, partial(file_step, c, "cached_start", 55.0, 200.0))]
    default = [row("bundled", "compiled", "fp16")] if "compiled" in backends_ else []
    default.append(Step("live replay", lambda: 0.0 if c.quick else 35.0, partial(live_step, c)))
    done = {s.name for s in first + default}
    rest = [row(m, b, p) for b in backends_ for p in ("fp16", "fp32") if p in precs for m in ("paper", "bundled")]
    steps = first + runs + default + [s for s in rest if s.name not in done]
    only = [w.strip() for w in os.environ.get("GPU_CHECK_ONLY", "").split(",") if w.strip()]
    return [s for s in steps if not only or any(w in s.name for w in only)]


def parity_verdict(report: dict) -> bool | None:
    """False when any row's parity check failed, True when some passed and none failed, else None."""
    verdicts = [gm.row_ok(r) for m in ("bundled", "paper") for r in report[m]["rows"]]
    verdicts = [v for v in verdicts if v is not None]
    return None if not verdicts else all(verdicts)


def main() -> int:
    device = os.environ.get("GPU_CHECK_DEVICE", "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible (torch.cuda.is_available() is False); nothing to check", file=sys.stderr)
        return 3
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))  # the shell's time limit: clean up, keep the JSON
    quick = os.environ.get("GPU_CHECK_QUICK", "") == "1"
    Settings.from_env(device).apply()  # cudnn benchmark and torch's threads, as file and live run on `device`
    out = Path(os.environ.get("OUT") or REPO / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    c = Check(device, quick, out, float(os.environ.get("GPU_CHECK_BUDGET_S", 400 if not quick else 3600)))
    print(f"gpu_check on {c.report['machine'].get('gpu') or 'the CPU'} ({device}{', quick' if quick else ''}): "
          f"backends {c.report['available']}; budget {c.budget_s:.0f} s; work folder {c.work}", flush=True)
    try:
        for step in plan(c):
            c.run(step)
    finally:
        if os.environ.get("GPU_CHECK_KEEP") != "1":
            shutil.rmtree(c.work, ignore_errors=True)
    c.report["parity_ok"] = parity_verdict(c.report)
    c.report["wall_s"] = round(time.perf_counter() - c.t0, 1)
    path = c.save()
    print_tables(c.report)
    print(f"wrote {path}")
    return 1 if c.report["parity_ok"] is False else 0


if __name__ == "__main__":
    sys.exit(main())
