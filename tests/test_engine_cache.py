"""The engines folder trusts no sidecar alone (issue 18): a graph of another input size, or a heads
graph, lying under a dense graph's name beside that graph's valid sidecar failed at the first frame
inside onnxruntime, on every later run. The graph's own inputs are checked when it is opened, and a
graph that does not take what is asked for is rebuilt, with one line saying why."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from streamseg.backends.onnx_export import ensure_onnx
from streamseg.backends.onnx_heads import ensure_heads
from streamseg.model.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def built(tiny_checkpoint, tmp_path_factory):
    """The tiny model's 256-px dense graph, its 128-px window graph and its heads graphs, built once."""
    model, info = load_checkpoint(tiny_checkpoint)
    d = tmp_path_factory.mktemp("engines")
    return model, info, d, ensure_onnx(model, info, d), ensure_onnx(model, info, d, size=128), ensure_heads(model, info, d)


def _swap_in(src, dst, keep):
    """Put the graph `src` under `dst`'s name, leaving `dst`'s sidecar as it was; `keep` saves the original."""
    shutil.copy(dst, keep)
    shutil.copy(src, dst)


def test_a_smaller_graph_under_the_dense_name_is_rebuilt(built, tmp_path):
    model, info, d, dense, window, _ = built
    _swap_in(window, dense, tmp_path / "orig.onnx")
    notes = []
    assert ensure_onnx(model, info, d, log=notes.append) == dense
    assert notes and "rebuilding" in notes[0] and "images[1x3x128x128]" in notes[0], notes
    assert "1x3x256x256" in notes[0]
    notes.clear()
    ensure_onnx(model, info, d, log=notes.append)  # the rebuilt graph is reused
    assert not notes


@pytest.mark.parametrize("part", ["box", "mask"])
def test_a_heads_graph_under_the_dense_name_is_rebuilt(built, tmp_path, part):
    model, info, d, dense, _, heads = built
    _swap_in(heads[part], dense, tmp_path / "orig.onnx")
    notes = []
    ensure_onnx(model, info, d, log=notes.append)
    assert notes and "rois[?x" in notes[0], notes


def test_the_box_graph_under_the_mask_name_is_rebuilt(built, tmp_path):
    model, info, d, dense, _, heads = built
    _swap_in(heads["box"], heads["mask"], tmp_path / "orig.onnx")
    notes = []
    assert ensure_heads(model, info, d, log=notes.append) == heads
    assert len(notes) == 1 and "heads-mask" in notes[0] and "x7x7" in notes[0] and "x14x14" in notes[0], notes


def test_the_backend_runs_after_a_swapped_graph(built, tmp_path):
    from streamseg.backends.onnxrt import open_onnxruntime

    model, info, d, dense, window, _ = built
    _swap_in(window, dense, tmp_path / "orig.onnx")
    be = open_onnxruntime(model, info, "cpu", out_dir=d, log=lambda s: None)
    frame = np.zeros((300, 400, 3), np.uint8)
    detections = be.infer(frame).detections
    assert isinstance(detections, list)


def test_an_int8_graph_of_another_size_is_rebuilt(built, tmp_path, sample_dir):
    from streamseg.backends.onnx_quant import calibration_files, ensure_int8

    model, info, d, dense, window, _ = built
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in calibration_files()[:2]:
        shutil.copy(p, calib / p.name)
    int8 = ensure_int8(dense, calib)
    shutil.copy(ensure_int8(window, calib), int8)  # the 128-px INT8 graph under the 256-px one's name
    notes = []
    assert ensure_int8(dense, calib, log=notes.append) == int8
    assert any("rebuilding" in n and "128x128" in n for n in notes), notes
