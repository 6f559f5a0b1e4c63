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
"""
from __future__ import annotations

import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from kdsuite.core.errors import ConfigError
from kdsuite.engine.batches import LoaderSource

from kdsuite.experiments.settings import DATASETS  # noqa: E402 (the names a config may give)
CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4867, 0.4408)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2675, 0.2565, 0.2761)}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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


# ---- in-memory, device-resident batches ------------------------------------------------------
def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator,
                     fill: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Batched RandomCrop(size, padding=pad) + RandomHorizontalFlip on ``x`` (B, C, H, W), drawn
    from ``generator`` (which lives on ``x``'s device). ``fill`` (C,) is the value of the padding per
    channel: torchvision pads the raw image with black *before* normalising, so on normalised tensors
    the matching fill is (0 − mean) / std, not 0 (which would be the mean colour)."""
    b, _, h, w = x.shape
    if pad > 0:
        if fill is not None:
            f = fill.to(x.device, x.dtype).view(1, -1, 1, 1)
            padded = F.pad(x - f, (pad, pad, pad, pad)) + f
        else:
            padded = F.pad(x, (pad, pad, pad, pad))
        dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=generator)
        dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (B, H)
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (B, W)
        idx_b = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        do = torch.rand(b, device=x.device, generator=generator) < 0.5
        x = torch.where(do[:, None, None, None], x.flip(3), x)
    return x.contiguous()


BATCH_FIELDS = ("x", "y", "index", "pair_x", "teacher_x")


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
    ``teacher_x`` given here, cropped and flipped exactly as ``x``; ``x`` itself without one) to every batch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                 crop_pad: int = 0, flip: bool = False, drop_last: bool = False, fields=("x", "y"),
                 pad_fill: Optional[Sequence[float]] = None, teacher_x: Optional[torch.Tensor] = None,
                 teacher_pad_fill: Optional[Sequence[float]] = None):
        if len(x) != len(y) or (teacher_x is not None and len(teacher_x) != len(x)):
            raise ValueError("x, y (and teacher_x) differ in length")
        self.x, self.y, self.teacher_x = x, y, teacher_x
        self.batch_size, self.shuffle, self.crop_pad, self.flip, self.drop_last = batch_size, shuffle, crop_pad, flip, drop_last
        self.fields = check_fields(fields)
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
                out = {"x": self._augment(self.x[idx]), "y": self.y[idx], "index": idx}
                out["teacher_x"] = out["x"]  # one view: the teachers see what the student sees
            if "pair_x" in self.fields:
                yb = self.y[idx]
                u = torch.rand(len(idx), device=self.x.device, generator=self.generator)
                partner = self._by_class[self._start[yb] + (u * self._count[yb]).long()]
                out["pair_x"] = self._augment(self.x[partner])
            yield tuple(out[f] for f in self.fields)


class FieldsDataset(torch.utils.data.Dataset):
    """Wraps a map-style data set to return ``(x, y, index[, pair_x])`` for a DataLoader; the
    same-class partner is drawn from torch's RNG, which the trainer re-seeds every epoch (in worker
    processes it is seeded from the loader's per-epoch generator), so epochs replay exactly."""

    def __init__(self, base, targets, fields):
        self.base, self.fields = base, check_fields(fields)
        self.targets = torch.as_tensor(targets)
        self.by_class = {int(c): torch.nonzero(self.targets == c).flatten() for c in torch.unique(self.targets)}

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        if "teacher_x" in self.fields and hasattr(self.base, "get_pair"):  # a paired multi-view data set
            x, y, tx = self.base.get_pair(i)
        else:
            x, y = self.base[i]
            tx = x
        out = {"x": x, "y": y, "index": i, "teacher_x": tx}
        if "pair_x" in self.fields:
            members = self.by_class[int(y)]
            out["pair_x"] = self.base[int(members[torch.randint(len(members), (1,))])][0]
        return tuple(out[f] for f in self.fields)


