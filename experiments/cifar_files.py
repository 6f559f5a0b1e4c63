"""Reading CIFAR batch files without running code from them.

The official ``cifar-10-batches-py`` / ``cifar-100-python`` files are pickled dicts (``data``: a uint8
array of shape (N, 3072), ``labels`` or ``fine_labels``: lists of ints; a meta file with the class
names). Plain :mod:`pickle` runs whatever a file asks for, so a file that is not the official one (the
case when ``dataset.verify_checksums: false``) could execute code. :func:`load_batch` admits only what
that format needs: numpy's array reconstruction, dtypes, and Python's own containers and scalars; any
other global in the file is refused with a :class:`ConfigError` naming the file.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np

from kdsuite.core.errors import ConfigError

# (module, name) pairs a CIFAR batch may refer to: numpy 1.x and 2.x spellings of array
# reconstruction (protocols 2–5) and the latin-1 codec Python 3 uses for bytes under protocol 2
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refers to {module}.{name}, which a CIFAR batch never holds")


def _unpickle(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            return _Restricted(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, UnicodeDecodeError, MemoryError, OverflowError) as e:
        raise ConfigError(f"'{path}' is not a CIFAR batch file ({type(e).__name__}: {e}); replace it with the "
                          f"official file") from None


def load_batch(path: Path, label_key: str) -> Tuple[np.ndarray, List[int]]:
    """``(data, labels)`` of one batch file: data uint8 (N, 3072), labels N ints."""
    entry = _unpickle(path)
    if not isinstance(entry, dict) or "data" not in entry or label_key not in entry:
        keys = sorted(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__
        raise ConfigError(f"'{path}' is not a CIFAR batch file: expected a dict with 'data' and '{label_key}', "
                          f"got {keys}")
    data, labels = entry["data"], entry[label_key]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ConfigError(f"'{path}': 'data' must be a uint8 array of shape (N, 3072), got {got}")
    if not (isinstance(labels, list) and len(labels) == len(data)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in labels)):
        raise ConfigError(f"'{path}': '{label_key}' must be a list of {len(data)} integer labels")
    return data, labels


def load_meta(path: Path, key: str) -> List[str]:
    entry = _unpickle(path)
    names = entry.get(key) if isinstance(entry, dict) else None
    if not (isinstance(names, list) and all(isinstance(n, (str, bytes)) for n in names)):
        raise ConfigError(f"'{path}' is not a CIFAR meta file: expected a dict with a list '{key}' of class names")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def read_split(folder: Path, files: List[str], label_key: str, num_classes: int) -> Tuple[np.ndarray, List[int]]:
    """The images (N, 32, 32, 3) and labels of the batch files ``files`` in ``folder``."""
    datas, labels = [], []
    for name in files:
        d, l = load_batch(folder / name, label_key)
        bad = [v for v in l if not 0 <= v < num_classes]
        if bad:
            raise ConfigError(f"'{folder / name}': label {bad[0]} is outside 0..{num_classes - 1}")
        datas.append(d)
        labels.extend(l)
    return np.vstack(datas).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1)), labels
