"""Building a plugin around tiny zoo models for the per-method tests."""
import torch

import zoo
from methods.base import BuildContext
from methods.hparams import resolve_hparams
from methods.registry import get_method


def make(name, teachers=("cifar_resnet20",), student="cifar_resnet8", num_classes=10, **hp):
    cls = get_method(name)
    s = zoo.create_model(student, num_classes=num_classes)
    ts = [zoo.create_model(t, num_classes=num_classes).eval().requires_grad_(False) for t in teachers]
    ctx = BuildContext(num_classes=num_classes, input_shape=(3, 16, 16), epochs=2, steps_per_epoch=5, batch_size=8,
                       num_train=100, train_labels=torch.arange(100) % num_classes, build_model=lambda a, num_classes=num_classes, in_chans=3, **k:
                       zoo.create_model(a, num_classes=num_classes, in_chans=in_chans, **k))
    return cls(s, ts, resolve_hparams(cls.name, cls.hparams, hp), ctx)


def run_data_free(name, hparams, teacher_dir, root, monkeypatch, epochs=6, steps=20, lr=0.1):
    """A data-free run on digits through the real entry point, with the training loader made to fail if
    anything iterates it (the test loader, which does not shuffle, stays usable for evaluation)."""
    import experiments.data as data
    from experiments.run import run

    real_iter = data.TensorLoader.__iter__

    def guarded(self):
        if self.shuffle:
            raise AssertionError(f"the data-free student of '{name}' touched the training loader")
        return real_iter(self)

    monkeypatch.setattr(data.TensorLoader, "__iter__", guarded)
    rec = run({"student": "cifar_resnet8", "method": {"name": name, "hparams": hparams}, "teachers": [teacher_dir],
               "epochs": epochs, "max_steps_per_epoch": steps, "progress": "none", "optim": {"lr": lr},
               "schedule": {"name": "cosine"}, "teacher_cache": False, "dataset": {"name": "digits"},
               "output": {"root": str(root)}})
    print(f"{name} data-free student top-1:", rec["metrics"]["last_top1"], "teacher:", rec["metrics"]["teacher_top1"])
    return rec
