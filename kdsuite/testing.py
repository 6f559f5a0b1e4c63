"""The plugin authors' kit: build a plugin around tiny zoo models, train (and cache) tiny digits teachers,
and run the contract every registered method meets — the same checks as the suite's own
``tests/test_method_contract.py`` and ``kdsuite check-method NAME``:

- :func:`check_gradients`: finite losses; after one step of the final stage every parameter of the active
  optimizer groups has a gradient, every other parameter is unchanged, frozen teachers neither receive
  gradients nor change;
- :func:`check_resume`: a checkpoint/resume round trip (through the safe loader) reproduces the next step
  exactly, every optimizer, peer, generator and discriminator included;
- :func:`check_learning`: a few dozen steps on digits lower the method's ``distill_terms``; for a min-max
  method (``adversary_groups``, which raise those terms on purpose) the student's own objective falls
  against the adversary held fixed.

Each check raises ``AssertionError`` with the method's name and what failed.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

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


def check_gradients(name: str, teacher_dirs: Sequence[str], root: os.PathLike) -> None:
    parts = build_parts(name, teacher_dirs, root)
    tr, m = parts.trainer, parts.method
    tr.enter_stage(-1)
    teacher_before = [_state(t) for t in m.teachers]
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    (batch,) = batches(parts, 1)
    losses = step(parts, batch, 0)
    assert losses, f"{name}: train_step returned no losses"
    for k, v in losses.items():
        assert torch.isfinite(v).all(), f"{name}: loss {k} is not finite: {v}"
    active = {id(p) for g in tr.optimizers for p in tr.groups[g].params}
    for n, p in m.named_parameters():
        if id(p) in active:
            assert p.grad is not None, f"{name}: active parameter {n} received no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}: gradient of {n} is not finite"
        else:
            assert torch.equal(p, before[n]), f"{name}: parameter {n} is in no active optimizer but changed"
    for g in tr.optimizers:
        ids = {id(q) for q in tr.groups[g].params}
        changed = [n for n, p in m.named_parameters() if id(p) in ids and not torch.equal(p, before[n])]
        assert changed, f"{name}: optimizer group '{g}' stepped but changed no parameter"
    for t, sd in zip(m.teachers, teacher_before):
        for n, p in t.named_parameters():
            assert p.grad is None, f"{name}: frozen teacher parameter {n} received a gradient"
        for k, v in t.state_dict().items():
            assert torch.equal(v, sd[k]), f"{name}: frozen teacher tensor {k} changed"


def check_resume(name: str, teacher_dirs: Sequence[str], root: os.PathLike) -> None:
    a = build_parts(name, teacher_dirs, Path(root) / "a")
    b = build_parts(name, teacher_dirs, Path(root) / "b")
    a.trainer.enter_stage(-1)
    b.trainer.enter_stage(-1)
    bs = batches(a, 3)
    step(a, bs[0], 0)
    step(a, bs[1], 1)
    buf = io.BytesIO()
    torch.save({"method": a.method.state_dict(),
                "optimizers": {n: o.state_dict() for n, o in a.trainer.optimizers.items()}}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    b.method.load_state_dict(ckpt["method"])
    for n, o in b.trainer.optimizers.items():
        o.load_state_dict(ckpt["optimizers"][n])
    la = step(a, bs[2], 2)
    lb = step(b, bs[2], 2)
    for k in la:
        assert torch.equal(la[k], lb[k]), f"{name}: loss {k} differs after resume"
    sa, sb = a.method.state_dict(), b.method.state_dict()
    assert sa.keys() == sb.keys(), f"{name}: state keys differ after resume"
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{name}: {k} differs after resume"


def check_learning(name: str, teacher_dirs: Sequence[str], root: os.PathLike) -> str:
    """Returns a one-line account of what fell, e.g. ``"kd 1.23 → 0.45"``."""
    parts = build_parts(name, teacher_dirs, root)
    cls = type(parts.method)
    if cls.adversary_groups:
        return _check_against_fixed_adversary(name, parts)
    res = parts.trainer.fit()
    assert res.status == "finished", f"{name}: run ended {res.status}"
    final_stage = parts.method.stages()[-1].name
    hist = [h for h in res.history if h["stage"] == final_stage]
    assert len(hist) >= 2, f"{name}: fewer than two epochs logged in stage {final_stage}"
    keys = [k[len("train/"):] for k in hist[0] if k.startswith("train/") and k != "train/loss"]
    terms = list(cls.distill_terms) if cls.distill_terms is not None else [k for k in keys if k != "ce"] or ["ce"]
    missing = [t for t in terms if f"train/{t}" not in hist[0]]
    assert not missing, f"{name}: distill_terms {missing} never logged; logged: {keys}"
    first = sum(hist[0][f"train/{t}"] for t in terms)
    last = sum(hist[-1][f"train/{t}"] for t in terms)
    assert last < first, f"{name}: {terms} went from {first:.4f} to {last:.4f}"
    return f"{'+'.join(terms)} {first:.4f} → {last:.4f}"


def _check_against_fixed_adversary(name: str, parts, steps: int = 50) -> str:
    """A min-max method's adversary raises the student's terms on purpose, so those terms falling over a
    run is luck, not a property. What holds: with the adversary's optimizers at lr 0, the student's own
    objective falls, and the adversary does not move."""
    tr, m = parts.trainer, parts.method
    tr.enter_stage(-1)
    for g in m.adversary_groups:
        for pg in tr.optimizers[g].param_groups:
            pg["lr"] = pg["initial_lr"] = 0.0
            pg["weight_decay"] = 0.0
    adversary = {id(p) for g in m.adversary_groups for p in tr.groups[g].params}
    before = {n: p.detach().clone() for n, p in m.named_parameters() if id(p) in adversary}
    terms = list(m.distill_terms)
    values = []
    for i in range(steps):
        (batch,) = batches(parts, 1)
        losses = step(parts, batch, i)
        values.append(sum(losses[t].item() for t in terms))
    for n, p in m.named_parameters():
        if n in before:
            assert torch.equal(p, before[n]), f"{name}: adversary parameter {n} moved at lr 0"
    first, last = sum(values[:5]) / 5, sum(values[-5:]) / 5
    assert last < 0.9 * first, f"{name}: {terms} against a fixed adversary went from {first:.4f} to {last:.4f}"
    return f"{'+'.join(terms)} against a fixed {'/'.join(m.adversary_groups)} {first:.4f} → {last:.4f}"


CHECKS: Tuple[Tuple[str, Callable], ...] = (("gradients reach exactly the learners", check_gradients),
                                            ("checkpoint/resume reproduces the next step", check_resume),
                                            ("the method learns", check_learning))


def check_method(name: str, root: os.PathLike, teacher_dirs: Sequence[str] | None = None, report=print) -> bool:
    """Run the whole contract on method ``name``; report each check; True when all pass."""
    teacher_dirs = list(teacher_dirs) if teacher_dirs is not None else digits_teachers()
    ok = True
    for i, (title, fn) in enumerate(CHECKS):
        try:
            detail = fn(name, teacher_dirs, Path(root) / f"check{i}")
            report(f"  ok    {title}" + (f" ({detail})" if isinstance(detail, str) else ""))
        except AssertionError as err:
            ok = False
            report(f"  FAIL  {title}: {err}")
    return ok
