"""Tracking (streamseg/analysis/tracking.py): the window policy on synthetic detections, windows mapping
back to full-frame pixels on real scans with the bundled model (torch and onnxruntime), and
`file` with tracking writing the same frames as --no-track."""
from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from streamseg.letterbox import Letterbox
from streamseg.analysis.tracking import Tracker, tracked
from streamseg.types import NERVE_SCORE, Detection, Inference

H, W = 468, 606  # the sample scans' size
SCALE = 512 / W
SIZES = (192, 256, 320)  # several window sizes: the policy picks among them (the default is one, letterbox.ROI_SIZES)


def det(box, score=0.99, shape=(H, W)) -> Detection:
    m = np.zeros(shape, bool)
    x1, y1, x2, y2 = map(int, box)
    m[y1:y2, x1:x2] = True
    return Detection(box=np.array(box, np.float32), score=score, mask=m, mask_score=1.0)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


# --- the policy ---

def test_full_frame_until_a_confident_detection():
    t = Tracker(sizes=SIZES)
    assert t.roi(H, W) is None
    t.update([], None)
    assert t.roi(H, W) is None
    t.update([det((280, 200, 340, 240), score=NERVE_SCORE - 0.01)], None)
    assert t.roi(H, W) is None


def test_window_is_a_square_around_the_nerve_at_the_smallest_size_that_holds_it():
    t = Tracker(sizes=SIZES)
    box = (280, 200, 340, 240)  # 60 px wide: 1.5 x 60 x scale = 76 model px -> the smallest input
    t.update([det(box)], None)
    x0, y0, x1, y1 = t.roi(H, W)
    assert x1 - x0 == y1 - y0 == int(min(SIZES) / SCALE)
    assert x0 <= 280 and y0 <= 200 and x1 >= 340 and y1 >= 240
    assert abs((x0 + x1) / 2 - 310) <= 1 and abs((y0 + y1) / 2 - 220) <= 1
    assert Letterbox.window((x0, y0, x1, y1), H, W, 512, SIZES).size == min(SIZES)


def test_window_at_the_border_is_shifted_inside_the_frame_not_shrunk():
    t = Tracker(sizes=SIZES)
    t.update([det((0, 430, 50, 468))], None)  # bottom-left corner
    x0, y0, x1, y1 = t.roi(H, W)
    assert x0 == 0 and y1 == H and x1 - x0 == y1 - y0 == int(min(SIZES) / SCALE)


def test_a_long_nerve_gets_the_largest_window_and_a_too_long_one_the_full_frame():
    t = Tracker(sizes=SIZES)
    t.update([det((50, 50, 50 + 280, 100))], None)  # 280 px: 1.5x needs 355 model px > 320; 1.25x fits 320
    x0, y0, x1, y1 = t.roi(H, W)
    assert x1 - x0 == int(320 / SCALE)
    t.update([det((50, 50, 50 + 400, 100))], None)  # 1.25 x 400 x scale = 422 > 320
    assert t.roi(H, W) is None


def test_lost_in_the_window_means_full_frame_next_and_a_recheck_every_n_frames():
    t = Tracker(sizes=SIZES, recheck=4)
    t.update([det((280, 200, 340, 240))], None)
    rois = []
    for _ in range(6):
        roi = t.roi(H, W)
        rois.append(roi)
        assert t.update([det((280, 200, 340, 240))], roi)
    assert [r is None for r in rois] == [False, False, False, True, False, False]
    roi = t.roi(H, W)
    assert not t.update([det((280, 200, 340, 240), score=0.5)], roi)
    assert t.roi(H, W) is None
    assert not t.update([], t.roi(H, W) or (0, 0, 10, 10))


def test_tracked_reruns_the_full_frame_at_once_when_the_window_loses_the_nerve():
    calls = []
    answers = iter([[det((280, 200, 340, 240))], [det((280, 200, 340, 240))], [], [det((281, 200, 341, 240))]])

    def infer(image, roi=None):
        calls.append(roi)
        return Inference(next(answers), {"model": 0.01})

    run = tracked(infer, Tracker(sizes=SIZES))
    img = np.zeros((H, W, 3), np.uint8)
    s1 = run(img).stages  # full frame
    s2 = run(img).stages  # window, kept
    out = run(img)  # window finds nothing -> the same frame on the full frame
    d3, s3 = out.detections, out.stages
    assert calls[0] is None and calls[1] is not None and calls[2] is not None and calls[3] is None
    assert "track" not in s1 and "track" in s2 and "track" not in s3
    assert s3["model"] == pytest.approx(0.02) and d3[0].box[0] == 281


