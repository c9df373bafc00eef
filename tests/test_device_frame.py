"""The GPU-resident frame (issue 21), run here on CPU tensors: the letterbox made with torch ops
from the uploaded uint8 frame (`base.letterbox_tensor`) and the mask paste that brings back only
each box's bits (`base.paste_to_source`) give today's results: the same pixels as torchvision's
paste, the letterbox OpenCV's to a grey level (its own resize weights), and on the bundled
(trained) model the same detections on real scans."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from conftest import SHARED, shared_data
from streamseg import backends
from streamseg.backends.base import (frame_letterbox, letterbox_tensor, mask_scores, paste_to_source, postprocess,
                                     to_tensor)
from streamseg.backends.parity import compare
from streamseg.letterbox import ROI_SIZES, Letterbox


@pytest.fixture(scope="module")
def scans(sample_dir):
    shared = shared_data("median-nerve-univpm", needs="images") / "images"
    paths = sorted((sample_dir / "images").glob("*.png")) + sorted(shared.glob("*.png"))[::40]
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]


def _windows(image, box=None):
    """The full frame, and with `box` a 300 × 260 tracking window around it (as `tracking.Tracker.roi` asks)."""
    if box is None:
        return [None]
    h, w = image.shape[:2]
    cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
    x0, y0 = min(max(cx - 150, 0), w - 300), min(max(cy - 130, 0), h - 260)
    return [None, (x0, y0, x0 + 300, y0 + 260)]


def test_the_letterbox_on_the_device_is_opencvs_to_a_grey_level(scans):
    for image in scans:
        for roi in _windows(image, (200, 150, 260, 200)):
            lb = frame_letterbox(image, 512, roi, ROI_SIZES)
            ref = to_tensor(lb.image(image))[None]
            got = letterbox_tensor(image, lb, "cpu")
            assert got.shape == ref.shape == (1, 3, lb.size, lb.size) and got.dtype == torch.float32
            diff = (got - ref).abs() * 255
            assert diff.mean() < 0.2 and float(diff.max()) <= 1.0 + 1e-3, (roi, float(diff.mean()), float(diff.max()))
            h, w = lb.inner_hw
            assert not got[..., h:, :].any() and not got[..., :, w:].any()  # zero padding right and bottom
    grey16 = (scans[0][..., 0].astype(np.uint16) << 8)  # any input ensure_bgr takes: 16-bit grey
    lb = frame_letterbox(grey16, 512)
    assert torch.equal(letterbox_tensor(grey16, lb, "cpu"), letterbox_tensor(scans[0][..., [0, 0, 0]], lb, "cpu"))


def test_the_resize_weights_are_opencvs(scans):
    """Shrinking (INTER_AREA), enlarging (INTER_LINEAR), near 1:1 and a window crop."""
    image = scans[0]
    for size, roi in ((512, None), (1024, None), (600, None), (607, None), (384, (100, 80, 454, 400))):
        lb = Letterbox(*image.shape[:2], size, roi, 512 if roi else None)
        rows, cols = lb.resize_weights()
        x0, y0, x1, y1 = lb.crop
        crop = image[y0:y1, x0:x1].astype(np.float32)
        got = np.round(np.stack([rows @ crop[..., k] @ cols.T for k in range(3)], -1))
        h, w = lb.inner_hw
        diff = np.abs(got - lb.image(image)[:h, :w])
        assert diff.max() <= 1 and diff.mean() < 0.2, (size, roi, diff.mean())


def test_the_paste_brings_back_the_same_pixels_as_torchvisions():
    g = torch.Generator().manual_seed(0)
    h, w, m = 240, 320, 28
    boxes = np.array([[10.2, 20.7, 90.4, 60.1], [-15.0, -8.0, 40.0, 30.0], [300.0, 200.0, 360.0, 260.0],
                      [100.0, 100.0, 100.5, 100.4], [0.0, 0.0, 320.0, 240.0], [330.0, 10.0, 360.0, 40.0]],
                     dtype=np.float32)
    probs = torch.rand((len(boxes), 1, m, m), generator=g)
    probs[4] = 1.0  # a mask over the whole frame: its expanded box runs past every edge
    full = paste_masks_in_image(probs[:5], torch.from_numpy(boxes[:5]), (h, w), padding=1)[:, 0] > 0.5
    got = paste_to_source(probs, boxes, h, w)
    assert got.shape == (len(boxes), h, w) and got.dtype == bool
    assert np.array_equal(got[:5], full.numpy())
    assert got[4, 5:-5, 5:-5].all() and got[4, :, -1].any() and got[4, -1].any()  # clipped at the edges
    assert not got[5].any()  # a box outside the frame (torchvision: an error) pastes nothing
    assert paste_to_source(probs[:0], boxes[:0], h, w).shape == (0, h, w)


def test_a_mask_score_is_the_mean_probability_over_its_outline():
    probs = torch.zeros((3, 1, 4, 4))
    probs[0, 0, :2, :2] = torch.tensor([[0.9, 0.7], [0.6, 0.4]])  # outline 0.9, 0.7, 0.6; 0.4 is outside it
    probs[1] = 1.0
    got = mask_scores(probs)
    assert got.shape == (3,) and got[0] == pytest.approx(0.7333, abs=1e-4) and got[1] == 1.0
    assert got[2] == 0.0  # an empty mask: nothing to be sure of
    assert mask_scores(probs[:0]).shape == (0,)


def test_the_bundled_model_finds_the_same_nerves_from_the_device_letterbox(scans):
    """On trained weights: the top detection from the torch-made letterbox matches the OpenCV one
    (mask Dice >= 0.99, box IoU >= 0.99, score within 0.01) on real scans, full frames and windows.
    (torch's own bilinear resize, antialiased, gave min Dice 0.974 and box IoU 0.948 here.)"""
    be = backends.load("torch", precision="fp32", split=True)
    worst = [1.0, 1.0, 0.0]
    for image in scans:
        for roi in _windows(image, be.infer(image).detections[0].box):
            lb = frame_letterbox(image, be.image_size, roi, be.roi_sizes)
            ref_out, _ = be.forward(to_tensor(lb.image(image))[None])
            got_out, _ = be.forward(letterbox_tensor(image, lb, be.device))
            ref, got = (postprocess(o, [lb])[0][:1] for o in (ref_out, got_out))
            assert len(ref) == len(got) == 1, roi
            d, iou = compare(ref, got)
            worst = [min(worst[0], d), min(worst[1], iou), max(worst[2], abs(ref[0].score - got[0].score))]
    print(f"device letterbox vs OpenCV's over {len(scans)} scans: min Dice {worst[0]:.4f}, "
          f"min box IoU {worst[1]:.4f}, max score change {worst[2]:.4f}")
    assert worst[0] >= 0.99 and worst[1] >= 0.99 and worst[2] <= 0.01, worst
