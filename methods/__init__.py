"""Distillation methods: the registry (survey category -> plugins), the plugin API, shared loss
primitives and the one trainer every method runs on. Plugins are discovered on first use of
:func:`methods.registry.get_method` / :func:`methods.registry.list_methods`."""
from methods.base import BuildContext, Distiller, OptimGroup, Progress, Stage  # noqa: F401
from methods.hparams import ConfigError, HParam  # noqa: F401
from methods.registry import (CATEGORIES, get_method, list_methods, methods_by_category,  # noqa: F401
                              register_category, register_method)
