"""streamseg: real-time median-nerve segmentation (Mask R-CNN, Di Cosmo et al.) for wrist ultrasound."""
from .model import ModelConfig, build_model
from .types import Detection, Frame, Measurement, Result, StreamsegError, Timings

__version__ = "0.1.0"
__all__ = ["build_model", "ModelConfig", "Frame", "Detection", "Measurement", "Result", "Timings", "StreamsegError"]
