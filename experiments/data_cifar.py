"""CIFAR-10/100 through torchvision with the standard recipe (crop 32 with padding 4, horizontal flip).

Role in the flow: :func:`kdsuite.experiments.data.build_data` calls :func:`build_cifar` for
``dataset.name: cifar10|cifar100``. Two pipelines: ``loader`` (torchvision transforms in a DataLoader,
:mod:`kdsuite.experiments.data_loaders`) and ``tensor`` (the whole set as one normalised tensor on the
training device, :class:`kdsuite.experiments.data_tensor.TensorLoader`, where derived views
(``dataset.views``) are rendered). The validation split is carved from the 50k training images
(:mod:`kdsuite.experiments.data_splits`); files failing torchvision's checksum are explained by
:func:`_checksum_hint` (and read by :mod:`kdsuite.experiments.cifar_files` with ``verify_checksums: false``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import torch

from kdsuite.core.errors import ConfigError
from kdsuite.experiments.data_bundle import DataBundle
from kdsuite.experiments.data_loaders import _eval_loader, _loaders
from kdsuite.experiments.data_splits import _take, holdout_split, split_record, val_fraction
from kdsuite.experiments.data_strong import WEAK, aug_views, loader_transform
from kdsuite.experiments.data_tensor import TensorLoader

CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4867, 0.4408)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2675, 0.2565, 0.2761)}


def cifar_class(name: str):
    """torchvision's CIFAR reader with the checksum check as an explicit option.

    torchvision compares each batch file's MD5 with the official files and then unpickles them;
    ``verify_checksums=False`` (locally converted or regenerated copies) skips the MD5 check and reads
    the files with :mod:`kdsuite.experiments.cifar_files`' restricted unpickler instead, which admits only the
    arrays and containers of the official format (a crafted file cannot run code)."""
    import torchvision

    base = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100

    class CIFAR(base):
        def __init__(self, root, train=True, transform=None, download=False, verify_checksums=True):
            if verify_checksums:
                super().__init__(root, train=train, transform=transform, download=download)
                return
            from kdsuite.experiments import cifar_files

            torchvision.datasets.VisionDataset.__init__(self, root, transform=transform)
            self.train = train
            folder = Path(self.root) / self.base_folder
            files = [f for f, _ in (base.train_list if train else base.test_list)]
            missing = [f for f in files + [base.meta["filename"]] if not (folder / f).is_file()]
            if missing:
                raise RuntimeError(f"Dataset not found: {', '.join(str(folder / f) for f in missing)} missing")
            label_key = "labels" if name == "cifar10" else "fine_labels"
            self.data, self.targets = cifar_files.read_split(folder, files, label_key, 10 if name == "cifar10" else 100)
            self.classes = cifar_files.load_meta(folder / base.meta["filename"], base.meta["key"])
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    CIFAR.__name__ = base.__name__
    return CIFAR


def _checksum_hint(cls, root: str) -> str:
    """Why the files failed torchvision's MD5 check: a damaged file (named) is to be replaced; only when
    every file reads as a well-formed CIFAR batch is a regenerated copy the likely cause."""
    from kdsuite.experiments import cifar_files

    folder = Path(root) / cls.base_folder
    label_key = "labels" if cls.base_folder == "cifar-10-batches-py" else "fine_labels"
    for f, _ in cls.train_list + cls.test_list:
        if not (folder / f).is_file():
            return f" {folder / f} is missing."
        try:
            cifar_files.load_batch(folder / f, label_key)
        except ConfigError as e:
            return f" The file is damaged, not just different: {e}. Download the data set again."
    return (" The files exist, read as well-formed CIFAR batches, but differ from the official ones (MD5): "
            "for a locally regenerated copy set dataset.verify_checksums: false (read with a restricted unpickler).")



def _read_cifar(cfg: Dict[str, Any]):
    """The training and test sets of ``cfg["name"]``; ConfigError saying why they cannot be read."""
    name = cfg["name"]
    cls = cifar_class(name)
    root = os.path.expanduser(cfg["root"])
    try:
        train = cls(root, train=True, download=cfg["download"], verify_checksums=cfg["verify_checksums"])
        test = cls(root, train=False, download=False, verify_checksums=cfg["verify_checksums"])
    except RuntimeError as e:
        hint = _checksum_hint(cls, root) if os.path.isdir(os.path.join(root, cls.base_folder)) else ""
        raise ConfigError(f"dataset.root = '{root}': cannot read {name} ({e}).{hint}") from e
    return train, test


def _view_tensors(name: str, train, test, tr: torch.Tensor, view: str):
    """Train and test images as ``view``, normalised: the official statistics for the image itself,
    the view's own (over the training split ``tr``, one value per channel as the digits') otherwise."""
    from kdsuite.experiments.views import render_view

    xs = [render_view(torch.tensor(ds.data).permute(0, 3, 1, 2).float().div_(255), view) for ds in (train, test)]
    vm, vs = (CIFAR_MEAN[name], CIFAR_STD[name]) if view == "image" else \
        ((float(xs[0][tr].mean()),) * 3, (float(xs[0][tr].std()),) * 3)
    m, s = torch.tensor(vm)[None, :, None, None], torch.tensor(vs)[None, :, None, None]
    return [(x - m) / s for x in xs], vm, vs


def _tensor_sources(cfg: Dict[str, Any], train, test, tr, va, views, device, fields, augment: bool):
    """The tensor pipeline: the whole set as one normalised tensor (on the GPU when training there); crop+flip
    batched. ``views``: (student view, teacher view). → (train, test, validation, teachers' test, mean, std)."""
    s_view, t_view = views
    bs, ebs = cfg["batch_size"], cfg["eval_batch_size"]
    hl = teacher_val = None
    (xtr, xte), mean, std = _view_tensors(cfg["name"], train, test, tr, s_view)
    ytr, yte = torch.tensor(train.targets, dtype=torch.long), torch.tensor(test.targets, dtype=torch.long)
    txtr = tfill = None
    if t_view != s_view:  # paired views: the same samples, cropped and flipped alike, for the teachers
        (txall, txte), tmean, tstd = _view_tensors(cfg["name"], train, test, tr, t_view)
        txtr = txall[tr] if len(va) else txall
        tfill = [-m / s for m, s in zip(tmean, tstd)]
        teacher_val = TensorLoader(txte, yte, ebs, shuffle=False).to(device)
    if len(va):
        hl = TensorLoader(xtr[va], ytr[va], ebs, shuffle=False).to(device)
        xtr, ytr = xtr[tr], ytr[tr]
    tl = TensorLoader(xtr, ytr, bs, shuffle=True, crop_pad=4 if augment else 0, flip=augment,
                      fields=fields, pad_fill=[-m / s for m, s in zip(mean, std)], teacher_x=txtr,
                      teacher_pad_fill=tfill, aug_views=aug_views(cfg), norm=(mean, std)).to(device)
    vl = TensorLoader(xte, yte, ebs, shuffle=False).to(device)
    return tl, vl, hl, teacher_val, mean, std


def _loader_sources(cfg: Dict[str, Any], train, test, tr, va, device, fields, dist_info, augment: bool):
    """The loader pipeline: torchvision transforms in DataLoaders. → (train, test, validation, training set)."""
    import torchvision.transforms as T

    norm = T.Normalize(CIFAR_MEAN[cfg["name"]], CIFAR_STD[cfg["name"]])
    ttf = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment else []
    size = cfg.get("image_size") or 32
    # dataset.image_size: the 32-px images upsampled (bilinear, after crop and flip), as cross-family
    # recipes feed CIFAR to ImageNet-shaped models (OFA-KD: 224 px)
    resize = [T.Resize((size, size), interpolation=T.InterpolationMode.BILINEAR, antialias=True)] if size != 32 else []
    views = aug_views(cfg)
    train.transform = loader_transform(views[0], ttf + resize, [T.ToTensor(), norm])
    test.transform = T.Compose(resize + [T.ToTensor(), norm])
    hl = None
    if len(va):
        hl = _eval_loader(_take(train, va, test.transform), cfg, device, dist_info)
        train = _take(train, tr)
    # the second view: the same images through their own transform (FieldsDataset's ``aug_x``)
    second = _take(train, torch.arange(len(train)), loader_transform(views[1], ttf + resize, [T.ToTensor(), norm])) \
        if len(views) > 1 else None
    tl, vl = _loaders(train, test, cfg, device, fields, dist_info, second=second)
    return tl, vl, hl, train


def build_cifar(cfg: Dict[str, Any], device: torch.device, fields=("x", "y"), dist_info=None) -> DataBundle:
    name = cfg["name"]
    train, test = _read_cifar(cfg)
    mean, std = CIFAR_MEAN[name], CIFAR_STD[name]
    classes = 10 if name == "cifar10" else 100
    augment = cfg["augment"] if cfg["augment"] is not None else True
    views = cfg.get("views") or {}
    s_view = views.get("student") or "image"
    t_view = views.get("teacher") or s_view
    if (s_view, t_view) != ("image", "image") and cfg["pipeline"] != "tensor":
        raise ConfigError(f"dataset.views = {views!r}: {name}'s derived views are rendered in the tensor pipeline; "
                          f"set dataset.pipeline: tensor (or auto)")
    size = cfg.get("image_size") or 32
    if size != 32 and cfg["pipeline"] == "tensor":
        raise ConfigError(f"dataset.image_size = {size}: {name} is resized in the loader pipeline only (the tensor "
                          f"pipeline keeps 32 px); set dataset.pipeline: loader, or image_size: 32 / null")
    tr, va = holdout_split(train.targets, val_fraction(cfg), name)  # the validation split, from the 50k
    teacher_val = None
    if cfg["pipeline"] == "tensor":
        tl, vl, hl, teacher_val, mean, std = _tensor_sources(cfg, train, test, tr, va, (s_view, t_view), device,
                                                             fields, augment)
        if len(va):
            train = _take(train, tr)
    else:
        tl, vl, hl, train = _loader_sources(cfg, train, test, tr, va, device, fields, dist_info, augment)
    augment = augment or aug_views(cfg) != (WEAK,)
    return DataBundle(tl, vl, classes, (3, size, size), len(train), mean, std, name, augment,
                      torch.as_tensor(train.targets, dtype=torch.long), validation=hl, teacher_test=teacher_val,
                      split=split_record(cfg, len(train), len(va), len(test)))
