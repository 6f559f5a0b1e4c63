"""In-memory, device-resident batches: :class:`TensorLoader` and the batch fields a training step can ask for.

Role in the flow: digits, and CIFAR in the tensor pipeline, are served by :class:`TensorLoader`
(built by :mod:`kdsuite.experiments.data_digits` and :mod:`kdsuite.experiments.data_cifar`): the whole set
lives in one tensor (on the training device), batches are sliced from a shuffled index, and random crop /
flip (:mod:`kdsuite.experiments.data_augment`) run batched on that device — no worker processes, no
per-image Python. :data:`BATCH_FIELDS` names what a batch may hold (a method asks for them).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from kdsuite.experiments.data_augment import random_crop_flip
from kdsuite.experiments.data_strong import WEAK, strong_batch

BATCH_FIELDS = ("x", "y", "index", "pair_x", "teacher_x", "aug_x")


def check_fields(fields) -> tuple:
    fields = tuple(fields)
    if fields[:2] != ("x", "y") or any(f not in BATCH_FIELDS for f in fields):
        raise ValueError(f"batch_fields {fields} must start with ('x', 'y') and use only {BATCH_FIELDS}")
    return fields


class TensorLoader:
    """Shuffled mini-batches from tensors held in memory (optionally on the GPU).

    ``set_epoch_seed`` fixes the order and augmentation of the coming epoch (exact resume).
    ``fields`` adds each sample's index (``index``), another random image of its class
    (``pair_x``, augmented independently) and the same samples in the teachers' view (``teacher_x``:
    ``teacher_x`` given here, cropped and flipped exactly as ``x``; ``x`` itself without one) to every batch.
    ``aug_views`` (``dataset.aug_views``, :mod:`kdsuite.experiments.data_strong`) names the view served as ``x``
    and, with ``aug_x`` in ``fields``, a second view of the same samples drawn independently; ``norm``
    (mean, std per channel) is the normalisation a strong view undoes and redoes."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                 crop_pad: int = 0, flip: bool = False, drop_last: bool = False, fields=("x", "y"),
                 pad_fill: Optional[Sequence[float]] = None, teacher_x: Optional[torch.Tensor] = None,
                 teacher_pad_fill: Optional[Sequence[float]] = None, aug_views: Sequence[str] = ("weak",),
                 norm: Optional[Tuple[Sequence[float], Sequence[float]]] = None):
        if len(x) != len(y) or (teacher_x is not None and len(teacher_x) != len(x)):
            raise ValueError("x, y (and teacher_x) differ in length")
        self.x, self.y, self.teacher_x = x, y, teacher_x
        self.batch_size, self.shuffle, self.crop_pad, self.flip, self.drop_last = batch_size, shuffle, crop_pad, flip, drop_last
        self.fields = check_fields(fields)
        self.aug_views = tuple(aug_views)
        if "aug_x" in self.fields and len(self.aug_views) < 2:
            raise ValueError(f"batch field aug_x needs two aug_views, got {self.aug_views}")
        if any(v != WEAK for v in self.aug_views) and norm is None:
            raise ValueError("a strong view needs the normalisation (norm=(mean, std))")
        self.norm = None if norm is None else tuple(torch.tensor(list(v), dtype=torch.float32) for v in norm)
        self.pad_fill = None if pad_fill is None else torch.tensor(list(pad_fill), dtype=torch.float32)
        self.sharded = False  # a batch source (kdsuite.engine.batches): the trainer shards data-parallel batches
        self.pair_fill = None  # padding of both views stacked along channels (one crop for both)
        if teacher_x is not None:
            self.pair_fill = torch.cat([torch.zeros(x.shape[1]) if pad_fill is None else self.pad_fill,
                                        torch.zeros(teacher_x.shape[1]) if teacher_pad_fill is None
                                        else torch.tensor(list(teacher_pad_fill), dtype=torch.float32)])
        self.generator = torch.Generator(device=x.device)
        self.generator.manual_seed(0)
        self._index_by_class()

    def _index_by_class(self) -> None:
        # samples sorted by class, with each class's start and size: a same-class partner is
        # by_class[start[y] + floor(u * count[y])] for a uniform u, drawn for the whole batch at once
        order = torch.argsort(self.y, stable=True)
        counts = torch.bincount(self.y)
        self._by_class, self._count = order, counts
        self._start = torch.cumsum(counts, 0) - counts

    def to(self, device) -> "TensorLoader":
        self.x, self.y = self.x.to(device), self.y.to(device)
        if self.teacher_x is not None:
            self.teacher_x = self.teacher_x.to(device)
        if self.pad_fill is not None:
            self.pad_fill = self.pad_fill.to(device)
        if self.pair_fill is not None:
            self.pair_fill = self.pair_fill.to(device)
        if self.norm is not None:
            self.norm = tuple(v.to(device) for v in self.norm)
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=self.generator).item())
        self.generator = torch.Generator(device=self.x.device)
        self.generator.manual_seed(seed)
        self._index_by_class()
        return self

    def with_fields(self, fields) -> "TensorLoader":
        """A loader over the same tensors (no copy) yielding ``fields``."""
        other = TensorLoader.__new__(TensorLoader)
        other.__dict__.update(self.__dict__)
        other.fields = check_fields(fields)
        other.generator = torch.Generator(device=self.x.device)
        other.generator.set_state(self.generator.get_state())
        return other

    def set_epoch_seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _augment(self, xb: torch.Tensor) -> torch.Tensor:
        if self.crop_pad or self.flip:
            return random_crop_flip(xb, self.crop_pad, self.flip, self.generator, self.pad_fill)
        return xb

    def _view(self, xb: torch.Tensor, view: str) -> torch.Tensor:
        xb = self._augment(xb)
        if view == WEAK:
            return xb
        assert self.norm is not None
        return strong_batch(xb, view, self.generator, self.norm[0], self.norm[1])

    def _augment_pair(self, xb: torch.Tensor, tb: torch.Tensor):
        """The same crop and flip for both views of a batch: they are stacked along channels and split."""
        if not (self.crop_pad or self.flip):
            return xb, tb
        both = random_crop_flip(torch.cat([xb, tb], 1), self.crop_pad, self.flip, self.generator, self.pair_fill)
        return both[:, :xb.shape[1]].contiguous(), both[:, xb.shape[1]:].contiguous()

    def __iter__(self):
        n = len(self.x)
        order = torch.randperm(n, device=self.x.device, generator=self.generator) if self.shuffle \
            else torch.arange(n, device=self.x.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            if "teacher_x" in self.fields and self.teacher_x is not None:
                xb, tb = self._augment_pair(self.x[idx], self.teacher_x[idx])
                out = {"x": xb, "y": self.y[idx], "index": idx, "teacher_x": tb}
            else:
                out = {"x": self._view(self.x[idx], self.aug_views[0]), "y": self.y[idx], "index": idx}
                out["teacher_x"] = out["x"]  # one view: the teachers see what the student sees
                if "aug_x" in self.fields:
                    out["aug_x"] = self._view(self.x[idx], self.aug_views[1])
            if "pair_x" in self.fields:
                yb = self.y[idx]
                u = torch.rand(len(idx), device=self.x.device, generator=self.generator)
                partner = self._by_class[self._start[yb] + (u * self._count[yb]).long()]
                out["pair_x"] = self._augment(self.x[partner])
            yield tuple(out[f] for f in self.fields)
