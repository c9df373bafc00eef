"""The RoI heads' two MLP/conv stacks as one ONNX graph with a dynamic number of RoIs, run by
onnxruntime; RoIAlign (MultiScaleRoIAlign), box decoding, NMS and the mask post-processing stay
torchvision's own (`RoIHeads.postprocess_detections`, `maskrcnn_inference`), so results match eager.

- box: box_head (TwoMLPHead) + box_predictor: R×C×7×7 -> (class_logits, box_regression).
- mask: mask_head (4 conv) + mask_predictor (transposed convs + 1×1): R×C×14×14 -> mask logits.
Each is a `HeadNet` (a head and its predictor).
Each is its own graph file (`...-heads-box-...onnx`, `...-heads-mask-...onnx`, with sidecars), run
by its own session.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection.roi_heads import maskrcnn_inference

from ..files import atomic_write
from ..model.architecture import ModelInfo
from .artefacts import DEFAULT_DIR, artefact_path, base_meta, ensure_artefact
from .onnx_export import OPSET, check_onnx


class HeadNet(nn.Module):
    """One RoI head and its predictor as one graph: R×C×P×P pooled features -> the predictor's outputs."""

    def __init__(self, head: nn.Module, predictor: nn.Module):
        super().__init__()
        self.head, self.predictor = head, predictor

    def forward(self, x: torch.Tensor):
        return self.predictor(self.head(x))


def _part(roi_heads: nn.Module, part: str) -> tuple[HeadNet, nn.Module]:
    """The head graph of `part` ("box" or "mask") and the RoI pooler that feeds it."""
    if part == "box":
        return HeadNet(roi_heads.box_head, roi_heads.box_predictor), roi_heads.box_roi_pool
    return HeadNet(roi_heads.mask_head, roi_heads.mask_predictor), roi_heads.mask_roi_pool


OUTPUTS = {"box": ["class_logits", "box_regression"], "mask": ["mask_logits"]}  # part -> its graph's outputs


def _pooled_shape(model: nn.Module, part: str) -> tuple[int, int, int]:
    size = _part(model.roi_heads, part)[1].output_size
    channels = model.backbone.out_channels
    return channels, int(size[0]), int(size[1])


def heads_meta(info: ModelInfo, part: str) -> dict:
    return {"format": f"streamseg-heads-{part}-onnx", "opset": OPSET, **base_meta(info, 1, False)}


def _write(model: nn.Module, part: str, path: Path) -> dict:
    import onnx

    names = OUTPUTS[part]
    net = copy.deepcopy(_part(model.roi_heads, part)[0]).eval().cpu().float()
    x = torch.rand(3, *_pooled_shape(model, part))
    axes = {"rois": {0: "rois"}, **{n: {0: "rois"} for n in names}}

    def write(tmp):
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x,), tmp, input_names=["rois"], output_names=names, opset_version=OPSET,
                              do_constant_folding=True, dynamic_axes=axes, dynamo=False)
        onnx.checker.check_model(tmp)

    atomic_write(path, write)
    return {"torch": torch.__version__, "outputs": names}


def heads_inputs(model: nn.Module, part: str) -> dict[str, tuple[int, list]]:
    """What a heads graph takes: `rois`, R×C×P×P FP32 with R dynamic (`onnx_export.graph_inputs`'s form)."""
    import onnx

    return {"rois": (onnx.TensorProto.FLOAT, [None, *_pooled_shape(model, part)])}


def ensure_heads(model: nn.Module, info: ModelInfo, out_dir: str | Path = DEFAULT_DIR, log=None) -> dict[str, Path]:
    """The box and mask head graphs for this model, exported now unless matching valid ones are there."""
    return {part: ensure_artefact(artefact_path(info, out_dir, "onnx", part=f"heads-{part}"), heads_meta(info, part),
                                  lambda p, part=part: _write(model, part, p),
                                  check=lambda p, part=part: check_onnx(p, heads_inputs(model, part)), log=log)
            for part in OUTPUTS}


class OrtHeads:
    """`model.roi_heads` at inference, with the box and mask stacks run by onnxruntime sessions."""

    def __init__(self, roi_heads: nn.Module, sessions: dict):
        self.roi = roi_heads
        self.box, self.mask = sessions["box"], sessions["mask"]

    @staticmethod
    def _run(session, x: torch.Tensor) -> list[torch.Tensor]:
        outs = session.run(None, {"rois": x.float().contiguous().numpy()})
        return [torch.from_numpy(o) for o in outs]

    def __call__(self, features, proposals, image_shapes):
        roi = self.roi
        pooled = roi.box_roi_pool(features, proposals, image_shapes)
        class_logits, box_regression = self._run(self.box, pooled)
        boxes, scores, labels = roi.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        result = [{"boxes": b, "labels": l, "scores": s} for b, s, l in zip(boxes, scores, labels)]
        mask_boxes = [r["boxes"] for r in result]
        mask_logits = self._run(self.mask, roi.mask_roi_pool(features, mask_boxes, image_shapes))[0]
        for probs, r in zip(maskrcnn_inference(mask_logits, [r["labels"] for r in result]), result):
            r["masks"] = probs
        return result, {}


def open_heads(model: nn.Module, info: ModelInfo, out_dir, log, make_session) -> OrtHeads:
    paths = ensure_heads(model, info, out_dir, log)
    return OrtHeads(model.roi_heads, {part: make_session(p) for part, p in paths.items()})
