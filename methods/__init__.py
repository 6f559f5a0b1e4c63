"""Distillation methods: the registry (survey category -> plugins), the plugin API (``base``), typed
hyper-parameters, shared loss primitives and components, and the plugins (one file each). Plugins are
discovered on first use of :func:`kdsuite.methods.registry.get_method` / :func:`~kdsuite.methods.registry.list_methods`.

The names below are imported on first access (PEP 562), so importing ``kdsuite.methods.hparams`` or the
registry (as config validation does) does not import torch through the plugin API."""
if __name__ != "kdsuite.methods":  # this folder is installed as kdsuite.methods; a second copy under another name would split state
    raise ImportError("the 'methods' folder is the package kdsuite.methods: import kdsuite.methods")

_EXPORTS = {
    "BuildContext": "base", "Distiller": "base", "OptimGroup": "base", "Progress": "base", "Stage": "base",
    "ConfigError": "hparams", "HParam": "hparams",
    "CATEGORIES": "registry", "get_method": "registry", "list_methods": "registry",
    "methods_by_category": "registry", "register_category": "registry", "register_method": "registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
