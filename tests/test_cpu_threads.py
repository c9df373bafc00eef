"""Torch's CPU threads are sized for the device inference runs on (issue 21): on CUDA the CPU only
prepares images and draws, and 16 threads made preprocessing 4-6x slower than 4."""
from __future__ import annotations

import pytest
import torch

from streamseg.settings import Settings, cpu_threads
from streamseg.types import StreamsegError


@pytest.mark.parametrize("cores, device, env, want", [
    (16, "cuda", {}, 4),
    (16, "cuda:1", {}, 4),
    (2, "cuda", {}, 2),  # never more than the cores
    (16, "cpu", {}, None),  # the CPU does the work: torch's default, the physical cores
    (16, "cuda", {"OMP_NUM_THREADS": "8"}, None),  # torch sized its pool from it: left alone
    (16, "cuda", {"OMP_NUM_THREADS": ""}, 4),  # set but empty: as if unset
    (16, "cuda", {"STREAMSEG_TORCH_THREADS": "12", "OMP_NUM_THREADS": "8"}, 12),  # streamseg's own wins
    (16, "cpu", {"STREAMSEG_TORCH_THREADS": "3"}, 3),
])
def test_cpu_threads(cores, device, env, want):
    assert cpu_threads(cores, device, env) == want


@pytest.mark.parametrize("bad", ["0", "-2", "four", "1.5"])
def test_a_bad_thread_count_is_one_clear_error(bad):
    with pytest.raises(StreamsegError, match="STREAMSEG_TORCH_THREADS"):
        cpu_threads(16, "cuda", {"STREAMSEG_TORCH_THREADS": bad})


def test_from_env_and_apply(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("STREAMSEG_TORCH_THREADS", "1")
    s = Settings.from_env("cuda")
    assert s.device == "cuda" and s.thread_env == {"STREAMSEG_TORCH_THREADS": "1"}
    before = torch.get_num_threads()
    try:
        s.apply()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert Settings.from_env().device == "cpu"
