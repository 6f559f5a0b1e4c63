"""Grid packing: N small runs on one device at once (one process each, `kdsuite.slurm.packing.run_packed`)
against the same N runs one after another; reports total images/s of both. Meant for a GPU, where a
CIFAR student leaves most of the device idle; it runs on CPU too.

    python benchmarks/grid_packing.py [--runs 4] [--n 10000] [--epochs 1]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import write, write_fake_cifar100

from kdsuite.slurm.packing import run_packed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--student", default="cifar_resnet8x4")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kdsuite-pack-"))
    root = write_fake_cifar100(tmp / "data", n_train=args.n, n_test=1000)

    def cfgs(tag):
        return [{"student": args.student, "epochs": args.epochs, "seed": s, "progress": "none", "eval_every": 1000,
                 "dataset": {"name": "cifar100", "root": str(root), "download": False, "verify_checksums": False},
                 "output": {"root": str(tmp / tag)}} for s in range(args.runs)]

    t0 = time.perf_counter()
    for c in cfgs("sequential"):
        run_packed([c])
    seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = run_packed(cfgs("packed"))
    packed = time.perf_counter() - t0
    assert all(r["status"] == "finished" for r in res), res
    images = args.runs * args.n * args.epochs
    print(f"{args.runs} runs one at a time: {images / seq:.0f} img/s total ({seq:.1f} s)")
    print(f"{args.runs} runs packed:         {images / packed:.0f} img/s total ({packed:.1f} s); "
          f"gain {seq / packed:.2f}x")
    write(f"grid_packing_{'cuda' if torch.cuda.is_available() else 'cpu'}",
          {"args": vars(args), "sequential_s": seq, "packed_s": packed, "gain": seq / packed})


if __name__ == "__main__":
    main()
