"""`streamseg export` and the artefact checks: the dense ONNX graph is clean, matches eager torch
under onnxruntime, is named and side-carded after its checkpoint, and bad input is one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from streamseg import backends
from streamseg.backends.artefacts import artefact_path, read_sidecar, sidecar_path
from streamseg.backends.onnx_export import ensure_onnx, export_onnx
from streamseg.letterbox import ROI_SIZES
from streamseg.backends.split import DenseNet
from streamseg.model.checkpoint import load_checkpoint, load_model
from streamseg.files import file_sha256
from streamseg.app.cli import app
from streamseg.types import StreamsegError

runner = CliRunner()
CLEAN_OPS = {"Conv", "Relu", "Add", "Sub", "Div", "Mul", "MaxPool", "Resize", "HardSwish", "HardSigmoid",
             "GlobalAveragePool", "Identity", "Constant", "Shape", "Slice", "Concat", "Gather", "Unsqueeze", "Cast"}


@pytest.fixture(scope="module")
def exported(calibrated_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    res = runner.invoke(app, ["export", "--format", "onnx", "--model", str(calibrated_checkpoint), "--out", str(out)])
    assert res.exit_code == 0, res.output
    # the full-frame graph, beside it one per tracking window size and the RoI heads graphs (onnxruntime on CPU)
    files = sorted(out.glob("*-dense-*-512-fp32.onnx"))
    assert len(files) == 1 and "built" in res.output
    assert sorted(int(p.name.split("-")[-2]) for p in out.glob("*-dense-*-fp32.onnx")) == sorted([*ROI_SIZES, 512])
    # --precision auto on the CPU: the INT8 copies `file` and `live` run there, beside each FP32 graph
    assert sorted(int(p.name.split("-")[-2]) for p in out.glob("*-dense-*-int8.onnx")) == sorted([*ROI_SIZES, 512])
    assert len(list(out.glob("*-heads-*.onnx"))) == 2
    return files[0]


def test_export_writes_dense_graph_with_sidecar(exported, calibrated_checkpoint):
    import onnx

    g = onnx.load(str(exported))
    ops = {n.op_type for n in g.graph.node}
    assert ops <= CLEAN_OPS, f"unexpected ops in the dense graph: {ops - CLEAN_OPS}"
    meta = json.loads(sidecar_path(exported).read_text())
    assert meta["checkpoint_sha256"] == file_sha256(calibrated_checkpoint)
    assert meta["input_shape"] == [1, 3, 512, 512] and meta["precision"] == "fp32"
    assert exported.name.startswith(f"mobilenet_v3_large-mask112-{meta['checkpoint_sha256'][:12]}-dense-b1-512-fp32")
    assert [o.name for o in g.graph.output] == meta["outputs"]
    assert not list(exported.parent.glob("*.tmp")), "no temp file left behind"


def test_onnxruntime_runs_the_graph_like_eager(exported, calibrated_checkpoint):
    import onnxruntime as ort

    model = load_model(calibrated_checkpoint)
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = DenseNet(model)(x)
    sess = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"images": x.numpy()})
    assert len(got) == len(ref)
    for r, g in zip(ref, got):
        assert r.shape == g.shape
        r = r.numpy()
        err = np.abs(g - r).max() / max(1.0, np.abs(r).max())  # relative to the map's scale
        assert err < 1e-4, err


def test_corrupt_or_stale_onnx_is_rebuilt(calibrated_checkpoint, tmp_path):
    model, info = load_checkpoint(calibrated_checkpoint)
    path = artefact_path(info, tmp_path, "onnx")
    path.write_bytes(b"not an onnx file")
    notes = []
    assert ensure_onnx(model, info, tmp_path, log=notes.append) == path
    assert notes and "rebuilding" in notes[0] and path.stat().st_size > 1e6
    meta = read_sidecar(path)
    meta["checkpoint_sha256"] = "0" * 64  # as if built from other weights
    sidecar_path(path).write_text(json.dumps(meta))
    notes.clear()
    ensure_onnx(model, info, tmp_path, log=notes.append)
    assert notes and "checkpoint_sha256 differs" in notes[0]
    assert read_sidecar(path)["checkpoint_sha256"] == file_sha256(calibrated_checkpoint)
    mtime = path.stat().st_mtime_ns
    ensure_onnx(model, info, tmp_path)  # matching and valid: reused
    assert path.stat().st_mtime_ns == mtime
    # test-time settings (the runtime shows one detection) do not change the graph: still reused
    for overrides in ({"max_detections": 1}, {"box_score_thresh": 0.5, "rpn_post_nms_top_n_test": 50}):
        notes.clear()
        assert ensure_onnx(*load_checkpoint(calibrated_checkpoint, **overrides), tmp_path, log=notes.append) == path
        assert not notes and path.stat().st_mtime_ns == mtime


def test_corrupt_onnx_given_to_onnxruntime_is_one_line(calibrated_checkpoint, tmp_path):
    from streamseg.backends.onnxrt import open_onnxruntime

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(StreamsegError, match="onnxruntime cannot load it"):
        open_onnxruntime(*load_checkpoint(calibrated_checkpoint), onnx_path=bad)


@pytest.mark.parametrize("args,needle", [
    (["--model", "/nonexistent/model.pt"], "checkpoint not found"),
])
def test_export_bad_input_is_one_line(args, needle, tmp_path):
    res = runner.invoke(app, ["export", "--out", str(tmp_path), *args])
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_export_other_architecture_is_one_line(calibrated_checkpoint, tmp_path):
    blob = torch.load(calibrated_checkpoint, weights_only=True)
    blob["config"]["backbone"] = "resnet18"  # weights of a MobileNet under a ResNet header
    bad = tmp_path / "liar.pt"
    torch.save(blob, bad)
    res = runner.invoke(app, ["export", "--model", str(bad), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "do not fit the architecture" in res.output
    assert not list(tmp_path.glob("*.onnx"))


def test_tensorrt_missing_is_one_line(calibrated_checkpoint, tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: the missing-TensorRT path cannot be shown")
    except ImportError:
        pass
    with pytest.raises(StreamsegError, match="TensorRT is not installed"):
        backends.load("tensorrt", calibrated_checkpoint, engines_dir=tmp_path)
    res = runner.invoke(app, ["export", "--format", "engine", "--model", str(calibrated_checkpoint), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "TensorRT is not installed" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_unknown_backend_is_refused(calibrated_checkpoint):
    with pytest.raises(StreamsegError, match="unknown backend 'openvino'"):
        backends.load("openvino", calibrated_checkpoint)


def test_auto_picks_onnxruntime_on_cpu():
    assert backends.available("cpu")[0] == "onnxruntime"


def test_dynamo_exporter_also_gives_a_clean_graph(calibrated_checkpoint, tmp_path):
    pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript (not a dependency)")
    import onnx

    path = export_onnx(*load_checkpoint(calibrated_checkpoint), tmp_path / "dyn.onnx", dynamo=True)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Loop" not in ops and "If" not in ops and "NonMaxSuppression" not in ops


def test_one_artefact_helper_rebuilds_stale_and_unloadable_files(tmp_path):
    """What compiled and TensorRT share (no GPU needed): a matching sidecar is reused, a stale one
    rebuilt with one line saying why, and an artefact that does not load is rebuilt once."""
    from streamseg.backends.artefacts import ensure_artefact, load_or_rebuild

    path, builds, notes = tmp_path / "x.bin", [], []

    def build(p):
        builds.append(p)
        p.write_bytes(b"ok%d" % len(builds))
        return {"extra": 1}

    assert ensure_artefact(path, {"v": 1}, build, log=notes.append) == path and len(builds) == 1
    assert notes == ["building x.bin"] and notes[0].routine  # a first build: no reason to give
    notes.clear()
    assert read_sidecar(path) == {"v": 1, "extra": 1}
    ensure_artefact(path, {"v": 1}, build, log=notes.append)
    assert len(builds) == 1, "a matching artefact is reused"
    ensure_artefact(path, {"v": 2}, build, log=notes.append)
    assert len(builds) == 2 and "v differs" in notes[-1]

    def open_(p):
        if p.read_bytes() == b"ok2":
            raise RuntimeError("stale package")
        return p.read_bytes()

    got = load_or_rebuild(lambda force: ensure_artefact(path, {"v": 2}, build, force=force), open_, notes.append)
    assert got == b"ok3" and len(builds) == 3 and "does not load (stale package)" in notes[-1]


def test_export_unknown_format_is_refused_by_its_choices():
    from typer.testing import CliRunner

    from streamseg.app.cli import app

    res = CliRunner().invoke(app, ["export", "--format", "tflite"])
    assert res.exit_code == 2 and "'onnx', 'engine', 'compiled'" in res.output and "Traceback" not in res.output
