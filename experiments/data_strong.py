"""Augmented views of a training sample beyond the data set's own crop+flip: ``dataset.aug_views``.

Role in the flow: a config names the views each training batch carries (``dataset.aug_views``, checked by
:func:`kdsuite.experiments.settings.DatasetSettings`): the first is served as ``x``, a second, of the same
samples and drawn independently, as the batch field ``aug_x`` (a method asks for it, MLKD does). ``weak``
is the data set's own augmentation; ``strong`` adds torchvision's ``RandAugment(num_ops=2, magnitude=10)``
and Cutout, ``autoaugment`` torchvision's ``AutoAugment`` (CIFAR-10 policy) and Cutout.

Both pipelines draw the same distribution: the loader pipeline applies torchvision's transforms to each
PIL image (:func:`loader_transform`, torch's RNG, re-seeded every epoch); the tensor pipeline
(:class:`kdsuite.experiments.data_tensor.TensorLoader`) calls :func:`strong_batch`, which draws every
sample's operations from the loader's generator and applies each (operation, magnitude) to the samples that
drew it at once with torchvision's own ``_apply_op`` on uint8 images — so an epoch replays from its seed.
Cutout (as MLKD's code: a square of side U(0, ½)·width at a uniform centre, clipped to the image) fills with
the data set's mean colour, i.e. 0 after normalisation, in both pipelines.
"""
from __future__ import annotations

import functools
from typing import Dict, List, Sequence, Tuple

import torch

WEAK, STRONG_VIEWS = "weak", ("strong", "autoaugment")
AUG_VIEWS = (WEAK,) + STRONG_VIEWS
RANDAUGMENT_OPS, RANDAUGMENT_MAGNITUDE = 2, 10


def aug_views(cfg) -> Tuple[str, ...]:
    """The views of ``cfg`` (the ``dataset`` section): ``aug_views`` as written, ``(weak,)`` when unset."""
    return tuple(cfg.get("aug_views") or (WEAK,))


@functools.lru_cache(maxsize=None)
def _policy(name: str):
    import torchvision.transforms as T

    if name == "strong":
        return T.RandAugment(num_ops=RANDAUGMENT_OPS, magnitude=RANDAUGMENT_MAGNITUDE)
    return T.AutoAugment(T.AutoAugmentPolicy.CIFAR10)


