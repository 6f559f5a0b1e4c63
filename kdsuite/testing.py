"""The plugin authors' kit: build a plugin around tiny zoo models, train (and cache) tiny digits teachers,
and run the contract every registered method meets — the same checks as the suite's own
``tests/test_method_contract.py`` and ``kdsuite check-method NAME``:

- :func:`check_gradients`: finite losses; after one step of the final stage every parameter of the active
  optimizer groups has a gradient, every other parameter is unchanged, frozen teachers neither receive
  gradients nor change (catches a NaN term, a module left out of the optimizer);
- :func:`check_term_gradients`: each distillation term *on its own* reaches the student's parameters and no
  teacher's (catches a term detached from the student, a dropped term; the summed loss hides both, as its
  CE alone reaches every parameter);
- :func:`check_toward_teacher`: with the label terms off, a few dozen steps lower the method's discrepancy
  to its teacher (KL of predictions on held-out batches, or its own terms on fresh ones) against the
  untouched student (catches a sign flip: a negated term "falls" while the student moves away);
- :func:`check_deployed`: a short run through every stage finishes, ``eval_models()["student"]`` is the
  deployed student, the recorded top-1 is that model's, and every module it runs is in its parameter count
  and its export (catches the wrong model evaluated, a borrowed part left out of the count or export);
- :func:`check_adversary` (min-max methods): the adversary alone raises the student's terms, and against the
  adversary held fixed the student's objective falls (catches a reversal or a sign removed);
- :func:`check_resume`: a checkpoint/resume round trip (through the safe loader) reproduces the next step
  exactly, every optimizer, peer, generator and discriminator included.

:func:`run_checks` runs them all; a check that raises anything fails with that message (the later checks still
run), a check that does not apply says why (``skip``). Each check raises ``AssertionError`` with the method's name and what failed.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
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
    """The older, weaker check (kept for callers): a short run's distill terms fall over its epochs. A
    sign-flipped term falls too; :func:`check_toward_teacher` is the check that tells."""
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


class CheckSkipped(Exception):
    """A check that does not apply to this method (reported as ``skip`` with the reason)."""


_LABEL_RE = re.compile(r"(b?ce|ce_.*|ce\d+.*)")


def is_label_term(cls, key: str) -> bool:
    """Whether loss ``key`` of method ``cls`` fits the labels (its ``label_terms``, or by name: ``ce``,
    ``bce``, ``ce_*``, ``ce0`` …)."""
    own = getattr(cls, "label_terms", None)
    return key in own if own is not None else bool(_LABEL_RE.fullmatch(key))


def distillation_terms(cls, keys: Sequence[str] = ()) -> List[str]:
    """The method's distillation terms: ``distill_terms`` (else ``keys``) without the label terms."""
    declared = cls.distill_terms if cls.distill_terms is not None else keys
    return [k for k in declared if not is_label_term(cls, k)]


def _groups(groups) -> List[str]:
    return [groups] if isinstance(groups, str) else list(groups)


@contextlib.contextmanager
def _patched_optimize(trainer, fn):
    """``trainer.optimize`` replaced by ``fn(real, groups, losses, retain_graph)`` inside the block."""
    real = trainer.optimize

    def optimize(groups, losses, retain_graph=False):
        return fn(real, groups, losses, retain_graph)

    trainer.optimize = optimize
    try:
        yield
    finally:
        del trainer.optimize


def _enter_distilling_stage(parts) -> List[str]:
    """Enter the last stage whose step returns a distillation term (FSP and AB distil in their first stage
    and train on labels after); returns that step's loss keys. A probe step with the optimizers idle, its
    state restored."""
    tr, m = parts.trainer, parts.method
    cls = type(m)
    n = len(m.stages())
    keys: List[str] = []
    for idx in range(n - 1, -1, -1):
        tr.enter_stage(idx)
        if n == 1:
            return []
        saved = _state(m)
        with _patched_optimize(tr, lambda real, g, losses, rg: None):
            (batch,) = batches(parts, 1)
            keys = list(step(parts, batch, 0))
        m.load_state_dict(saved)
        if distillation_terms(cls, keys):
            return keys
    tr.enter_stage(-1)
    return keys


