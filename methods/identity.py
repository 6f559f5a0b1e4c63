"""What a method's run is, beyond its config values: the plugin code that ran and its variant.

Role in the flow: :mod:`kdsuite.experiments.run` writes :func:`code_identity` and :func:`method_variant`
into every record; ``kdsuite grid plan`` and ``kdsuite table`` compare a record's code identity with the
plugin installed now (:func:`record_stale_reason`) and label table rows by variant (:func:`variant_label`).
The data's identity lives beside the data (:mod:`kdsuite.experiments.identity`).
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import os
from typing import Any, Dict, Mapping, Optional, Tuple

from kdsuite.core.fileio import stat_stamp


# ---- code ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)  # packages_distributions() scans every installed package
def _distribution_of(module: str) -> Tuple[Optional[str], Optional[str]]:
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    top = module.split(".")[0]
    dists = packages_distributions().get(top) or []
    if not dists and top == "kdsuite":
        dists = ["kdsuite"]  # this checkout's own plugins
    for d in dists:
        try:
            return d, version(d)
        except PackageNotFoundError:
            continue
    return None, None


@functools.lru_cache(maxsize=None)
def _file_sha(path: str, stamp: Tuple) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def code_identity(cls: type) -> Dict[str, Optional[str]]:
    """``{"module", "file", "file_sha256", "package", "version"}`` of a method plugin class: the file that
    defines it (hashed) and the installed distribution that provides it."""
    module = cls.__module__
    try:
        path = inspect.getsourcefile(cls)
    except TypeError:
        path = None
    sha = _file_sha(path, stat_stamp([path])) if path and os.path.isfile(path) else None
    package, ver = _distribution_of(module)
    return {"module": module, "file": os.path.basename(path) if path else None, "file_sha256": sha,
            "package": package, "version": ver}


def stale_reason(recorded: Optional[Mapping[str, Any]], current: Mapping[str, Any]) -> Optional[str]:
    """Why a record's method code differs from the code installed now (None when it does not, or when
    the record predates code identities)."""
    if not recorded:
        return None
    if recorded.get("file_sha256") and current.get("file_sha256"):
        # the file is the precise identity: a version bump that leaves the plugin's file alone changes nothing
        if recorded["file_sha256"] == current["file_sha256"]:
            return None
        return (f"{current.get('file') or current.get('module')} changed since the run "
                f"(sha256 {recorded['file_sha256'][:12]} → {current['file_sha256'][:12]})")
    if recorded.get("version") and current.get("version") and recorded["version"] != current["version"]:
        return f"package {current.get('package')} {recorded['version']} → {current['version']}"
    return None


def record_stale_reason(rec: Mapping[str, Any]) -> Optional[str]:
    """Why a finished record no longer describes what its config would produce now: its method's
    plugin changed (:func:`stale_reason`), or a teacher it distilled from was retrained (other weights
    under the same teacher folder). None when it is current."""
    import json

    from kdsuite.methods.registry import get_method

    try:
        cls = get_method(rec.get("method"))
    except KeyError:
        return f"method {rec.get('method')!r} is no longer registered"
    why = stale_reason(rec.get("code"), code_identity(cls))
    if why:
        return why
    for i, t in enumerate((rec.get("config") or {}).get("teachers") or []):
        meta = os.path.join(str(t.get("checkpoint", "")), "teacher.json")
        if t.get("sha256") and os.path.isfile(meta):
            try:
                now = json.loads(open(meta).read()).get("sha256")
            except (OSError, ValueError):
                continue
            if now and now != t["sha256"]:
                return f"teacher {i} was retrained since the run (weights sha256 {t['sha256'][:12]} → {now[:12]})"
    return None


# ---- variant ------------------------------------------------------------------------------------
def fmt_value(v: Any) -> str:
    """A hyper-parameter value as people write it: 2.0 → 2, 0.10 → 0.1, [1, 2] → [1,2]."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(fmt_value(x) for x in v) + "]"
    return str(v)


def method_variant(cls: type, hparams: Mapping[str, Any]) -> Dict[str, Any]:
    """The resolved hyper-parameters of ``cls`` that differ from its declared defaults, sorted by name."""
    out = {}
    for k in sorted(hparams):
        spec = cls.hparams.get(k)
        default = spec.default if spec is not None else None
        v = hparams[k]
        same = v == default or (isinstance(default, tuple) and list(v or []) == list(default))
        if spec is None or not same:
            out[k] = v
    return out


def variant_label(variant: Mapping[str, Any]) -> str:
    """``{"T": 2.0, "alpha": 0.5}`` → ``"T=2, alpha=0.5"`` (stable: keys sorted)."""
    return ", ".join(f"{k}={fmt_value(variant[k])}" for k in sorted(variant))
