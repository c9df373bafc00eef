"""Where results go: `overlay` draws a `Result` (mask, contour, CSA, HUD), `video` and `rows` write
the file outputs (the overlay and raw-input MP4s; the CSV and JSONL rows), `display` is the `--show`
window, and `progress` the progress bar and the closing list of files written. Every file output is
a `types.FileSink` writing into a `files.StagedFile` (finish, then commit or abort, so a run writes
all or none); a new one goes here and is opened in `runner._open_sinks`. Torch-free; this file
imports nothing."""
