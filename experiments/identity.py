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
import os
from typing import Any, Dict, Mapping, Optional, Tuple

from kdsuite.core.errors import ConfigError
from kdsuite.core.fileio import file_digest, stat_stamp

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
    return file_digest(path, "md5")


@functools.lru_cache(maxsize=64)
def _cifar_local(root: str, name: str, stamp: Tuple) -> str:
    folder, files = _cifar_files(name)
    return _sha(f"{f}\t{_file_md5(os.path.join(root, folder, f))}" for f, _ in files)


@functools.lru_cache(maxsize=64)
def _folder_listing(root: str, stamp: Tuple) -> str:
    lines = []
    for split in ("train", "val"):
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, split)):
            dirnames.sort()
            for f in sorted(filenames):
                p = os.path.join(dirpath, f)
                lines.append(f"{os.path.relpath(p, root)}\t{_size(p)}")
    return _sha(lines)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError as e:  # a link that leads nowhere: named here, since the run's hash is computed first
        if os.path.islink(path):
            raise ConfigError(f"dataset.root: '{path}' is a symbolic link to '{os.readlink(path)}', which cannot be "
                              f"followed ({e.strerror or e}); remove the link or restore its target") from None
        raise ConfigError(f"dataset.root: '{path}' cannot be read ({e.strerror or e})") from None


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
    return stat_stamp(dirs)


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
        return {"name": name, "fingerprint": "sha256:" + _cifar_local(root, name, stat_stamp(paths)),
                "basis": "MD5 of the local files"}
    if name == "imagefolder":
        views = ds.get("views") or {}
        # paired views: each view folder read (root/<view>/train, …), each listed
        used = list(dict.fromkeys(v for v in (views.get("student"), views.get("teacher")) if v))
        roots = [os.path.join(root, v) for v in used] or [root]
        for r in roots:
            if not all(os.path.isdir(os.path.join(r, s)) for s in ("train", "val")):
                return {"name": name, "fingerprint": UNAVAILABLE, "basis": f"no train/ and val/ under {r}"}
        listings = [_folder_listing(r, _folder_stamp(r)) for r in roots]
        fp = listings[0] if not used else _sha(f"{v}\t{h}" for v, h in zip(used, listings))
        return {"name": name, "fingerprint": "sha256:" + fp,
                "basis": "relative paths and sizes of every file" + (f" of views {', '.join(used)}" if used else "")}
    return {"name": name, "fingerprint": None, "basis": None}


def hash_fingerprint(ds: Mapping[str, Any]) -> Optional[str]:
    """The data fingerprint the config hash covers; None where the data set's name pins its content."""
    if ds["name"] == "digits" or (ds["name"] in ("cifar10", "cifar100") and ds.get("verify_checksums", True)):
        return None
    return data_identity(ds)["fingerprint"]

