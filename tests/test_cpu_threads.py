"""Torch's CPU threads are sized for the device inference runs on (issue 21): on CUDA the CPU only
prepares images and draws, and 16 threads made preprocessing 4-6x slower than 4."""
from __future__ import annotations

import pytest
import torch

from streamseg.settings import Settings, cpu_threads, encode_threads
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


@pytest.mark.parametrize("cores, device, env, want", [
    (16, "cuda", {}, 4),  # the GPU does the model: encoding must keep up with it
    (2, "cuda:0", {}, 2),
    (16, "cpu", {}, 1),  # the CPU's cores are the model's
    (2, "cpu", {"STREAMSEG_ENCODE_THREADS": "3"}, 3),
])
def test_encode_threads(cores, device, env, want):
    assert encode_threads(cores, device, env) == want


def test_a_bad_encode_thread_count_is_one_clear_error():
    with pytest.raises(StreamsegError, match="STREAMSEG_ENCODE_THREADS=x"):
        encode_threads(4, "cuda", {"STREAMSEG_ENCODE_THREADS": "x"})


def test_the_videos_are_encoded_with_the_settings_threads(tmp_path, monkeypatch):
    """Settings -> OutputSpec -> the overlay and input videos' encoders (libx264's thread count)."""
    from fractions import Fraction

    from streamseg.outputs.sinks import Geometry, OutputSpec, abort, open_outputs

    monkeypatch.setenv("STREAMSEG_ENCODE_THREADS", "3")
    threads = Settings.from_env("cuda").encode_threads
    spec = OutputSpec(out=tmp_path / "o.mp4", save_input=tmp_path / "i.mp4", encode_threads=threads)
    outputs = open_outputs(spec, Geometry(64, 48, Fraction(25), None))
    try:
        assert [f.stream.codec_context.thread_count for f in outputs.files] == [3, 3]
    finally:
        abort(outputs.files)
    assert not list(tmp_path.iterdir())
