"""Every backend gives eager FP32 torch's result on real images: same detection count, mask Dice
>= 0.99 and box IoU >= 0.99 (FP16: >= 0.98). onnxruntime is checked on CPU here; the CUDA
backends (compiled, onnxruntime-gpu, TensorRT) run the same checks where a GPU is present
(benchmarks/gpu_check.sh) and skip with their reason elsewhere."""
from __future__ import annotations

import cv2
import pytest
import torch

from streamseg import backends
from streamseg.backends.parity import box_iou, compare
from streamseg.training.metrics import PaperScores


@pytest.fixture(scope="module")
def parity_images(sample_dir):
    from conftest import SHARED

    paths = sorted((sample_dir / "images").glob("*.png"))
    extra = SHARED / "median-nerve-univpm" / "images"
    if extra.is_dir():
        paths += sorted(extra.glob("*.png"))[:2]
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]


@pytest.fixture(scope="module")
def eager(calibrated_checkpoint):
    return backends.load("torch", calibrated_checkpoint)


@pytest.fixture(scope="module")
def reference(eager, parity_images):
    return [eager.infer(im).detections for im in parity_images]


def test_reference_has_detections(reference):
    assert all(len(r) == 2 for r in reference), "BN calibration should leave every frame its 2 detections"


def test_split_eager_is_the_torch_backend(calibrated_checkpoint, parity_images, reference):
    """The split path (dense part + torchvision's proposal/heads code) reproduces the whole model."""
    from streamseg.backends.split import SplitBackend

    split = backends.load("torch", calibrated_checkpoint, split=True)
    assert isinstance(split, SplitBackend)
    for im, ref in list(zip(parity_images, reference))[:3]:
        out = split.infer(im)
        d, iou = compare(ref, out.detections)
        assert d == 1.0 and iou > 0.9999
        assert set(out.stages) >= {"preprocess", "dense", "proposals", "heads", "paste"}


def test_onnxruntime_cpu_matches_eager(calibrated_checkpoint, engines_dir, parity_images, reference):
    ort = backends.load("onnxruntime", calibrated_checkpoint, engines_dir=engines_dir)
    worst_d, worst_iou = 1.0, 1.0
    for im, ref in zip(parity_images, reference):
        got = ort.infer(im).detections
        d, iou = compare(ref, got)
        worst_d, worst_iou = min(worst_d, d), min(worst_iou, iou)
        assert max(abs(a.score - b.score) for a, b in zip(sorted(ref, key=lambda x: x.score),
                                                           sorted(got, key=lambda x: x.score))) < 1e-3
    assert worst_d >= 0.99 and worst_iou >= 0.99, (worst_d, worst_iou)


CUDA_CASES = [(n, p) for n in ("torch", "compiled", "onnxruntime", "tensorrt") for p in ("fp32", "fp16")]


@pytest.mark.parametrize("name,precision", CUDA_CASES, ids=[f"{n}-{p}" for n, p in CUDA_CASES])
def test_cuda_backend_matches_eager(name, precision, calibrated_checkpoint, engines_dir, parity_images, reference):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine: run benchmarks/gpu_check.sh on one")
    if name not in backends.available("cuda"):
        pytest.skip(f"{name} is not available with CUDA here (TensorRT / onnxruntime-gpu not installed?)")
    be = backends.load(name, calibrated_checkpoint, device="cuda", precision=precision, engines_dir=engines_dir)
    floor = 0.98 if precision == "fp16" else 0.99
    worst = [1.0, 1.0]
    for im, ref in zip(parity_images, reference):
        d, iou = compare(ref, be.infer(im).detections)
        worst = [min(worst[0], d), min(worst[1], iou)]
    print(f"parity {name}/{precision}: min Dice {worst[0]:.4f}, min box IoU {worst[1]:.4f}")
    assert worst[0] >= floor and worst[1] >= floor, worst


def test_infer_gives_the_detections_and_the_stages_of_that_call(eager, calibrated_checkpoint, parity_images, reference):
    """The Backend contract: infer(image) -> Inference(the detections, seconds per stage); the
    backend holds its model's identity (ModelInfo), not the module."""
    from streamseg.files import file_sha256

    out = eager.infer(parity_images[0])
    dets, stages = out.detections, out.stages
    d, iou = compare(reference[0], dets)
    assert d == 1.0 and iou == 1.0
    assert set(stages) >= {"preprocess", "model", "paste"} and all(v >= 0 for v in stages.values())
    assert eager.info.source == str(calibrated_checkpoint) and eager.info.sha256 == file_sha256(calibrated_checkpoint)
    assert eager.info.config is eager.config and eager.config.max_detections == 2


