"""Where results go: `overlay` draws a `Result` (mask, contour, CSA, HUD), `video` and `rows` write
the file outputs (the overlay and raw-input MP4s; the CSV and JSONL rows), `display` is the `--show`
window, `progress` the progress bar and the closing list of files written, and `sinks` opens the
ones a run asks for (`open_outputs`: the runner names no sink class). Every file output is a
`types.FileSink` writing into a `files.StagedFile` (finish, then commit or abort, so a run writes
all or none); a new one goes here and is opened in `sinks.open_outputs`. Torch-free; this file
imports nothing."""
