"""Analysis: reads run records (the source of truth; local folders or W&B) into tables, plots and the shipped
published references; also the W&B writer a run mirrors its record with. Never imports the engine or experiments."""
if __name__ != "kdsuite.analysis":  # this folder is installed as kdsuite.analysis; a second copy under another name would split state
    raise ImportError("the 'analysis' folder is the package kdsuite.analysis: import kdsuite.analysis")
