"""The measurement layer: sweep settings, the runner and its worker processes, one trial, the profiler
that keeps time, statistics, accuracy and repeats."""
