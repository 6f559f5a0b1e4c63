"""Data sets: the embedded default (scikit-learn's handwritten digits), CIFAR-10/100 through
torchvision with the standard recipe, and ImageNet-style folders.

Paired multi-view data (cross-modal distillation): ``dataset.views: {teacher: A, student: B}`` gives the
trained model view B and, in the batch field ``teacher_x``, the same samples in view A. The digits have
derived views (:data:`DIGITS_VIEWS`); image folders hold one folder per view of files paired by relative
path (``root/<view>/train/<class>/<file>``; :mod:`kdsuite.experiments.views`).

Role in the flow: ``kdsuite.experiments.run`` calls :func:`build_data` with the config's ``dataset``
section and hands the loaders to the trainer.

Digits and other small tensor data sets are served by :class:`TensorLoader`: the whole set lives
in one tensor (on the training device), batches are sliced from a shuffled index, and random
crop / flip run batched on that device — no worker processes, no per-image Python.

Every data set's training split can give up a validation split (``dataset.val_fraction``, see
:func:`holdout_split`): fixed, class-stratified, the same for every run; the trainer chooses the "best"
epoch on it and reports the test split.

This module is the entry point (:func:`build_data`, :class:`DataBundle`) and re-exports the parts, so
``from kdsuite.experiments.data import X`` keeps working: the sources per kind
(:mod:`~kdsuite.experiments.data_digits`, :mod:`~kdsuite.experiments.data_cifar`,
:mod:`~kdsuite.experiments.data_folders`), the splits (:mod:`~kdsuite.experiments.data_splits`), the
augmentation (:mod:`~kdsuite.experiments.data_augment`), the in-memory batches
(:mod:`~kdsuite.experiments.data_tensor`) and the DataLoader sources (:mod:`~kdsuite.experiments.data_loaders`).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from kdsuite.core.errors import ConfigError
from kdsuite.experiments.data_augment import random_crop_flip  # noqa: F401
from kdsuite.experiments.data_bundle import DATASETS, DataBundle
from kdsuite.experiments.data_cifar import CIFAR_MEAN, CIFAR_STD, _checksum_hint, build_cifar, cifar_class  # noqa: F401
from kdsuite.experiments.data_digits import build_digits, load_digits_split  # noqa: F401
from kdsuite.experiments.data_folders import IMAGENET_MEAN, IMAGENET_STD, build_imagefolder  # noqa: F401
from kdsuite.experiments.data_loaders import FieldsDataset, _eval_loader, _loaders, cache_loader  # noqa: F401
from kdsuite.experiments.data_splits import (  # noqa: F401
    VAL_SPLIT_SEED, _stratified_subset, _take, holdout_split, split_record, val_fraction)
from kdsuite.experiments.data_tensor import BATCH_FIELDS, TensorLoader, check_fields  # noqa: F401


def build_data(cfg: Dict[str, Any], device: torch.device | str = "cpu", pipeline: Optional[str] = None,
               fields=("x", "y"), dist_info=None) -> DataBundle:
    """``cfg``: the validated ``dataset`` section of a run config; ``pipeline`` overrides its
    ``pipeline`` field (``loader``: torchvision transforms in a DataLoader; ``tensor``: the whole set
    as one tensor on ``device`` with crop/flip done there in batches); ``fields``: what each training
    batch holds (see :data:`BATCH_FIELDS`)."""
    device = torch.device(device)
    cfg = dict(cfg, pipeline=pipeline or (cfg["pipeline"] if cfg["pipeline"] != "auto" else "loader"))
    name = cfg["name"]
    if name == "digits":
        return build_digits(cfg, device, fields)
    if cfg["train_fraction"] != 1.0:
        raise ConfigError(f"dataset.train_fraction = {cfg['train_fraction']} is supported for digits only; "
                          f"use 1.0 for {name}")
    if name in ("cifar10", "cifar100"):
        return build_cifar(cfg, device, fields, dist_info)
    if name == "imagefolder":
        return build_imagefolder(cfg, device, fields, dist_info)
    raise ConfigError(f"dataset.name = {name!r} is not one of {list(DATASETS)}")
