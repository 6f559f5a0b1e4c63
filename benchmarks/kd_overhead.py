"""KD overhead: time of one kdsuite distillation step divided by (one student training step + one
teacher forward) on the same batch and models. 1.0 is the lower bound: anything above it is what the
method and the trainer add. Measured for KD and, when registered, one feature method (AT or FitNets)
and one relation method (RKD).

    python benchmarks/kd_overhead.py [--teacher cifar_resnet32x4 --student cifar_resnet8x4] [--batch 64]
"""
from __future__ import annotations

import argparse
from types import SimpleNamespace

import torch

from common import summary, time_fn, write

from kdsuite import zoo
from kdsuite.methods.base import BuildContext
from kdsuite.methods.hparams import resolve_hparams
from kdsuite.methods.registry import get_method, list_methods
from kdsuite.engine.trainer import Trainer, TrainSettings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="cifar_resnet32x4")
    ap.add_argument("--student", default="cifar_resnet8x4")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--methods", default="kd,at,fitnet_1stage,rkd")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
    y = torch.randint(0, args.classes, (args.batch,), device=dev)
    ac = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if args.precision == "bf16" else \
        (lambda: torch.autocast(dev.type, enabled=False))

    def fresh(arch):
        torch.manual_seed(0)
        return zoo.create_model(arch, num_classes=args.classes).to(dev)

    teacher = fresh(args.teacher).eval().requires_grad_(False)
    student = fresh(args.student)
    opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)

    def student_step():
        with ac():
            loss = torch.nn.functional.cross_entropy(student(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def teacher_fwd():
        with torch.no_grad(), ac():
            teacher(x)

    base_s = summary(time_fn(student_step, dev, reps=args.reps))
    base_t = summary(time_fn(teacher_fwd, dev, reps=args.reps))
    baseline = base_s["median_s"] + base_t["median_s"]
    registered = {m.name for m in list_methods()}
    results = {}
    for name in args.methods.split(","):
        if name not in registered:
            print(f"{name}: not registered, skipped")
            continue
        cls = get_method(name)
        ctx = BuildContext(num_classes=args.classes, input_shape=(3, args.size, args.size), epochs=1,
                           steps_per_epoch=100, batch_size=args.batch, num_train=50000)
        method = cls(fresh(args.student), [teacher], resolve_hparams(cls.name, cls.hparams, {}), ctx)
        tr = Trainer(method, [(x, y)], None, TrainSettings(precision=args.precision, progress="none"), dev)
        tr.enter_stage(-1)
        method.train()

        def kd_step():
            with tr.autocast():
                method.train_step((x, y), tr)

        s = summary(time_fn(kd_step, dev, reps=args.reps))
        ratio = s["median_s"] / baseline
        results[name] = {"step": s, "ratio": ratio}
        print(f"{name:<14} step {s['median_s'] * 1e3:8.1f} ms   overhead ratio {ratio:.3f}")
    print(f"baseline: student step {base_s['median_s'] * 1e3:.1f} ms + teacher forward {base_t['median_s'] * 1e3:.1f} ms")
    write(f"kd_overhead_{dev.type}", {"args": vars(args), "student_step": base_s, "teacher_forward": base_t,
                                      "methods": results})


if __name__ == "__main__":
    main()