def cache_loader(train, batch_size: int):
    """A loader over the training set in order, without shuffling, yielding (x, y, index): the
    teacher-output cache is filled from it (valid only when training images are not augmented). With
    paired views it yields the teachers' view: the cache holds each teacher's outputs on what it sees."""
    if isinstance(train, TensorLoader):
        out = train.with_fields(("x", "y", "index"))
        out.shuffle, out.batch_size = False, batch_size
        if out.teacher_x is not None:
            out.x = out.teacher_x
        return out
    base = train.dataset.base if isinstance(train.dataset, FieldsDataset) else train.dataset
    if hasattr(base, "teacher_side"):
        base = base.teacher_side()
    return LoaderSource(torch.utils.data.DataLoader(FieldsDataset(base, base.targets, ("x", "y", "index")),
                                                    batch_size=batch_size, shuffle=False,
                                                    num_workers=train.num_workers))


# ---- the validation split --------------------------------------------------------------------
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


# ---- digits: the embedded default -------------------------------------------------------------
def load_digits_split(image_size: int = 16, test_fraction: float = 0.2, split_seed: int = 0,
                      train_fraction: float = 1.0, view: str = "image"):
    """scikit-learn's 1,797 8×8 digits as 3-channel ``image_size``² images, a fixed stratified
    train/test split, normalised with the (full) training split's statistics. ``train_fraction`` < 1
    keeps a fixed stratified subset of the training split (a small transfer set); the test split and
    the normalisation stay the same. ``view``: a rendering of :data:`kdsuite.experiments.views.DIGITS_VIEWS`
    (same samples, same order, same split)."""
    from kdsuite.experiments.views import digits_view

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = digits_view(x, view).repeat(1, 3, 1, 1)
    y = torch.tensor(d.target, dtype=torch.long)
    tr, te = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=split_seed,
                              stratify=d.target)
    tr, te = torch.as_tensor(np.sort(tr)), torch.as_tensor(np.sort(te))
    mean = float(x[tr].mean())
    std = float(x[tr].std())
    x = (x - mean) / std
    if train_fraction < 1.0:
        keep, _ = train_test_split(tr.numpy(), train_size=train_fraction, random_state=split_seed,
                                   stratify=d.target[tr.numpy()])
        tr = torch.as_tensor(np.sort(keep))
    return x[tr], y[tr], x[te], y[te], (mean,) * 3, (std,) * 3


# ---- CIFAR through torchvision ---------------------------------------------------------------
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


