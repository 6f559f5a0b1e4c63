"""Distillation methods: the registry (survey category -> plugins), the plugin API, shared loss
primitives and the one trainer every method runs on. Plugins are discovered on first use of
:func:`kdsuite.methods.registry.get_method` / :func:`kdsuite.methods.registry.list_methods`."""
if __name__ != "kdsuite.methods":  # this folder is installed as kdsuite.methods; a second copy under another name would split state
    raise ImportError("the 'methods' folder is the package kdsuite.methods: import kdsuite.methods")
from kdsuite.methods.base import BuildContext, Distiller, OptimGroup, Progress, Stage  # noqa: F401
from kdsuite.methods.hparams import ConfigError, HParam  # noqa: F401
from kdsuite.methods.registry import (CATEGORIES, get_method, list_methods, methods_by_category,  # noqa: F401
                              register_category, register_method)
