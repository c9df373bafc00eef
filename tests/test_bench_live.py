"""The end-to-end part of `streamseg bench`, handed an opened backend: the bundled demo clip is
replayed at its frame rate through the live pipeline, with a stand-in backend (no model)."""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from streamseg.app.bench_live import DEMO, run_live
from streamseg.types import Detection, Inference, Thresholds


class FakeBackend:
    """The `types.Backend` contract, answering in 20 ms with one nerve-sized detection."""

    name, precision = "fake", "fp32"
    thresholds = Thresholds()

    def describe(self) -> str:
        return "fake"

    def infer(self, image):
        t = time.perf_counter()
        time.sleep(0.02)
        h, w = image.shape[:2]
        mask = np.zeros((h, w), bool)
        mask[h // 3:h // 2, w // 3:w // 2] = True
        dets = [Detection(box=np.array([w // 3, h // 3, w // 2, h // 2], np.float32), score=0.99, mask=mask, mask_score=1.0)]
        return Inference(dets, {"model": time.perf_counter() - t})


def test_run_live_replays_the_clip_through_the_live_pipeline():
    o = SimpleNamespace(e2e_video=None, e2e_seconds=1.0, warmup=1)
    logs = []
    e = run_live(FakeBackend(), o, log=logs.append)
    assert e["video"] == str(DEMO) and e["backend"] == "fake" and e["describe"] == "fake"
    assert 0 < e["processed"] <= e["frames_released"] and e["processed"] + e["dropped"] <= e["frames_released"]
    assert e["capture_to_overlay_ms"]["n"] == e["processed"] and e["model_ms"]["p50"] >= 20
    assert any("through the live pipeline" in line for line in logs)
    assert e["warmup_s"] >= 0.02  # one untimed frame of the backend, in the pipeline's thread, on its own


def test_run_live_runs_the_infer_it_is_handed():
    """The bench hands the replay the callable it timed (bench.make_infer), e.g. a tracking wrapper."""
    be, calls = FakeBackend(), []

    def infer(image):
        calls.append(image.shape)
        return be.infer(image)

    e = run_live(be, SimpleNamespace(e2e_video=None, e2e_seconds=0.5, warmup=1), log=lambda m: None, infer=infer)
    assert e["processed"] > 0 and len(calls) == e["processed"]
