"""The scale check at the start of a run: each distillation term's ratio to CE at the first step.

Role in the flow: the epoch loop (:mod:`kdsuite.engine.epoch`) hands the losses of the first step of each
stage (epoch 0, step 0 — computed before that step's optimizer update) to :func:`step0_scale` on the main
process; the result goes into the run state, the checkpoint and the run record (``scale``), and
:func:`warning` makes the one stderr line a run prints when a term leaves the band its method was
calibrated in (:mod:`kdsuite.methods.scale`). The values are the ones the step computed anyway: no extra
forward, and one host read-back per stage (the loss terms stacked into one tensor).

What is compared: every term but the label terms and the other players' (``checked_terms``), divided by
the term named ``ce`` as the method weights it (what the trainer sums). A stage whose losses hold no
``ce``, or a ``ce`` of 0 or not finite, is not checked (data-free students, DML's per-peer ``ce0`` /
``ce1``, BAN with label weight 0, CE-free initialisation stages): nothing is recorded for it. A term
that is exactly 0 at step 0 (a warm-up from 0, LwF's first task, a weight set to 0) is recorded with
``inside: null``, not judged; a term that is not finite is left to the divergence check.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import torch

from kdsuite.methods.base import Distiller
from kdsuite.methods.scale import band_of, checked_terms


def step0_scale(method: Distiller, losses: Dict[str, torch.Tensor], stage: str, n_stages: int
                ) -> Dict[str, Dict[str, Any]]:
    """``{key: {"ratio", "band", "inside"}}`` for the losses of a stage's first step; keys are the
    term's name, ``stage/term`` for a method with several stages. ``{}`` when there is no CE to compare with."""
    cls = type(method)
    terms = checked_terms(cls, list(losses)) if "ce" in losses else []
    if not terms:
        return {}
    values = torch.stack([losses[k].detach().float().reshape(()) for k in ["ce"] + terms]).cpu().tolist()
    ce = values[0]
    if not math.isfinite(ce) or ce == 0:
        return {}
    out: Dict[str, Dict[str, Any]] = {}
    for term, v in zip(terms, values[1:]):
        if not math.isfinite(v):
            continue
        key = term if n_stages == 1 else f"{stage}/{term}"
        band = band_of(cls, key)
        ratio = v / ce
        out[key] = {"ratio": ratio, "band": [band.lo, band.hi], "inside": band.holds(ratio) if v != 0 else None}
    return out


def warning(run: str, method: Distiller, entries: Dict[str, Dict[str, Any]]) -> Optional[str]:
    """The one line naming each term outside its band (ratio, band, the hyper-parameter that weights
    it), or None when every judged term is inside."""
    cls = type(method)
    parts = []
    for key, e in entries.items():
        if e["inside"] is not False:
            continue
        band = band_of(cls, key)
        ref = f", {band.reference:.3g} at its reference recipe" if band.reference is not None else ""
        if band.weight is not None:
            value = getattr(method.hp, band.weight, None)
            hint = f"its weight is method.hparams.{band.weight}" + (
                " (unset here: derived, see kdsuite methods -v)" if value is None else f" = {value!r}")
        else:
            hint = "check the hyper-parameter that weights it (kdsuite methods -v)"
        parts.append(f"{key}/CE = {e['ratio']:.3g} is outside {cls.name}'s calibrated band "
                     f"({band.lo:.3g}, {band.hi:.3g}){ref}; {hint}")
    if not parts:
        return None
    return f"[{run}] scale check at step 0: " + "; ".join(parts)
