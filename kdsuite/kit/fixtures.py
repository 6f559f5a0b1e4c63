"""The kit's fixtures: a plugin built around tiny zoo models (:func:`make`), plugins registered for a block
(:func:`registered`), tiny digits teachers trained through the real run path and cached
(:func:`digits_teachers`), and the parts of a contract run — data, models, plugin, trainer — built without
training (:func:`build_parts`) and stepped one batch at a time (:func:`batches`, :func:`step`).

Role in the flow: the checks (:mod:`kdsuite.kit.checks`) build every run they examine here; the suite's
own method tests use :func:`make` and :func:`stage_step` directly (through :mod:`kdsuite.testing`).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from kdsuite import zoo
from kdsuite.methods.base import BuildContext
from kdsuite.methods.hparams import resolve_hparams
from kdsuite.methods.registry import get_method

TEACHER_ARCHS = ("cifar_resnet20", "cifar_wrn_16_1")
# the views of the digits the contract gives a method that reads the teachers' own view (batch field teacher_x)
CROSS_MODAL_VIEWS = {"teacher": "image", "student": "edges"}


def make(name, teachers=("cifar_resnet20",), student="cifar_resnet8", num_classes=10, **hp):
    cls = get_method(name)
    s = zoo.create_model(student, num_classes=num_classes)
    ts = [zoo.create_model(t, num_classes=num_classes).eval().requires_grad_(False) for t in teachers]
    ctx = BuildContext(num_classes=num_classes, input_shape=(3, 16, 16), epochs=2, steps_per_epoch=5, batch_size=8,
                       num_train=100, train_labels=torch.arange(100) % num_classes, build_model=lambda a, num_classes=num_classes, in_chans=3, **k:
                       zoo.create_model(a, num_classes=num_classes, in_chans=in_chans, **k))
    return cls(s, ts, resolve_hparams(cls.name, cls.hparams, hp), ctx)


@contextlib.contextmanager
def registered(*classes):
    """Register plugin classes for the duration of a ``with`` block (tests of the kit itself, plugins a
    test defines inline); the registry is as before afterwards."""
    from kdsuite.methods import registry

    before = dict(registry._METHODS), dict(registry.ORIGINS)
    try:
        for cls in classes:
            registry.register_method(cls)
        yield classes
    finally:
        registry._METHODS.clear()
        registry._METHODS.update(before[0])
        registry.ORIGINS.clear()
        registry.ORIGINS.update(before[1])


def stage_step(method, batch, trainer) -> Dict[str, torch.Tensor]:
    """One step as the trainer runs it in the stage named by ``method.progress.stage``: that stage's own
    ``step`` (e.g. FitNet's hint stage) or the plugin's ``train_step``; ``trainer`` only needs ``optimize``."""
    stage = next(s for s in method.stages() if s.name == method.progress.stage)
    return (stage.step or method.train_step)(batch, trainer)


def run_data_free(name, hparams, teacher_dir, root, monkeypatch, epochs=6, steps=20, lr=0.1):
    """A data-free run on digits through the real entry point, with the training loader made to fail if
    anything iterates it (the test loader, which does not shuffle, stays usable for evaluation)."""
    import kdsuite.experiments.data as data
    from kdsuite.experiments.run import run

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


# ---- tiny teachers ----------------------------------------------------------------------------------
def default_cache() -> Path:
    return Path(os.environ.get("KDSUITE_CACHE", Path.home() / ".cache" / "kdsuite")) / "teachers"


def digits_teachers(root: os.PathLike | None = None, archs: Sequence[str] = TEACHER_ARCHS) -> List[str]:
    """Folders of tiny teachers (4 epochs on digits) trained through the real run path and exported as
    teacher records. A finished run is reused by its config hash, so a cache folder makes this free
    after the first call."""
    from kdsuite.experiments.run import run

    root = Path(root) if root is not None else default_cache()
    dirs = []
    for arch in archs:
        rec = run({"student": arch, "epochs": 4, "export_teacher": True, "progress": "none",
                   "dataset": {"name": "digits", "batch_size": 32}, "optim": {"lr": 0.05},
                   "output": {"root": str(root)}})
        if rec["status"] != "finished" or rec["metrics"]["last_top1"] <= 50.0:
            raise AssertionError(f"tiny teacher {arch} did not train: {rec['status']}, {rec.get('metrics')}")
        dirs.append(rec["run_dir"])
    return dirs


# ---- the contract -----------------------------------------------------------------------------------
def contract_config(name: str, teacher_dirs: Sequence[str], root: os.PathLike, epochs: int = 3, steps: int = 8) -> Dict:
    cls = get_method(name)
    spec = cls.num_teachers
    n = spec if isinstance(spec, int) else spec[0]
    if n > len(teacher_dirs):
        raise ValueError(f"method '{name}' needs {n} teachers; {len(teacher_dirs)} given")
    dataset = {"name": "digits", "batch_size": 32}
    if "teacher_x" in cls.batch_fields:  # cross-modal: the (image-trained) teachers on their view, the student on another
        dataset["views"] = dict(CROSS_MODAL_VIEWS)
    if "aug_x" in cls.batch_fields:  # two augmented views of each sample (MLKD): the weak and a strong one
        dataset["aug_views"] = ["weak", "strong"]
    return {"student": "cifar_resnet8", "teachers": [{"checkpoint": d} for d in teacher_dirs[:n]],
            "method": {"name": name, "hparams": dict(cls.smoke_hparams)}, "epochs": epochs,
            "max_steps_per_epoch": steps, "dataset": dataset,
            "optim": {"lr": 0.05}, "output": {"root": str(root)}, "progress": "none", "eval_every": 100}


def build_parts(name: str, teacher_dirs: Sequence[str], root: os.PathLike, **kw):
    """Everything a run builds (data, models, plugin, trainer) without training: ``RunParts``."""
    from kdsuite.experiments.run import build, prepare

    cfg, h, run_dir = prepare(contract_config(name, teacher_dirs, root, **kw))
    return build(cfg, h, run_dir)


def batches(parts, n: int) -> list:
    loader = parts.trainer.train_loader
    if loader is None:
        return [None] * n
    it = iter(loader)
    return [next(it) for _ in range(n)]


def step(parts, batch, i: int) -> Dict[str, torch.Tensor]:
    torch.manual_seed(1000 + i)
    return parts.trainer.step_at(batch, i)


def _state(module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
