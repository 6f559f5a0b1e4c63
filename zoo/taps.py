"""Feature taps: one way to get named intermediate features from zoo and timm models.

Role in the flow: method plugins declare the taps they need (``student_taps`` / ``teacher_taps``);
the plugin base class calls :func:`extract` with those names during its forward.

Tap names (resolved per model by :func:`resolve`):
- ``feat{i}``: feature ``i`` of the model's ``feature_info`` (0 = stem for the CIFAR family and most
  timm CNNs, then one per stage); negative ``i`` counts from the end (``feat-1`` = last stage);
- ``feat{i}_pre``: the same feature before its trailing activation (CIFAR family only);
- ``stages`` / ``stages_pre``: every stage feature ``feat1 .. featN`` (N = last index);
- ``pool``: the pooled pre-logits vector; ``logits``: the classifier output.
Only references to tensors that the forward computes anyway are returned: nothing is copied, and
features nobody asked for are dropped as soon as the forward moves on.
"""
from __future__ import annotations

import re
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn

from kdsuite.zoo.cifar.common import CifarNet

_FEAT = re.compile(r"^feat(-?\d+)(_pre)?$")


def feature_count(model: nn.Module) -> int:
    info = getattr(model, "feature_info", None)
    if info is None:
        raise ValueError(f"model {type(model).__name__} exposes no feature_info; feature taps need a zoo "
                         f"or timm model")
    return len(info)


def feature_channels(model: nn.Module) -> List[int]:
    info = model.feature_info
    if hasattr(info, "channels"):  # timm FeatureInfo object
        return list(info.channels())
    return [int(d["num_chs"]) for d in info]


def resolve(model: nn.Module, selectors: Sequence[str]) -> List[str]:
    """Expand symbolic selectors into concrete, de-duplicated tap names for ``model``."""
    out: List[str] = []
    n = None
    for sel in selectors:
        if sel in ("pool", "logits"):
            names = [sel]
        elif sel in ("stages", "stages_pre"):
            n = n or feature_count(model)
            suffix = "_pre" if sel.endswith("_pre") else ""
            names = [f"feat{i}{suffix}" for i in range(1, n)]
        else:
            m = _FEAT.match(sel)
            if not m:
                raise ValueError(f"unknown feature tap '{sel}'; taps are feat<i>, feat<i>_pre, stages, "
                                 f"stages_pre, pool, logits")
            n = n or feature_count(model)
            i = int(m.group(1))
            if not -n <= i < n:
                raise ValueError(f"feature tap '{sel}' is out of range for {type(model).__name__}, which has "
                                 f"{n} features (feat0..feat{n - 1})")
            names = [f"feat{i % n}{m.group(2) or ''}"]
        for name in names:
            if name.endswith("_pre") and not isinstance(model, CifarNet):
                raise ValueError(f"tap '{name}': pre-activation features are available for the zoo's CIFAR "
                                 f"family only, not for {type(model).__name__}")
            if name not in out:
                out.append(name)
    return out


def extract(model: nn.Module, x: torch.Tensor, taps: Sequence[str]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Run ``model`` on ``x``; return ``(logits, {tap: tensor})`` for the concrete ``taps``."""
    feats_needed = [t for t in taps if t.startswith("feat")]
    if not feats_needed and "pool" not in taps:
        return model(x), {}
    if isinstance(model, CifarNet):
        with_pre = any(t.endswith("_pre") for t in feats_needed)
        logits, post, pre, pooled = model.traverse(x, with_pre=with_pre)
        out: Dict[str, torch.Tensor] = {"pool": pooled} if "pool" in taps else {}
        for t in feats_needed:
            i = int(_FEAT.match(t).group(1))
            out[t] = pre[i] if t.endswith("_pre") else post[i]
        return logits, out
    if hasattr(model, "forward_intermediates"):
        idx = sorted({int(_FEAT.match(t).group(1)) for t in feats_needed})
        if idx:
            final, inter = model.forward_intermediates(x, indices=idx, intermediates_only=False)
        else:
            final, inter = model.forward_features(x), []
        pooled = model.forward_head(final, pre_logits=True)
        logits = model.get_classifier()(pooled)
        out = dict(zip((f"feat{i}" for i in idx), inter))
        if "pool" in taps:
            out["pool"] = pooled
        return logits, out
    raise ValueError(f"model {type(model).__name__} supports no feature taps (needs forward_intermediates)")


@torch.no_grad()
def probe_shapes(model: nn.Module, taps: Sequence[str], input_shape: Sequence[int]) -> Dict[str, Tuple[int, ...]]:
    """Shapes (without batch) of each tap, from one forward of a 2-sample zero batch in eval mode
    (eval so that BN running statistics are not touched)."""
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters(), None)
        x = torch.zeros(2, *input_shape, device=p.device if p is not None else "cpu")
        logits, feats = extract(model, x, list(taps) + ["logits"])
        shapes = {k: tuple(v.shape[1:]) for k, v in feats.items()}
        shapes["logits"] = tuple(logits.shape[1:])
        return shapes
    finally:
        model.train(was_training)
