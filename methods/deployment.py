"""What a trained method deploys: the parts of its inference model, their parameter count, and the
module a student export writes.

Role in the flow: after training, :mod:`kdsuite.experiments.run` asks the plugin for its
:meth:`~kdsuite.methods.base.Distiller.deployed_student` and records :func:`inference_parts` (every
module the deployed student runs, where it comes from — the student, the method's own modules, or a
teacher's borrowed part — and its parameter count); ``metrics.student_params`` is their sum, and
:func:`export_module` is what ``export_teacher`` saves. ``kdsuite.testing`` checks the three agree.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch.nn as nn

STUDENT = "student"


def unique_parameters(module: nn.Module) -> List[nn.Parameter]:
    """Each parameter of ``module`` once, even when a sub-module appears under two names."""
    seen, out = set(), []
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _teacher_part(deployed: nn.Module, param_name: str, teacher_modules: Dict[int, Tuple[int, str]]) -> Optional[str]:
    """``teacher{i}.{module}`` for the outermost module on ``param_name``'s path that belongs to teacher i."""
    parts = param_name.split(".")[:-1]
    for depth in range(len(parts) + 1):
        module = deployed.get_submodule(".".join(parts[:depth]))
        if id(module) in teacher_modules:
            i, name = teacher_modules[id(module)]
            return f"teacher{i}" + (f".{name}" if name else "")
    return None


def inference_parts(method: nn.Module) -> Dict[str, Dict[str, Any]]:
    """``{part: {"source", "params"}}`` of ``method.deployed_student()``: ``student`` (the student
    network), the method's own modules by attribute name (source ``method``), parts borrowed from teacher
    i as ``teacher{i}.{module}`` (source ``teacher i``), anything else by its name in the deployed module
    (source ``deployed``). Each parameter counts once."""
    deployed = method.deployed_student()
    student_ids = {id(p) for p in method.student.parameters()}
    own = {}
    for name, p in method.named_parameters():
        own.setdefault(id(p), name.split(".")[0])
    teacher_modules = {id(m): (i, name) for i, t in enumerate(method.teachers) for name, m in t.named_modules()}
    out: Dict[str, Dict[str, Any]] = {}
    seen = set()
    for name, p in deployed.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in student_ids:
            part, source = STUDENT, STUDENT
        elif (borrowed := _teacher_part(deployed, name, teacher_modules)) is not None:
            part, source = borrowed, f"teacher {borrowed[len('teacher'):].split('.')[0]}"
        elif id(p) in own:
            part, source = own[id(p)], "method"
        else:
            part, source = name.rsplit(".", 1)[0] if "." in name else name, "deployed"
        entry = out.setdefault(part, {"source": source, "params": 0})
        entry["params"] += p.numel()
    return out


def deployed_params(parts: Dict[str, Dict[str, Any]]) -> int:
    return sum(int(v["params"]) for v in parts.values())


def borrowed_teacher_parts(parts: Dict[str, Dict[str, Any]]) -> List[str]:
    return sorted(k for k, v in parts.items() if str(v["source"]).startswith("teacher"))


def export_module(method: nn.Module) -> Tuple[nn.Module, bool]:
    """``(module, composite)``: the student network itself when the deployed student runs nothing but its
    parameters (a plain, re-loadable architecture, as before deployed students existed), else the whole
    deployed module (``composite``: its export holds every part used at inference)."""
    deployed = method.deployed_student()
    same = {id(p) for p in unique_parameters(deployed)} == {id(p) for p in method.student.parameters()}
    return (method.student, False) if same else (deployed, True)