def test_windows_back_off_while_they_keep_losing_the_nerve():
    """Regression: with the nerve's scores at the threshold (confident on the full frame, just under
    it in the window) every frame ran a window and then the full frame again: two model calls a
    frame, more than full frames alone. Lost windows now back off (1, 2, 4, ... 16 full frames); a
    window that holds resumes tracking."""
    calls = []

    def infer(image, roi=None):
        calls.append(roi)
        return Inference([det((280, 200, 340, 240), score=0.9 if roi else 0.999)], {"model": 0.01})

    run = tracked(infer, Tracker(sizes=SIZES, threshold=0.95))
    img = np.zeros((H, W, 3), np.uint8)
    for _ in range(100):
        run(img)
    windows = sum(r is not None for r in calls)
    assert len(calls) == 100 + windows and windows <= 10, windows  # was 99 windows: 199 model calls
    waits = [i for i, r in enumerate(calls) if r is not None]
    assert waits[:3] == [1, 4, 8]  # full frame 0; window 1 lost (+ full); 1 full; window; 2 full; ...

    t = Tracker(sizes=SIZES)
    t.update([det((280, 200, 340, 240))], None)
    waited = []
    for _ in range(4):  # windows lost four times in a row, the nerve found again on the full frame
        full = 0
        while (roi := t.roi(H, W)) is None:
            full += 1
            t.update([det((280, 200, 340, 240))], None)
        waited.append(full)
        assert not t.update([], roi)
        t.update([det((280, 200, 340, 240))], None)
    assert waited == [0, 1, 2, 4]
    assert [t.roi(H, W) is None for _ in range(9)] == [True] * 8 + [False]
    assert t.update([det((280, 200, 340, 240))], (0, 0, 200, 200))  # a window holds: no more waiting
    assert t.roi(H, W) is not None and t.backoff == 0


def test_window_boxes_map_back_to_the_frame():
    w = Letterbox.window((100, 50, 100 + 189, 50 + 189), H, W, 512, (160, 192))
    assert w.size == 160 and w.scale == pytest.approx(SCALE)
    got = w.boxes_to_source(np.array([[10 * SCALE, 20 * SCALE, 60 * SCALE, 80 * SCALE]]))
    assert np.allclose(got, [[110, 70, 160, 130]], atol=1e-3)
    with pytest.raises(ValueError):
        Letterbox.window((0, 0, 500, 400), H, W, 512, SIZES)  # needs a 423 px input


# --- the bundled model on real scans ---

@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def backend(request, engines_dir):
    from streamseg import backends

    return backends.load(request.param, engines_dir=engines_dir, max_detections=1)


SHOWN = 0.9  # a display threshold under the sample scans' confidences (score x mask score: 0.92-0.95)


def _check_window(backend, image):
    full = backend.infer(image).detections
    assert full and full[0].confidence >= SHOWN
    t = Tracker(image_size=backend.image_size, sizes=backend.roi_sizes, threshold=SHOWN)
    t.update(full, None)
    roi = t.roi(*image.shape[:2])
    assert roi is not None
    win = backend.infer(image, roi=roi).detections
    assert win and win[0].mask.shape == image.shape[:2]
    x0, y0, x1, y1 = roi
    assert not win[0].mask[:y0].any() and not win[0].mask[y1:].any()
    assert not win[0].mask[:, :x0].any() and not win[0].mask[:, x1:].any()
    assert dice(win[0].mask, full[0].mask) >= 0.9
    b, f = win[0].box, full[0].box  # full-frame pixels: the same place, not window pixels
    side = max(f[2] - f[0], f[3] - f[1])  # Pz065-001's flat nerve is 192 px long; its far end moved 14 px
    assert np.abs(b - f).max() <= max(10, 0.1 * side), (b, f)
    return roi


