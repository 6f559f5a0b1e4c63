"""What the trainer trains and evaluates on: the batch-source protocol.

Role in the flow: :mod:`kdsuite.experiments.data` builds the training and test sources; the trainer
only uses what :class:`BatchSource` states — no attributes pinned on loaders. A source yields tuples
``(x, y, *extras)`` (the fields the method asked for), knows its number of batches per epoch, takes a
seed before each epoch (order, augmentation and any sampling of the coming epoch follow from it, so a
resumed run replays an epoch exactly) and says whether each batch is already this process's share of
a data-parallel global batch (``sharded``; otherwise the trainer slices it).

In-memory tensors (``experiments.data.TensorLoader``) are sources as they are; a torch ``DataLoader``
becomes one through :class:`LoaderSource`.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional, Protocol, Sequence, runtime_checkable

import torch


@runtime_checkable
class BatchSource(Protocol):
    sharded: bool  # each batch is already this process's share of a global batch

    def __len__(self) -> int:
        """Batches per epoch (on this process)."""

    def __iter__(self) -> Iterator[tuple]:
        """The batches of one epoch."""

    def set_epoch_seed(self, seed: int) -> None:
        """Fix the order, augmentation and sampling of the coming epoch."""


class LoaderSource:
    """A torch ``DataLoader`` as a :class:`BatchSource`. ``generator`` drives its shuffling (the
    DataLoader's own or its batch sampler's); worker processes are seeded from it, so their random
    augmentation follows the epoch seed too."""

    def __init__(self, loader: torch.utils.data.DataLoader, generator: Optional[torch.Generator] = None,
                 sharded: bool = False):
        self.loader = loader
        self.generator = generator if generator is not None else loader.generator
        self.sharded = sharded

    @property
    def dataset(self) -> Any:
        return self.loader.dataset

    @property
    def num_workers(self) -> int:
        return self.loader.num_workers

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.loader)

    def set_epoch_seed(self, seed: int) -> None:
        if self.generator is not None:
            self.generator.manual_seed(seed)


class FixedBatches:
    """A list of batches as a :class:`BatchSource`: the same batches, in the same order, every epoch
    (tests and tools that drive single steps)."""

    sharded = False

    def __init__(self, batches: Sequence[Any]):
        self.batches = list(batches)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.batches)

    def set_epoch_seed(self, seed: int) -> None:
        pass


def as_batch_source(obj: Any, what: str = "training data") -> BatchSource:
    """``obj`` as a :class:`BatchSource`: sources pass through, a DataLoader is wrapped, a list or tuple
    of batches becomes :class:`FixedBatches`; anything else is a TypeError naming what is missing."""
    if isinstance(obj, BatchSource):
        return obj
    if isinstance(obj, torch.utils.data.DataLoader):
        return LoaderSource(obj)
    if isinstance(obj, (list, tuple)):
        return FixedBatches(obj)
    missing = [a for a in ("__len__", "__iter__", "set_epoch_seed", "sharded") if not hasattr(obj, a)]
    raise TypeError(f"{what}: {type(obj).__name__} is not a batch source (kdsuite.engine.batches.BatchSource); "
                    f"it lacks {missing}")
