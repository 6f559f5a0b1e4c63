"""The rules of ``dataset.views`` (paired multi-view data, cross-modal distillation), without torch.

Role in the flow: config validation (:mod:`kdsuite.experiments.settings`, :mod:`kdsuite.experiments.config`)
and grid planning check and normalise a config's views here; the renderings and paired image folders
that serve them during a run are in :mod:`kdsuite.experiments.views`.
"""
from __future__ import annotations

from typing import Any, Dict

from kdsuite.core.errors import ConfigError

DIGITS_VIEWS = ("image", "edges", "thermal")
# CIFAR has the same derived views, rendered from each image's luminance (tensor pipeline; see render_view)
DERIVED_VIEWS = {"digits": DIGITS_VIEWS, "cifar10": DIGITS_VIEWS, "cifar100": DIGITS_VIEWS}
# the view a run without dataset.views sees, where it has a name
DEFAULT_VIEW = {"digits": "image", "cifar10": "image", "cifar100": "image"}


def check_views(dataset: str, views: Any) -> None:
    """``dataset.views``: null, or ``{student: VIEW[, teacher: VIEW]}`` naming views ``dataset`` has."""
    if views is None:
        return
    if not isinstance(views, dict) or "student" not in views:
        raise ConfigError(f"dataset.views = {views!r}: expected a mapping {{teacher: VIEW, student: VIEW}} "
                          f"(student required) or null")
    unknown = sorted(set(views) - {"teacher", "student"})
    if unknown:
        raise ConfigError(f"dataset.views: unknown field(s) {unknown}; allowed: ['student', 'teacher']")
    for role in ("student", "teacher"):
        v = views.get(role)
        if v is None and role == "teacher":
            continue
        if dataset in DERIVED_VIEWS:
            if v not in DERIVED_VIEWS[dataset]:
                raise ConfigError(f"dataset.views.{role} = {v!r} is not one of {list(DERIVED_VIEWS[dataset])}")
        elif dataset == "imagefolder":
            if not isinstance(v, str) or not v or v in (".", "..") or "/" in v or "\\" in v:
                raise ConfigError(f"dataset.views.{role} = {v!r}: expected the name of a view folder under "
                                  f"dataset.root (root/<view>/train/<class>/…)")
        else:
            raise ConfigError(f"dataset.views = {views!r}: data set {dataset!r} has one view; paired views "
                              f"exist for digits and CIFAR ({', '.join(DIGITS_VIEWS)}) and imagefolder (one folder per view)")


def resolve_views(ds: Dict[str, Any], cls: Any, has_teachers: bool) -> None:
    """Normalise ``ds["views"]`` in place (one spelling per setting, so one config hash): no teachers → no
    teacher view; teachers without one see the student's view; the digits' ``image`` alone is no views at
    all (likewise CIFAR's). Different views for teachers and student need a method that gives the teachers their view."""
    views = ds.get("views")
    if views is None:
        return
    views = ds["views"] = {"teacher": (views.get("teacher") or views["student"]) if has_teachers else None,
                           "student": views["student"]}
    if ds["name"] in DERIVED_VIEWS and views["student"] == "image" and views["teacher"] in (None, "image"):
        ds["views"] = None
        return
    if views["teacher"] not in (None, views["student"]) and "teacher_x" not in cls.batch_fields:
        from kdsuite.methods.registry import list_methods

        cross = [m.name for m in list_methods() if "teacher_x" in m.batch_fields]
        raise ConfigError(f"dataset.views = {views!r}: method '{cls.name}' shows its teachers the student's "
                          f"view, not their own; use a cross-modal method ({', '.join(cross)}) or one view")