# --- the bundled model on the TEST patients of train/split.json: the fast CPU path scores as eager ---

@pytest.fixture(scope="module")
def test_scans(univpm_dir):
    from conftest import REPO
    from streamseg.training.dataset import load_pair, load_split, scan_folder, select

    samples = select(scan_folder(univpm_dir), load_split(REPO / "train" / "split.json")["test"])
    assert samples, "no test-patient scan in ../shared/data/median-nerve-univpm"
    return [(s, *load_pair(s)) for s in samples]


def _score(backend, scans) -> PaperScores:
    from streamseg.training.evaluate import score_predictions

    scores, _ = score_predictions([(s, img, gt, backend.infer(img).detections) for s, img, gt in scans])
    return scores.paper


@pytest.fixture(scope="module")
def eager_test_dets(test_scans):
    """Eager FP32's detections on each test scan (the reference)."""
    eager = backends.load("torch")
    return [eager.infer(img).detections for _s, img, _gt in test_scans]


@pytest.fixture(scope="module")
def eager_test_score(test_scans, eager_test_dets):
    from streamseg.training.evaluate import score_predictions

    scores, _ = score_predictions([(s, img, gt, d) for (s, img, gt), d in zip(test_scans, eager_test_dets)])
    return scores.paper


def _at_the_rules_edge(dets_per_scan, rule: float = 0.98, margin: float = 0.01) -> int:
    """Scans whose top detection scores within `margin` of the paper's confidence rule: there a
    0.005 change of score moves the scan between TP and FN."""
    return sum(1 for d in dets_per_scan if d and abs(d[0].score - rule) <= margin)


def test_onnxruntime_with_onnx_heads_scores_as_eager_on_test_patients(test_scans, eager_test_score, engines_dir):
    """The paper's rule (box IoU >= 0.7, confidence > 0.98): same TP/FP/FN, median Dice within 0.005."""
    fast = backends.load("onnxruntime", engines_dir=engines_dir, onnx_heads=True)
    assert fast.heads is not fast.model.roi_heads, "the RoI box/mask stacks should run in onnxruntime"
    got = _score(fast, test_scans)
    ref = eager_test_score
    print(f"eager {ref.tp}/{ref.fp}/{ref.fn} Dice {ref.dice_median:.4f}; "
          f"onnxruntime {got.tp}/{got.fp}/{got.fn} Dice {got.dice_median:.4f}")
    assert (got.tp, got.fp, got.fn) == (ref.tp, ref.fp, ref.fn)
    assert abs(got.dice_median - ref.dice_median) <= 0.005


def test_onnx_heads_match_torchvision_heads_with_and_without_proposals(calibrated_checkpoint, engines_dir,
                                                                        parity_images):
    """OrtHeads gives RoIHeads' detections for the same features and proposals, also for none."""
    from streamseg.backends.onnx_heads import OrtHeads

    ort = backends.load("onnxruntime", calibrated_checkpoint, engines_dir=engines_dir, onnx_heads=True)
    assert isinstance(ort.heads, OrtHeads)
    x, _ = backends.preprocess(parity_images[:1], ort.config.image_size)
    with torch.inference_mode():
        features, proposals, sizes = ort.proposals(x, ort.dense(x))
        for props in (proposals, [proposals[0][:0]]):
            ref, _ = ort.model.roi_heads(features, props, sizes)
            got, _ = ort.heads(features, props, sizes)
            assert len(got[0]["boxes"]) == len(ref[0]["boxes"]) == (len(props[0]) and 2)
            for k in ("boxes", "scores", "labels", "masks"):
                assert got[0][k].shape == ref[0][k].shape, k
                torch.testing.assert_close(got[0][k].float(), ref[0][k].float(), atol=1e-3, rtol=1e-3)




