"""The engine: the one trainer every method runs on, its optimizers and schedules, evaluation,
checkpoints, data-parallel helpers, CPU memory settings and progress reporting. It drives a
:class:`kdsuite.methods.base.Distiller` and knows no particular method."""
if __name__ != "kdsuite.engine":  # this folder is installed as kdsuite.engine; a second copy under another name would split state
    raise ImportError("the 'engine' folder is the package kdsuite.engine: import kdsuite.engine")
