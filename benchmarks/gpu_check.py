"""GPU check: parity (vs eager FP32) and stage latency for every backend available with CUDA, at
FP32 and FP16, for the paper model (ResNet101, mask112) and the small model (MobileNetV3).
Needs only torch/torchvision/numpy/opencv (+ onnxruntime-gpu, tensorrt, av when present).
Writes $OUT/gpu_check.json (or benchmarks/results/) and ends with a short plain-text table.
Run through benchmarks/gpu_check.sh."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamseg import backends  # noqa: E402
from streamseg.backends.bn_warmup import bench_model  # noqa: E402
from streamseg.backends.parity import compare  # noqa: E402
from streamseg.app.bench import BenchOptions, machine, time_backend  # noqa: E402
from streamseg.settings import Settings  # noqa: E402
from streamseg.types import StreamsegError  # noqa: E402

BUDGET_S = float(os.environ.get("GPU_CHECK_BUDGET_S", 330))  # steps start only before this; the shell caps at 470 s
FRAMES, WARMUP = int(os.environ.get("GPU_CHECK_FRAMES", 50)), 10
MODELS = {
    "paper": dict(backbone="resnet101", mask_head="112"),
    "small": dict(backbone="mobilenet_v3_large", mask_head="112", box_head_width=256, max_detections=2,
                  fpn_channels=128, mask_head_width=128, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50),
}
# compiled: FP16 only (the deployment precision; AOTInductor builds take minutes each)
PLAN = [("torch", "fp32"), ("torch", "fp16"), ("onnxruntime", "fp32"), ("onnxruntime", "fp16"),
        ("compiled", "fp16"), ("tensorrt", "fp16"), ("tensorrt", "fp32")]


def images() -> list:
    paths = sorted((REPO / "streamseg" / "data" / "sample" / "images").glob("*.png"))
    shared = Path(os.environ.get("STREAMSEG_SHARED", REPO.parent / "shared")) / "data" / "median-nerve-univpm" / "images"
    if shared.is_dir():
        paths += sorted(shared.glob("*.png"))[:2]
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]


def open_on_cuda(name: str, prec: str, model, info, engines: Path):
    """As `streamseg bench` opens them: eager torch through the split path (stage times)."""
    return backends.load(name, model=model, info=info, device="cuda", precision=prec, split=name == "torch",
                         engines_dir=engines, log=print)


def check_backend(row: dict, model, info, imgs: list, reference: list, engines: Path) -> bool:
    """Parity against the eager FP32 reference, then stage timings, into `row`; False on an error."""
    label, name, prec = row["model"], row["backend"], row["precision"]
    try:
        t = time.perf_counter()
        be = open_on_cuda(name, prec, model, info, engines)
        row["setup_s"] = time.perf_counter() - t
        worst = [1.0, 1.0]
        for im, ref in zip(imgs, reference):
            d, iou = compare(ref, be.infer(im).detections)
            worst = [min(worst[0], d), min(worst[1], iou)]
        floor = 0.98 if prec == "fp16" else 0.99
        row.update(min_dice=worst[0], min_box_iou=worst[1], parity=worst[0] >= floor and worst[1] >= floor)
    except (StreamsegError, AssertionError) as e:
        row.update(parity=False, error=str(e)[:300])
        print(f"{label} {name}/{prec}: {e}", flush=True)
        return False
    summary, memory = time_backend(be, imgs, FRAMES, WARMUP)
    row.update(asdict(summary), memory=memory)
    st = summary.stages
    print(f"{label} {name}/{prec}: Dice {worst[0]:.4f} IoU {worst[1]:.4f} dense p50 {st['dense'].p50:.2f} ms "
          f"model p50 {st['model'].p50:.2f} ms", flush=True)
    return True


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible; nothing to check", file=sys.stderr)
        return 3
    Settings.from_env().apply()  # cudnn benchmark, as `file`, `live` and `bench` run
    t_start = time.perf_counter()
    out = Path(os.environ.get("OUT") or REPO / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    engines = Path(os.environ.get("ENGINES", "/tmp/streamseg-engines"))
    avail = backends.available("cuda")
    imgs = images()
    report = {"machine": machine().to_dict(), "available": avail, "images": len(imgs), "frames": FRAMES, "rows": []}
    print(f"gpu_check on {report['machine'].get('gpu')}: backends {avail}; {len(imgs)} images", flush=True)
    for label, kw in MODELS.items():
        model, info = bench_model(**kw)
        ref_be = open_on_cuda("torch", "fp32", model, info, engines)
        reference = [ref_be.infer(im).detections for im in imgs]
        for name, prec in PLAN:
            row = {"model": label, "backend": name, "precision": prec}
            report["rows"].append(row)
            if name not in avail:
                row["skipped"] = "not available here"
                continue
            if time.perf_counter() - t_start > BUDGET_S:
                row["skipped"] = "time budget spent"
                continue
            if check_backend(row, model, info, imgs, reference, engines):
                save(report, out)
        if label == "paper":
            report["end_to_end"] = end_to_end(model, info, report, engines)
        del model, ref_be
        torch.cuda.empty_cache()
    report["wall_s"] = time.perf_counter() - t_start
    path = save(report, out)
    print_table(report)
    print(f"wrote {path}")
    bad = [r for r in report["rows"] if r.get("parity") is False]
    return 1 if bad else 0


def save(report: dict, out: Path) -> Path:
    path = out / "gpu_check.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def end_to_end(model, info, report, engines) -> dict:
    done = [r for r in report["rows"] if r["model"] == "paper" and "stages" in r and r.get("parity")]
    if not done:
        return {"skipped": "no backend passed"}
    best = min(done, key=lambda r: r["stages"]["model"]["p50"])
    o = BenchOptions(engines_dir=engines, warmup=WARMUP, e2e_seconds=10.0)
    try:
        from streamseg.app.bench_live import run_live

        return run_live(open_on_cuda(best["backend"], best["precision"], model, info, engines), o, print)
    except Exception as e:  # noqa: BLE001 - e.g. no PyAV on this box: recorded, not fatal
        return {"skipped": f"{type(e).__name__}: {str(e)[:200]}"}


def print_table(report) -> None:
    print(f"\n{'model':6} {'backend':12} {'prec':5} {'parity':>7} {'Dice':>7} {'IoU':>7} {'dense p50':>10} "
          f"{'model p50':>10} {'model p99':>10} {'dets':>5}")
    for r in report["rows"]:
        if "stages" not in r:
            why = r.get("skipped") or r.get("error", "")
            print(f"{r['model']:6} {r['backend']:12} {r['precision']:5} {'-':>7}  {why[:60]}")
            continue
        st = r["stages"]
        print(f"{r['model']:6} {r['backend']:12} {r['precision']:5} {str(r['parity']):>7} {r['min_dice']:7.4f} "
              f"{r['min_box_iou']:7.4f} {st['dense']['p50']:9.2f}ms {st['model']['p50']:9.2f}ms "
              f"{st['model']['p99']:9.2f}ms {r['detections_mean']:5.1f}")
    e = report.get("end_to_end") or {}
    if e.get("capture_to_overlay_ms"):
        c = e["capture_to_overlay_ms"]
        print(f"end-to-end paper {e['describe']}: capture->overlay p50 {c['p50']:.1f} "
              f"p99 {c['p99']:.1f} ms, dropped {e['dropped']}/{e['frames_released']}")


if __name__ == "__main__":
    sys.exit(main())
