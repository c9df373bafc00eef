"""File-mode pipeline throughput vs the bare model's throughput on the same frames.

Bare: the first N frames decoded into memory up front, then `backend.infer` on each (the
model alone: letterbox, forward, paste-back). Pipeline: `streamseg file` on the same clip with
`--max-frames N` and the same loaded backend, writing the H.264 overlay and the CSV (decode, measure, overlay, encode and
CSV all included; model load and file open excluded from both). Runs alternate bare/pipeline
`--repeats` times so drifting load on a shared machine hits both alike; medians are reported.

Two ratios: wall (pipeline fps / bare fps: the throughput ratio) and CPU (bare CPU-s per frame /
pipeline CPU-s per frame, all threads of the process: the work the pipeline adds, which other
jobs on a shared machine disturb far less than wall time).

    python benchmarks/pipeline_overhead.py [--clip streamseg/data/sample/demo.mp4] [--frames 60]
        [--repeats 3] [--model CKPT] [--backend torch] [--threads 2] [--json benchmarks/results/x.json]

Without --model it builds the small test architecture (MobileNetV3-FPN, mask112, 512 input,
untrained): the cheapest model, hence the hardest case for a ratio (the overhead is largest
relative to the model).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamseg import backends  # noqa: E402
from streamseg.app.runner import Options, run  # noqa: E402


def small_checkpoint(folder: Path) -> Path:
    from streamseg.model.checkpoint import save_checkpoint
    from streamseg.model.architecture import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(backbone="mobilenet_v3_large", mask_head="112", box_head_width=256, max_detections=2,
                      rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50)
    model = build_model(cfg)
    path = folder / "small.pt"
    save_checkpoint(path, model.eval(), config=cfg)
    return path


def decode(clip: Path, n: int) -> list:
    with av.open(str(clip)) as c:
        out = []
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="bgr24"))
            if len(out) == n:
                break
    return out


def bare(backend, frames) -> tuple[float, float]:
    """(frames per wall second, CPU seconds per frame) of the model alone, run in a worker thread as
    the pipeline runs it: on a loaded 2-core machine, torch's OpenMP pool behaves very differently
    in the main thread (measured here: 2 threads in the main thread 3-4x slower than in a worker),
    which would flatter the pipeline."""
    out = []

    def work():
        t0, c0 = time.perf_counter(), time.process_time()
        for img in frames:
            backend.infer(img)
        out.append((len(frames) / (time.perf_counter() - t0), (time.process_time() - c0) / len(frames)))

    th = threading.Thread(target=work)
    th.start()
    th.join()
    return out[0]


def pipeline(clip: Path, backend, n: int, folder: Path) -> tuple[float, float]:
    """The same warmed-up backend object as the bare runs, so only the pipeline differs."""
    s = run(Options(input=str(clip), live=False, out=folder / "o.mp4", csv=folder / "o.csv", compute="cpu",
                    max_frames=n, summary=False), log=lambda msg: None, backend=backend)
    assert s.csa.frames_processed == n and s.video_frames == n, s
    return n / s.wall_s, s.cpu_s / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=REPO / "streamseg" / "data" / "sample" / "demo.mp4")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (both runs)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = a.model or small_checkpoint(tmp)
        frames = decode(a.clip, a.frames)
        be = backends.load(a.backend, model, device="cpu")
        bare(be, frames[:2])  # warm-up
        pipeline(a.clip, be, min(3, len(frames)), tmp)  # warm the pipeline path too
        b, p, bc, pc = [], [], [], []
        for r in range(a.repeats):
            fps, cpu = bare(be, frames)
            b.append(fps), bc.append(cpu)
            fps, cpu = pipeline(a.clip, be, len(frames), tmp)
            p.append(fps), pc.append(cpu)
            print(f"repeat {r + 1}: bare {b[-1]:.3f} fps ({bc[-1]:.3f} cpu-s/frame), pipeline {p[-1]:.3f} fps "
                  f"({pc[-1]:.3f} cpu-s/frame), wall ratio {p[-1] / b[-1]:.3f}, cpu ratio {bc[-1] / pc[-1]:.3f}", flush=True)
    res = {
        "clip": str(a.clip.relative_to(REPO) if a.clip.is_relative_to(REPO) else a.clip), "frames": len(frames),
        "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}", "repeats": a.repeats, "backend": be.describe(),
        "model": str(a.model) if a.model else "small test architecture (mobilenet_v3_large, mask112, 512), untrained",
        "torch_threads": a.threads, "bare_fps": [round(x, 3) for x in b], "pipeline_fps": [round(x, 3) for x in p],
        "bare_fps_median": round(statistics.median(b), 3), "pipeline_fps_median": round(statistics.median(p), 3),
        "ratio_of_medians": round(statistics.median(p) / statistics.median(b), 3),
        "ratio_per_repeat": [round(y / x, 3) for x, y in zip(b, p)],
        "bare_cpu_s_per_frame": [round(x, 4) for x in bc], "pipeline_cpu_s_per_frame": [round(x, 4) for x in pc],
        "cpu_ratio_of_medians": round(statistics.median(bc) / statistics.median(pc), 3),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}", "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    print(json.dumps(res, indent=2))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
