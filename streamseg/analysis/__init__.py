"""What is made of the detections: `measure` turns the shown nerve's mask into a `Measurement` (area,
CSA in mm², perimeter, ellipse, the stabilised CSA; `Analyser` is the analyse step of every run),
`tracking` is the policy that runs the network on a window around the last nerve, and `summary`
gathers a scan's CSA into its numbers (median, IQR, the CTS flag) and plot. A new measurement of the
nerve or of the scan goes here. Torch-free; this file imports nothing."""
