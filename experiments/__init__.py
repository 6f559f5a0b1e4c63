"""Experiments: run configs, data sets, grid files, the single-run entry point and the `kdsuite` CLI."""
if __name__ != "kdsuite.experiments":  # this folder is installed as kdsuite.experiments; a second copy under another name would split state
    raise ImportError("the 'experiments' folder is the package kdsuite.experiments: import kdsuite.experiments")
