"""gpu_check's command steps (issue 21, items 3 to 5): a long real clip made by looping the bundled
demo, `streamseg file` on it (first start into a fresh engines folder, then cached), the live replay
of it through the pipeline (`bench_live.run_live`), and training epochs (`streamseg train`).
The commands run as `python -m streamseg ...` in their own process group, killed whole at their
time limit. Imported by benchmarks/gpu_check.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "streamseg" / "data" / "sample" / "demo.mp4"
SAMPLE = REPO / "streamseg" / "data" / "sample"
# train/cv.sh's compact recipe (mnv2) without --pretrained (no ImageNet file in a bare torch cache),
# so BatchNorm instead of frozen; the sample has no nerve-free scans (no --negatives)
RECIPE = ["--backbone", "mobilenet_v2", "--norm", "batch", "--mask-head", "112", "--fpn-channels", "128",
          "--mask-head-width", "128", "--box-head-width", "256", "--intensity-aug", "--hflip", "--batch-size", "4",
          "--schedule", "cosine", "--lr", "0.005", "--seed", "0"]
FILE_KEYS = ("processed_fps", "warmup_s", "wall_s", "frames_seen", "dropped", "model_ms_median",
             "end_to_end_ms_median", "video_frames", "source_fps")


class StepError(Exception):
    """A step that could not measure: its one-line reason."""


def has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def demo_frames(limit: int | None = None) -> tuple[list[np.ndarray], float]:
    """The demo clip's frames (BGR), with PyAV where importable, else OpenCV, and its frame rate."""
    if has_pyav():
        import av

        with av.open(str(DEMO)) as c:
            st = c.streams.video[0]
            fps = float(st.average_rate or 20)
            frames = [f.to_ndarray(format="bgr24") for _, f in zip(range(limit or 10**9), c.decode(st))]
        return frames, fps
    import cv2

    cap = cv2.VideoCapture(str(DEMO))
    fps, frames = cap.get(cv2.CAP_PROP_FPS) or 20.0, []
    while limit is None or len(frames) < limit:
        ok, im = cap.read()
        if not ok:
            break
        frames.append(im)
    cap.release()
    return frames, fps


def make_clip(path: Path, n_frames: int) -> dict:
    """`n_frames` frames of the demo, looped, at its rate: H.264 (libx264 veryfast) through PyAV
    where importable, else OpenCV's VideoWriter (mp4v). Written to a temp name, then renamed."""
    t = time.perf_counter()
    frames, fps = demo_frames(limit=n_frames)
    seq = [frames[i % len(frames)] for i in range(n_frames)]
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = _write_av(tmp, seq, fps) if has_pyav() else _write_cv2(tmp, seq, fps)
    os.replace(tmp, path)
    return {"path": str(path), "frames": n_frames, "fps": fps, "demo_frames": len(frames), "writer": writer,
            "width": seq[0].shape[1], "height": seq[0].shape[0], "mib": round(path.stat().st_size / 2**20, 2),
            "seconds": round(time.perf_counter() - t, 2)}


def _write_av(path: Path, frames: list[np.ndarray], fps: float) -> str:
    import av

    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        st.width, st.height, st.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        st.options = {"crf": "20", "preset": "veryfast"}
        for im in frames:
            out.mux(st.encode(av.VideoFrame.from_ndarray(im, format="bgr24")))
        out.mux(st.encode())
    return "PyAV libx264 (crf 20, veryfast)"


def _write_cv2(path: Path, frames: list[np.ndarray], fps: float) -> str:
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames[0].shape[1], frames[0].shape[0]))
    if not w.isOpened():
        raise StepError("OpenCV's VideoWriter could not open an mp4v file")
    for im in frames:
        w.write(im)
    w.release()
    return "OpenCV VideoWriter mp4v (no PyAV)"


