"""Build the bundled grab, `streamseg/data/sample/grab.png`: what a frame grabber would capture of an
ultrasound machine's screen (1280x720), with one real bundled scan (Pz089-001, a test patient)
resized to 640x480 where the README's `--crop 312,96,640,480` says the image is. The scan is real;
the screen around it is NOT (a dark frame with a header line saying so). The README's
`streamseg calibrate ... --crop 312,96,640,480 --from streamseg/data/sample/grab.png` runs on it.

    python train/make_grab.py streamseg/data/sample streamseg/data/sample/grab.png
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

SCREEN = (1280, 720)  # width, height of the grabbed frame
CROP = (312, 96, 640, 480)  # x, y, w, h of the scan in it
SCAN = "Pz089-001.png"


def grab(sample: Path) -> np.ndarray:
    scan = cv2.imread(str(sample / "images" / SCAN), cv2.IMREAD_COLOR)
    x, y, w, h = CROP
    frame = np.zeros((SCREEN[1], SCREEN[0], 3), np.uint8)
    frame[:32] = 40
    cv2.putText(frame, f"streamseg demo grab: scan {Path(SCAN).stem} at {x},{y},{w},{h} (not a real screen)",
                (10, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (220, 220, 220), 1, cv2.LINE_AA)
    frame[y:y + h, x:x + w] = cv2.resize(scan, (w, h), interpolation=cv2.INTER_LINEAR)
    return frame


def main(sample: str, out: str) -> None:
    if not cv2.imwrite(out, grab(Path(sample)), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise SystemExit(f"{out}: cannot write")
    print(f"wrote {out} ({Path(out).stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
