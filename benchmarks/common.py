"""Shared pieces of the benchmarks: timing with warm-up and synchronisation, machine description,
JSON results written to ``benchmarks/results/``."""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kdsuite.core.fileio import atomic_write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], None], device: torch.device, warmup: int = 3, reps: int = 10) -> List[float]:
    """Seconds per call of ``fn`` (``reps`` samples after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
    return out


def summary(samples: List[float]) -> Dict[str, float]:
    return {"median_s": statistics.median(samples), "min_s": min(samples),
            "stdev_s": statistics.stdev(samples) if len(samples) > 1 else 0.0, "n": len(samples)}


def machine() -> Dict[str, str]:
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_threads": str(torch.get_num_threads()), "cpus": str(os.cpu_count())}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write(name: str, payload: Dict) -> Path:
    payload = dict(payload, machine=machine(), date=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    path = atomic_write_json(RESULTS / f"{name}.json", payload)
    print(f"wrote {path}")
    return path


def write_fake_cifar100(root: Path, n_train: int = 50000, n_test: int = 10000) -> Path:
    """Random images in the official CIFAR-100 on-disk layout (pickled dicts): speed does not depend
    on pixel values, and nothing can be downloaded on a benchmark machine without internet."""
    import pickle

    import numpy as np

    folder = Path(root) / "cifar-100-python"
    if (folder / "train").exists():
        return Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("test", n_test)):
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "fine_labels": rng.integers(0, 100, n).tolist()}, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, fh)
    return Path(root)
