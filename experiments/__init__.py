"""Experiments: run configs, data sets, grid files, the single-run entry point and the `kdsuite` CLI."""
