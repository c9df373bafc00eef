"""`streamseg bench` as a user runs it: by default the bundled model with auto's backend first (the
baseline), --paper the paper's R101; repeats interleaved with their spread; the load average read
and a loaded machine flagged; the JSON where --out says (else the user cache); a table that fits
100 columns. Tiny frame counts: these check the plumbing, not the speed."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from streamseg.app import bench
from streamseg.app.bench import STAGES, BenchOptions, pct
from streamseg.types import Inference
from streamseg.app.cli import app

REPO = Path(__file__).resolve().parents[1]
IDLE, BUSY = (lambda: (0.2, 0.3, 0.4)), (lambda: (9.0, 8.0, 7.0))


def _cli(args: list[str]):
    return CliRunner().invoke(app, ["bench", *args])


def _rendered(report: bench.BenchReport) -> list[str]:
    c = Console(width=100, record=True)
    c.print(bench.table(report))
    return c.export_text().splitlines()


def _assert_fits(report: bench.BenchReport) -> None:
    lines = _rendered(report)
    assert max(len(ln) for ln in lines) <= 100 and not any("…" in ln for ln in lines), "\n".join(lines)
    rows = [ln for ln in lines if ln[:1].isalpha() or ln.startswith("*")]
    for r in report.results:  # every label whole on its own row, never wrapped onto a second line
        assert any(ln.startswith(r.label + " ") for ln in rows), (r.label, "\n".join(lines))
        assert len(r.label) <= 15


def test_percentiles_are_in_ms():
    p = pct([0.001 * i for i in range(1, 101)])
    assert p.p50 == pytest.approx(50.5) and p.max == pytest.approx(100.0) and p.n == 100


def test_bench_cli_on_cpu_repeats_and_writes_where_asked(calibrated_checkpoint, engines_dir, tmp_path, monkeypatch):
    out, shown, print_report = tmp_path / "mine.json", [], bench.print_report
    monkeypatch.setattr(bench, "print_report", lambda report, *a: shown.append(report) or print_report(report, *a))
    res = _cli(["--model", str(calibrated_checkpoint), "--frames", "3", "--warmup", "1", "--repeat", "2", "--no-e2e",
                "--engines", str(engines_dir), "--out", str(out), "--compute", "cpu", "--max-detections", "2"])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output and list(tmp_path.iterdir()) == [out]
    report = json.loads(out.read_text())
    from streamseg.backends import available

    avail = available("cpu")
    # as file/live run (tracked; INT8 where onnxruntime runs on the CPU), the full-frame FP32 path, the others
    short = {"onnxruntime": "ort", "torch": "torch"}
    prec = "int8" if avail[0] == "onnxruntime" else "fp32"
    assert [r["label"] for r in report["results"]] == [f"{short[avail[0]]} {prec} win*", f"{short[avail[0]]} fp32 full",
                                                       *[f"{short[n]} fp32 win" for n in avail[1:]]]
    assert [r["track"] for r in report["results"]] == [True, False, *[True] * len(avail[1:])]
    for r in report["results"]:
        assert r["detections_min"] == 2, "the bench must run with the asked-for detections"
        for s in set(STAGES) - {"encode"}:
            assert r["stages"][s]["n"] == 6 and r["stages"][s]["p50"] > 0  # 3 frames × 2 repeats
        f = r["frame_p50"]
        assert len(f["repeats"]) == 2 and f["min"] <= f["median"] <= f["max"]
        assert {"p50", "p95", "p99", "max"} <= set(r["stages"]["dense"])
    assert report["results"][0]["speedup_frame_p50"] == pytest.approx(1.0)
    load = report["load"]
    assert [s["when"] for s in load["samples"]] == ["before", "after repeat 1", "after"]
    assert isinstance(load["loaded"], bool) and load["threshold_1m"] == bench.load_threshold(load["cores"])
    assert {"cpu", "cores", "torch", "torchvision"} <= set(report["machine"])
    assert report["command"].startswith("streamseg bench") and "--repeat 2" in report["command"]
    assert report["repeat"] == 2 and report["model"]["max_detections"] == 2
    _assert_fits(shown[0])  # the report the CLI printed, whose to_dict() is the JSON above


def test_no_arguments_time_the_bundled_model_with_autos_backend_first(engines_dir, tmp_path):
    """No model flag: what `file` and `live` run (the bundled checkpoint, the backend auto picks)."""
    from streamseg.backends import available
    from streamseg.model.checkpoint import DEFAULT_WEIGHTS

    out = tmp_path / "b.json"
    res = _cli(["--frames", "1", "--warmup", "0", "--repeat", "1", "--no-e2e", "--engines", str(engines_dir),
                "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["model"]["source"] == str(DEFAULT_WEIGHTS)
    assert report["results"][0]["backend"] == available("cpu")[0] and report["results"][0]["label"].endswith("*")
    assert report["results"][0]["track"] is True
    assert report["frames_source"].startswith("demo.mp4")


def test_paper_times_the_untrained_r101(tmp_path):
    out = tmp_path / "p.json"
    res = _cli(["--paper", "--backend", "torch", "--frames", "1", "--warmup", "0", "--repeat", "1", "--no-e2e",
                "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["model"]["backbone"] == "resnet101" and report["model"]["mask_head"] == "112"
    assert "untrained" in report["model"]["description"] and report["results"][0]["label"] == "torch fp32 win"


class RecordingProgress:
    """What the bench asks of a rich Progress: add_task, update, advance."""

    def __init__(self):
        self.total, self.advanced = None, 0

    def add_task(self, description, total):
        self.total = total
        return 0

    def update(self, task, description):
        pass

    def advance(self, task):
        self.advanced += 1


def test_a_loaded_machine_is_flagged_and_the_default_json_goes_to_the_user_cache(
        calibrated_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    o = BenchOptions(model=calibrated_checkpoint, backends=["torch"], tracking=[True], device="cpu", frames=2,
                     warmup=1, repeat=2, e2e=False)
    progress, logs = RecordingProgress(), []
    report = bench.run(o, log=logs.append, progress=progress, loadavg=BUSY)
    [path] = (tmp_path / "cache" / "streamseg" / "bench").glob("bench-*.json")
    assert report.json == str(path) and json.loads(path.read_text())["load"]["loaded"] is True
    assert progress.advanced == progress.total == 2 * 3  # 2 repeats of 1 warm-up + 2 frames
    assert report.load.loaded and report.load.max_1m == 9.0
    console = Console(width=100, record=True)
    bench.print_report(report, console, log=lambda m: console.print(m, soft_wrap=True))
    text = console.export_text()
    assert "loaded machine" in text and "9.00 on" in text and text.index("loaded machine") > text.index("frame")
    assert f"wrote {path}" in text


def test_load_threshold_and_verdict():
    assert bench.load_threshold(2) == 2.5 and bench.load_threshold(1) == 1.5 and bench.load_threshold(16) == 20
    idle = [bench.read_load(IDLE, "before"), bench.read_load(lambda: (2.4, 1, 1), "after")]
    assert bench.load_verdict(idle, 2).loaded is False and bench.load_verdict(idle, 2).warning is None
    busy = [*idle, bench.read_load(BUSY, "after repeat 1")]
    v = bench.load_verdict(busy, 2)
    assert v.loaded is True and "9.00" in v.warning and v.samples[-1].one_min == 9.0


def _row(label: str, ms: float) -> bench.BenchRow:
    st = {s: bench.Percentiles(p50=ms, p95=ms * 1.1, p99=ms * 1.2, max=ms * 1.3, mean=ms, n=20)
          for s in (*STAGES, "frame")}
    summary = bench.Summary(st, bench.FrameP50(median=ms, min=ms * 0.9, max=ms * 1.1, repeats=[ms]), fps=1000.0 / ms,
                            fps_of_mean=1000.0 / ms, detections_mean=1.0, detections_min=1, encode="x",
                            windowed_share=1.0)
    return bench.BenchRow(label, "onnxruntime", "fp32", True, "cpu", summary=summary, speedup_frame_p50=0.123)


def _report(results: list, frames: int = 5, cores: int = 2, gpu: str | None = None) -> bench.BenchReport:
    """A report with what `bench.table` shows: the model, the machine, the counts and the rows."""
    machine = bench.Machine("cpu", cores, 1, "3.12", "2", "0.2", gpu=gpu)
    load = bench.load_verdict([bench.read_load(IDLE, "before")], cores)
    return bench.BenchReport("2026-01-01", "streamseg bench", machine, load,
                             {"backbone": "mobilenet_v3_large", "mask_head": "112"}, frames, 1, 3, "demo.mp4", results)


def test_the_table_fits_100_columns_at_its_widest():
    """Eight CUDA rows with the longest labels, and four-digit milliseconds everywhere."""
    labels = [bench.row_label(b, p, t, auto=a) for b, p, t, a in [
        ("tensorrt", "fp32", True, True), ("tensorrt", "fp32", False, False), ("tensorrt", "fp16", True, False),
        ("compiled", "fp32", True, False), ("compiled", "fp16", False, False), ("onnxruntime", "fp32", True, False),
        ("onnxruntime", "fp16", False, False), ("torch", "fp32", True, False), ("torch", "fp16", False, False)]]
    report = _report([_row(lb, 9876.5) for lb in labels]
                     + [bench.BenchRow("ort int8 win*", "onnxruntime", "int8", True, "cuda", skipped="x")],
                     frames=20, cores=16, gpu="NVIDIA H100 80GB HBM3")
    _assert_fits(report)
    report.results = [_row("ort int8 win*", 0.5), _row("torch fp32 full", 123.4)]
    _assert_fits(report)


def test_frames_are_the_clips_consecutive_frames_replayed_in_order():
    import av

    o = BenchOptions(frames=3, warmup=1)
    images, source = bench.bench_frames(o)
    with av.open(str(REPO / "streamseg/data/sample/demo.mp4")) as c:
        first = [f.to_ndarray(format="bgr24") for _, f in zip(range(4), c.decode(video=0))]
    assert len(images) == 4 and all(np.array_equal(a, b) for a, b in zip(images, first))
    seen = []

    def infer(image):  # a stand-in for make_infer's callable: records the order it is handed frames in
        seen.append(image)
        return Inference([], {"model": 0.0})

    run = bench.run_backend(infer, images, warmup=1)
    assert [id(x) for x in seen] == [id(x) for x in images] and len(run.samples["frame"]) == 3


def test_images_instead_of_the_clip_are_cycled_in_name_order(sample_dir):
    from streamseg.backends.bn_warmup import sample_images

    images, source = bench.bench_frames(BenchOptions(images=sample_dir / "images", frames=8, warmup=1))
    names = sample_images(sample_dir / "images")
    assert len(images) == 9 and len(names) == 7 and "name order" in source
    assert all(np.array_equal(a, names[i % 7]) for i, a in enumerate(images))


def test_gpu_check_times_a_backend_through_the_bench(calibrated_checkpoint):
    """benchmarks/gpu_check.py (run on a GPU box only) imports and uses bench.time_backend: it stays in step."""
    import importlib.util

    from streamseg import backends
    from streamseg.backends.bn_warmup import sample_images

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # its imports resolve
    be = backends.load("torch", calibrated_checkpoint, split=True)
    row, memory = bench.time_backend(be, sample_images(limit=2), frames=3, warmup=1)
    assert row.stages["dense"].n == 3 and row.stages["model"].p99 > 0 and row.detections_mean == 2
    assert "process_peak_rss_mb" in memory


@pytest.mark.parametrize("args, says", [
    (["--backend", "openvino"], "unknown backend 'openvino'"),
    (["--model", "m.pt", "--paper"], "give one"),
    (["--paper", "--backbone", "resnet50"], "--paper is the resnet101"),
    (["--mask-head", "56"], "--mask-head goes with"),
    (["--repeat", "0"], "--repeat 0"),
    (["--tracking", "maybe"], "--tracking 'maybe'"),
    (["--precision", "int4", "--frames", "1", "--no-e2e"], "unknown precision 'int4'"),
])
def test_bad_bench_flags_are_one_line(tmp_path, args, says):
    res = _cli([*args, "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2 and says in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "r.json").exists()


def test_out_must_be_a_file(tmp_path):
    res = _cli(["--out", str(tmp_path)])
    assert res.exit_code == 2 and "is a folder" in res.output


def test_gpu_check_script_parses_and_refuses_without_gpu(tmp_path):
    script = REPO / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the script would run for minutes")
    r = subprocess.run(["bash", str(script)], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={"PATH": f"{REPO / '.venv' / 'bin'}:/usr/bin:/bin", "OUT": str(tmp_path)})
    assert r.returncode != 0 and "no CUDA GPU" in (r.stdout + r.stderr)


def _readme_bench_examples() -> list[list[str]]:
    import re
    import shlex

    readme = (REPO / "README.md").read_text()
    section = readme.split("### `streamseg export` and `streamseg bench`", 1)[1].split("\n## ", 1)[0]
    lines = [ln.split("#", 1)[0].strip() for b in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
             for ln in b.splitlines()]
    return [shlex.split(ln) for ln in lines if ln.startswith("streamseg bench")]


def test_readme_bench_examples_run_as_written(engines_dir, tmp_path, monkeypatch):
    """Each quick example verbatim (cwd a temp folder, the caches there); the --paper one is the
    run test_paper_times_the_untrained_r101 makes with fewer frames (its flags are checked here)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("STREAMSEG_ENGINES", str(engines_dir))  # backends.load's settings.engines
    examples = _readme_bench_examples()
    assert any("--paper" in e for e in examples) and any("--out" in e for e in examples)
    help_text = CliRunner().invoke(app, ["bench", "--help"], env={"COLUMNS": "200"}).output
    for argv in examples:
        assert all(a in help_text for a in argv if a.startswith("--")), argv
        if "--paper" in argv:
            continue
        res = CliRunner().invoke(app, argv[1:])
        assert res.exit_code == 0, (argv, res.output)
        wrote = tmp_path / res.output.split("wrote ", 1)[1].split()[0]  # bench.json is relative to the cwd
        assert wrote.is_file() and wrote.is_relative_to(tmp_path) and json.loads(wrote.read_text())["repeat"] == 2


