"""Low-precision students for the quantized-distillation methods (``qkd``, ``apprentice``; survey §5.7).

Role in the flow: a quantized method calls :func:`quantize_student` in its ``__init__``; the student's
conv/linear weights are then fake-quantised on every forward (``torch.nn.utils.parametrize``: the
optimizer keeps stepping the full-precision ``original``, the forward sees the quantised value, and the
gradient reaches ``original`` by a straight-through estimator), and the inputs of those layers pass an
activation fake-quantiser (``torch.fake_quantize_per_tensor_affine``: round, clamp, gradient 1 where in
range and 0 where clamped). Training and evaluation both see the low-precision network, so the
record's top-1 is the fake-quantised student's. :func:`int8_deployment` converts a trained student to a
real int8 model with ``torch.ao`` (FX graph mode, post-training calibration) and measures it on CPU.

Quantisers:
- ``bucket_minmax`` (Polino et al. 2018, §2.1): weights split into buckets of ``bucket`` consecutive
  values; each bucket scaled to [0, 1] by its min and max, rounded to one of s = 2^b uniform levels,
  scaled back: Q(v) = min + (max − min)·round((v − min)/(max − min)·(s − 1))/(s − 1);
- ``wrpn`` (Mishra et al. 2018, the quantiser Apprentice uses): weights clamped to [−1, 1] and rounded
  to b − 1 magnitude bits and a sign, Q(w) = round(w·n)/n with n = 2^(b−1) − 1; activations
  clamped to [0, 1] and rounded to 2^b − 1 steps;
- ``affine`` activations: per-tensor affine fake quantisation with a moving-average min/max observer
  (momentum 0.01, the range always containing 0), b-bit unsigned codes.
"""
from __future__ import annotations

import copy
import io
import statistics
import time
import warnings
from typing import Dict, Iterable, List

import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize

from kdsuite.methods.base import Distiller

FULL_PRECISION = 32


def bucket_minmax_quantize(w: torch.Tensor, bits: int, bucket: int, eps: float = 1e-10) -> torch.Tensor:
    """Polino et al.'s uniform quantisation with linear (min-max) scaling per bucket; a tail shorter than a
    bucket forms a bucket of its own."""
    flat = w.reshape(-1)
    n = flat.numel()
    pad = (-n) % bucket
    if pad:
        flat = torch.cat([flat, flat[-1:].expand(pad)])  # the last value fills the tail bucket (no effect on min/max)
    rows = flat.view(-1, bucket)
    lo = rows.min(1, keepdim=True).values
    span = rows.max(1, keepdim=True).values - lo
    span = torch.where(span < eps, torch.ones_like(span), span)
    levels = 2 ** bits - 1
    q = torch.round((rows - lo) / span * levels) / levels * span + lo
    return q.reshape(-1)[:n].view_as(w)


class BucketWeight(nn.Module):
    """Parametrization: straight-through bucket min-max quantisation (Polino's 'none' backprop style:
    the gradient at the quantised weights is applied to the full-precision ones unchanged)."""

    def __init__(self, bits: int, bucket: int):
        super().__init__()
        self.bits, self.bucket = bits, bucket

    def forward(self, w):
        return w + (bucket_minmax_quantize(w.detach(), self.bits, self.bucket) - w.detach())


