"""kdsuite's KD training against a plain PyTorch loop written the way the classic KD tutorials write it
(teacher in eval + no_grad, student SGD, a DataLoader, ``loss.item()`` each step for the running loss):
same models, same data, same batch, same precision. Reports images/s of both and their ratio.

Each side runs in a fresh process (alternating, ``--rounds`` times), so neither inherits the other's
allocator state or warm caches: the plain loop gets the process a user's script would get, kdsuite the
one its trainer sets up (on CPU that includes :mod:`kdsuite.engine.cpu_memory`).

    python benchmarks/plain_loop.py [--teacher cifar_resnet20 --student cifar_resnet8] [--n 2048]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from common import write

from kdsuite import zoo
from kdsuite.experiments.data import TensorLoader
from kdsuite.methods.base import BuildContext
from kdsuite.methods.hparams import resolve_hparams
from kdsuite.methods.registry import get_method
from kdsuite.engine.trainer import Trainer, TrainSettings


def plain_kd(teacher, student, loader, epochs=2, T=4.0, alpha=0.1, device="cpu"):
    """images/s of the last of ``epochs`` epochs (the first ones warm caches and allocators)."""
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    teacher.eval()
    student.train()
    for _ in range(epochs):
        rate = _plain_epoch(teacher, student, loader, opt, T, alpha, device)
    return rate


def _plain_epoch(teacher, student, loader, opt, T, alpha, device):
    running = 0.0
    seen = 0
    t0 = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with torch.no_grad():
            t_logits = teacher(x)
        s_logits = student(x)
        soft = F.kl_div(F.log_softmax(s_logits / T, dim=1), F.softmax(t_logits / T, dim=1),
                        reduction="batchmean") * T * T
        loss = alpha * F.cross_entropy(s_logits, y) + (1 - alpha) * soft
        opt.zero_grad()
        loss.backward()
        opt.step()
        running += loss.item()
        seen += x.shape[0]
    if device != "cpu":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def kdsuite_kd(teacher, student, x, y, batch, classes, size, device, epochs=2):
    """images/s of kdsuite's trainer in the last of ``epochs`` epochs."""
    cls = get_method("kd")
    ctx = BuildContext(num_classes=classes, input_shape=(3, size, size), epochs=epochs, steps_per_epoch=len(x) // batch,
                       batch_size=batch, num_train=len(x))
    method = cls(student, [teacher], resolve_hparams("kd", cls.hparams, {}), ctx)
    loader = TensorLoader(x, y, batch, shuffle=True).to(device)
    settings = TrainSettings(epochs=epochs, progress="none", log_every=10 ** 9,
                             optim={"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4})
    res = Trainer(method, loader, None, settings, device).fit()
    return len(loader) * batch / res.history[-1]["train_time_s"]


def one_side(args) -> float:
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, 3, args.size, args.size, generator=g)
    y = torch.randint(0, args.classes, (args.n,), generator=g)
    torch.manual_seed(0)
    t = zoo.create_model(args.teacher, num_classes=args.classes).to(dev)
    s = zoo.create_model(args.student, num_classes=args.classes).to(dev)
    if args.side == "plain":
        dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=args.batch, shuffle=True,
                                         drop_last=True)
        return plain_kd(t, s, dl, device=dev.type)
    return kdsuite_kd(t.requires_grad_(False), s, x, y, args.batch, args.classes, args.size, dev)


def main() -> None:
    import json
    import subprocess
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="cifar_resnet20")
    ap.add_argument("--student", default="cifar_resnet8")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--side", choices=["plain", "kdsuite"], help=argparse.SUPPRESS)  # internal: one measurement
    args = ap.parse_args()
    if args.side:
        print("RATE", json.dumps(one_side(args)))
        return
    rates = {"plain": [], "kdsuite": []}
    for r in range(args.rounds):  # interleaved so drifts in machine load hit both alike
        for side in ("plain", "kdsuite") if r % 2 == 0 else ("kdsuite", "plain"):
            out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--side", side], capture_output=True,
                                 text=True, check=True).stdout
            rates[side].append(json.loads(out.split("RATE", 1)[1]))
        print(f"round {r + 1}: plain loop {rates['plain'][-1]:.0f} img/s, kdsuite {rates['kdsuite'][-1]:.0f} img/s")
    best_plain, best_ours = max(rates["plain"]), max(rates["kdsuite"])
    print(f"kdsuite / plain loop (best warm epoch of {args.rounds} rounds each): {best_ours / best_plain:.3f}")
    write(f"plain_loop_{args.device.split(':')[0]}", {
        "args": vars(args), "plain_images_per_s": rates["plain"], "kdsuite_images_per_s": rates["kdsuite"],
        "ratio_best": best_ours / best_plain})


if __name__ == "__main__":
    main()
