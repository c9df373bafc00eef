"""INT8 vs FP32 on CPU for the bundled model: accuracy on the TEST patients of train/split.json
(TP/FP/FN at the display threshold, median Dice; eager FP32 torch is the reference) and speed,
measured side by side in one process (FP32 and INT8 onnxruntime alternate per frame on the same
frames; ratios are what to read on a shared machine). Prints a rich table, writes JSON to --out.

    python benchmarks/quant_eval.py --out benchmarks/results/quant_eval.json [--frames 44] [--method MinMax]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from streamseg import backends  # noqa: E402
from streamseg.app.bench import load_verdict, read_load  # noqa: E402
from streamseg.backends.onnx_quant import CALIB_DIR, METHODS  # noqa: E402
from streamseg.files import atomic_write  # noqa: E402
from streamseg.settings import usable_cores  # noqa: E402
from streamseg.training.dataset import load_pair, load_split, scan_folder, select  # noqa: E402
from streamseg.training.evaluate import score_predictions  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "median-nerve-univpm"
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "amx_bf16")


def cpu_flags() -> dict:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("Flags")), []))
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model name")), "?")
    return {"model": model, **{f: f in flags for f in CPU_FLAGS}}


def test_scans(data: Path) -> list:
    samples = select(scan_folder(data), load_split(REPO / "train" / "split.json")["test"])
    return [(s, *load_pair(s)) for s in samples]


def score(backend, scans) -> dict:
    scores, _ = score_predictions([(s, img, gt, backend.infer(img).detections) for s, img, gt in scans])
    p = scores.paper
    return {"tp": p.tp, "fp": p.fp, "fn": p.fn, "dice_median": p.dice_median}


def side_by_side(pair: dict, images: list, frames: int) -> dict:
    """Alternate the backends per frame on the same frames (two warm-up rounds first)."""
    times = {k: {"dense": [], "heads": [], "frame": []} for k in pair}
    for i in range(frames + 2):
        for k, be in pair.items():
            t = time.perf_counter()
            stages = be.infer(images[i % len(images)]).stages
            wall = time.perf_counter() - t
            if i >= 2:
                for part, v in (("dense", stages["dense"]), ("heads", stages["heads"]), ("frame", wall)):
                    times[k][part].append(v * 1000)
    return {k: {p: float(np.median(v)) for p, v in parts.items()} for k, parts in times.items()}


def report(result: dict) -> None:
    con = Console()
    acc = Table(title=f"accuracy on {result['test_scans']} test-patient scans (paper rule)")
    for col in ("model", "TP", "FP", "FN", "median Dice"):
        acc.add_column(col)
    for name, s in result["accuracy"].items():
        acc.add_row(name, str(s["tp"]), str(s["fp"]), str(s["fn"]), f"{s['dice_median']:.4f}")
    con.print(acc)
    sp = Table(title=f"median ms, {result['frames']} frames alternated (compare the ratio, not the ms)")
    for col in ("stage", "fp32", "int8", "fp32/int8"):
        sp.add_column(col)
    for part in ("dense", "heads", "frame"):
        a, b = result["speed"]["fp32"][part], result["speed"]["int8"][part]
        sp.add_row(part, f"{a:.1f}", f"{b:.1f}", f"{a / b:.2f}x")
    con.print(sp)
    con.print(f"CPU: {result['cpu']}")
    if result["load"]["warning"]:
        con.print(result["load"]["warning"], markup=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--frames", type=int, default=44)
    ap.add_argument("--method", choices=METHODS, default="MinMax")
    ap.add_argument("--calib", type=Path, default=CALIB_DIR)
    ap.add_argument("--engines", type=Path, default=None, help="artefact folder (default: a temporary one)")
    args = ap.parse_args(argv)
    from streamseg.backends.onnx_export import ensure_onnx
    from streamseg.backends.onnx_quant import ensure_int8
    from streamseg.backends.onnxrt import open_onnxruntime

    scans = test_scans(args.data)
    loads = [read_load(os.getloadavg, "before")]
    with tempfile.TemporaryDirectory() as tmp:
        engines = args.engines or Path(tmp)
        fp32 = backends.load("onnxruntime", engines_dir=engines)
        onnx = ensure_onnx(fp32.model, fp32.info, engines)
        t = time.perf_counter()
        q = ensure_int8(onnx, args.calib, args.method, force=True)
        quant_s = time.perf_counter() - t
        int8 = open_onnxruntime(fp32.model, fp32.info, "cpu", False, engines, onnx_path=q)  # this method's graph
        accuracy = {"eager fp32": score(backends.load("torch"), scans), "onnxruntime fp32": score(fp32, scans),
                    "onnxruntime int8": score(int8, scans)}
        speed = side_by_side({"fp32": fp32, "int8": int8}, [img for _, img, _ in scans], args.frames)
    loads.append(read_load(os.getloadavg, "after"))
    result = {"test_scans": len(scans), "frames": args.frames, "method": args.method, "calibration": str(args.calib),
              "quantise_s": quant_s, "accuracy": accuracy, "speed": speed, "cpu": cpu_flags(),
              "load": load_verdict(loads, usable_cores()).to_dict()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, lambda p: Path(p).write_text(json.dumps(result, indent=2)))
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
