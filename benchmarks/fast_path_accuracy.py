"""Does the fast path change accuracy? A short CIFAR-shaped KD run with the fast path on and off.

The data: scikit-learn's digits, upsampled to 32×32×3 and written in the official CIFAR-10 on-disk
layout (pickled batches), so both runs read them through the real CIFAR code: with the fast path off,
torchvision's dataset + DataLoader with RandomCrop(32, 4) + flip, fp32; with it on, the whole set as one
tensor with batched crop + flip, bf16 autocast, channels_last. A resnet20 teacher (fp32) teaches a
resnet8 student with KD; 3 seeds per mode; the script prints mean ± std of the final top-1 of both.
On a CPU bf16 autocast is slow (it is meant for GPUs), so this checks accuracy, not speed.

    python benchmarks/fast_path_accuracy.py [--epochs 8] [--seeds 3]
"""
from __future__ import annotations

import argparse
import pickle
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import write

from kdsuite.experiments.data import load_digits_split
from kdsuite.experiments.run import run


def write_digits_as_cifar10(root: Path) -> Path:
    xtr, ytr, xte, yte, _mean, _std = load_digits_split(32)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def to_uint8(x):  # the split is normalised; map back to 0..255 images
        x = x[:, :1]
        x = (x - x.min()) / (x.max() - x.min())
        x = F.interpolate(x, size=(32, 32)) if x.shape[-1] != 32 else x
        return (x.repeat(1, 3, 1, 1) * 255).round().to(torch.uint8).reshape(len(x), 3072).numpy()

    data, labels = to_uint8(xtr), ytr.tolist()
    parts = np.array_split(np.arange(len(labels)), 5)
    for i, idx in enumerate(parts, start=1):
        with open(folder / f"data_batch_{i}", "wb") as fh:
            pickle.dump({"data": data[idx], "labels": [labels[j] for j in idx]}, fh)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": to_uint8(xte), "labels": yte.tolist()}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, fh)
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_digits_as_cifar10(Path(tmp) / "data")
        ds = {"name": "cifar10", "root": str(root), "download": False, "verify_checksums": False,
              "batch_size": 64, "eval_batch_size": 512}
        common = {"progress": "none", "dataset": ds, "schedule": {"name": "cosine"}, "output": {"root": f"{tmp}/runs"}}
        teacher = run({**common, "student": "cifar_resnet20", "epochs": args.epochs, "export_teacher": True,
                       "fast_path": False})
        print(f"teacher resnet20: {teacher['metrics']['last_top1']:.2f}")
        out = {}
        for fast in (False, True):
            accs = []
            for seed in range(args.seeds):
                rec = run({**common, "student": "cifar_resnet8", "epochs": args.epochs, "seed": seed,
                           "method": {"name": "kd"}, "teachers": [teacher["run_dir"]], "fast_path": fast})
                accs.append(rec["metrics"]["last_top1"])
                print(f"fast_path={fast} seed {seed}: top-1 {accs[-1]:.2f} ({rec['effective']})")
            out["on" if fast else "off"] = accs
        for k, v in out.items():
            print(f"fast path {k}: {statistics.mean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.2f}")
        write("fast_path_accuracy_cpu", {"args": vars(args), "teacher_top1": teacher["metrics"]["last_top1"],
                                         "top1_off": out["off"], "top1_on": out["on"]})


if __name__ == "__main__":
    main()
