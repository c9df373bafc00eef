"""The network itself, in torch: `architecture` builds the paper's Mask R-CNN from a `ModelConfig`
(torchvision's detection package, configured; pretrained initialisation), and `checkpoint` saves and
loads one checkpoint file (weights + validated config + provenance; `DEFAULT_WEIGHTS` is the bundled
`streamseg/weights/default.pt`, package data). A new architecture option goes in `architecture.py`
(a `ModelConfig` field). Everything here imports torch, so the runtime stages reach it only through
`backends.load`; this file imports nothing."""