def _nonzero(grads) -> bool:
    return any(g is not None and bool((g != 0).any()) for g in grads)


def check_term_gradients(name: str, teacher_dirs: Sequence[str], root: os.PathLike, steps: int = 2) -> str:
    """Each distillation term on its own (not the summed loss, where the CE term alone reaches every
    parameter) sends a non-zero, finite gradient to the student parameters of the groups it is optimised
    for, and none to a teacher parameter. A term must reach ``trainer.optimize`` under its own key."""
    parts = build_parts(name, teacher_dirs, root)
    tr, m = parts.trainer, parts.method
    cls = type(m)
    _enter_distilling_stage(parts)
    student = [p for p in m.student.parameters() if p.requires_grad]
    teacher = [(f"teacher{i}.{n}", p) for i, t in enumerate(m.teachers) for n, p in t.named_parameters()]
    reached: Dict[str, bool] = {}
    into_teacher: List[str] = []
    nonfinite: List[str] = []

    def spy(real, groups, losses, retain_graph):
        if isinstance(losses, dict):
            ids = {id(p) for g in _groups(groups) for p in tr.groups[g].params}
            targets = [p for p in student if id(p) in ids] or [p for g in _groups(groups) for p in tr.groups[g].params]
            for k in distillation_terms(cls, list(losses)):
                if k not in losses:
                    continue
                v = losses[k]
                ok = False
                if v.requires_grad and targets:
                    gs = torch.autograd.grad(v, targets, retain_graph=True, allow_unused=True)
                    ok = _nonzero(gs)
                    if any(g is not None and not torch.isfinite(g).all() for g in gs):
                        nonfinite.append(k)
                    live = [(n, p) for n, p in teacher if p.requires_grad]
                    if live:
                        tg = torch.autograd.grad(v, [p for _, p in live], retain_graph=True, allow_unused=True)
                        into_teacher.extend(f"{k} → {n}" for (n, _), g in zip(live, tg) if _nonzero([g]))
                reached[k] = reached.get(k, False) or ok
        return real(groups, losses, retain_graph)

    with _patched_optimize(tr, spy):
        seen: List[str] = []
        for i, batch in enumerate(batches(parts, steps)):
            out = step(parts, batch, i)
            seen += [k for k in out if k not in seen]
    terms = distillation_terms(cls, seen)
    if not terms:
        _no_terms(name, cls, m, seen)
    assert not into_teacher, f"{name}: a frozen teacher receives gradient: {', '.join(into_teacher)}"
    assert not nonfinite, f"{name}: term(s) {nonfinite} give a non-finite gradient"
    never = [t for t in terms if t not in reached]
    assert not never, (f"{name}: distillation term(s) {never} never reached trainer.optimize under their own key "
                       f"(dropped, or summed into another term); optimised: {sorted(reached)}")
    dead = [t for t in terms if not reached[t]]
    assert not dead, (f"{name}: distillation term(s) {dead} send no gradient to the student's parameters "
                      f"(detached from the student, or constant)")
    return ", ".join(terms) + " each reach the student"


def _no_terms(name, cls, m, seen) -> None:
    """No distillation term among the losses: fine for a method that declares so (``distill_terms`` of label
    terms only, or no teacher and no own term), a dropped term where a method with teachers declares nothing."""
    if cls.distill_terms is None and m.teachers:
        raise AssertionError(f"{name}: has {len(m.teachers)} teacher(s) but no distillation term among its losses "
                             f"{sorted(seen)} (a dropped term? declare distill_terms otherwise)")
    raise CheckSkipped("no distillation term (losses: " + ", ".join(sorted(seen)) + ")")


def _held_out(parts, n: int) -> list:
    held = list(itertools.islice(iter(parts.trainer.test_loader), n))
    if not held:
        raise AssertionError("the test split yields no batch")
    return held


