"""The contract every registered method meets, one check each (what each catches: :mod:`kdsuite.testing`):
gradients reach exactly the learners, each distillation term reaches the student, distillation moves the
student toward the teacher, the deployed student is what is measured, counted and exported, the
adversary maximises (min-max methods), and a checkpoint/resume round trip reproduces the next step.

Role in the flow: each check builds its own tiny run (:mod:`kdsuite.kit.fixtures`), measures with
:mod:`kdsuite.kit.probes` and raises ``AssertionError`` naming the method and what failed;
:mod:`kdsuite.kit.runner` runs them in order.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from kdsuite.kit.fixtures import _state, batches, build_parts, step
from kdsuite.kit.probes import (CheckSkipped, _enter_distilling_stage, _groups, _held_out, _no_terms, _nonzero,
                                _patched_optimize, _student_inputs, _synthetic_held_out, _teacher_kl, _terms_value,
                                distillation_terms)
from kdsuite.methods.registry import get_method


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

def check_toward_teacher(name: str, teacher_dirs: Sequence[str], root: os.PathLike, steps: int = 30) -> str:
    """With the label terms off, a few dozen steps of the method's distillation terms move the student
    toward its teacher: the method's ``check_discrepancy`` (default: KL between the teachers' and the
    deployed student's predictions on held-out batches — for a data-free method, held-out batches of its
    own synthetic images; ``"terms"``: its own terms, in absolute value, on fresh batches) falls against
    the untouched student. A sign-flipped term makes it rise."""
    parts = build_parts(name, teacher_dirs, root)
    m, cls = parts.method, type(parts.method)
    _enter_distilling_stage(parts)
    mode = cls.check_discrepancy if m.teachers else "terms"
    if mode not in ("teacher_kl", "terms"):
        raise ValueError(f"{name}: check_discrepancy must be 'teacher_kl' or 'terms', not {mode!r}")
    fresh = batches(parts, 3)
    untouched = _state(m)
    held = _held_out(parts, 4) if mode == "teacher_kl" and cls.needs_train_data else None
    before = _teacher_kl(m, held) if held is not None else None
    on_trained = held is None and mode == "teacher_kl" and cls.check_synthetic == "trained"
    if held is None and mode == "teacher_kl" and cls.check_synthetic not in ("fresh", "trained"):
        raise ValueError(f"{name}: check_synthetic must be 'fresh' or 'trained', not {cls.check_synthetic!r}")
    with _student_inputs(m, on_trained) as given:
        seen = _train_label_free(name, parts, steps)
    if on_trained:
        held = [(x, None) for x in given[-2:]]
    terms = distillation_terms(cls, seen)
    if not terms:
        _no_terms(name, cls, m, seen)
    if mode == "teacher_kl":
        return _teacher_kl_fell(name, parts, (held, before, untouched), terms, steps)
    # "terms": the untouched student measured on a second build (same seeds, same fresh batches), both at
    # the step where training stopped (a term that depends on the epoch is measured at the one trained)
    other = build_parts(name, teacher_dirs, Path(root) / "untouched")
    _enter_distilling_stage(other)
    before = _terms_value(other, fresh, terms, at=steps)
    after = _terms_value(parts, fresh, terms, at=steps)
    assert after < before, (f"{name}: with the label terms off, |{'+'.join(terms)}| on fresh batches went from "
                            f"{before:.4f} (untouched student) to {after:.4f} (a term with the wrong sign?)")
    return f"|{'+'.join(terms)}| on fresh batches {before:.4f} → {after:.4f} (label terms off)"


def _train_label_free(name: str, parts, steps: int) -> List[str]:
    """``steps`` training steps with only the distillation terms reaching ``trainer.optimize`` and the
    adversary (``adversary_groups``) held fixed: it keeps moving to where the student is worst, so what it
    leads to measures the adversary, not the distillation (a call that steps the student and an adversary
    at once, as CTKD's, steps the student only). Returns the loss keys seen (else the first step's)."""
    tr, cls = parts.trainer, type(parts.method)
    adversary = set(cls.adversary_groups)
    seen: List[str] = []

    def label_free(real, groups, losses, retain_graph):
        learners = [g for g in _groups(groups) if g not in adversary]
        if not learners:
            return None  # the adversary held fixed
        if not isinstance(losses, dict):
            return real(learners, losses, retain_graph)
        seen.extend(k for k in losses if k not in seen)
        kept = {k: v for k, v in losses.items() if k in distillation_terms(cls, list(losses))}
        if kept:
            real(learners, kept, retain_graph)

    probe: List[str] = []
    with _patched_optimize(tr, label_free):
        for i in range(steps):
            (batch,) = batches(parts, 1)
            out = step(parts, batch, i)
            for k, v in out.items():
                if not torch.isfinite(torch.as_tensor(v)).all():
                    raise AssertionError(f"{name}: loss {k} is not finite at step {i}: {v}")
            probe = probe or list(out)
    return seen or probe


def _teacher_kl_fell(name: str, parts, measured, terms, steps: int) -> str:
    """KL(teacher ‖ student) on held-out batches is lower for the trained student than for the untouched
    one. ``measured``: (held-out batches, the untouched student's KL and agreement there or None, its state);
    for a data-free method the batches are its own synthetic images (none given: drawn after training) and
    the untouched student (its state restored for the measurement) is measured on them too."""
    m = parts.method
    held, before, untouched = measured
    where = "held-out batches"
    if not parts.method.needs_train_data:
        where = "its last trained synthetic batches" if held else "held-out synthetic batches"
    if held is None:
        held = _synthetic_held_out(parts, at=steps)
    after, agree_after = _teacher_kl(m, held)
    if before is None:
        trained = _state(m)
        m.load_state_dict(untouched)
        before = _teacher_kl(m, held)
        m.load_state_dict(trained)
    before, agree_before = before
    assert after < before, (f"{name}: with the label terms off, {'+'.join(terms)} moved the student away from "
                            f"the teacher: KL(teacher ‖ student) on {where} {before:.4f} → {after:.4f} "
                            f"(a term with the wrong sign?)")
    return (f"KL(teacher ‖ student) on {where} {before:.3f} → {after:.3f}, agreement {agree_before:.0f}% → "
            f"{agree_after:.0f}% from {'+'.join(terms)} alone")


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
