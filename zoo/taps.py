"""Feature taps: one way to get named intermediate features from zoo and timm models.

Role in the flow: method plugins declare the taps they need (``student_taps`` / ``teacher_taps``);
the plugin base class calls :func:`extract` with those names during its forward.

Tap names (resolved per model by :func:`resolve`):
- ``feat{i}``: feature ``i`` of the model's ``feature_info`` (0 = stem for the CIFAR family and most
  timm CNNs, then one per stage; for a ViT / MLP-Mixer, feature ``i`` is transformer/MLP block ``i``);
  negative ``i`` counts from the end (``feat-1`` = last stage);
- ``feat{i}_pre``: the same feature before its trailing activation (CIFAR family only);
- ``stages`` / ``stages_pre``: every stage feature: ``feat1 .. featN`` (N = last index) for hierarchical
  models (CNNs, Swin: feature 0 is their stem or first, full-resolution stage), every block
  ``feat0 .. featN`` for isotropic token models (ViT, DeiT, MLP-Mixer, ResMLP);
- ``pool``: the pooled pre-logits vector; ``logits``: the classifier output.
What each tap is (:func:`tap_info`): a feature map ``(C, H, W)`` or a token sequence ``(P + H·W, C)``
with ``P`` prefix (class / distillation / register) tokens before the ``H×W`` patch grid, its channels and
its relative depth in the model (:func:`relative_depth`). Token taps are returned as the model gives
them (timm's ``forward_intermediates(output_fmt="NLC")``, prefix tokens kept); turning them into a map
is an explicit step (``kdsuite.methods.components.connectors.tokens_to_map``), never done here.
Only references to tensors that the forward computes anyway are returned: nothing is copied, and
features nobody asked for are dropped as soon as the forward moves on.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from kdsuite.zoo import teacher_input
from kdsuite.zoo.cifar.common import CifarNet

_FEAT = re.compile(r"^feat(-?\d+)(_pre)?$")


# families whose features are token sequences (isotropic: every block keeps the patch grid)
TOKEN_FAMILIES = ("ViT", "MLP")


def family(model: nn.Module) -> str:
    """The architecture family of ``model``: ``CNN`` (the zoo's CIFAR family and timm's conv nets:
    ResNet, ConvNeXt, EfficientNet, MobileNet …), ``ViT`` (timm vision transformers with prefix tokens:
    ViT, DeiT, …), ``Swin`` (hierarchical window transformers; timm returns their stages as NCHW maps)
    or ``MLP`` (MLP-Mixer, ResMLP, gMLP)."""
    if isinstance(model, CifarNet):
        return "CNN"
    mod = type(model).__module__
    if "mlp_mixer" in mod:
        return "MLP"
    if "swin" in mod:
        return "Swin"
    if hasattr(model, "num_prefix_tokens") and hasattr(model, "patch_embed"):
        return "ViT"
    return "CNN"


def is_token_model(model: nn.Module) -> bool:
    return family(model) in TOKEN_FAMILIES


def prefix_tokens(model: nn.Module) -> int:
    """Class / distillation / register tokens before the patch tokens (0 for maps and MLP-Mixers)."""
    return int(getattr(model, "num_prefix_tokens", 0) or 0) if family(model) == "ViT" else 0


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
            names = [f"feat{i}{suffix}" for i in range(0 if is_token_model(model) else 1, n)]
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
        return model(x), {}  # an imported teacher's own input: its forward pre-hook (zoo.teacher_input)
    x = teacher_input.adapt(model, x)
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
        if idx and is_token_model(model):  # token sequences as the blocks give them, prefix tokens first
            if prefix_tokens(model):
                final, inter = model.forward_intermediates(x, indices=idx, output_fmt="NLC", return_prefix_tokens=True,
                                                           intermediates_only=False)
                inter = [torch.cat([pre, spatial], dim=1) for spatial, pre in inter]
            else:
                final, inter = model.forward_intermediates(x, indices=idx, output_fmt="NLC", intermediates_only=False)
        elif idx:
            final, inter = model.forward_intermediates(x, indices=idx, intermediates_only=False)
        else:
            final, inter = model.forward_features(x), []
        pooled = model.forward_head(final, pre_logits=True)
        head = model.get_classifier()
        # DeiT's distilled model has two heads (class and distillation token): its own head averages them
        logits = head(pooled) if isinstance(head, nn.Module) else model.forward_head(final)
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


@dataclass(frozen=True)
class TapInfo:
    """What one tap is. ``kind``: ``map`` (a ``(C, H, W)`` feature map), ``tokens`` (a ``(P + H·W, C)``
    sequence: ``prefix_tokens`` P, then the ``grid`` H×W patch tokens in row-major order), ``vector``
    (``pool``) or ``logits``. ``depth``: relative depth in (0, 1] (:func:`relative_depth`; 0 for a stem)."""
    name: str
    kind: str
    channels: int
    grid: Optional[Tuple[int, int]]
    prefix_tokens: int
    depth: float
    family: str

    def describe(self) -> str:
        if self.kind == "tokens":
            g = f"{self.grid[0]}×{self.grid[1]}"
            pre = f"{self.prefix_tokens} prefix + " if self.prefix_tokens else ""
            return f"{self.name}: tokens ({pre}{g} grid) × {self.channels} at depth {self.depth:.2f}"
        if self.kind == "map":
            return f"{self.name}: map {self.channels}×{self.grid[0]}×{self.grid[1]} at depth {self.depth:.2f}"
        return f"{self.name}: {self.kind} of {self.channels}"

    def as_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["grid"] = list(self.grid) if self.grid else None
        return d


def relative_depth(model: nn.Module, index: int) -> float:
    """The stated rule for where feature ``index`` sits in ``model``: its position among the model's
    features, the last one at 1. Hierarchical models (CNNs, Swin), whose feature 0 is their stem or
    first full-resolution stage: ``i / (n − 1)``; isotropic token models (ViT, MLP), whose features are
    their ``n`` blocks: ``(i + 1) / n``. A 3-stage CIFAR ResNet's stages sit at 1/3, 2/3, 1 and a
    12-block ViT's block 4, 8 and 12 at the same depths."""
    n = feature_count(model)
    index = index % n
    if is_token_model(model):
        return (index + 1) / n
    return index / (n - 1) if n > 1 else 1.0


