"""Initialisation stages as RepDistiller runs them (``helper/pretrain.py::init``), shared by the
methods that have one (``fsp``, ``ab``; ``ft`` pre-trains its paraphraser the same way).

RepDistiller trains, before the main 240 epochs, a list of "init modules" for ``init_epochs`` (30) with
its own SGD optimizer (the run's momentum and weight decay; lr = the run's learning rate, except 0.01
for FT with a resnet/wrn student) at a *constant* learning rate, with the student in eval mode except
for those modules. For FSP and AB the init modules are the student's feature modules
(``model.get_feat_modules()``: everything up to the last stage — for a WRN not its final BN, for
MobileNetV2/ShuffleNetV2 not their last 1×1 conv, never the classifier). Here that is the student's
``stem`` and ``stages`` (the zoo's CIFAR family splits models the same way); for other models every
parameter but the classifier's.
"""
from __future__ import annotations

from typing import Iterable, List, Optional

import torch.nn as nn

from kdsuite.methods.base import OptimGroup

# a stage's schedule: the learning rate stays at its initial value (no warm-up, no decay)
CONSTANT = {"name": "constant", "warmup_epochs": 0}


def feature_modules(student: nn.Module) -> List[nn.Module]:
    """RepDistiller's ``get_feat_modules()``: the modules that compute the stem and stage features."""
    if hasattr(student, "stem") and hasattr(student, "stages"):
        return [student.stem, student.stages]
    fc = student.get_classifier()
    return [m for m in student.children() if m is not fc]


def feature_params(student: nn.Module) -> List[nn.Parameter]:
    seen, out = set(), []
    for m in feature_modules(student):
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def init_group(params: Iterable[nn.Parameter], lr: Optional[float] = None) -> OptimGroup:
    """An initialisation stage's optimizer: the run's SGD settings at a constant learning rate
    (``lr`` overrides the run's; the run's ``optimizers.<group>`` section still overrides both)."""
    return OptimGroup(list(params), defaults={} if lr is None else {"lr": lr}, schedule=dict(CONSTANT))


def head_to_eval(student: nn.Module) -> None:
    """Put the student's modules outside its feature modules in eval mode, as RepDistiller's init stage
    does (``model_s.eval()``, then ``.train()`` on the init modules only): e.g. a WRN's final BN then
    normalises with its running statistics, which it does not update."""
    inside = {id(m) for top in feature_modules(student) for m in top.modules()}
    for m in student.modules():
        if id(m) not in inside and m is not student:
            m.train(False)
