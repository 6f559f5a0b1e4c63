"""The method registry: survey category -> method plugins.

Role in the flow: a config names a method; :func:`get_method` returns its plugin class, which the
single-run entry point instantiates around the zoo's student/teachers and hands to the trainer.

Categories follow Gou et al. 2021 ("Knowledge Distillation: A Survey"): the knowledge types
(response / feature / relation, with attention split out as the survey's §2.2 sub-family) and the
distillation schemes / algorithms (§3–§4). The set is open: :func:`register_category` adds one.

Built-in plugins are the modules of :mod:`kdsuite.methods.plugins` (one file each; discovery imports
every one of them, no list to keep). Third-party packages add methods through the ``kdsuite.methods``
entry-point group: each entry point names a module (or object) whose import registers its plugins with
:func:`register_method`. An entry point that fails to import is reported (:data:`BROKEN`, ``kdsuite
methods``) and skipped; the rest of the suite works.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Dict, List, Type, TypeVar

if TYPE_CHECKING:  # base imports torch; the registry itself is read without it (config validation)
    from kdsuite.methods.base import Distiller

ENTRY_POINT_GROUP = "kdsuite.methods"
_Plugin = TypeVar("_Plugin", bound=type)


@dataclass(frozen=True)
class Category:
    name: str
    title: str
    survey_section: str
    knowledge: str  # the survey's knowledge type / algorithm family this category belongs to


CATEGORIES: Dict[str, Category] = {}
_METHODS: Dict[str, Type["Distiller"]] = {}
ORIGINS: Dict[str, str] = {}       # method name -> "built-in" or "<distribution> (entry point <name>)"
BROKEN: Dict[str, str] = {}        # entry point -> why it could not be imported
_discovered = False
_origin = "built-in"               # where the plugins being imported now come from


def register_category(name: str, title: str, survey_section: str, knowledge: str) -> Category:
    cat = Category(name, title, survey_section, knowledge)
    CATEGORIES[name] = cat
    return cat


register_category("baseline", "Baseline (no distillation)", "-", "none")
register_category("response", "Response-based knowledge", "§2.1", "knowledge type")
register_category("feature", "Feature-based knowledge", "§2.2", "knowledge type")
register_category("attention", "Attention-based knowledge", "§2.2 / §5.5", "knowledge type")
register_category("relation", "Relation-based knowledge", "§2.3", "knowledge type")
register_category("multi_teacher", "Multi-teacher distillation", "§5.2", "algorithm")
register_category("cross_modal", "Cross-modal distillation", "§5.3", "algorithm")
register_category("online", "Online distillation", "§3.2", "scheme")
register_category("self", "Self-distillation", "§3.3", "scheme")
register_category("data_free", "Data-free distillation", "§5.6", "algorithm")
register_category("adversarial", "Adversarial distillation", "§5.1", "algorithm")
register_category("graph", "Graph-based distillation", "§5.4", "algorithm")
register_category("quantized", "Quantized distillation", "§5.7", "algorithm")
register_category("lifelong", "Lifelong distillation", "§5.8", "algorithm")
register_category("nas", "NAS-based distillation", "§5.9", "algorithm")

SCHEMES = ("offline", "online", "self", "data_free")


def register_method(cls: _Plugin) -> _Plugin:
    """Class decorator: add a :class:`kdsuite.methods.base.Distiller` subclass to the registry."""
    from kdsuite.methods.base import Distiller  # local import: base imports nothing from here

    if not (isinstance(cls, type) and issubclass(cls, Distiller)):
        raise TypeError(f"register_method expects a Distiller subclass, got {cls!r}")
    for field in ("name", "category", "scheme", "paper", "equation"):
        if not getattr(cls, field, None):
            raise ValueError(f"method plugin {cls.__name__} must set the class attribute '{field}'")
    if cls.category not in CATEGORIES:
        raise ValueError(f"method '{cls.name}': unknown category '{cls.category}'; "
                         f"known: {', '.join(sorted(CATEGORIES))} (add one with register_category)")
    if cls.scheme not in SCHEMES:
        raise ValueError(f"method '{cls.name}': scheme '{cls.scheme}' not in {SCHEMES}")
    other = _METHODS.get(cls.name)
    if other is not None and other is not cls and other.__qualname__ != cls.__qualname__:
        raise ValueError(f"method name '{cls.name}' is registered twice ({other.__module__} and {cls.__module__})")
    _METHODS[cls.name] = cls
    ORIGINS[cls.name] = _origin
    return cls


def discover() -> None:
    """Import every plugin module of this package and every ``kdsuite.methods`` entry point."""
    global _discovered, _origin
    if _discovered:
        return
    _discovered = True
    from kdsuite.methods import plugins

    for mod in pkgutil.iter_modules(plugins.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{plugins.__name__}.{mod.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep.dist, "name", None) or "?"
        _origin = f"{dist} (entry point {ep.name})"
        try:
            ep.load()
        except Exception as err:  # a broken third-party plugin must not take the suite down
            BROKEN[f"{ep.name} = {ep.value} [{dist}]"] = f"{type(err).__name__}: {err}"
            print(f"kdsuite: skipped method plugin entry point '{ep.name}' ({ep.value}, from {dist}): "
                  f"{type(err).__name__}: {err}", file=sys.stderr)
        finally:
            _origin = "built-in"


def method_display_name(name: str) -> str:
    """A method's name as papers write it (``kd`` → ``KD``): its plugin's ``display_name`` class attribute,
    else the registry key (an unknown name, a plugin without one)."""
    discover()
    cls = _METHODS.get(name)
    own = getattr(cls, "display_name", None) if cls is not None else None
    return own if isinstance(own, str) and own else name


def get_method(name: str) -> Type["Distiller"]:
    discover()
    if name not in _METHODS:
        raise KeyError(f"unknown method '{name}'; registered methods: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def list_methods(category: str | None = None) -> List[Type["Distiller"]]:
    discover()
    out = [m for m in _METHODS.values() if category is None or m.category == category]
    return sorted(out, key=lambda m: (list(CATEGORIES).index(m.category), m.name))


def methods_by_category() -> Dict[str, List[Type["Distiller"]]]:
    discover()
    grouped: Dict[str, List[Type["Distiller"]]] = {c: [] for c in CATEGORIES}
    for m in list_methods():
        grouped[m.category].append(m)
    return grouped


def methods_markdown(origin: str | None = "built-in") -> str:
    """The methods table of the docs, generated from the registry (``kdsuite methods --format md``): one row
    per method, grouped by survey category, with its display name, key, scheme and paper. ``origin``:
    only methods of that origin (default: the built-in plugins; None: every registered method)."""
    rows = ["| category | method | key | scheme | paper |", "|---|---|---|---|---|"]
    for cat, methods in methods_by_category().items():
        c = CATEGORIES[cat]
        for m in methods:
            if origin is not None and ORIGINS.get(m.name, "built-in") != origin:
                continue
            cell = c.title + (f" ({c.survey_section})" if c.survey_section != "-" else "")
            paper = str(m.paper).replace("|", "\\|")
            rows.append(f"| {cell} | {method_display_name(m.name)} | `{m.name}` | {m.scheme} | {paper} |")
    return "\n".join(rows) + "\n"
