"""Mirror test-time augmentation (streamseg.training.tta): the lever train/cv_predict.py --mirror measures."""
import numpy as np

from streamseg.training.tta import merge_views, mirror_merged, unmirror
from streamseg.types import Detection, Inference


def det(box, score, shape=(40, 60)) -> Detection:
    mask = np.zeros(shape, bool)
    x1, y1, x2, y2 = (int(v) for v in box)
    mask[y1:y2, x1:x2] = True
    return Detection(np.array(box, np.float32), score, mask, 1.0)


def test_unmirror_maps_box_and_mask_back_to_the_original_pixels():
    d = unmirror(det([5, 10, 15, 20], 0.9), width=60)
    assert d.box.tolist() == [45, 10, 55, 20] and d.score == 0.9
    assert d.mask[10:20, 45:55].all() and d.mask.sum() == 100


def test_views_that_agree_keep_their_mean_and_a_structure_one_view_missed_loses_half():
    nerve, other = det([10, 10, 30, 30], 0.99), det([40, 5, 55, 20], 0.97)
    seen = [det([11, 10, 31, 30], 0.95)]  # the mirror sees the nerve only
    out = merge_views([other, nerve], seen)
    assert [round(d.score, 3) for d in out] == [0.97, 0.485]
    assert out[0].box.tolist() == nerve.box.tolist()  # the original view's box and mask
    lone = merge_views([], [det([0, 0, 10, 10], 0.8)])
    assert len(lone) == 1 and lone[0].score == 0.4
    assert merge_views([], []) == []


def test_each_mirror_detection_pairs_with_one_original_only():
    a = [det([10, 10, 30, 30], 0.9), det([11, 10, 31, 30], 0.8)]
    out = merge_views(a, [det([10, 10, 30, 30], 0.7)])
    assert sorted(round(d.score, 3) for d in out) == [0.4, 0.8]


def test_mirror_merged_runs_the_model_on_the_mirrored_image():
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = 200  # left half bright: the mirror has it on the right
    calls = []

    def infer(img):
        calls.append(img)
        bright = np.flatnonzero(img[0, :, 0])
        return Inference([det([bright[0], 0, bright[-1] + 1, 40], 0.9)])

    out = mirror_merged(infer, image)
    assert len(calls) == 2 and (calls[1] == image[:, ::-1]).all()
    assert len(out) == 1 and out[0].score == 0.9 and out[0].box.tolist() == [0, 0, 30, 40]
