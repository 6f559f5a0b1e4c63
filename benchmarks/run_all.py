"""Run every benchmark with its defaults for this machine (small sizes on CPU)."""
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
cuda = torch.cuda.is_available()
jobs = [
    ["kd_overhead.py"] + ([] if cuda else ["--teacher", "cifar_resnet20", "--student", "cifar_resnet8"]),
    ["plain_loop.py"],
    ["fast_path.py"] + ([] if cuda else ["--n", "2000", "--epochs", "2", "--modes", "off"]),
    ["check_method.py"],
    ["grid_packing.py"] + ([] if cuda else ["--runs", "2", "--n", "2000", "--student", "cifar_resnet8"]),
]
for job in jobs:
    print(f"== {' '.join(job)}", flush=True)
    subprocess.run([sys.executable, str(HERE / job[0])] + job[1:], check=True, cwd=HERE)