def tap_info(model: nn.Module, taps: Sequence[str], input_shape: Sequence[int],
             shapes: Optional[Dict[str, Tuple[int, ...]]] = None) -> Dict[str, TapInfo]:
    """:class:`TapInfo` of each concrete tap of ``model`` on inputs of ``input_shape`` (one probe forward
    unless ``shapes`` from :func:`probe_shapes` are given)."""
    shapes = shapes or probe_shapes(model, taps, input_shape)
    input_shape = teacher_input.input_shape(model, input_shape)  # an imported teacher's own size
    fam = family(model)
    out: Dict[str, TapInfo] = {}
    for t in taps:
        shape = shapes[t]
        if t in ("pool", "logits"):
            out[t] = TapInfo(t, "vector" if t == "pool" else "logits", int(shape[-1]), None, 0, 1.0, fam)
            continue
        i = int(_FEAT.match(t).group(1))
        depth = relative_depth(model, i)
        if len(shape) == 2:  # (L, C) tokens
            p = prefix_tokens(model)
            red = _reduction(model, i)
            h, w = int(input_shape[-2]) // red, int(input_shape[-1]) // red
            if h * w != shape[0] - p:  # a grid timm reports differently (e.g. padding): square it
                side = int(round((shape[0] - p) ** 0.5))
                h = w = side
            out[t] = TapInfo(t, "tokens", int(shape[1]), (h, w), p, depth, fam)
        else:
            out[t] = TapInfo(t, "map", int(shape[0]), (int(shape[-2]), int(shape[-1])), 0, depth, fam)
    return out


def _reduction(model: nn.Module, index: int) -> int:
    info = model.feature_info
    if hasattr(info, "reduction"):
        return int(info.reduction()[index])
    return int(info[index].get("reduction", 1))
