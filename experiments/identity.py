"""What a run *is*, beyond its config values: the data it read, the method code that ran, its variant.

Role in the flow: :func:`kdsuite.experiments.config.config_hash` folds :func:`hash_fingerprint` into a run's
identity; :mod:`kdsuite.experiments.run` writes :func:`data_identity`, :func:`code_identity` and
:func:`method_variant` into every record; ``kdsuite grid plan`` and ``kdsuite table`` compare a
record's code identity with the code installed now (:func:`is_stale`).

Data identity is a fingerprint of content, never of the path:

- ``digits`` — the images scikit-learn ships, hashed (content pinned by the library);
- ``cifar10`` / ``cifar100`` with ``verify_checksums: true`` — torchvision checks every file against the
  official MD5s, so the official MD5 list *is* the content; with ``verify_checksums: false`` the MD5s of
  the files actually present;
- ``imagefolder`` — every file's path relative to ``root`` and its size (reading an ImageNet-sized folder
  would take hours; a file rewritten in place with the same size is not noticed).

Only the fingerprints of data that its name does not pin (CIFAR read without the checksum check, image
folders) enter the config hash, so the hashes of digits and checksummed CIFAR runs are those of earlier
versions. A folder that cannot be read yet gets the fingerprint ``unavailable``: such a run cannot train
(the data loader fails), ``grid plan`` says so and ``grid launch`` refuses it.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import os
from typing import Any, Dict, Mapping, Optional, Tuple

UNAVAILABLE = "unavailable"


def _sha(parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\n")
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def _digits_sha() -> str:
    from sklearn.datasets import load_digits

    d = load_digits()
    h = hashlib.sha256(d.images.astype("float64").tobytes())
    h.update(d.target.astype("int64").tobytes())
    return h.hexdigest()


def _cifar_files(name: str):
    from kdsuite.experiments.data import cifar_class

    base = cifar_class(name).__mro__[1]
    return base.base_folder, [(f, md5) for f, md5 in base.train_list + base.test_list] + [
        (base.meta["filename"], base.meta["md5"])]


def _file_md5(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _cifar_local(root: str, name: str, stamp: Tuple) -> str:
    folder, files = _cifar_files(name)
    return _sha(f"{f}\t{_file_md5(os.path.join(root, folder, f))}" for f, _ in files)


def _stat_stamp(paths) -> Tuple:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((p, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((p, None, None))
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _folder_listing(root: str, stamp: Tuple) -> str:
    lines = []
    for split in ("train", "val"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, split)):
            dirnames.sort()
            for f in sorted(filenames):
                p = os.path.join(dirpath, f)
                lines.append(f"{os.path.relpath(p, root)}\t{os.path.getsize(p)}")
    return _sha(lines)


def _folder_stamp(root: str) -> Tuple:
    # class folders' mtimes change when files are added or removed: the cache key of a listing
    dirs = []
    for split in ("train", "val"):
        top = os.path.join(root, split)
        dirs.append(top)
        try:
            dirs += sorted(e.path for e in os.scandir(top) if e.is_dir())
        except OSError:
            pass
    return _stat_stamp(dirs)


def data_identity(ds: Mapping[str, Any]) -> Dict[str, Optional[str]]:
    """``{"name", "fingerprint", "basis"}`` of the validated ``dataset`` section ``ds``."""
    name = ds["name"]
    if name == "digits":
        return {"name": name, "fingerprint": "sha256:" + _digits_sha(), "basis": "scikit-learn digits images"}
    root = os.path.realpath(os.path.expanduser(str(ds.get("root") or ".")))
    if name in ("cifar10", "cifar100"):
        folder, files = _cifar_files(name)
        if ds.get("verify_checksums", True):
            return {"name": name, "fingerprint": "sha256:" + _sha(f"{f}\t{m}" for f, m in files),
                    "basis": "official files (MD5-checked)"}
        paths = [os.path.join(root, folder, f) for f, _ in files]
        if not all(os.path.isfile(p) for p in paths):
            return {"name": name, "fingerprint": UNAVAILABLE, "basis": f"files missing under {root}"}
        return {"name": name, "fingerprint": "sha256:" + _cifar_local(root, name, _stat_stamp(paths)),
                "basis": "MD5 of the local files"}
    if name == "imagefolder":
        if not all(os.path.isdir(os.path.join(root, s)) for s in ("train", "val")):
            return {"name": name, "fingerprint": UNAVAILABLE, "basis": f"no train/ and val/ under {root}"}
        return {"name": name, "fingerprint": "sha256:" + _folder_listing(root, _folder_stamp(root)),
                "basis": "relative paths and sizes of every file"}
    return {"name": name, "fingerprint": None, "basis": None}


def hash_fingerprint(ds: Mapping[str, Any]) -> Optional[str]:
    """The data fingerprint the config hash covers; None where the data set's name pins its content."""
    if ds["name"] == "digits" or (ds["name"] in ("cifar10", "cifar100") and ds.get("verify_checksums", True)):
        return None
    return data_identity(ds)["fingerprint"]


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
    sha = _file_sha(path, _stat_stamp([path])) if path and os.path.isfile(path) else None
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