def test_the_default_cpu_path_scores_as_eager_on_test_patients(test_scans, eager_test_score, eager_test_dets,
                                                              engines_dir):
    """What `file` and `live` run by default on a CPU (backend auto -> onnxruntime, precision auto ->
    INT8 dense graph, tracking on): each test scan is shown twice, as two frames of a clip; the first
    runs on the full frame, the second on the window the tracker chose around a confident nerve.
    Scored with the paper's rule: on full frames each scan's top detection is eager FP32's (box IoU
    >= 0.8, score within 0.02), and TP/FP/FN are eager's but for scans whose eager score sits within
    0.01 of the rule's 0.98 (the bundled MobileNetV2 model, 2026-12-05: one such scan of 22 went from
    TP to FN, 18/2/2 against 19/2/1); the windows likewise against the full frames; median Dice
    within 0.005 of eager's for both. (The model before it gave exactly eager's counts, and its
    windows 18/0/4 against 17/1/4: scores well clear of 0.98.)"""
    from streamseg.analysis.tracking import Tracker, tracked

    fast = backends.load("auto", device="cpu", precision="auto", engines_dir=engines_dir)
    assert fast.name == "onnxruntime" and "int8" in fast.describe()
    fast.prepare_windows()
    full, windowed, n_windows = [], [], 0
    for s, img, gt in test_scans:
        # windows from a confidence (score x mask score) of 0.85: the TPs' run 0.9-0.95
        infer = tracked(fast.infer, Tracker(image_size=fast.image_size, sizes=fast.roi_sizes, threshold=0.85))
        full.append((s, img, gt, infer(img).detections))
        out = infer(img)
        n_windows += "track" in out.stages
        windowed.append((s, img, gt, out.detections))
    from streamseg.training.evaluate import score_predictions

    ref = eager_test_score
    for (_s, _img, _gt, dets), ref_dets in zip(full, eager_test_dets):
        assert bool(dets) == bool(ref_dets)  # the top detection (the one shown) is eager's
        # INT8 against FP32, bundled MobileNetV2 (2026-12-05): worst box IoU 0.86 (Pz065-001's long flat
        # nerve, its far end 15 px shorter), scores within 0.012
        assert not dets or (box_iou(dets[0].box, ref_dets[0].box) >= 0.8 and abs(dets[0].score - ref_dets[0].score) <= 0.02
                            and abs(dets[0].mask_score - ref_dets[0].mask_score) <= 0.02)
    assert n_windows >= ref.tp, "every confidently found nerve should be tracked on the next frame"
    for name, preds in (("full frame", full), ("window", windowed)):
        got = score_predictions(preds)[0].paper
        print(f"eager {ref.tp}/{ref.fp}/{ref.fn} Dice {ref.dice_median:.4f}; default path, {name}: "
              f"{got.tp}/{got.fp}/{got.fn} Dice {got.dice_median:.4f}")
        if name == "full frame":
            flips = (abs(got.tp - ref.tp) + abs(got.fp - ref.fp) + abs(got.fn - ref.fn)) / 2
            assert flips <= _at_the_rules_edge(eager_test_dets), (name, got, ref)
            full_score = got
        else:  # the same allowance against the full frames' scores (2026-12-05: 17/1/4 against 18/2/2,
            # one TP and one FP of the full frames scoring under 0.98 in their windows)
            flips = (abs(got.tp - full_score.tp) + abs(got.fp - full_score.fp) + abs(got.fn - full_score.fn)) / 2
            assert flips <= _at_the_rules_edge([d for *_x, d in full]), (name, got, full_score)
        assert abs(got.dice_median - ref.dice_median) <= 0.005, name


def test_auto_on_cpu_is_onnxruntime_with_onnx_heads(calibrated_checkpoint, engines_dir, monkeypatch):
    """`auto` on CPU opens the path the parity tests above pass: ONNX Runtime for the dense part and
    the RoI box/mask stacks (both head graphs built); STREAMSEG_ORT_HEADS=0 keeps torch's heads."""
    from streamseg.backends.onnx_heads import OrtHeads

    be = backends.load("auto", calibrated_checkpoint, device="cpu", engines_dir=engines_dir)
    assert be.name == "onnxruntime" and isinstance(be.heads, OrtHeads)
    assert sorted(p.name.split("-")[4] for p in engines_dir.glob(f"*-{be.info.sha256[:12]}-heads-*.onnx")) == ["box", "mask"]
    monkeypatch.setenv("STREAMSEG_ORT_HEADS", "0")
    be = backends.load("auto", calibrated_checkpoint, device="cpu", engines_dir=engines_dir)
    assert be.name == "onnxruntime" and be.heads is be.model.roi_heads
