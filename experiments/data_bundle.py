"""What the data layer hands the run: the data set kinds (:data:`DATASETS`) and :class:`DataBundle`.

Role in the flow: :func:`kdsuite.experiments.data.build_data` returns a :class:`DataBundle` (the training,
test and validation sources with the shapes and statistics the run needs); the config schema checks
``dataset.name`` against :data:`DATASETS`. Importing this module imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

if TYPE_CHECKING:
    import torch

DATASETS = ("digits", "cifar10", "cifar100", "imagefolder")
# images of each fixed training split (before dataset.val_fraction / train_fraction take from it): an upper
# bound on a run's num_train that a config can be checked against without reading the data
TRAIN_SPLIT_IMAGES = {"digits": 1437, "cifar10": 50000, "cifar100": 50000}


@dataclass
class DataBundle:
    """The sources a run trains and reports on, named as records name the splits: ``train``, ``test`` (what
    every table reports), ``validation`` (carved from the training split by ``dataset.val_fraction``, None at 0;
    the "best" epoch is chosen on it) and ``teacher_test`` (the test split in the teachers' view, where it
    differs from the student's). ``val``, ``holdout`` and ``teacher_val`` are the names these had before."""
    train: Any
    test: Any
    num_classes: int
    input_shape: Tuple[int, int, int]
    num_train: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    name: str
    augmented: bool = False  # random augmentation of training images (rules out the teacher cache)
    train_labels: Optional[torch.Tensor] = None  # (num_train,) class of each training sample, by index
    teacher_test: Any = None
    validation: Any = None
    split: Optional[Dict[str, Any]] = None  # {"val_fraction", "seed", "train", "val", "test", "from"}

    # the earlier names (read by plugins written against them): val was the test split, holdout the validation one
    @property
    def val(self) -> Any:
        return self.test

    @property
    def holdout(self) -> Any:
        return self.validation

    @property
    def teacher_val(self) -> Any:
        return self.teacher_test
