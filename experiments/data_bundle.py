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


@dataclass
class DataBundle:
    train: Any
    val: Any
    num_classes: int
    input_shape: Tuple[int, int, int]
    num_train: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    name: str
    augmented: bool = False  # random augmentation of training images (rules out the teacher cache)
    train_labels: Optional[torch.Tensor] = None  # (num_train,) class of each training sample, by index
    teacher_val: Any = None  # the test split in the teachers' view, where it differs from the student's
    # ``val`` above is the TEST split (what every table reports); ``holdout`` is the validation split carved
    # from the training split (dataset.val_fraction; None at 0), on which the "best" epoch is chosen
    holdout: Any = None
    split: Optional[Dict[str, Any]] = None  # {"val_fraction", "seed", "train", "val", "test", "from"}
