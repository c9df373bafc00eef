"""The paper's Mask R-CNN (Di Cosmo et al.): ResNet101-FPN, 5 anchor sizes × 3 ratios, RoIAlign 14,
and a segmentation head of 4 conv + N transposed conv (N=3 -> 112×112 masks, Table I).

Everything is torchvision's detection package; this file only configures it:
- the model's own transform never resizes (images arrive letterboxed to `image_size`), and
- the model returns RoI mask probabilities (N×1×M×M) with letterbox-space boxes, so the caller
  pastes each mask once, straight into the source frame (`backends.base.paste_to_source`).
"""
from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision import models as tv_models
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from ..choices import Backbone, MaskHead, Norm, choice
from ..types import StreamsegError, Thresholds

# Test-time settings: they change what is kept after the dense part (proposals, detections, the
# reported box), never the weights or the dense graph, so they may differ between runs of one model.
RUNTIME_KEYS = ("rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test", "box_score_thresh", "max_detections", "box_from_mask")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# Integer settings of a config and the range each may take: a checkpoint is a file from anywhere, and
# an image_size of 0 or 2**20 would fail deep in OpenCV or try to allocate terabytes.
_INT_RANGES = {"num_classes": (2, 1000), "image_size": (64, 2048), "fpn_channels": (1, 65536),
               "mask_head_width": (1, 65536), "box_head_width": (1, 65536), "rpn_batch_size_per_image": (1, 100000),
               "rpn_pre_nms_top_n_test": (1, 100000), "rpn_post_nms_top_n_test": (1, 100000),
               "rpn_post_nms_top_n_train": (1, 100000), "box_batch_size_per_image": (1, 100000),
               "max_detections": (1, 1000)}


def _check(name: str, value, kind: type, lo=None, hi=None) -> None:
    """`value` is a `kind` (an int for float too; never a bool or a string) within [lo, hi]."""
    ok = isinstance(value, (int, float) if kind is float else kind) and not isinstance(value, bool)
    if ok and kind is not str:
        ok = math.isfinite(value) and lo <= value <= hi
    if not ok:
        span = "" if kind is str else f" within [{lo:g}, {hi:g}]"
        raise StreamsegError(f"{name} {value!r}: expected {'text' if kind is str else f'a number{span}'}"
                             f"{' (an integer)' if kind is int else ''}")


def _items(name: str, values, kind: type, lo=None, hi=None) -> list:
    """A config list (`anchor_sizes`, ...) whose every item passes `_check`."""
    if not isinstance(values, (list, tuple)):
        raise StreamsegError(f"config {name} {values!r}: expected a list")
    for v in values:
        _check(f"config {name} item", v, kind, lo, hi)
    return list(values)


