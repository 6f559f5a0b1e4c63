"""Throughput of a KD run (default resnet32x4 → resnet8x4, CIFAR-100-shaped data, batch 64) with and
without the fast path (bf16 autocast, channels_last, GPU-resident data with batched crop/flip,
teacher-output cache off because of augmentation), and the projected wall time of a 240-epoch run.

    python benchmarks/fast_path.py [--epochs 1] [--n 50000] [--teacher ...] [--student ...]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from common import write, write_fake_cifar100

from kdsuite.experiments.run import run
from kdsuite.zoo.teachers import save_teacher
from kdsuite import zoo


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="cifar_resnet32x4")
    ap.add_argument("--student", default="cifar_resnet8x4")
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--modes", default="off,on")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kdsuite-bench-"))
    data_root = write_fake_cifar100(tmp / "data", n_train=args.n, n_test=max(1000, args.n // 5))
    teacher_dir = tmp / "teacher"
    save_teacher(zoo.create_model(args.teacher, num_classes=100), teacher_dir,
                 {"arch": args.teacher, "num_classes": 100, "dataset": "cifar100", "in_chans": 3})
    out = {}
    for mode in args.modes.split(","):
        fast = mode == "on"
        cfg = {"student": args.student, "method": "kd", "teachers": [str(teacher_dir)], "epochs": args.epochs,
               "fast_path": fast, "progress": "none", "eval_every": 1000,
               "dataset": {"name": "cifar100", "root": str(data_root), "download": False, "verify_checksums": False,
                           "batch_size": args.batch, "num_workers": 0 if fast else args.workers},
               "output": {"root": str(tmp / f"runs-{mode}")}}
        rec = run(cfg)
        epoch_s = rec["history"][-1]["train_time_s"]  # last epoch: warm
        ips = args.n / epoch_s
        out[mode] = {"images_per_s": ips, "epoch_s": epoch_s, "projected_240_epochs_h": 240 * epoch_s / 3600,
                     "effective": rec["effective"], "top1_last": rec["metrics"]["last_top1"]}
        print(f"fast path {mode:>3}: {ips:8.0f} img/s, {epoch_s:6.1f} s/epoch, 240 epochs ≈ "
              f"{out[mode]['projected_240_epochs_h']:.2f} h  ({rec['effective']})")
    if "on" in out and "off" in out:
        print(f"speed-up: {out['on']['images_per_s'] / out['off']['images_per_s']:.2f}x")
    write(f"fast_path_{'cuda' if torch.cuda.is_available() else 'cpu'}", {"args": vars(args), "results": out})


if __name__ == "__main__":
    main()