def build_cifar(cfg: Dict[str, Any], device: torch.device, fields=("x", "y"), dist_info=None) -> DataBundle:
    name = cfg["name"]
    cls = cifar_class(name)
    root = os.path.expanduser(cfg["root"])
    try:
        train = cls(root, train=True, download=cfg["download"], verify_checksums=cfg["verify_checksums"])
        test = cls(root, train=False, download=False, verify_checksums=cfg["verify_checksums"])
    except RuntimeError as e:
        hint = _checksum_hint(cls, root) if os.path.isdir(os.path.join(root, cls.base_folder)) else ""
        raise ConfigError(f"dataset.root = '{root}': cannot read {name} ({e}).{hint}") from e
    mean, std = CIFAR_MEAN[name], CIFAR_STD[name]
    classes = 10 if name == "cifar10" else 100
    bs, ebs = cfg["batch_size"], cfg["eval_batch_size"]
    augment = cfg["augment"] if cfg["augment"] is not None else True

    from kdsuite.experiments.views import render_view

    views = cfg.get("views") or {}
    s_view = views.get("student") or "image"
    t_view = views.get("teacher") or s_view
    if (s_view, t_view) != ("image", "image") and cfg["pipeline"] != "tensor":
        raise ConfigError(f"dataset.views = {views!r}: {name}'s derived views are rendered in the tensor pipeline; "
                          f"set dataset.pipeline: tensor (or auto)")
    tr, va = holdout_split(train.targets, val_fraction(cfg), name)  # the validation split, from the 50k

    def view_tensors(view):
        """Train and test images as ``view``, normalised: the official statistics for the image itself,
        the view's own (over the training split, one value per channel as the digits') otherwise."""
        xs = [render_view(torch.tensor(ds.data).permute(0, 3, 1, 2).float().div_(255), view) for ds in (train, test)]
        vm, vs = (CIFAR_MEAN[name], CIFAR_STD[name]) if view == "image" else \
            ((float(xs[0][tr].mean()),) * 3, (float(xs[0][tr].std()),) * 3)
        m, s = torch.tensor(vm)[None, :, None, None], torch.tensor(vs)[None, :, None, None]
        return [(x - m) / s for x in xs], vm, vs

    hl = teacher_val = None
    if cfg["pipeline"] == "tensor":
        # the whole set as one normalised tensor (on the GPU when training there); crop+flip batched
        (xtr, xte), mean, std = view_tensors(s_view)
        ytr, yte = torch.tensor(train.targets, dtype=torch.long), torch.tensor(test.targets, dtype=torch.long)
        txtr = tfill = None
        if t_view != s_view:  # paired views: the same samples, cropped and flipped alike, for the teachers
            (txall, txte), tmean, tstd = view_tensors(t_view)
            txtr = txall[tr] if len(va) else txall
            tfill = [-m / s for m, s in zip(tmean, tstd)]
            teacher_val = TensorLoader(txte, yte, ebs, shuffle=False).to(device)
        if len(va):
            hl = TensorLoader(xtr[va], ytr[va], ebs, shuffle=False).to(device)
            xtr, ytr = xtr[tr], ytr[tr]
        tl = TensorLoader(xtr, ytr, bs, shuffle=True, crop_pad=4 if augment else 0, flip=augment,
                          fields=fields, pad_fill=[-m / s for m, s in zip(mean, std)], teacher_x=txtr,
                          teacher_pad_fill=tfill).to(device)
        vl = TensorLoader(xte, yte, ebs, shuffle=False).to(device)
        if len(va):
            train = _take(train, tr)
    else:
        import torchvision.transforms as T

        norm = T.Normalize(mean, std)
        ttf = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment else []
        train.transform = T.Compose(ttf + [T.ToTensor(), norm])
        test.transform = T.Compose([T.ToTensor(), norm])
        if len(va):
            hl = _eval_loader(_take(train, va, test.transform), cfg, device, dist_info)
            train = _take(train, tr)
        tl, vl = _loaders(train, test, cfg, device, fields, dist_info)
    return DataBundle(tl, vl, classes, (3, 32, 32), len(train), mean, std, name, augment,
                      torch.as_tensor(train.targets, dtype=torch.long), holdout=hl, teacher_val=teacher_val,
                      split=split_record(cfg, len(train), len(va), len(test)))


def _loaders(train, test, cfg, device, fields=("x", "y"), dist_info=None):
    g = torch.Generator()
    g.manual_seed(0)
    if tuple(fields) != ("x", "y"):
        train = FieldsDataset(train, train.targets, fields)
    common = dict(num_workers=cfg["num_workers"], pin_memory=device.type == "cuda",
                  persistent_workers=cfg["num_workers"] > 0)
    if dist_info is not None and dist_info.active:
        # data-parallel: each process loads only its share of every global batch / of the test set
        from kdsuite.engine.distributed import ShardedBatchSampler

        tl = torch.utils.data.DataLoader(train, batch_sampler=ShardedBatchSampler(len(train), cfg["batch_size"],
                                                                                  dist_info, g), **common)
        return LoaderSource(tl, g, sharded=True), _eval_loader(test, cfg, device, dist_info)
    tl = torch.utils.data.DataLoader(train, batch_size=cfg["batch_size"], shuffle=True, generator=g,
                                     drop_last=False, **common)
    return LoaderSource(tl), _eval_loader(test, cfg, device, dist_info)


def _eval_loader(ds, cfg, device, dist_info=None):
    """An in-order loader for evaluation (test or validation split); in a data-parallel run each process
    loads only its share."""
    common = dict(num_workers=cfg["num_workers"], pin_memory=device.type == "cuda",
                  persistent_workers=cfg["num_workers"] > 0)
    if dist_info is not None and dist_info.active:
        from kdsuite.engine.distributed import shard_indices

        vl = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, shard_indices(len(ds), dist_info)),
                                         batch_size=cfg["eval_batch_size"], shuffle=False, **common)
        return LoaderSource(vl, sharded=True)
    return LoaderSource(torch.utils.data.DataLoader(ds, batch_size=cfg["eval_batch_size"], shuffle=False, **common))


