"""The application: what wires the rooms into commands. `cli` is the `streamseg` command (typer;
flags, console output and exit codes live there only, `checks` validates its values), `runner` opens
source, backend, calibration and sinks for `file` and `live`, `pipeline` runs them as three threads
joined by bounded queues, `bench` and `bench_live` time the same stages, `interrupts` owns every
Ctrl-C/SIGTERM handler, and `stats` summarises timing samples. A new command or a new way of
connecting the stages goes here; inputs, backends, analysis and outputs stay in their own folders.
This file imports nothing (the package imports `interrupts` first thing)."""
