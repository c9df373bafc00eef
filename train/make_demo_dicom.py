"""Build the bundled demo DICOM from the bundled real scans: a multi-frame ultrasound cine (JPEG
baseline, greyscale, one frame per scan, 2 fps) with a Sequence of Ultrasound Regions, as a clinic's
export would have. The scans are real; the machine screen around them and the pixel spacing are
NOT: the UNIVPM scans have no published spacing, so the region carries an ASSUMED 0.06 mm/px
(PhysicalDeltaX/Y 0.006 cm), the value the README's --mm-per-px examples use.

    python train/make_demo_dicom.py streamseg/data/sample streamseg/data/sample/demo.dcm
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

ASSUMED_DELTA_CM = 0.006  # 0.06 mm/px: assumed, see the docstring
FRAME_TIME_MS = 500.0
SCREEN = (680, 540)  # the scan sits at X0, Y0 inside a dark screen with a header bar
X0, Y0 = 37, 42
QUALITY = 75
# Fixed UIDs (2.25 = UUID-derived root), so the file is the same every time it is built.
STUDY_UID = "2.25.302858934189046711457128376325049170201"
SERIES_UID = "2.25.302858934189046711457128376325049170202"
INSTANCE_UID = "2.25.302858934189046711457128376325049170203"


def screens(sample: Path) -> list[np.ndarray]:
    out = []
    for p in sorted((sample / "images").glob("*.png")):
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        screen = np.zeros((SCREEN[1], SCREEN[0]), np.uint8)
        screen[:24] = 40
        cv2.putText(screen, "streamseg demo  " + p.stem, (8, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 220, 1)
        screen[Y0:Y0 + img.shape[0], X0:X0 + img.shape[1]] = img
        out.append(screen)
    return out


def region(w: int, h: int) -> Dataset:
    r = Dataset()
    r.RegionSpatialFormat, r.RegionDataType, r.RegionFlags = 1, 1, 0  # 2D, tissue
    r.RegionLocationMinX0, r.RegionLocationMinY0 = X0, Y0
    r.RegionLocationMaxX1, r.RegionLocationMaxY1 = X0 + w - 1, Y0 + h - 1  # inclusive
    r.PhysicalUnitsXDirection = r.PhysicalUnitsYDirection = 3  # cm
    r.PhysicalDeltaX = r.PhysicalDeltaY = ASSUMED_DELTA_CM
    r.ReferencePixelX0, r.ReferencePixelY0 = w // 2, 0
    return r


def dataset(frames: list[np.ndarray], scan_w: int, scan_h: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # Ultrasound Multi-frame Image Storage
    meta.MediaStorageSOPInstanceUID = INSTANCE_UID
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, INSTANCE_UID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, SERIES_UID
    ds.Modality, ds.PatientName, ds.PatientID = "US", "Demo^Wrist", "DEMO"
    ds.ImageComments = ("streamseg demo: real wrist scans (UNIVPM DL-UNet dataset, GPL-3.0), one per frame; "
                        "the pixel spacing (0.06 mm/px) is ASSUMED, not measured")
    ds.Rows, ds.Columns = frames[0].shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames, ds.FrameTime, ds.FrameIncrementPointer = len(frames), FRAME_TIME_MS, 0x00181063
    ds.CineRate = round(1000 / FRAME_TIME_MS)
    ds.SequenceOfUltrasoundRegions = [region(scan_w, scan_h)]
    ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
    params = [cv2.IMWRITE_JPEG_QUALITY, QUALITY, cv2.IMWRITE_JPEG_OPTIMIZE, 1]
    encoded = [cv2.imencode(".jpg", f, params)[1].tobytes() for f in frames]
    ds.LossyImageCompressionRatio = round(sum(f.size for f in frames) / sum(len(e) for e in encoded), 2)
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def main(sample: str, out: str) -> None:
    sample_p = Path(sample)
    first = cv2.imread(str(next((sample_p / "images").glob("*.png"))), cv2.IMREAD_GRAYSCALE)
    ds = dataset(screens(sample_p), first.shape[1], first.shape[0])
    ds.save_as(out, enforce_file_format=True)
    print(f"wrote {out}: {ds.NumberOfFrames} frames, {Path(out).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(*sys.argv[1:3])
