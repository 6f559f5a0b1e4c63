"""``one``: On-the-fly Native Ensemble — online distillation among the branches of one network.

Paper: Xu Lan, Xiatian Zhu & Shaogang Gong, "Knowledge Distillation by On-the-Fly Native Ensemble",
NeurIPS 2018 (arXiv 1806.04606), §3. The student's low-level layers are shared; its last stage and
classifier are repeated as m branches. A gate on the shared features weights the branches' logits into
an ensemble teacher, and the teacher's softened prediction is distilled back into every branch:

    g = softmax(W_g · GAP(x_shared) + b_g)                                     (Eq. 1)
    z_e = Σ_{i=0}^{m−1} g_i · z_i                                              (Eq. 2)
    L = Σ_i CE(z_i, y) + CE(z_e, y) + T² · Σ_i KL(σ(z_e/T) ‖ σ(z_i/T))         (Eq. 3–5)

The ensemble's soft targets are constants in the KL terms (no gradient reaches the gate or the branches
through the teacher side); the gate and every branch learn through CE(z_e, y). Defaults are the paper's
CIFAR settings: m = 3 branches, T = 3.

Layout here: branch 0 *is* the student (its last stage, final block, pooling and classifier on top of
its own shared layers), so the trained student is a single branch usable alone and is the run's
headline model. Branches 1..m−1 are extra modules: deep copies of the student's last stage, its
trailing activation, its final block and its classifier, re-initialised by shuffling the entries of
every copied parameter tensor (each copy starts from the same value distribution as the student's own
initialisation, whatever the architecture, but from a different function — identical branches would
stay nearly identical). The run evaluates the student and the gated ensemble (``ensemble/…`` in the
record). Needs a zoo CIFAR model (``cifar_*``): the split point is its last stage.

Choices and simplifications:
- ``gate = "fc"`` (default) is Eq. (1) as written: one FC layer on the pooled shared features, then a
  softmax. ``gate = "fc_bn_relu"`` is the gate of the authors' released code (FC → BatchNorm1d → ReLU →
  softmax).
- The KL weight is constant (the paper's Eq. 5); no ramp-up schedule.
Reference followed: the paper's Eq. 1, 2, 5 (T 3, 3 branches); the authors' gate as ``gate: fc_bn_relu``.
"""
from __future__ import annotations

import copy
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdsuite.methods import losses
from kdsuite.methods.base import Distiller
from kdsuite.methods.hparams import ConfigError, HParam
from kdsuite.methods.registry import register_method
from kdsuite.zoo.cifar.common import CifarNet


