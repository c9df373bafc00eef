"""Build the bundled demo clip from the bundled real scans: each still scan is shown for a few
seconds with simulated probe motion (slow sub-pixel translation, slight tilt and zoom). It is NOT
a recording: the anatomy is real, the motion is synthetic. Writes H.264 via PyAV.

    python train/make_demo.py streamseg/data/sample streamseg/data/sample/demo.mp4
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import av
import cv2
import numpy as np

FPS = 20
SECONDS_PER_SCAN = 2.5


def frames(sample: Path):
    names = sorted(p.name for p in (sample / "images").glob("*.png"))
    n = int(FPS * SECONDS_PER_SCAN)
    for k, name in enumerate(names):
        img = cv2.imread(str(sample / "images" / name), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        for i in range(n):
            t = i / n
            dx = 12 * math.sin(2 * math.pi * t + k)
            dy = 6 * math.sin(4 * math.pi * t)
            ang = 2.0 * math.sin(2 * math.pi * t)
            zoom = 1.0 + 0.04 * math.sin(2 * math.pi * t)
            m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, zoom)
            m[:, 2] += (dx, dy)
            yield cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)


def main(sample: str, out: str) -> None:
    sample_p = Path(sample)
    first = cv2.imread(str(next((sample_p / "images").glob("*.png"))))
    h, w = first.shape[:2]
    with av.open(out, "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        stream.options = {"crf": "23", "preset": "slow"}
        for img in frames(sample_p):
            img = img[: h - h % 2, : w - w % 2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


if __name__ == "__main__":
    main(*sys.argv[1:3])
