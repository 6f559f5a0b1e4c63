"""Analysis: run records (the source of truth), W&B mirroring, tables and plots."""
if __name__ != "kdsuite.analysis":  # this folder is installed as kdsuite.analysis; a second copy under another name would split state
    raise ImportError("the 'analysis' folder is the package kdsuite.analysis: import kdsuite.analysis")
