"""Experiments: run configs (typed settings, identity), data sets and views, grid files and their states, and the
single-run entry point; the `kdsuite` CLI (:mod:`kdsuite.cli`) drives them."""
if __name__ != "kdsuite.experiments":  # this folder is installed as kdsuite.experiments; a second copy under another name would split state
    raise ImportError("the 'experiments' folder is the package kdsuite.experiments: import kdsuite.experiments")
