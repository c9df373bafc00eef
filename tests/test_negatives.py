"""Nerve-free training images on the real data: the negatives folder split by acquisition group,
crop-outs of wrist scans that leave the nerve out, empty targets, and a Mask R-CNN step on them."""
import random
import re

import numpy as np
import pytest
import torch

from streamseg.model.checkpoint import load_checkpoint, load_model
from streamseg.training.augment import PaperAugment
from streamseg.training.dataset import NerveDataset, collate, load_pair, scan_folder
from streamseg.training.negatives import (MixedDataset, crop_out, group_of, scan_negatives, split_negatives,
                                         top_detections)


@pytest.fixture(scope="module")
def negatives(negatives_dir):
    return scan_negatives(negatives_dir)


def _groups(paths):
    return {group_of(p) for p in paths}


def test_negatives_are_read_from_the_manifest(negatives):
    assert len(negatives) == 389 and all(p.is_file() for p in negatives)
    assert {p.parent.name for p in negatives} == {"muscle", "fetal-head"}
    assert group_of(negatives[0]) == "muscle/dataset1_S1"  # a muscle subject, both legs, every frame
    assert len({group_of(p) for p in negatives if p.name.startswith("dataset1_S1_")}) == 1


def test_split_is_by_group_complete_and_deterministic(negatives):
    split = split_negatives(negatives, seed=0)
    parts = {k: _groups(v) for k, v in split.items()}
    assert all(split.values())
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"]) \
        and not (parts["val"] & parts["test"])  # no group in two parts
    assert sorted(p for v in split.values() for p in v) == sorted(negatives)
    assert split_negatives(list(negatives), seed=0) == split
    shuffled = split_negatives(list(reversed(negatives)), seed=0)
    assert {k: set(v) for k, v in shuffled.items()} == {k: set(v) for k, v in split.items()}  # by group, not order
    assert {k: set(v) for k, v in split_negatives(negatives, seed=1).items()} != {k: set(v) for k, v in split.items()}
    n = len(_groups(negatives))
    assert len(parts["val"]) == len(parts["test"]) == round(0.15 * n)


def test_no_sequence_is_split_between_parts(negatives):
    def sequence(p):  # the name without its frame number
        return p.parent.name + "/" + re.sub(r"_\d+$", "", p.stem)

    split = split_negatives(negatives, seed=0)
    parts = {k: {sequence(p) for p in v} for k, v in split.items()}
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"]) \
        and not (parts["val"] & parts["test"])


def _wrist_scans(sample_dir, univpm_dir):
    return scan_folder(sample_dir) + scan_folder(univpm_dir)[::10]


def test_crop_out_never_touches_the_nerve(sample_dir, univpm_dir):
    made = 0
    for k, s in enumerate(_wrist_scans(sample_dir, univpm_dir)):
        img, mask = load_pair(s)
        h, w = mask.shape
        index = np.arange(h * w).reshape(h, w)  # crop the pixel indices to see where the crop lies
        ys, xs = np.nonzero(mask)
        for t in range(5):
            crop = crop_out(index, mask, random.Random(100 * k + t), margin=12)
            if crop is None:
                continue
            made += 1
            cy, cx = np.divmod(crop.ravel(), w)
            assert not mask.ravel()[crop.ravel()].any(), s.name
            apart_x = cx.max() <= xs.min() - 12 or cx.min() >= xs.max() + 12
            apart_y = cy.max() <= ys.min() - 12 or cy.min() >= ys.max() + 12
            assert apart_x or apart_y, s.name  # not even within the margin around the nerve
            assert crop.shape[0] >= int(0.35 * h) and crop.shape[1] >= int(0.35 * w)
            same = crop_out(img, mask, random.Random(100 * k + t), margin=12)  # the image: the same region
            assert np.array_equal(same, img[cy.min():cy.max() + 1, cx.min():cx.max() + 1])
    assert made > 20  # most scans leave room for a crop


def _empty_target_ok(img, target, size):
    assert img.shape == (3, size, size) and img.dtype == torch.float32
    assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].shape == (0,) and target["labels"].dtype == torch.int64
    assert target["masks"].shape == (0, size, size) and target["masks"].dtype == torch.uint8


@pytest.mark.parametrize("crop_share", [0.0, 1.0])  # scans of other anatomy; crop-outs of wrist scans
def test_mixed_dataset_yields_empty_targets_for_nerve_free_items(sample_dir, negatives, crop_share):
    random.seed(0)
    torch.manual_seed(0)
    pos = NerveDataset(scan_folder(sample_dir), 256, PaperAugment())
    ds = MixedDataset(pos, negatives[:5], per_epoch=4, crop_share=crop_share)
    assert len(ds) == len(pos) + 4 == 11
    img, target = ds[0]
    assert target["boxes"].shape == (1, 4) and target["masks"].shape == (1, 256, 256) and target["masks"].any()
    for i in range(len(pos), len(ds)):
        img, target = ds[i]
        _empty_target_ok(img, target, 256)
        assert img.max() > 0  # an image, not padding


@pytest.fixture(scope="module")
def empty_batch(sample_dir, negatives):
    random.seed(0)
    pos = NerveDataset(scan_folder(sample_dir)[:1], 256)
    ds = MixedDataset(pos, negatives[:3], per_epoch=2)
    return [ds[i] for i in range(len(ds))]  # one wrist scan with its nerve, two nerve-free images


def test_one_training_step_with_empty_targets(tiny_checkpoint, empty_batch):
    torch.manual_seed(0)
    model = load_model(tiny_checkpoint).train()
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    for batch in (empty_batch, empty_batch[1:]):  # mixed, then nerve-free only
        images, targets = collate(batch)
        losses = model(list(images), list(targets))
        loss = sum(losses.values())
        assert torch.isfinite(loss) and loss > 0, losses
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = {k: float(v.detach()) for k, v in losses.items()}
    assert last["loss_box_reg"] == 0 and last["loss_mask"] == 0, last  # no nerve: background only
    assert last["loss_classifier"] > 0 and last["loss_objectness"] > 0, last
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, params))


def test_top_detections_are_the_best_score_and_confidence_per_image_or_zero(tiny_checkpoint, negatives):
    paths = negatives[:2] + negatives[-1:]
    model, info = load_checkpoint(tiny_checkpoint, box_score_thresh=0.0)
    found = top_detections(model, paths, config=info.config)  # (score, score x mask score) of each top detection
    assert len(found) == 3 and all(0 < s <= 1 and 0 <= c <= s for s, c in found)
    model, info = load_checkpoint(tiny_checkpoint, box_score_thresh=1.0)
    assert top_detections(model, paths, config=info.config) == [(0.0, 0.0)] * 3