@torch.no_grad()
def _teacher_kl(m, held) -> Tuple[float, float]:
    """Mean KL(teachers' mean prediction ‖ deployed student) and top-1 agreement (%) on ``held``. The student
    normalises with each held-out batch's own statistics (train mode; its running statistics restored after):
    a few dozen steps leave batch-norm running averages far behind the weights, so eval mode would measure
    the lag, not the distillation."""
    deployed = m.deployed_student()
    mode = deployed.training
    saved = _state(deployed)
    deployed.train()
    kl, agree, n = 0.0, 0.0, 0
    try:
        for x, _ in held:
            x = x.to(next(deployed.parameters()).device)
            log_s = torch.log_softmax(deployed(x).float(), dim=1)
            p_t = torch.stack([torch.softmax(t(x).float(), dim=1) for t in m.teachers]).mean(0)
            kl += torch.nn.functional.kl_div(log_s, p_t, reduction="sum").item()
            agree += (log_s.argmax(1) == p_t.argmax(1)).sum().item()
            n += x.shape[0]
    finally:
        deployed.load_state_dict(saved)
        deployed.train(mode)
    return kl / n, 100.0 * agree / n


def _terms_value(parts, fresh, terms) -> float:
    """Sum of |term| over ``fresh`` batches, measured with the optimizers idle and every state restored."""
    tr, m = parts.trainer, parts.method
    saved = _state(m)
    total = 0.0
    with _patched_optimize(tr, lambda real, g, losses, rg: None):
        for i, b in enumerate(fresh):
            out = step(parts, b, 10_000 + i)
            total += sum(abs(float(torch.as_tensor(out[t]).detach())) for t in terms if t in out)
    m.load_state_dict(saved)
    return total / max(len(fresh), 1)


def check_toward_teacher(name: str, teacher_dirs: Sequence[str], root: os.PathLike, steps: int = 30) -> str:
    """With the label terms off, a few dozen steps of the method's distillation terms move the student
    toward its teacher: the method's ``check_discrepancy`` (default: KL between the teachers' and the
    deployed student's predictions on held-out batches; ``"terms"``: its own terms, in absolute value, on
    fresh batches) falls against the untouched student. A sign-flipped term makes it rise."""
    parts = build_parts(name, teacher_dirs, root)
    tr, m = parts.trainer, parts.method
    cls = type(m)
    _enter_distilling_stage(parts)
    adversary = set(cls.adversary_groups)
    mode = cls.check_discrepancy if m.teachers else "terms"
    if mode not in ("teacher_kl", "terms"):
        raise ValueError(f"{name}: check_discrepancy must be 'teacher_kl' or 'terms', not {mode!r}")
    fresh = batches(parts, 3)
    seen: List[str] = []

    def label_free(real, groups, losses, retain_graph):
        if not isinstance(losses, dict) or adversary & set(_groups(groups)):
            return real(groups, losses, retain_graph)
        seen.extend(k for k in losses if k not in seen)
        kept = {k: v for k, v in losses.items() if k in distillation_terms(cls, list(losses))}
        if kept:
            real(groups, kept, retain_graph)

    probe = None
    if mode == "teacher_kl":
        held = _held_out(parts, 4)
        before, agree_before = _teacher_kl(m, held)
    with _patched_optimize(tr, label_free):
        for i in range(steps):
            (batch,) = batches(parts, 1)
            out = step(parts, batch, i)
            for k, v in out.items():
                if not torch.isfinite(torch.as_tensor(v)).all():
                    raise AssertionError(f"{name}: loss {k} is not finite at step {i}: {v}")
            if probe is None:
                probe = out
    terms = distillation_terms(cls, seen or list(probe or {}))
    if not terms:
        _no_terms(name, cls, m, seen or list(probe or {}))
    if mode == "teacher_kl":
        after, agree_after = _teacher_kl(m, held)
        assert after < before, (f"{name}: with the label terms off, {'+'.join(terms)} moved the student away from "
                                f"the teacher: KL(teacher ‖ student) on held-out batches {before:.4f} → {after:.4f} "
                                f"(a term with the wrong sign?)")
        return (f"KL(teacher ‖ student) {before:.3f} → {after:.3f}, agreement {agree_before:.0f}% → "
                f"{agree_after:.0f}% from {'+'.join(terms)} alone")
    # "terms": the untouched student measured on a second build (same seeds, same fresh batches)
    untouched = build_parts(name, teacher_dirs, Path(root) / "untouched")
    _enter_distilling_stage(untouched)
    before = _terms_value(untouched, fresh, terms)
    after = _terms_value(parts, fresh, terms)
    assert after < before, (f"{name}: with the label terms off, |{'+'.join(terms)}| on fresh batches went from "
                            f"{before:.4f} (untouched student) to {after:.4f} (a term with the wrong sign?)")
    return f"|{'+'.join(terms)}| on fresh batches {before:.4f} → {after:.4f} (label terms off)"


