"""ImageNet-style image folders (``root/{train,val}/<class>/<file>``), optionally one folder per paired view.

Role in the flow: :func:`kdsuite.experiments.data.build_data` calls :func:`build_imagefolder` for
``dataset.name: imagefolder``. ``val/`` is the test split every table reports; the validation split is
carved from ``train/`` (:mod:`kdsuite.experiments.data_splits`); with ``dataset.views`` the folders hold one
tree per view of files paired by relative path (``root/<view>/train/<class>/<file>``;
:class:`kdsuite.experiments.views.PairedFolder`). Served by torch DataLoaders
(:mod:`kdsuite.experiments.data_loaders`).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict

import torch

from kdsuite.core.errors import ConfigError
from kdsuite.experiments.data_bundle import DataBundle
from kdsuite.experiments.data_loaders import _eval_loader, _loaders
from kdsuite.experiments.data_splits import _take, holdout_split, split_record, val_fraction

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def build_imagefolder(cfg: Dict[str, Any], device: torch.device, fields=("x", "y"), dist_info=None) -> DataBundle:
    import torchvision.transforms as T

    from kdsuite.experiments.data_images import IMG_EXTENSIONS, ImageFiles

    top = os.path.expanduser(cfg["root"])
    views = cfg.get("views") or {}
    s_view = views.get("student")
    t_view = views.get("teacher") or s_view
    root = os.path.join(top, s_view) if s_view else top  # paired views: root/<view>/{train,val}/<class>/…
    for view in dict.fromkeys([s_view, t_view]):
        vroot = os.path.join(top, view) if view else top
        for split in ("train", "val"):
            if not os.path.isdir(os.path.join(vroot, split)):
                what = f"view '{view}' (dataset.views) needs '{view}/{split}/'" if view else f"an image-folder data set needs '{split}/'"
                raise ConfigError(f"dataset.root = '{top}': {what} with one sub-folder per class")
    size = cfg["image_size"] or 224
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    augment = cfg["augment"] if cfg["augment"] is not None else True
    ttf = [T.RandomResizedCrop(size), T.RandomHorizontalFlip()] if augment else [T.Resize(int(size * 8 / 7)),
                                                                                 T.CenterCrop(size)]

    def folder(split, tf):
        try:
            return ImageFiles(os.path.join(root, split), tf, field="dataset.root")
        except (FileNotFoundError, RuntimeError) as e:  # no class folders / no image files in them
            raise ConfigError(f"dataset.root = '{root}': {split}/ needs one sub-folder per class holding image "
                              f"files ({', '.join(IMG_EXTENSIONS)}): {e}") from None

    val_tf = T.Compose([T.Resize(int(size * 8 / 7)), T.CenterCrop(size), T.ToTensor(), norm])
    train = folder("train", T.Compose(ttf + [T.ToTensor(), norm]))
    val = folder("val", val_tf)
    if train.classes != val.classes:
        raise ConfigError(f"dataset.root = '{root}': train/ and val/ have different class folders")
    student_train, teacher_val, t_val = train, None, None
    if t_view != s_view:
        from kdsuite.experiments.views import PairedFolder

        t_root = os.path.join(top, t_view)
        train = PairedFolder(os.path.join(root, "train"), os.path.join(t_root, "train"), size, augment,
                             IMAGENET_MEAN, IMAGENET_STD)
        t_val = PairedFolder(os.path.join(root, "val"), os.path.join(t_root, "val"), size, False,
                             IMAGENET_MEAN, IMAGENET_STD).teacher_side()
        teacher_val = _eval_loader(t_val, cfg, device, dist_info)
    _check_files(train, val, t_val)
    # the validation split comes from train/ (val/ is the test split every table reports); it is evaluated
    # in the student's view
    tr, va = holdout_split(train.targets, val_fraction(cfg), "imagefolder")
    hl = None
    if len(va):
        hl = _eval_loader(_take(student_train, va, val.transform), cfg, device, dist_info)
        train = train.subset(tr) if hasattr(train, "subset") else _take(train, tr)
    tl, vl = _loaders(train, val, cfg, device, fields, dist_info)
    return DataBundle(tl, vl, len(train.classes), (3, size, size), len(train), IMAGENET_MEAN, IMAGENET_STD,
                      "imagefolder", augment, torch.as_tensor(train.targets, dtype=torch.long),
                      teacher_test=teacher_val, validation=hl, split=split_record(cfg, len(train), len(va), len(val)))


def _check_files(train, val, t_val) -> None:
    """Every image file the run will read (each view's, with paired views) checked before training
    (:func:`kdsuite.experiments.data_images.check_images`)."""
    from kdsuite.experiments.data_images import FULL_CHECK_MAX, check_images

    paths = [p for p, _ in val.samples]
    for ds in (train, t_val.paired if t_val is not None else None):
        if ds is None:
            continue
        if hasattr(ds, "partners"):  # paired views: both sides of every pair
            paths += [p for p, _ in ds.student.samples] + list(ds.partners)
        else:
            paths += [p for p, _ in ds.samples]
    paths = list(dict.fromkeys(paths))
    done = check_images(paths, "dataset.root")
    if done != "decoded":
        print(f"kdsuite: dataset.root: {len(paths)} image files, more than {FULL_CHECK_MAX}: headers read before "
              f"training; a file that fails to decode in training ends the run naming it", file=sys.stderr, flush=True)