def test_fps_agrees_with_the_frame_column():
    """One slow repeat showed p50 40 ms next to "11.2 fps" (fps was 1 / the mean frame time): the fps
    column is now 1000 / the frame column (the median of the repeats' p50), and the table says so."""
    def one_run(ms: list[float]) -> bench.Run:
        samples = {s: [0.001] * len(ms) for s in STAGES}
        samples["frame"] = [m / 1000 for m in ms]
        return bench.Run(samples, detections=[1] * len(ms), windowed=[True] * len(ms), encode="x")

    row = bench.summarise([one_run([40.0] * 5), one_run([40.0] * 4 + [900.0]), one_run([40.0] * 5)])
    assert row.frame_p50.median == pytest.approx(40.0)
    assert row.fps == pytest.approx(25.0) and row.fps_of_mean == pytest.approx(1000 / 97.33, rel=1e-3)
    report = _report([bench.BenchRow("ort int8 win*", "onnxruntime", "int8", True, "cpu", summary=row,
                                     speedup_frame_p50=1.0)])
    text = "\n".join(_rendered(report))
    assert "fps = 1000 / frame" in " ".join(text.split())
    [line] = [ln for ln in text.splitlines() if ln.startswith("ort int8 win*")]
    assert line.split()[-2] == "25.0" and line.split()[-6] == "40.0", line  # fps, frame


def test_row_labels_say_backend_precision_and_input_in_one_short_line():
    """Labels wrapped ("auto ->" / "onnxruntime int8") and "full" did not say it ran FP32."""
    from streamseg.backends import available

    plan = bench.default_plan("cpu", None, None)
    assert all(len(e.label) <= 15 and e.precision in e.label.split() for e in plan), [e.label for e in plan]
    assert [e.label for e in plan if not e.track] == [bench.row_label(available("cpu")[0], "fp32", False)]
    assert [e.label.endswith("*") for e in plan] == [True] + [False] * (len(plan) - 1)
    assert bench.row_label("onnxruntime", "fp32", False) == "ort fp32 full"
    lines = _rendered(_report([_row(e.label, 55.0) for e in plan]))
    legend = " ".join(" ".join(lines).split())
    assert "ort = onnxruntime" in legend and "full: the full frame every time" in legend and "* what file and live run" in legend
