"""A compressed (encapsulated) DICOM cine cut short (issue 18, item 7): pydicom drops the whole Pixel
Data element when the file ends inside its items, so `streamseg file` read nothing ("DICOM file without
an image"). Its whole frames are read, with a note, as for a native cine cut short; a file with no
whole frame is one error line. The cines are the bundled real demo.dcm (JPEG baseline, a Basic Offset
Table, one fragment per frame) and variants of it: two fragments per frame, and RLE without a table."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from streamseg.inputs.dicom import DicomSource  # noqa: E402
from streamseg.types import StreamsegError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "streamseg" / "data" / "sample" / "demo.dcm"
NOTE = "NumberOfFrames is 7 but the pixel data holds {} whole frame(s): reading those"


KINDS = ["jpeg", "jpeg2", "jpeg2-nobot", "jpeg-eot", "rle"]
BOT = {"jpeg", "jpeg2"}  # the kinds with a Basic Offset Table


def _variant(tmp_path: Path, kind: str) -> Path:
    """demo.dcm as it is ("jpeg"), with each frame in two fragments with a Basic Offset Table ("jpeg2")
    or without ("jpeg2-nobot"), with an Extended Offset Table ("jpeg-eot"), or RLE lossless without a
    table ("rle")."""
    from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
    from pydicom.uid import RLELossless

    if kind == "jpeg":
        return DEMO
    ds = pydicom.dcmread(DEMO)
    if kind == "rle":
        ds.decompress()
        ds.compress(RLELossless)
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    if kind == "jpeg-eot":
        ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(frames)
    else:
        ds.PixelData = encapsulate(frames, fragments_per_frame=2 if "2" in kind else 1, has_bot=kind in BOT)
    out = tmp_path / f"{kind}.dcm"
    ds.save_as(out)
    return out


def _items(raw: bytes) -> list[int]:
    """The file offsets of the item tags of the Pixel Data (the Basic Offset Table first), and of its
    Sequence Delimitation Item last."""
    from pydicom.encaps import parse_fragments

    at = raw.rfind(b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff") + 12
    _, offsets = parse_fragments(raw[at:])
    return [at + o for o in offsets] + [len(raw) - 8]


def _cuts(kind: str, items: list[int]) -> list[tuple[str, int, int]]:
    """(where, file length, the whole frames it keeps) for the variant's item offsets."""
    per = 2 if "2" in kind else 1  # fragments per frame
    first = [items[1 + per * k] for k in range(7)]  # the first item of each frame
    cuts = [("mid-fragment of the last frame", items[-2] + 8 + 101, 6),
            ("mid-item-header of frame 5 (in its length)", first[4] + 6, 4),
            ("mid-item-header of frame 5 (in its tag)", first[4] + 2, 4),
            ("right after the complete item of frame 3", first[3], 3),
            ("without the delimiter", items[-1], 6 if kind in BOT else 7)]  # a BOT cannot tell the last frame whole
    if per == 2:
        cuts.append(("right after the first fragment of frame 4", items[1 + per * 3 + 1], 3))
    return cuts


def _frames(path) -> tuple[DicomSource, list]:
    src = DicomSource(str(path)).open()
    return src, [f.image for f in src.frames()]


@pytest.mark.parametrize("kind", KINDS)
def test_a_compressed_cine_cut_short_decodes_its_whole_frames(tmp_path, kind):
    path = _variant(tmp_path, kind)
    raw = path.read_bytes()
    items = _items(raw)
    _, full = _frames(path)
    assert len(full) == 7
    for where, size, whole in _cuts(kind, items):
        cut = tmp_path / "cut.dcm"
        cut.write_bytes(raw[:size])
        src, got = _frames(cut)
        assert len(got) == src.dicom.frames == whole, where
        assert all(np.array_equal(a, b) for a, b in zip(got, full)), where
        assert (NOTE.format(whole) in src.stats.notes) == (whole < 7), (where, src.stats.notes)
        assert src.stats.decode_errors == 0, where


@pytest.mark.parametrize("kind", KINDS)
def test_a_compressed_cine_cut_before_its_first_whole_frame_is_one_error(tmp_path, kind):
    raw = _variant(tmp_path, kind).read_bytes()
    items = _items(raw)
    for size in (items[0] + 5, items[1], items[2] - 100, items[1] + 3):  # in the table, after it, in frame 1
        cut = tmp_path / "cut.dcm"
        cut.write_bytes(raw[:size])
        with pytest.raises(StreamsegError, match="before its first whole frame"):
            DicomSource(str(cut)).open()


def _cli(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "STREAMSEG_CONFIG_DIR": str(tmp_path / "cfg")}
    return subprocess.run([sys.executable, "-m", "streamseg", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=tmp_path)


def test_cli_file_on_a_jpeg_cine_cut_short(tmp_path, tiny_checkpoint):
    """`streamseg file` on demo.dcm cut inside frame 4: exit 0, 3 frames in the CSV, the note, and no
    traceback or pydicom warning; cut inside frame 1: one error line, exit 2, no output written."""
    import csv

    raw = DEMO.read_bytes()
    items = _items(raw)
    (tmp_path / "cut.dcm").write_bytes(raw[:items[4] + 8 + 1000])
    p = _cli(["file", "cut.dcm", "--csv", "o.csv", "--model", tiny_checkpoint, "--backend", "torch"], tmp_path)
    text = p.stderr + p.stdout
    assert p.returncode == 0, text[-3000:]
    assert NOTE.format(3) in text and "Traceback" not in text and "Warning" not in text, text[-3000:]
    with open(tmp_path / "o.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3
    (tmp_path / "cut1.dcm").write_bytes(raw[:items[2] - 100])
    p = _cli(["file", "cut1.dcm", "--csv", "o1.csv", "--model", tiny_checkpoint, "--backend", "torch"], tmp_path)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    assert "before its first whole frame" in lines[0] and not (tmp_path / "o1.csv").exists()
