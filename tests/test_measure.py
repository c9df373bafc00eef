"""CSA from masks of known geometry drawn on a real ultrasound frame, and the stabiliser."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from streamseg.analysis.measure import Stabiliser, measure

MARK = (255, 0, 255)  # magenta: absent from the frame (checked below); its UI markers are green


def ellipse_mask_on_frame(sample_dir, centre, axes, angle):
    """Paint an ellipse (every pixel whose centre lies inside it: area pi*a*b px² up to raster
    noise) onto a real frame, then recover its mask from the painted pixels."""
    frame = cv2.imread(str(sample_dir / "images" / "Pz089-001.png"), cv2.IMREAD_COLOR)
    assert frame is not None and not np.all(frame == MARK, axis=2).any()
    (cx, cy), (a, b), t = centre, axes, math.radians(angle)
    yy, xx = np.mgrid[: frame.shape[0], : frame.shape[1]].astype(float)
    u = (xx - cx) * math.cos(t) + (yy - cy) * math.sin(t)
    v = -(xx - cx) * math.sin(t) + (yy - cy) * math.cos(t)
    frame[(u / a) ** 2 + (v / b) ** 2 <= 1.0] = MARK
    return np.all(frame == MARK, axis=2)


@pytest.mark.parametrize("axes_px,angle,mm_per_px", [((40, 25), 0, 0.05), ((60, 22), 30, 0.035), ((18, 15), 75, 0.08)])
def test_ellipse_of_known_mm2_measures_within_1pct(sample_dir, axes_px, angle, mm_per_px):
    mask = ellipse_mask_on_frame(sample_dir, (300, 230), axes_px, angle)
    a, b = axes_px
    truth_mm2 = math.pi * a * b * mm_per_px**2
    m = measure(mask, mm_per_px)
    assert m is not None
    assert m.csa_mm2 == pytest.approx(truth_mm2, rel=0.01)
    assert m.area_px == pytest.approx(math.pi * a * b, rel=0.01)
    assert m.major_axis_px == pytest.approx(2 * a, rel=0.03)
    assert m.minor_axis_px == pytest.approx(2 * b, rel=0.05)
    assert m.flattening == pytest.approx(a / b, rel=0.06)
    truth_perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))  # Ramanujan
    assert m.perimeter_mm == pytest.approx(truth_perimeter * mm_per_px, rel=0.08)


def test_circle_is_round(sample_dir):
    m = measure(ellipse_mask_on_frame(sample_dir, (250, 200), (50, 50), 0), 0.05)
    assert m.flattening == pytest.approx(1.0, abs=0.03)
    assert 0.85 < m.circularity <= 1.05


def test_uncalibrated_never_gives_mm(sample_dir):
    m = measure(ellipse_mask_on_frame(sample_dir, (300, 230), (40, 25), 0), None)
    assert m.csa_mm2 is None and m.perimeter_mm is None
    assert m.area_px == pytest.approx(math.pi * 40 * 25, rel=0.01)
    s = Stabiliser(window=3, confident=0.9)
    s.update(0.99, m)
    assert m.csa_mm2_stable is None and m.area_px_stable == m.area_px


def test_empty_mask_is_no_measurement():
    assert measure(np.zeros((64, 64), bool), 0.1) is None


def test_stabiliser_is_a_running_median_of_confident_frames(sample_dir):
    s = Stabiliser(window=3, confident=0.9)
    base = ellipse_mask_on_frame(sample_dir, (300, 230), (30, 20), 0)
    areas = []
    for score, dilate in [(0.95, 0), (0.97, 1), (0.3, 12), (0.99, 2), (0.96, 15)]:
        mask = cv2.dilate(base.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=dilate).astype(bool) if dilate else base
        m = s.update(score, measure(mask, 0.1))
        if score >= 0.9:
            areas.append(m.csa_mm2)
        assert m.csa_mm2_stable == pytest.approx(float(np.median(areas[-3:])))
    # the 0.3-score frame (a big outlier) never entered the window; a single spike does not move the median far
    assert m.csa_mm2_stable < m.csa_mm2