@dataclass
class ModelConfig:
    backbone: str = "resnet101"
    mask_head: str = "112"
    num_classes: int = 2
    class_names: tuple[str, ...] = ("background", "median_nerve")
    image_size: int = 512
    norm: str = "batch"  # trains from scratch; "frozen" only with pretrained weights
    fpn_channels: int = 256  # FPN width (torchvision and the paper: 256)
    mask_head_width: int = 256  # Table I: 256 filters
    box_head_width: int = 1024  # torchvision's TwoMLPHead representation size
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_batch_size_per_image: int = 256  # "256 anchors per image"
    rpn_pre_nms_top_n_test: int = 200
    rpn_post_nms_top_n_test: int = 150
    rpn_post_nms_top_n_train: int = 1000
    box_batch_size_per_image: int = 128
    # training's RoI sampling: a proposal is the nerve at box IoU >= box_iou with the expert's box,
    # background below (torchvision: 0.5 for both; Cascade R-CNN's tighter stages use 0.6-0.7)
    box_iou: float = 0.5
    box_score_thresh: float = 0.05
    max_detections: int = 3
    # the reported box: the tight box of the mask pasted at source resolution (True), or the box
    # head's regression (False, as torchvision). The mask is pasted into the regressed box either way.
    box_from_mask: bool = True

    def __post_init__(self):
        self.class_names = tuple(_items("class_names", self.class_names, str))
        self.anchor_sizes = tuple(_items("anchor_sizes", self.anchor_sizes, int, 1, 4096))
        self.aspect_ratios = tuple(float(a) for a in _items("aspect_ratios", self.aspect_ratios, float, 0.01, 100))
        for name, (lo, hi) in _INT_RANGES.items():
            _check("config " + name, getattr(self, name), int, lo, hi)
        _check("config box_score_thresh", self.box_score_thresh, float, 0, 1)
        _check("config box_iou", self.box_iou, float, 0.05, 0.95)
        if not isinstance(self.box_from_mask, bool):
            raise StreamsegError(f"config box_from_mask {self.box_from_mask!r}: expected true or false")
        if len(self.anchor_sizes) != 5 or not self.aspect_ratios:
            raise StreamsegError("config anchor_sizes needs 5 sizes (one per FPN level) and aspect_ratios at least one")
        # plain strings (a checkpoint's config holds no enum), each one of its choices
        self.backbone = choice(Backbone, self.backbone, "backbone").value
        self.mask_head = choice(MaskHead, self.mask_head, "mask head").value
        self.norm = choice(Norm, self.norm, "norm").value
        if self.image_size % 32:
            raise StreamsegError(f"image size {self.image_size} must be a multiple of 32 (FPN)")

    @property
    def mask_size(self) -> int:
        return 14 * 2 ** MaskHead(self.mask_head).upsamplings

    def to_dict(self) -> dict:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["anchor_sizes"] = list(self.anchor_sizes)
        d["aspect_ratios"] = list(self.aspect_ratios)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class ModelInfo:
    """Who a model is, held beside its nn.Module (a backend's `info`; `checkpoint.load_checkpoint`
    returns it): the `config` it was built from, its `source` (the checkpoint path, or how an
    in-memory model was made), `sha256` (of the checkpoint file, or of the weights of a model never
    saved; "" while not computed) and the checkpoint's `meta` (training summary)."""

    config: ModelConfig
    source: str = "in memory"
    sha256: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def thresholds(self) -> Thresholds:
        """The operating point the checkpoint names (`meta["thresholds"]`, written by
        train/bundle.py from a cross-validation), else the runtime's defaults."""
        return thresholds_from_meta(self.meta, self.source)

    def with_sha256(self, model: nn.Module) -> "ModelInfo":
        """This record with `sha256` filled in from `model`'s weights where it is still unknown."""
        return self if self.sha256 else replace(self, sha256=weights_sha256(model))


def thresholds_from_meta(meta: dict, source: str = "checkpoint") -> Thresholds:
    """`meta["thresholds"]` ({"display": d, "csa": c, "chosen_on": text}) as `Thresholds`; the
    defaults when absent. Scores outside (0, 1] or a CSA threshold below the display one are refused."""
    t = meta.get("thresholds") if isinstance(meta, dict) else None
    if t is None:
        return Thresholds()
    try:
        display, csa = float(t["display"]), float(t["csa"])
        chosen_on = str(t.get("chosen_on", "the checkpoint"))
    except (TypeError, KeyError, ValueError):
        raise StreamsegError(f"{source}: its score thresholds are not readable (expected display and csa)") from None
    if not (0.0 < display <= 1.0 and display <= csa <= 1.0):
        raise StreamsegError(f"{source}: its score thresholds are out of range (display {display:g}, csa {csa:g}; "
                             "0 < display <= csa <= 1)")
    return Thresholds(display, csa, chosen_on)