def check_deployed(name: str, teacher_dirs: Sequence[str], root: os.PathLike) -> str:
    """A short run through every stage finishes; ``eval_models()["student"]`` is the deployed student; the
    recorded accuracy is the deployed student's own on the test batches; every module it runs at inference
    is in the deployed module, its parameter count and its export."""
    from kdsuite.engine.trainer import evaluate
    from kdsuite.methods import deployment

    parts = build_parts(name, teacher_dirs, root)
    tr, m = parts.trainer, parts.method
    res = tr.fit()
    assert res.status == "finished", f"{name}: the short run ended {res.status}: {res.divergence}"
    deployed = m.deployed_student()
    evaluated = m.eval_models()["student"]
    (x, _), = _held_out(parts, 1)
    x = x.to(parts.device)
    ran: List[torch.nn.Module] = []
    handle = torch.nn.modules.module.register_module_forward_hook(lambda mod, i, o: ran.append(mod))
    try:
        deployed.eval()
        evaluated.eval()
        with torch.no_grad():
            out_d = deployed(x)
            handle.remove()
            out_e = evaluated(x)
    finally:
        handle.remove()
        m.train()
    assert torch.allclose(out_d, out_e, atol=1e-5), (f"{name}: eval_models()['student'] (what the record's accuracy "
                                                     f"measures) is not deployed_student(): their predictions differ")
    own = evaluate({"deployed": deployed}, tr.test_loader, parts.device, tr.autocast)["deployed"]["top1"]
    recorded = res.metrics.get("last_top1")
    assert recorded is not None and abs(recorded - own) < 1e-6, (f"{name}: recorded top-1 {recorded} is not the "
                                                                 f"deployed student's own {own:.2f}")
    dep_ids = {id(p) for p in deployment.unique_parameters(deployed)}
    names = {id(p): n for n, p in m.named_parameters()}
    for i, t in enumerate(m.teachers):
        names.update({id(p): f"teacher{i}.{n}" for n, p in t.named_parameters()})
    used = {id(p): p for mod in ran for p in mod.parameters(recurse=False)}
    outside = [names.get(k, f"<{tuple(p.shape)}>") for k, p in used.items() if k not in dep_ids]
    assert not outside, (f"{name}: the deployed student runs parameters it does not hold (its count and export "
                         f"leave them out): {', '.join(outside[:6])}")
    counted = deployment.deployed_params(deployment.inference_parts(m))
    n_used = sum(p.numel() for p in used.values())
    assert counted >= n_used, f"{name}: student_params {counted} < {n_used} parameters run at inference"
    exported, composite = deployment.export_module(m)
    exp_ids = {id(p) for p in exported.parameters()}
    gone = [names.get(k, "?") for k in used if k not in exp_ids]
    assert not gone, f"{name}: the export leaves out parameters used at inference: {', '.join(gone[:6])}"
    return f"top-1 {own:.1f}% of the deployed student, {counted} parameters" + (" (composite export)" if composite else "")