class WrpnWeight(nn.Module):
    """Parametrization: WRPN weights, w clamped to [−1, 1], n = 2^(b−1) − 1 levels per sign (torch's
    fake-quant op with scale 1/n, codes −n..n; gradient 1 inside [−1, 1], 0 outside)."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, w):
        n = 2 ** (self.bits - 1) - 1
        return torch.fake_quantize_per_tensor_affine(w, 1.0 / n, 0, -n, n)


class ActQuant(nn.Module):
    """Fake-quantises a layer's input. ``mode`` "wrpn": clamp to [0, 1], 2^b − 1 steps; "affine": codes
    0..2^b − 1 over a running [min, max] range (updated in training only, so evaluation never moves it)."""

    def __init__(self, bits: int, mode: str, momentum: float = 0.01):
        super().__init__()
        self.bits, self.mode, self.momentum = bits, mode, momentum
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("seen", torch.tensor(False))

    def scale_zero_point(self):
        qmax = 2 ** self.bits - 1
        lo, hi = self.lo.clamp(max=0.0), self.hi.clamp(min=0.0)
        scale = ((hi - lo) / qmax).clamp_min(1e-8)
        zp = torch.clamp(torch.round(-lo / scale), 0, qmax).to(torch.int32)
        return scale.reshape(1), zp.reshape(1)

    def forward(self, x):
        qmax = 2 ** self.bits - 1
        if self.mode == "wrpn":
            return torch.fake_quantize_per_tensor_affine(x, 1.0 / qmax, 0, 0, qmax)
        if self.training:
            with torch.no_grad():
                lo, hi = x.detach().min().float(), x.detach().max().float()
                m = torch.where(self.seen, torch.tensor(self.momentum, device=x.device), torch.tensor(1.0, device=x.device))
                self.lo.copy_(self.lo + m * (lo - self.lo))
                self.hi.copy_(self.hi + m * (hi - self.hi))
                self.seen.fill_(True)
        scale, zp = self.scale_zero_point()
        return torch.fake_quantize_per_tensor_affine(x, scale.to(x.dtype), zp, 0, qmax)


@torch.no_grad()
def quant_layers(model: nn.Module, input_shape) -> List[str]:
    """Names of the conv/linear layers in the order the forward calls them (one eval-mode pass on a zero
    batch), so that "first" and "last" mean the layer that sees the image and the classifier."""
    order: List[str] = []
    handles = [m.register_forward_hook(lambda mod, a, o, n=n: order.append(n) if n not in order else None)
               for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters())
        model(torch.zeros(2, *input_shape, device=p.device, dtype=p.dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return order


def quantize_student(student: nn.Module, input_shape, weight_param, bits_a: int, act_mode: str,
                     skip_first_last: bool) -> nn.ModuleDict:
    """Fake-quantise ``student`` in place: ``weight_param()`` builds each layer's weight parametrization;
    with ``bits_a`` < 32 each quantised layer's input passes an :class:`ActQuant`. Returns the activation
    quantisers (to be owned by the plugin, so that their state is checkpointed)."""
    names = quant_layers(student, input_shape)
    if skip_first_last:
        names = names[1:-1]
    modules = dict(student.named_modules())
    acts = nn.ModuleDict()
    for name in names:
        layer = modules[name]
        parametrize.register_parametrization(layer, "weight", weight_param())
        if bits_a < FULL_PRECISION:
            aq = ActQuant(bits_a, act_mode)
            acts[name.replace(".", "_")] = aq
            object.__setattr__(layer, "_lowbit_act", aq)  # not a sub-module: the export keeps its clamp range
            layer.register_forward_pre_hook(lambda _m, args, aq=aq: (aq(args[0]),) + tuple(args[1:]))
    return acts


# ---- real int8 deployment (CPU) ----------------------------------------------------------------

def _plain_copy(student: nn.Module) -> nn.Module:
    """A float copy of ``student`` with the fake-quantised weights baked in and no hooks."""
    model = copy.deepcopy(student).cpu().float().eval()
    for name, m in list(model.named_modules()):
        m._forward_pre_hooks.clear()
        if parametrize.is_parametrized(m, "weight"):
            # a plain module of the base class holding the quantised weight (remove_parametrizations would
            # edit the parametrized class, which the copy shares with the live student)
            w = m.weight.detach().clone()
            base = type(m).__bases__[0]
            plain = base.__new__(base)
            plain.__dict__ = dict(m.__dict__)
            plain._modules = {k: v for k, v in m._modules.items() if k != "parametrizations"}
            plain._parameters = dict(m._parameters)
            plain._parameters["weight"] = nn.Parameter(w)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, plain)
            m = plain
        aq = getattr(m, "_lowbit_act", None)
        if aq is not None:
            # the activation range the student was trained with is part of its function: keep it as a clamp
            # (the int8 conversion then calibrates its own observers on the clamped inputs)
            if aq.mode == "wrpn":
                lo, hi = 0.0, 1.0
            else:
                lo, hi = float(aq.lo.clamp(max=0.0)), float(aq.hi.clamp(min=0.0))
            object.__delattr__(m, "_lowbit_act")
            if hi > lo:  # an observer that never saw a batch has no range yet
                parent_name, _, child = name.rpartition(".")
                parent = model.get_submodule(parent_name) if parent_name else model
                setattr(parent, child, nn.Sequential(nn.Hardtanh(lo, hi), m))
    return model


def _size_bytes(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def _latency_ms(model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _top1(model: nn.Module, loader: Iterable) -> float:
    correct = total = 0
    with torch.inference_mode():
        for batch in loader:
            x, y = batch[0].cpu().float(), batch[1].cpu()
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return 100.0 * correct / max(total, 1)


def int8_deployment(student: nn.Module, calib: Iterable, val: Iterable, input_shape, backend: str = "x86",
                    calib_batches: int = 8, repeats: int = 30) -> Dict[str, float]:
    """Convert ``student`` (its fake-quantised weights baked in) to an int8 model with torch.ao FX graph mode
    (per-channel int8 weights, uint8 activations, observers calibrated on ``calib_batches`` training
    batches), evaluate it on CPU, and measure both models: state-dict size and median batch-1 latency."""
    fp = _plain_copy(student)
    example = torch.zeros(1, *input_shape)
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = backend
    # the int8 kernels resize their outputs with an op torch flags as non-deterministic (a warning per
    # layer and batch under deterministic mode); resizing changes no value, and torch.ao's own deprecation
    # notices are not the user's to act on: both are kept out of the run's output
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        with warnings.catch_warnings():
            # torch.ao.quantization announces its own deprecation on import (its successor is torchao, not
            # a dependency here): a note for kdsuite's maintainers, kept out of every qkd run's output
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

            prepared = prepare_fx(copy.deepcopy(fp), get_default_qconfig_mapping(backend), (example,))
            with torch.inference_mode():
                for i, batch in enumerate(calib):
                    if i >= calib_batches:
                        break
                    prepared(batch[0].cpu().float())
            q = convert_fx(prepared)
            x1 = torch.randn(1, *input_shape)
            out = {"int8_top1": _top1(q, val), "fp32_export_top1": _top1(fp, val),
                   "int8_size_bytes": _size_bytes(q), "fp32_size_bytes": _size_bytes(fp),
                   "int8_latency_ms": _latency_ms(q, x1, repeats), "fp32_latency_ms": _latency_ms(fp, x1, repeats)}
    finally:
        torch.backends.quantized.engine = prev
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    out["int8_backend"] = backend
    return out


BITS_A = (2, 3, 4, 5, 6, 7, 8, 32)


class QuantizedStudent(Distiller):
    """Shared by the quantized methods: the bit widths and the int8 deployment land in the record."""

    def record_metrics(self, parts) -> dict:
        out = {"bits_w": self.hp.bits_w, "bits_a": self.hp.bits_a}
        if self.hp.int8_eval and parts.data.train is not None and parts.data.test is not None:
            try:
                out.update(int8_deployment(self.student, parts.data.train, parts.data.test, parts.data.input_shape))
            except Exception as e:  # a model FX cannot trace must not fail a finished run: the record says why
                out["int8_error"] = f"{type(e).__name__}: {e}"
        return out
