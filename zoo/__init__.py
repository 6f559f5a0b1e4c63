"""Backbones: any timm model by name, plus the CIFAR-style KD family registered into timm's registry
under a ``cifar_`` prefix (importing :mod:`kdsuite.zoo` registers it), feature taps and teacher records.

Role in the flow: ``kdsuite.experiments.run`` asks :func:`create_model` for the student (and online peers);
teachers come from :mod:`kdsuite.zoo.teachers` records; method plugins read features through :mod:`kdsuite.zoo.taps`.
"""
from __future__ import annotations

if __name__ != "kdsuite.zoo":  # this folder is installed as kdsuite.zoo; a second copy under another name would split state
    raise ImportError("the 'zoo' folder is the package kdsuite.zoo: import kdsuite.zoo")

import difflib
from typing import List, Set

import timm
import torch.nn as nn

import kdsuite.zoo.cifar  # noqa: F401  (registers the cifar_* family into timm)
from kdsuite.zoo.cifar import LITERATURE_NAMES
from kdsuite.zoo.names import PAPER_NAMES, pair_name, paper_name  # noqa: F401  (tables' and figures' names)

_TIMM_NAMES: Set[str] = set()  # filled on first use (timm.list_models is slow)


def list_models(pattern: str = "*") -> List[str]:
    """Every model name ``create_model`` accepts that matches ``pattern`` (timm's listing)."""
    return timm.list_models(pattern)


def known_arch(arch: str) -> bool:
    """``arch`` is a timm/zoo model name, or a timm name with one of its pretrained-weight tags
    (``resnet34.tv_in1k``: the architecture ``resnet34``; ``pretrained: true`` then loads those weights)."""
    global _TIMM_NAMES
    if not _TIMM_NAMES:
        _TIMM_NAMES = set(timm.list_models())
    base, _, tag = arch.partition(".")
    if not tag:
        return arch in _TIMM_NAMES
    return base in _TIMM_NAMES and arch in timm.list_pretrained(arch)


def create_model(arch: str, num_classes: int, in_chans: int = 3, pretrained: bool = False, **kwargs) -> nn.Module:
    """``timm.create_model`` with a clear error for unknown names (closest matches listed)."""
    from kdsuite.core.errors import ConfigError

    if not known_arch(arch):
        close = difflib.get_close_matches(arch, _TIMM_NAMES, n=5, cutoff=0.6)
        raise ConfigError(f"unknown model '{arch}': not in timm's registry. The CIFAR KD family: "
                          f"{', '.join(sorted(LITERATURE_NAMES))}"
                          + (f"; closest timm names: {', '.join(close)}" if close else "")
                          + " (list all with `kdsuite models`)")
    return timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)


def display_name(arch: str) -> str:
    """The literature's table name (resnet8x4, wrn_40_2, MobileNetV2 ...) or the timm name."""
    return LITERATURE_NAMES.get(arch, arch)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_input(model: nn.Module, arch: str, input_shape, field: str = "student.arch") -> None:
    """Whether ``model`` takes the data's images (``input_shape`` = (C, H, W)), at build time (not a crash at
    the first step): a patch model built for another image size or a patch size that does not divide the
    image is named with the kwargs that fit; then every model makes one forward of a zero batch
    (:func:`_forward_check`), and whatever it raises becomes a ConfigError naming the model, the size and
    what the model said."""
    from kdsuite.core.errors import ConfigError
    from kdsuite.zoo.taps import family

    h, w = int(input_shape[-2]), int(input_shape[-1])
    fam = family(model)
    pe = getattr(model, "patch_embed", None)
    img = tuple(getattr(pe, "img_size", None) or ()) or None
    patch = tuple(getattr(pe, "patch_size", None) or ()) or None
    sizes = f"{{img_size: {h}, patch_size: {_divisor(h)}}} (timm's img_size / patch_size)"
    hint = (f"build it for these images, e.g. {field[:-len('.arch')]}.kwargs: {sizes}" if field.endswith(".arch")
            else f"choose a model built for these images, e.g. {sizes}") if patch else \
        "choose a model for images this small, or larger images (dataset.image_size, for digits and imagefolder)"
    if pe is not None:
        strict = bool(getattr(pe, "strict_img_size", True)) and not getattr(pe, "dynamic_img_size", False)
        if img and strict and img != (h, w):
            grid = f", a {img[0] // patch[0]}×{img[1] // patch[1]} patch grid" if patch else ""
            raise ConfigError(f"{field} = {arch!r}: this {fam} is built for {img[0]}×{img[1]} images (patch "
                              f"{patch[0] if patch else '?'}{grid}) but the data's images are {h}×{w}; {hint}")
        if patch and not getattr(pe, "dynamic_img_pad", False) and (h % patch[0] or w % patch[1]):
            raise ConfigError(f"{field} = {arch!r}: its patch size {patch[0]}×{patch[1]} does not divide the data's "
                              f"{h}×{w} images; {hint}")
    problem = _forward_check(model, input_shape)
    if problem:
        why = f" (patch {patch[0]}; every stage's grid must hold whole windows)" if fam == "Swin" and patch else ""
        raise ConfigError(f"{field} = {arch!r}: this {fam} ({type(model).__name__}) does not take the data's "
                          f"{'×'.join(str(int(d)) for d in input_shape)} (C×H×W) images{why}: {problem}; {hint}")


def _forward_check(model: nn.Module, input_shape) -> str:
    """What ``model`` raises on a batch of two zero images of ``input_shape`` ('' if nothing). Safe for the run
    it precedes: in eval mode (BN running statistics are not updated, dropout and drop-path draw nothing),
    under no_grad (parameters are only read, no graph is kept), inside ``fork_rng`` (any RNG state a model
    draws from in eval is restored) and with every sub-module's train/eval mode restored as it was. Cost: one
    forward of two images per model, once per run."""
    import torch

    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    modes = [(m, m.training) for m in model.modules()]
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            model.eval()(torch.zeros(2, *input_shape, device=device))
    except (RuntimeError, ValueError, AssertionError, IndexError) as e:
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'no message'}"
    finally:
        for m, training in modes:
            m.training = training
    return ""


def _divisor(n: int) -> int:
    for p in (4, 2, 1):
        if n % p == 0 and n // p >= 2:
            return p
    return 1