def run_command(args: list[str], timeout_s: float) -> tuple[float, str]:
    """`python -m streamseg ARGS` in its own process group -> (wall seconds, output). A non-zero exit
    or the time limit (the whole group killed) is a StepError with its last line."""
    cmd = [sys.executable, "-m", "streamseg", *args]
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise StepError(f"streamseg {args[0]} did not finish within its {timeout_s:.0f} s") from None
    except BaseException:  # SIGTERM from the shell's timeout (SystemExit), Ctrl-C: take the command with us
        os.killpg(p.pid, signal.SIGKILL)
        raise
    wall = time.perf_counter() - t
    if p.returncode != 0:
        last = (out.strip().splitlines() or ["(no output)"])[-1]
        raise StepError(f"streamseg {args[0]} exited {p.returncode}: {last[:200]}")
    return wall, out


def file_run(clip: Path, work: Path, tag: str, device: str, backend: str | None, engines: Path,
             timeout_s: float) -> dict:
    """`streamseg file CLIP --out TAG.mp4 --compute DEVICE --engines ENGINES` (backend and precision
    auto unless `backend`) -> its wall seconds and the summary JSON's speed figures (TAG.summary.json)."""
    if not has_pyav():
        raise StepError("no PyAV here (streamseg file decodes and encodes with it): carry the av wheel in .whl/")
    out = work / f"{tag}.mp4"
    args = ["file", str(clip), "--out", str(out), "--compute", device, "--engines", str(engines)]
    args += ["--backend", backend] if backend else []
    wall, log = run_command(args, timeout_s)
    summary = json.loads(out.with_name(f"{tag}.summary.json").read_text())
    lines = log.strip().splitlines()  # its head says which backend ran and whether an engine was built
    return {"command": "streamseg " + " ".join(args), "command_wall_s": round(wall, 2),
            **{k: summary[k] for k in FILE_KEYS}, "log_head": lines[:4], "log_tail": lines[-2:]}


def live_replay(clip: Path, device: str, backend: str, engines: Path, seconds: float, warmup: int,
                log: Callable[[str], None]) -> dict:
    """The clip replayed at its rate through the live pipeline (`bench_live.run_live`) with the
    backend and precision `live` runs (auto on `device`, or `backend`), tracking windows as live runs."""
    from streamseg import backends
    from streamseg.app.bench import BenchOptions, make_infer
    from streamseg.app.bench_live import run_live

    be = backends.load(backend, device=device, precision="auto", engines_dir=engines, log=log)
    be.prepare_windows()
    o = BenchOptions(e2e_video=clip, e2e_seconds=seconds, warmup=warmup, engines_dir=engines)
    r = run_live(be, o, log, infer=make_infer(be, track=True))
    if "skipped" in r:
        raise StepError(r["skipped"])
    return r


def train_run(work: Path, device: str, epochs: int, max_iters: int | None, timeout_s: float) -> dict:
    """`streamseg train` with RECIPE on the bundled sample -> seconds per epoch from its model.jsonl
    (its `seconds` are cumulative, stamped after each epoch's steps: epoch 1's figure is its steps
    alone, each later one also holds the previous epoch's validation and checkpoint writes)."""
    out = work / "train" / "model.pt"
    args = ["train", "--data", str(SAMPLE), "--out", str(out), "--compute", device, "--epochs", str(epochs),
            "--split", str(out.with_name("split.json")), *RECIPE]
    args += ["--max-iters-per-epoch", str(max_iters)] if max_iters else []
    wall, _ = run_command(args, timeout_s)
    rows = [json.loads(ln) for ln in out.with_suffix(".jsonl").read_text().splitlines() if ln.strip()]
    if not rows:
        raise StepError(f"{out.with_suffix('.jsonl')}: no epoch logged")
    cum = [r["seconds"] for r in rows]
    per = [cum[0]] + [round(b - a, 1) for a, b in zip(cum, cum[1:])]
    split = json.loads(out.with_name("split.json").read_text())
    return {"command": "streamseg " + " ".join(args), "command_wall_s": round(wall, 2), "epoch_s": per,
            "seconds_per_epoch": per[-1], "loss": [r["loss"] for r in rows],
            "images": {k: len(v) for k, v in split.get("images", {}).items()}}  # per part of the patient split
