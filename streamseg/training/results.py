"""What `streamseg eval` returns, as types: the scores of a set of predictions (`EvalScores`), what a
user is shown (`UserView`), and the report of a labelled folder (`EvalReport`) or of a nerve-free
one (`NerveFreeReport`). `to_dict()` is the JSON `eval --json` writes; its keys and their order are
what users read, so they stay as they are."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .metrics import BlandAltman, FalseDetections, ImageResult, OperatingPoint, PaperScores, ReliabilityBin

CSA_SCANS = "correct at the display threshold"  # the scans the CSA agreement is computed on


@dataclass
class EvalScores:
    """The paper's metrics (`paper`), box and mask AP, the top-1 Dice mean and the rule they were
    scored with; with `mm_per_px`, the area errors in mm² too (None where the px² value is)."""

    paper: PaperScores
    map: float  # box AP at `iou_thresh`
    map_50: float
    map_75: float
    map_50_95: float
    mask_map_50: float
    mask_map_75: float
    mask_map_50_95: float
    top1_dice_mean: float | None
    conf_thresh: float
    iou_thresh: float
    fn_rule: str
    mm_per_px: float | None = None
    area_error_mean_mm2: float | None = None
    area_abs_error_median_mm2: float | None = None

    def to_dict(self) -> dict:
        d = {**self.paper.to_dict(), "map": self.map, "map_50": self.map_50, "map_75": self.map_75,
             "map_50_95": self.map_50_95, "mask_map_50": self.mask_map_50, "mask_map_75": self.mask_map_75,
             "mask_map_50_95": self.mask_map_50_95, "top1_dice_mean": self.top1_dice_mean,
             "conf_thresh": self.conf_thresh, "iou_thresh": self.iou_thresh, "fn_rule": self.fn_rule}
        if self.mm_per_px:
            d["mm_per_px"] = self.mm_per_px
            for k, v in (("area_error_mean_mm2", self.area_error_mean_mm2),
                         ("area_abs_error_median_mm2", self.area_abs_error_median_mm2)):
                if v is not None:
                    d[k] = v
        return d


@dataclass
class CsaAgreement:
    """Bland–Altman of the shown outline's area against the expert's on the correct scans, in px²
    and, with a pixel spacing, in mm²."""

    px2: BlandAltman
    mm2: BlandAltman | None = None

    def to_dict(self) -> dict:
        d = {"scans": CSA_SCANS, "px2": self.px2.to_dict()}
        if self.mm2 is not None:
            d["mm2"] = self.mm2.to_dict()
        return d


@dataclass
class UserView:
    """What a user reads: the operating point at the display threshold, the reliability of a top
    score, per-patient results and the CSA agreement."""

    operating_point: OperatingPoint
    reliability: list[ReliabilityBin]
    per_patient: dict[str, PaperScores]
    csa_agreement: CsaAgreement

    def to_dict(self) -> dict:
        return {"operating_point": self.operating_point.to_dict(),
                "reliability": [b.to_dict() for b in self.reliability],
                "per_patient": {p: s.to_dict() for p, s in self.per_patient.items()},
                "csa_agreement": self.csa_agreement.to_dict()}


@dataclass
class EvalReport:
    """`streamseg eval` on scans with masks: what was evaluated, how it scored, per image."""

    scores: EvalScores
    view: UserView
    model: str
    data: str
    box: str
    subset: str  # "train" | "val" | "test" of a split, or "all"
    per_image: list[ImageResult] = field(default_factory=list)

    def summary(self) -> dict:
        return {**self.scores.to_dict(), **self.view.to_dict(),
                "model": self.model, "data": self.data, "box": self.box, "subset": self.subset}

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "per_image": [vars(r) for r in self.per_image]}


@dataclass
class NerveFreeReport:
    """`streamseg eval` on nerve-free images: the false detections, and each image's top detection's
    (score, confidence)."""

    model: str
    data: str
    subset: str
    false_detections: FalseDetections
    images: list[Path] = field(default_factory=list)
    tops: list[tuple[float, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"summary": {"kind": "nerve-free", "model": self.model, "data": self.data, "subset": self.subset,
                            "false_detections": self.false_detections.to_dict()},
                "per_image": [{"image": str(p), "top_score": s, "top_confidence": c}
                              for p, (s, c) in zip(self.images, self.tops)]}