class Branch(nn.Module):
    """One branch: the last stage (+ its trailing activation and the final block), GAP and a classifier."""

    def __init__(self, stage: nn.Module, act: nn.Module, final: nn.Module, fc: nn.Module):
        super().__init__()
        self.stage, self.act, self.final, self.fc = stage, act, final, fc

    def forward(self, shared: torch.Tensor) -> torch.Tensor:
        x = self.final(self.act(self.stage(shared)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Gate(nn.Module):
    """Eq. (1): branch weights from the pooled shared features."""

    def __init__(self, channels: int, branches: int, kind: str):
        super().__init__()
        self.fc = nn.Linear(channels, branches)
        self.bn = nn.BatchNorm1d(branches) if kind == "fc_bn_relu" else None

    def forward(self, shared: torch.Tensor) -> torch.Tensor:
        v = self.fc(torch.flatten(F.adaptive_avg_pool2d(shared, 1), 1))
        if self.bn is not None:
            v = F.relu(self.bn(v))
        return F.softmax(v, dim=1)  # (B, m)


def shared_features(student: CifarNet, x: torch.Tensor) -> torch.Tensor:
    """The shared low-level part: stem and every stage but the last (post-activation)."""
    _, post, _, _ = student.traverse(x, stop_at=len(student.stages) - 1)
    return post[-1]


def student_branch(student: CifarNet) -> Branch:
    """Branch 0 as a view on the student's own modules (no copy)."""
    return Branch(student.stages[-1], student.stage_acts[-1], student.final, student.fc)


def native_ensemble(student: CifarNet, extra: nn.ModuleList, gate: Gate,
                    x: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor, torch.Tensor]:
    """``(branch logits [z_0 .. z_{m−1}], gate g (B, m), ensemble logits z_e)`` for one batch."""
    shared = shared_features(student, x)
    zs = [student_branch(student)(shared)] + [b(shared) for b in extra]
    g = gate(shared)
    z_e = (torch.stack(zs, dim=2) * g[:, None, :]).sum(dim=2)  # Σ_i g_i · z_i      (Eq. 2)
    return zs, g, z_e


class _EvalView(nn.Module):
    """Base of the evaluation wrappers: holds the modules it runs (not the plugin) and starts in the
    plugin's current train/eval mode, so that the evaluator's mode restore is a no-op."""

    def __init__(self, training: bool):
        super().__init__()
        self.training = training


class EnsembleNet(_EvalView):
    """The gated native ensemble as a standalone classifier."""

    def __init__(self, student: CifarNet, extra: nn.ModuleList, gate: Gate, training: bool):
        super().__init__(training)
        self.student, self.extra, self.gate = student, extra, gate

    def forward(self, x):
        return native_ensemble(self.student, self.extra, self.gate, x)[2]


@register_method
class ONE(Distiller):
    name = "one"
    display_name = "ONE"
    category = "online"
    scheme = "online"
    paper = "Lan, Zhu & Gong 2018, Knowledge Distillation by On-the-Fly Native Ensemble (NeurIPS)"
    equation = ("Σ_i CE(z_i, y) + CE(z_e, y) + T²·Σ_i KL(σ(z_e/T) ‖ σ(z_i/T)), z_e = Σ_i g_i·z_i, "
                "g = softmax(FC(GAP(shared))) (Eq. 1, 2, 5)")
    num_teachers = 0
    hparams = {"branches": HParam(3, low=2, doc="number of branches m, the student included (paper: 3)"),
               "T": HParam(3.0, low=0.0, low_open=True, doc="temperature of the distillation term (paper: 3)"),
               "gate": HParam("fc", choices=("fc", "fc_bn_relu"),
                              doc="fc: Eq. (1), softmax(FC(GAP)); "
                                  "fc_bn_relu: the authors' code, FC→BN→ReLU→softmax")}
    # untrained branches agree (KL ≈ 0) and first drift apart: what must fall is the whole objective
    distill_terms = ("ce", "ce_branches", "ce_ensemble", "kl")

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        if not isinstance(student, CifarNet):
            raise ConfigError(f"student: method 'one' splits the student into shared layers and branches at "
                              f"its last stage, which needs a zoo CIFAR model (cifar_*); "
                              f"{type(student).__name__} is not one")
        s = student
        self.extra = nn.ModuleList()
        for _ in range(hp.branches - 1):
            b = Branch(copy.deepcopy(s.stages[-1]), copy.deepcopy(s.stage_acts[-1]), copy.deepcopy(s.final),
                       copy.deepcopy(s.fc))
            _redraw(b)
            self.extra.append(b)
        shared_channels = int(s.feature_info[-2]["num_chs"])
        self.gate = Gate(shared_channels, hp.branches, hp.gate)

    def branch_outputs(self, x):
        """``(branch logits, gate weights, ensemble logits)``."""
        return native_ensemble(self.student, self.extra, self.gate, x)

    def forward_train(self, x, y):
        zs, _, z_e = self.branch_outputs(x)
        T = self.hp.T
        target = z_e.detach()
        return {"ce": losses.ce(zs[0], y),
                "ce_branches": sum(losses.ce(z, y) for z in zs[1:]),
                "ce_ensemble": losses.ce(z_e, y),
                "kl": sum(losses.kd_loss(z, target, T) for z in zs)}

    def eval_models(self):
        return {"student": self.deployed_student(),
                "ensemble": EnsembleNet(self.student, self.extra, self.gate, self.training)}


@torch.no_grad()
def _redraw(module: nn.Module) -> None:
    """Shuffle the entries of every parameter tensor (a new function with the same initial value
    distribution) and reset batch-norm running statistics."""
    for p in module.parameters():
        flat = p.reshape(-1)
        p.copy_(flat[torch.randperm(flat.numel(), device=p.device)].view_as(p))
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
