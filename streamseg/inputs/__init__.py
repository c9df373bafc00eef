"""Where frames come from: `sources` opens a V4L2 device, a file or a URL as a `types.Source` (an
iterator of cropped BGR `Frame`s), `dicom` reads DICOM ultrasound exports, and `calibration` gives the
pixel spacing (from a flag, the imaged depth, a saved profile, or the input's own DICOM region). A new
input goes in `sources.py` (subclass `BaseSource`, write `_connect`/`_disconnect`, pick it in
`open_source`) or, read otherwise, in a module of its own here that keeps `types.Source`. Torch-free;
this file imports nothing."""
