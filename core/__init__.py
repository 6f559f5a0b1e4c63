"""Shared basics every layer may import: the user-input error, atomic file writes, run records."""
if __name__ != "kdsuite.core":  # this folder is installed as kdsuite.core; a second copy under another name would split state
    raise ImportError("the 'core' folder is the package kdsuite.core: import kdsuite.core")