def cutout_(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Cutout on normalised images ``x`` (B, C, H, W), in place: ``u`` (B, 3) uniform draws give each
    image's side (u₀·W/2) and centre (u₁·W, u₂·H); the square is set to 0 (the mean colour)."""
    _, _, h, w = x.shape
    side = u[:, 0] * 0.5 * w
    x0 = (u[:, 1] * w - side / 2).clamp_min(0).floor()
    y0 = (u[:, 2] * h - side / 2).clamp_min(0).floor()
    cols = torch.arange(w, device=x.device)[None, :]
    rows = torch.arange(h, device=x.device)[None, :]
    in_c = (cols >= x0[:, None]) & (cols < x0[:, None] + side[:, None])
    in_r = (rows >= y0[:, None]) & (rows < y0[:, None] + side[:, None])
    box = in_r[:, :, None] & in_c[:, None, :]
    return x.masked_fill_(box[:, None], 0.0)


class Cutout:
    """The loader pipeline's Cutout on one normalised image (C, H, W), drawn from torch's RNG."""

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return cutout_(img[None].clone(), torch.rand(1, 3))[0]


def loader_transform(view: str, weak: Sequence, to_tensor_norm: Sequence):
    """The torchvision transform of ``view`` for the loader pipeline: ``weak`` (the data set's crop+flip on
    PIL images), then the view's policy, ``to_tensor_norm`` and Cutout."""
    import torchvision.transforms as T

    if view == WEAK:
        return T.Compose(list(weak) + list(to_tensor_norm))
    return T.Compose(list(weak) + [_policy(view)] + list(to_tensor_norm) + [Cutout()])


def _to_uint8(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x * std + mean).mul_(255).round_().clamp_(0, 255).to(torch.uint8)


def _plan_randaugment(b: int, generator: torch.Generator, device) -> List[List[Tuple[int, int]]]:
    """Each sample's RandAugment draws: per operation slot, (operation index, negate) per sample."""
    ra = _policy("strong")
    n_ops = len(ra._augmentation_space(ra.num_magnitude_bins, (32, 32)))
    plan = []
    for _ in range(RANDAUGMENT_OPS):
        op = torch.randint(0, n_ops, (b,), device=device, generator=generator)
        neg = torch.randint(0, 2, (b,), device=device, generator=generator)
        plan.append(list(zip(op.tolist(), neg.tolist())))
    return plan


def _plan_autoaugment(b: int, generator: torch.Generator, device) -> List[List[Tuple[int, int]]]:
    """Each sample's AutoAugment draws as (policy*2 + slot, negate), or (-1, 0) where the slot is skipped."""
    aa = _policy("autoaugment")
    pol = torch.randint(0, len(aa.policies), (b,), device=device, generator=generator).tolist()
    probs = torch.rand(b, 2, device=device, generator=generator).tolist()
    signs = torch.randint(0, 2, (b, 2), device=device, generator=generator).tolist()
    plan = []
    for slot in range(2):
        plan.append([(p * 2 + slot, 1 - s[slot]) if pr[slot] <= aa.policies[p][slot][1] else (-1, 0)
                     for p, pr, s in zip(pol, probs, signs)])
    return plan


@functools.lru_cache(maxsize=4096)
def _op(view: str, code: int, negate: int, size: Tuple[int, int]) -> Tuple[str, float]:
    """The torchvision operation and magnitude a plan entry stands for."""
    pol = _policy(view)
    if view == "strong":
        space = pol._augmentation_space(pol.num_magnitude_bins, size)
        name = list(space)[code]
        mags, signed = space[name]
        mag = float(mags[RANDAUGMENT_MAGNITUDE].item()) if mags.ndim > 0 else 0.0
    else:
        space = pol._augmentation_space(10, size)
        name, _, mag_id = pol.policies[code // 2][code % 2]
        mags, signed = space[name]
        mag = float(mags[mag_id].item()) if mag_id is not None else 0.0
    return name, (-mag if signed and negate else mag)


def apply_plan(u8: torch.Tensor, view: str, plan: List[List[Tuple[int, int]]]) -> torch.Tensor:
    """``plan``'s operations on uint8 images (B, C, H, W), each (operation, sign) on its samples at once."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.autoaugment import _apply_op

    size = (u8.shape[2], u8.shape[3])
    for slot in plan:
        groups: Dict[Tuple[int, int], List[int]] = {}
        for i, entry in enumerate(slot):
            if entry[0] >= 0:
                groups.setdefault(entry, []).append(i)
        for (code, negate), rows in groups.items():
            name, mag = _op(view, code, negate, size)
            idx = torch.tensor(rows, device=u8.device)
            u8[idx] = _apply_op(u8[idx], name, mag, interpolation=InterpolationMode.NEAREST, fill=None)
    return u8


def strong_batch(x: torch.Tensor, view: str, generator: torch.Generator, mean: torch.Tensor,
                 std: torch.Tensor) -> torch.Tensor:
    """The strong ``view`` of normalised, already weakly augmented images ``x`` (B, C, H, W), drawn from
    ``generator``; ``mean``/``std`` (C,) the normalisation."""
    m, s = mean.to(x.device, x.dtype).view(1, -1, 1, 1), std.to(x.device, x.dtype).view(1, -1, 1, 1)
    plan = (_plan_randaugment if view == "strong" else _plan_autoaugment)(len(x), generator, x.device)
    u8 = apply_plan(_to_uint8(x, m, s), view, plan)
    out = (u8.to(x.dtype) / 255 - m) / s
    return cutout_(out, torch.rand(len(x), 3, device=x.device, generator=generator))