def weights_sha256(model: nn.Module) -> str:
    """sha256 over the state dict's names and tensor bytes: the identity of a model never saved."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class PaperMaskPredictor(nn.Sequential):
    """Table I after the 4 convs: N × (ConvTranspose 2×2 stride 2, ReLU), then 1×1 conv to logits."""

    def __init__(self, in_channels: int, width: int, num_classes: int, num_upsamples: int):
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        c = in_channels
        for i in range(num_upsamples):
            name = "conv5_mask" if i == 0 else f"conv5_mask_{i + 1}"  # first name matches torchvision
            layers[name] = nn.ConvTranspose2d(c, width, 2, 2, 0)
            layers[f"relu{i + 1}"] = nn.ReLU(inplace=True)
            c = width
        layers["mask_fcn_logits"] = nn.Conv2d(c, num_classes, 1, 1, 0)
        super().__init__(layers)
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")
            elif "bias" in name:
                nn.init.constant_(param, 0)


class LetterboxedTransform(GeneralizedRCNNTransform):
    """Normalise and batch only: inputs are already letterboxed, and masks stay as RoI masks."""

    def resize(self, image, target=None):
        return image, target

    def postprocess(self, result, image_shapes, original_image_sizes):
        return result


def _norm_layer(norm: str):
    if norm == "batch":
        return nn.BatchNorm2d
    if norm == "group":
        return partial(_group_norm, 32)
    from torchvision.ops.misc import FrozenBatchNorm2d

    return FrozenBatchNorm2d


def _group_norm(groups: int, channels: int):
    return nn.GroupNorm(min(groups, channels), channels)


# MobileNetV2's features: the last block of each stride (4, 8, 16, 32; block 18, the 1x1 conv to
# 1280 channels, is ImageNet's classifier input and is left out).
MOBILENET_V2_TAPS = (3, 6, 13, 17)
# Backbones with ImageNet weights that `--pretrained` loads through torchvision's weights API.
PRETRAINED = {"mobilenet_v2": tv_models.MobileNet_V2_Weights.IMAGENET1K_V1}


def pretrained_weights(backbone: str):
    """(torchvision weights enum, its file in torch's cache) for `backbone`, without downloading:
    a missing file is one clear line that says where to put it."""
    if backbone not in PRETRAINED:
        raise StreamsegError(f"no ImageNet weights for backbone {backbone!r}: --pretrained needs one of "
                             f"{', '.join(PRETRAINED)}")
    weights = PRETRAINED[backbone]
    file = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not file.is_file():
        raise StreamsegError(f"{file}: ImageNet weights not found; copy torchvision's {file.name} there "
                             "(or set TORCH_HOME): README, 'Pretrained weights', says where to get it")
    return weights, file


def _body(cfg: ModelConfig, norm_layer, weights) -> tuple[nn.Module, dict[str, str], list[int]]:
    """(feature extractor, its layers to tap -> FPN level names, their channels)."""
    if cfg.backbone == "mobilenet_v2":
        features = tv_models.mobilenet_v2(weights=weights, norm_layer=norm_layer).features[:MOBILENET_V2_TAPS[-1] + 1]
        taps = MOBILENET_V2_TAPS
    elif cfg.backbone == "mobilenet_v3_large":
        features = tv_models.mobilenet_v3_large(weights=None, norm_layer=norm_layer).features
        stages = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]  # 0, 2, 4, 7, 13
        taps = stages[1:5]
    else:
        body = getattr(tv_models, cfg.backbone)(weights=None, norm_layer=norm_layer)
        base = 64 if cfg.backbone == "resnet18" else 256
        return body, {f"layer{k}": str(k - 1) for k in (1, 2, 3, 4)}, [base * 2 ** (k - 1) for k in (1, 2, 3, 4)]
    return features, {str(k): str(v) for v, k in enumerate(taps)}, [features[k].out_channels for k in taps]


def _backbone(cfg: ModelConfig, weights=None) -> nn.Module:
    """Backbone + FPN returning 5 maps at strides 4, 8, 16, 32 (+ max-pool 64), one anchor size each.

    ResNets as torchvision's `resnet_fpn_backbone`; the MobileNets tap their stride-4..32 stages the
    same way (torchvision's own MobileNet detector uses only strides 16/32, too coarse for a
    nerve ~50 px across). `fpn_channels` may be narrowed for compact models (paper: 256).
    `weights`: torchvision ImageNet weights for the body (training from `--pretrained` only).
    """
    norm_layer = _norm_layer(cfg.norm)
    body, return_layers, in_channels = _body(cfg, norm_layer, weights)
    fpn_norm = None if cfg.norm == "frozen" else (norm_layer if cfg.norm == "group" else None)
    return BackboneWithFPN(body, return_layers, in_channels, cfg.fpn_channels, extra_blocks=LastLevelMaxPool(),
                           norm_layer=fpn_norm)


def freeze_blocks(model: nn.Module, blocks: int) -> int:
    """Stop training the first `blocks` children of the backbone's body (pretrained low-level
    features; no gradient then flows through them, which also saves their backward pass).
    Returns the number of tensors frozen."""
    frozen = 0
    for i, child in enumerate(model.backbone.body.children()):
        if i >= blocks:
            break
        for p in child.parameters():
            p.requires_grad_(False)
            frozen += 1
    return frozen


def build_model(config: ModelConfig | None = None, *, backbone_weights=None, **overrides) -> MaskRCNN:
    """The paper's Mask R-CNN as configured by `config` (or keyword overrides of the defaults).
    The module carries no identity: keep the config beside it (or a `ModelInfo`).
    `backbone_weights`: torchvision ImageNet weights for the backbone (see `pretrained_weights`).

    >>> m = build_model(backbone="resnet18", mask_head="56")
    """
    if config is None:
        config = ModelConfig(**overrides)
    elif overrides:
        config = ModelConfig.from_dict({**config.to_dict(), **overrides})
    cfg = config
    backbone = _backbone(cfg, backbone_weights)
    sizes = tuple((s,) for s in cfg.anchor_sizes)  # one size per FPN level, as the paper
    anchors = AnchorGenerator(sizes=sizes, aspect_ratios=(cfg.aspect_ratios,) * 5)
    names = ["0", "1", "2", "3"]
    box_pool = MultiScaleRoIAlign(featmap_names=names, output_size=7, sampling_ratio=2)
    mask_pool = MultiScaleRoIAlign(featmap_names=names, output_size=14, sampling_ratio=2)
    c = backbone.out_channels
    w = cfg.mask_head_width
    model = MaskRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        box_roi_pool=box_pool,
        box_head=TwoMLPHead(c * 7 * 7, cfg.box_head_width),
        box_predictor=FastRCNNPredictor(cfg.box_head_width, cfg.num_classes),
        box_batch_size_per_image=cfg.box_batch_size_per_image,
        box_fg_iou_thresh=cfg.box_iou,
        box_bg_iou_thresh=cfg.box_iou,
        box_score_thresh=cfg.box_score_thresh,
        box_detections_per_img=cfg.max_detections,
        mask_roi_pool=mask_pool,
        mask_head=MaskRCNNHeads(c, (w, w, w, w), 1),
        mask_predictor=PaperMaskPredictor(w, w, cfg.num_classes, MaskHead(cfg.mask_head).upsamplings),
    )
    model.transform = LetterboxedTransform(cfg.image_size, cfg.image_size, IMAGENET_MEAN, IMAGENET_STD)
    return model


# Layers whose weights are class- or resolution-specific: left fresh when initialising from a file,
# as the paper did ("all layers except the input layers of the network heads").
FRESH_PREFIXES = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.")


def init_from_file(model: nn.Module, path: str) -> dict:
    """Initialise from a user-supplied state dict (torchvision COCO Mask R-CNN, or an ImageNet ResNet).

    Loads every tensor whose name (after mapping) and shape match; heads' predictors stay fresh.
    Returns counts of loaded / skipped tensors. Never downloads anything.
    """
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise StreamsegError(f"{path}: weights file not found") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is one clear line
        raise StreamsegError(f"{path}: not a readable PyTorch state dict ({type(e).__name__})") from None
    # a streamseg checkpoint (fine-tuning, e.g. the bundled model on your own scans): same classes,
    # so its predictors are kept too
    own_ckpt = isinstance(sd, dict) and sd.get("format") == "streamseg-checkpoint"
    lineage = _lineage(sd) if own_ckpt else None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise StreamsegError(f"{path}: not a state dict")
    own = model.state_dict()
    is_imagenet_resnet = any(k.startswith("layer1.") for k in sd) and "fc.weight" in sd
    is_imagenet_mobilenet = any(k.startswith("features.") for k in sd) and any(k.startswith("classifier.") for k in sd)
    loaded, skipped = {}, []
    for k, v in sd.items():
        name = f"backbone.body.{k}" if is_imagenet_resnet else k
        if is_imagenet_mobilenet:
            name = "backbone.body." + k[len("features."):] if k.startswith("features.") else k
        if name.startswith(FRESH_PREFIXES) and not own_ckpt:
            skipped.append(name)
        elif name in own and own[name].shape == v.shape:
            loaded[name] = v.float() if v.is_floating_point() else v
        else:
            skipped.append(name)
    if not loaded:
        raise StreamsegError(f"{path}: no tensor matches this model's {len(own)} (names or shapes differ)")
    model.load_state_dict(loaded, strict=False)
    info = {"loaded": len(loaded), "skipped": len(skipped), "total_model": len(own)}
    return {**info, "lineage": lineage} if lineage else info


def _lineage(blob: dict) -> dict | None:
    """What a streamseg checkpoint was trained on and from which weights (its own record), so a model
    initialised from it records the whole chain, e.g. ImageNet -> usgra-seg -> median nerve."""
    meta = blob.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("initial_weights"), dict):
        return None
    data = meta.get("data")
    return {"data": data.get("source") if isinstance(data, dict) else None, "initial_weights": meta["initial_weights"]}
