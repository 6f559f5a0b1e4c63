"""What the kit's checks measure with: which of a method's loss terms are label terms and which distil,
``trainer.optimize`` spied on or idled for a block, the last stage whose step distils, held-out test
batches (a data-free method's: its own synthetic images), and the two discrepancies to the teacher (KL of
predictions, or the method's own terms).

Role in the flow: :mod:`kdsuite.kit.checks` composes these; a check that does not apply raises
:class:`CheckSkipped`, which the runner (:mod:`kdsuite.kit.runner`) reports as ``skip``.
"""
from __future__ import annotations

import contextlib
import itertools
import re
from typing import List, Sequence, Tuple

import torch

from kdsuite.kit.fixtures import _state, batches, step


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


def _terms_value(parts, fresh, terms, at: int) -> float:
    """Sum of |term| over ``fresh`` batches, each measured as the step at index ``at`` (the epoch, and what
    depends on it, as there), with the optimizers idle and every state restored."""
    tr, m = parts.trainer, parts.method
    saved = _state(m)
    total = 0.0
    with _patched_optimize(tr, lambda real, g, losses, rg: None):
        for i, b in enumerate(fresh):
            torch.manual_seed(20_000 + i)  # seeds no training step uses
            out = tr.step_at(b, at)
            total += sum(abs(float(torch.as_tensor(out[t]).detach())) for t in terms if t in out)
    m.load_state_dict(saved)
    return total / max(len(fresh), 1)


@contextlib.contextmanager
def _student_inputs(m, on: bool = True):
    """Inside the block, the list of the inputs given to ``m.student`` (detached copies; empty when not ``on``)."""
    images: List[torch.Tensor] = []
    if not on:
        yield images
        return
    hook = m.student.register_forward_pre_hook(lambda mod, args: images.append(args[0].detach().clone()) and None)
    try:
        yield images
    finally:
        hook.remove()


def _synthetic_held_out(parts, at: int, n: int = 2) -> list:
    """Held-out batches of a data-free method: the images its student is given in ``n`` probe steps from
    step index ``at`` — the synthesis (generator, images) stepping as in training, the groups that hold
    the student and the adversary idle, so it learns from none of them — as ``(x, None)`` pairs; every state restored after."""
    tr, m = parts.trainer, parts.method
    own = {id(p) for p in m.deployed_student().parameters()}
    learners = {g for g in tr.optimizers if any(id(p) in own for p in tr.groups[g].params)}
    learners |= set(type(m).adversary_groups)  # held fixed, as in the check's training
    saved = _state(m)

    def synthesis_only(real, groups, losses, retain_graph):
        if not learners & set(_groups(groups)):
            real(groups, losses, retain_graph)

    try:
        with _patched_optimize(tr, synthesis_only), _student_inputs(m) as images:
            for i in range(n):
                torch.manual_seed(30_000 + i)  # seeds no training step uses
                tr.step_at(None, at + i)
    finally:
        m.load_state_dict(saved)
    if not images:
        raise AssertionError("the data-free student was given no image in a training step")
    return [(x, None) for x in images]
