"""The RoI heads' two MLP/conv stacks as one ONNX graph with a dynamic number of RoIs, run by
onnxruntime; RoIAlign (MultiScaleRoIAlign), box decoding, NMS and the mask post-processing stay
torchvision's own (`RoIHeads.postprocess_detections`, `maskrcnn_inference`), so results match eager.

- `BoxNet`: box_head (TwoMLPHead) + box_predictor: R×C×7×7 -> (class_logits, box_regression).
- `MaskNet`: mask_head (4 conv) + mask_predictor (transposed convs + 1×1): R×C×14×14 -> mask logits.
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


class BoxNet(nn.Module):
    def __init__(self, roi_heads: nn.Module):
        super().__init__()
        self.head, self.predictor = roi_heads.box_head, roi_heads.box_predictor

    def forward(self, x: torch.Tensor):
        return self.predictor(self.head(x))


class MaskNet(nn.Module):
    def __init__(self, roi_heads: nn.Module):
        super().__init__()
        self.head, self.predictor = roi_heads.mask_head, roi_heads.mask_predictor

    def forward(self, x: torch.Tensor):
        return self.predictor(self.head(x))


PARTS = {  # part -> (module, RoI pooler attribute, output names)
    "box": (BoxNet, "box_roi_pool", ["class_logits", "box_regression"]),
    "mask": (MaskNet, "mask_roi_pool", ["mask_logits"]),
}


def _pooled_shape(model: nn.Module, pool: str) -> tuple[int, int, int]:
    size = getattr(model.roi_heads, pool).output_size
    channels = model.backbone.out_channels
    return channels, int(size[0]), int(size[1])


def heads_meta(info: ModelInfo, part: str) -> dict:
    return {"format": f"streamseg-heads-{part}-onnx", "opset": OPSET, **base_meta(info, 1, False)}


def _write(model: nn.Module, part: str, path: Path) -> dict:
    import onnx

    cls, pool, names = PARTS[part]
    net = copy.deepcopy(cls(model.roi_heads)).eval().cpu().float()
    x = torch.rand(3, *_pooled_shape(model, pool))
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

    return {"rois": (onnx.TensorProto.FLOAT, [None, *_pooled_shape(model, PARTS[part][1])])}


def ensure_heads(model: nn.Module, info: ModelInfo, out_dir: str | Path = DEFAULT_DIR, log=None) -> dict[str, Path]:
    """The box and mask head graphs for this model, exported now unless matching valid ones are there."""
    return {part: ensure_artefact(artefact_path(info, out_dir, "onnx", part=f"heads-{part}"), heads_meta(info, part),
                                  lambda p, part=part: _write(model, part, p),
                                  check=lambda p, part=part: check_onnx(p, heads_inputs(model, part)), log=log)
            for part in PARTS}


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
