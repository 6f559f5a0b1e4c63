"""Shared basics every layer may import: the user-input errors, atomic file writes and checks of write places,
the strict YAML loader, file schemas, the name rule, run records and the one rule of a run's state."""
if __name__ != "kdsuite.core":  # this folder is installed as kdsuite.core; a second copy under another name would split state
    raise ImportError("the 'core' folder is the package kdsuite.core: import kdsuite.core")