def check_adversary(name: str, teacher_dirs: Sequence[str], root: os.PathLike, steps: int = 20) -> str:
    """Min-max methods (``adversary_groups``): with the student's groups at lr 0 the adversary raises the
    student's distillation terms (its maximisation — a gradient reversal, a negated loss — works); with the
    adversary at lr 0 the student's own objective falls."""
    cls = get_method(name)
    if not cls.adversary_groups:
        raise CheckSkipped("no adversary_groups (not a min-max method)")
    parts = build_parts(name, teacher_dirs, root)
    tr, m = parts.trainer, parts.method
    tr.enter_stage(-1)
    for g in tr.optimizers:
        if g not in m.adversary_groups:
            for pg in tr.optimizers[g].param_groups:
                pg["lr"] = pg["initial_lr"] = 0.0
                pg["weight_decay"] = 0.0
    terms = list(m.distill_terms or [])
    values = []
    for i in range(steps):
        (batch,) = batches(parts, 1)
        losses = step(parts, batch, i)
        values.append(sum(abs(float(torch.as_tensor(losses[t]).detach())) for t in terms))
    first, last = sum(values[:5]) / 5, sum(values[-5:]) / 5
    assert last > first, (f"{name}: with the student frozen, {'/'.join(m.adversary_groups)} should raise "
                          f"{'+'.join(terms)}; it went {first:.4f} → {last:.4f} (maximisation lost: a gradient "
                          f"reversal removed, a sign dropped?)")
    fixed = _check_against_fixed_adversary(name, build_parts(name, teacher_dirs, Path(root) / "fixed"))
    return f"{'+'.join(terms)} raised by the adversary {first:.4f} → {last:.4f}; {fixed}"


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
        values.append(sum(float(torch.as_tensor(losses[t]).detach()) for t in terms))
    for n, p in m.named_parameters():
        if n in before:
            assert torch.equal(p, before[n]), f"{name}: adversary parameter {n} moved at lr 0"
    first, last = sum(values[:5]) / 5, sum(values[-5:]) / 5
    assert last < 0.9 * first, f"{name}: {terms} against a fixed adversary went from {first:.4f} to {last:.4f}"
    return f"{'+'.join(terms)} against a fixed {'/'.join(m.adversary_groups)} {first:.4f} → {last:.4f}"


CHECKS: Tuple[Tuple[str, Callable], ...] = (
    ("gradients reach exactly the learners", check_gradients),
    ("each distillation term reaches the student", check_term_gradients),
    ("distillation moves the student toward the teacher", check_toward_teacher),
    ("the deployed student is what is measured, counted and exported", check_deployed),
    ("the adversary maximises (min-max)", check_adversary),
    ("checkpoint/resume reproduces the next step", check_resume))


def run_checks(name: str, root: os.PathLike, teacher_dirs: Sequence[str], checks=None) -> List[Tuple[str, str, str]]:
    """Every check on method ``name``: ``[(title, "ok" | "FAIL" | "skip", detail)]``. Any exception inside
    a check is that check failing with its message; the later checks still run."""
    out = []
    for i, (title, fn) in enumerate(checks or CHECKS):
        try:
            detail = fn(name, teacher_dirs, Path(root) / f"check{i}")
            out.append((title, "ok", detail if isinstance(detail, str) else ""))
        except CheckSkipped as err:
            out.append((title, "skip", str(err)))
        except AssertionError as err:
            out.append((title, "FAIL", str(err)))
        except Exception as err:  # a crash inside a check is that check failing, with what was raised
            out.append((title, "FAIL", f"{type(err).__name__}: {err}"))
    return out


def check_method(name: str, root: os.PathLike, teacher_dirs: Sequence[str] | None = None, report=print) -> bool:
    """Run the whole contract on method ``name``; report every check (ok / FAIL / skip); True when none fails."""
    teacher_dirs = list(teacher_dirs) if teacher_dirs is not None else digits_teachers()
    results = run_checks(name, root, teacher_dirs)
    for title, status, detail in results:
        report(f"  {status:<5} {title}" + (f": {detail}" if status != "ok" and detail else f" ({detail})" if detail else ""))
    return all(status != "FAIL" for _, status, _ in results)