def build_imagefolder(cfg: Dict[str, Any], device: torch.device, fields=("x", "y"), dist_info=None) -> DataBundle:
    import torchvision
    import torchvision.transforms as T

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
            return torchvision.datasets.ImageFolder(os.path.join(root, split), tf)
        except (FileNotFoundError, RuntimeError) as e:  # no class folders / no image files in them
            raise ConfigError(f"dataset.root = '{root}': {split}/ needs one sub-folder per class holding image "
                              f"files ({', '.join(torchvision.datasets.folder.IMG_EXTENSIONS)}): {e}") from None

    val_tf = T.Compose([T.Resize(int(size * 8 / 7)), T.CenterCrop(size), T.ToTensor(), norm])
    train = folder("train", T.Compose(ttf + [T.ToTensor(), norm]))
    val = folder("val", val_tf)
    if train.classes != val.classes:
        raise ConfigError(f"dataset.root = '{root}': train/ and val/ have different class folders")
    student_train, teacher_val = train, None
    if t_view != s_view:
        from kdsuite.experiments.views import PairedFolder

        t_root = os.path.join(top, t_view)
        train = PairedFolder(os.path.join(root, "train"), os.path.join(t_root, "train"), size, augment,
                             IMAGENET_MEAN, IMAGENET_STD)
        t_val = PairedFolder(os.path.join(root, "val"), os.path.join(t_root, "val"), size, False,
                             IMAGENET_MEAN, IMAGENET_STD).teacher_side()
        teacher_val = _eval_loader(t_val, cfg, device, dist_info)
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
                      teacher_val=teacher_val, holdout=hl, split=split_record(cfg, len(train), len(va), len(val)))


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
        size = cfg["image_size"] or 16
        views = cfg.get("views") or {}
        s_view = views.get("student") or "image"
        t_view = views.get("teacher") or s_view
        xtr, ytr, xte, yte, mean, std = load_digits_split(size, view=s_view)
        # the validation split first (from the whole training split), then the transfer-set subset of the rest
        tr, va = holdout_split(ytr, val_fraction(cfg), "digits")
        tr = _stratified_subset(tr, ytr, cfg["train_fraction"])
        txtr = tfill = teacher_val = None
        if t_view != s_view:  # paired views: the same samples, rendered for the teachers
            txall, _, txte, _, tmean, tstd = load_digits_split(size, view=t_view)
            txtr = txall[tr]
            tfill = [-m / s for m, s in zip(tmean, tstd)]
            teacher_val = TensorLoader(txte, yte, cfg["eval_batch_size"], shuffle=False).to(device)
        augment = bool(cfg["augment"])  # off by default: the digits are centred and tiny
        tl = TensorLoader(xtr[tr], ytr[tr], cfg["batch_size"], shuffle=True, crop_pad=1 if augment else 0,
                          fields=fields, pad_fill=[-m / s for m, s in zip(mean, std)], teacher_x=txtr,
                          teacher_pad_fill=tfill).to(device)
        vl = TensorLoader(xte, yte, cfg["eval_batch_size"], shuffle=False).to(device)
        hl = TensorLoader(xtr[va], ytr[va], cfg["eval_batch_size"], shuffle=False).to(device) if len(va) else None
        return DataBundle(tl, vl, 10, (3, size, size), len(tr), mean, std, "digits", augment, ytr[tr].clone(),
                          teacher_val=teacher_val, holdout=hl, split=split_record(cfg, len(tr), len(va), len(yte)))
    if cfg["train_fraction"] != 1.0:
        raise ConfigError(f"dataset.train_fraction = {cfg['train_fraction']} is supported for digits only; "
                          f"use 1.0 for {name}")
    if name in ("cifar10", "cifar100"):
        return build_cifar(cfg, device, fields, dist_info)
    if name == "imagefolder":
        return build_imagefolder(cfg, device, fields, dist_info)
    raise ConfigError(f"dataset.name = {name!r} is not one of {list(DATASETS)}")
