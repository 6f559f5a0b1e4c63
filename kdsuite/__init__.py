"""kdsuite: knowledge-distillation experiments along the taxonomy of Gou et al. 2021.

The checkout's top-level folders are the sub-packages (``kdsuite/<layer>`` is a link to ``../<layer>``, so
editors, type checkers and installers resolve every module from the checkout), in layers that
each import only those below: ``kdsuite.core`` (errors, atomic writes, run records) ← ``kdsuite.zoo``
(models, taps, teachers) ← ``kdsuite.methods`` (plugin API, components, plugins) ← ``kdsuite.engine``
(trainer, checkpoints, distributed) ← ``kdsuite.analysis`` (tables, plots, W&B; reads records) ←
``kdsuite.experiments`` (config, data, runs, grids) ← ``kdsuite.slurm`` (executors) ← ``kdsuite.cli``;
``kdsuite.testing`` is the plugin authors' kit.
"""
__version__ = "0.2.0"
