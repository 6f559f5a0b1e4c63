"""The splits: the validation split carved from a training split, transfer-set subsets, and what the
record says about them.

Role in the flow: every per-kind builder (:mod:`kdsuite.experiments.data_digits`,
:mod:`kdsuite.experiments.data_cifar`, :mod:`kdsuite.experiments.data_folders`) holds out
``dataset.val_fraction`` of its training split with :func:`holdout_split` — fixed, class-stratified, the
same for every run; the trainer chooses the "best" epoch on it and reports the test split — and puts
:func:`split_record` in the run record.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch

from kdsuite.core.errors import ConfigError


# Fixed per data set, never the run seed: every run of a grid (every seed, method, pair) holds out the
# same images, so "best epoch" is chosen on the same split everywhere.
VAL_SPLIT_SEED = 0


def val_fraction(cfg: Dict[str, Any]) -> float:
    return float(cfg.get("val_fraction", 0.0) or 0.0)


def holdout_split(labels, fraction: float, dataset: str, seed: int = VAL_SPLIT_SEED):
    """``(train indices, val indices)`` (sorted int64 tensors) of a training split with ``labels``: a
    class-stratified ``fraction`` held out for validation, drawn with ``seed``. ``fraction`` 0: no
    validation split (every index stays in training)."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(torch.as_tensor(labels))
    idx = np.arange(len(labels))
    if fraction <= 0:
        return torch.as_tensor(idx), torch.as_tensor(idx[:0])
    try:
        tr, va = train_test_split(idx, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError as e:  # too few images per class to stratify
        raise ConfigError(f"dataset.val_fraction = {fraction}: cannot hold out a class-stratified validation split "
                          f"from the {len(idx)} training images of {dataset} ({e}); use a smaller fraction, or 0 "
                          f"for no validation split") from None
    return torch.as_tensor(np.sort(tr)), torch.as_tensor(np.sort(va))


def _stratified_subset(idx: torch.Tensor, labels: torch.Tensor, fraction: float) -> torch.Tensor:
    """A fixed class-stratified ``fraction`` of the indices ``idx`` (all of them at 1)."""
    from sklearn.model_selection import train_test_split

    if fraction >= 1.0:
        return idx
    keep, _ = train_test_split(idx.numpy(), train_size=fraction, random_state=0, stratify=labels[idx].numpy())
    return torch.as_tensor(np.sort(keep))


def split_record(cfg: Dict[str, Any], n_train: int, n_val: int, n_test: int) -> Dict[str, Any]:
    """What the run record says about the splits (the fraction is in the config, so in its hash)."""
    return {"val_fraction": val_fraction(cfg), "seed": VAL_SPLIT_SEED if n_val else None, "train": n_train,
            "val": n_val, "test": n_test, "from": "class-stratified, carved from the training split"}


def _take(ds, idx: torch.Tensor, transform=None):
    """A shallow copy of a torchvision data set (CIFAR, ImageFolder) holding only the samples ``idx``."""
    import copy

    out = copy.copy(ds)
    keep = idx.tolist()
    if hasattr(ds, "samples"):  # ImageFolder
        out.samples = [ds.samples[i] for i in keep]
        out.imgs = out.samples
    else:
        out.data = ds.data[idx.numpy()]
    out.targets = [ds.targets[i] for i in keep]
    if transform is not None:
        out.transform = transform
    return out