@pytest.mark.parametrize("name", ["Pz065-001", "Pz089-001"])
def test_window_detection_matches_the_full_frame(backend, sample_dir, name):
    _check_window(backend, cv2.imread(str(sample_dir / "images" / f"{name}.png")))


def test_window_at_the_frame_border(backend, sample_dir):
    """The scan cut just above the nerve, with dark rows added below so the frame is taller than a
    window (full width, so the same scale): its window is shifted down to lie flush with the top
    edge, and still finds the nerve where the full frame does."""
    image = cv2.imread(str(sample_dir / "images" / "Pz065-001.png"))
    full = backend.infer(image).detections
    top = image[max(0, int(full[0].box[1]) - 6):]
    cut = np.ascontiguousarray(np.vstack([top, np.zeros((image.shape[1] - 20 - top.shape[0], image.shape[1], 3), np.uint8)]))
    x0, y0, x1, y1 = _check_window(backend, cut)
    assert y0 == 0 and y1 < cut.shape[0]


def test_file_with_tracking_writes_the_same_frames_as_without(tmp_path, sample_dir, monkeypatch):
    from streamseg.app.cli import app

    monkeypatch.chdir(tmp_path)
    rows = {}
    for flag in ("--track", "--no-track"):
        out = tmp_path / f"{flag[2:]}.csv"
        r = CliRunner().invoke(app, ["file", str(sample_dir / "demo.mp4"), "--max-frames", "20", "--backend", "torch",
                                     "--csv", str(out), flag])
        assert r.exit_code == 0, r.output
        with open(out, newline="") as f:
            rows[flag] = list(csv.DictReader(f))
    assert [r["frame"] for r in rows["--track"]] == [r["frame"] for r in rows["--no-track"]] == [str(i) for i in range(20)]


def test_file_tracks_the_demo_clip(sample_dir):
    """The runner's per-frame infer is tracked by default: on the demo clip most frames run a window
    once the nerve's confidence reaches the tracking threshold. That is the display threshold, here
    0.85, under every demo frame's confidence (score x mask score, 0.87-0.95); the bundled model's
    own (0.916) is reached on 316 of its 350 frames."""
    import threading

    from streamseg import backends
    from streamseg.app.runner import Options, _infer
    from streamseg.inputs.sources import open_source
    from streamseg.types import Thresholds

    be = backends.load("torch", max_detections=1)
    th = Thresholds(display=0.85, csa=0.85, chosen_on="this test")
    infer = _infer(Options(input=str(sample_dir / "demo.mp4"), live=False, summary=False), th, be)
    src = open_source(str(sample_dir / "demo.mp4"), live=False)
    flags = []
    for i, frame in enumerate(src.frames(threading.Event())):
        if i >= 6:
            break
        flags.append("track" in infer(frame.image).stages)
    src.close()
    assert flags[0] is False and sum(flags) >= 4, flags
    assert _infer(Options(input="x.mp4", live=False, summary=False, track=False), be.thresholds, be) == be.infer


def test_a_window_keeps_window_proposals_rpn_proposals_and_the_full_frame_all(sample_dir):
    """SplitBackend.window_proposals caps the RoIs a window hands the heads (the best, in NMS order);
    the full frame keeps rpn_post_nms_top_n_test."""
    from streamseg import backends

    be = backends.load("torch", split=True, max_detections=1)
    seen = []
    heads = be.heads
    be.heads = lambda feats, props, sizes: (seen.append(len(props[0])), heads(feats, props, sizes))[1]
    image = cv2.imread(str(sample_dir / "images" / "Pz089-001.png"))
    full = be.infer(image).detections
    t = Tracker(image_size=be.image_size, sizes=be.roi_sizes, threshold=SHOWN)
    t.update(full, None)
    roi = t.roi(*image.shape[:2])
    be.window_proposals = 0
    all_ = be.infer(image, roi=roi).detections
    be.window_proposals = 25
    few = be.infer(image, roi=roi).detections
    assert seen[0] == seen[1] == be.config.rpn_post_nms_top_n_test and seen[2] == 25
    assert few[0].score >= NERVE_SCORE and dice(few[0].mask, all_[0].mask) >= 0.95
