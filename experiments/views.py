"""Views of paired multi-view data, for cross-modal distillation (``dataset.views``).

Role in the flow: :func:`kdsuite.experiments.data.build_data` asks this module for a view of the digits
(:func:`digits_view`) or for a paired image-folder data set (:class:`PairedFolder`); the teachers then see
one view of each sample (batch field ``teacher_x``), the trained model another.

Digits views are renderings of the same 16×16 intensity image, deterministic (no random numbers); CIFAR
has the same views, rendered from each image's luminance (:func:`render_view`, tensor pipeline only):

- ``image``: the image itself (what every single-view run sees);
- ``edges``: the Sobel gradient magnitude, an edge sensor's rendering — strokes become pairs of
  outlines, flat ink and flat background both read 0;
- ``thermal``: a low-resolution sensor — the image averaged down to a quarter of its side and
  bilinearly blown up again (4×4 pixels of information at 16×16), the strokes a blur.

Image folders of a real multi-view data set (RGB / depth / thermal ...) hold one folder per view, with
the same split / class / file layout in each: ``root/<view>/train/<class>/<file>`` and
``root/<view>/val/<class>/<file>``. Two files are a pair when their paths relative to the view folder
agree up to the extension (``rgb/train/cat/0001.jpg`` ↔ ``depth/train/cat/0001.png``); a file without a
partner, or a partner in another class folder, is a :class:`ConfigError` naming it.
"""
from __future__ import annotations

import os
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

from kdsuite.core.errors import ConfigError

# the rules (names, checks, normalisation) are torch-free, for config validation and grid planning
from kdsuite.experiments.view_rules import (DEFAULT_VIEW, DERIVED_VIEWS, DIGITS_VIEWS, check_views,  # noqa: F401
                                           resolve_views)


def digits_view(x: torch.Tensor, view: str) -> torch.Tensor:
    """``x`` (N, 1, H, W) intensities in [0, 1] rendered as ``view`` (same shape)."""
    if view == "image":
        return x
    if view == "edges":
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype)
        kernels = torch.stack([sobel, sobel.t()])[:, None]  # d/dx, d/dy
        g = F.conv2d(x, kernels, padding=1)
        return g.pow(2).sum(1, keepdim=True).sqrt()
    if view == "thermal":
        h, w = x.shape[-2:]
        low = F.adaptive_avg_pool2d(x, (max(1, h // 4), max(1, w // 4)))
        return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    raise ConfigError(f"dataset.views: the digits have no view {view!r}; views: {list(DIGITS_VIEWS)}")


def render_view(x: torch.Tensor, view: str) -> torch.Tensor:
    """RGB images ``x`` (N, 3, H, W) in [0, 1] as ``view``: the image itself, or the view of
    :func:`digits_view` rendered from the luminance (ITU-R BT.601 weights) and repeated on 3 channels, so
    that every view keeps the models' 3 input channels."""
    if view == "image":
        return x
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    return digits_view(gray, view).repeat(1, 3, 1, 1)


# ---- image folders of paired files -------------------------------------------------------------
def _samples(folder) -> List[Tuple[str, int]]:
    return list(folder.samples)


def pair_samples(student, teacher, s_root: str, t_root: str) -> List[str]:
    """For every sample of the ImageFolder ``student`` the path of its partner in ``teacher`` (same class
    folder, same relative path up to the extension); raises a ConfigError naming the first unpaired file."""
    if student.classes != teacher.classes:
        only_s = sorted(set(student.classes) - set(teacher.classes))
        only_t = sorted(set(teacher.classes) - set(student.classes))
        raise ConfigError(f"dataset.views: the class folders of '{s_root}' and '{t_root}' differ (only in the "
                          f"first: {only_s}; only in the second: {only_t}); paired views need the same classes")

    def key(path: str, root: str) -> Tuple[str, str]:
        rel = os.path.relpath(path, root)
        cls, rest = rel.split(os.sep, 1)
        return cls, os.path.splitext(rest)[0]

    t_by_key: Dict[Tuple[str, str], str] = {}
    t_classes_of: Dict[str, List[str]] = {}
    for path, _ in _samples(teacher):
        cls, stem = key(path, t_root)
        t_by_key[(cls, stem)] = path
        t_classes_of.setdefault(stem, []).append(cls)
    partners, used = [], set()
    for path, _ in _samples(student):
        cls, stem = key(path, s_root)
        partner = t_by_key.get((cls, stem))
        if partner is None:
            others = [c for c in t_classes_of.get(stem, []) if c != cls]
            where = (f"; a file of that name is in class folder(s) {others} there — paired files must be in the "
                     f"same class") if others else "; every file needs one in each view"
            raise ConfigError(f"dataset.views: '{path}' (class '{cls}') has no partner in '{t_root}' (expected "
                              f"{os.path.join(t_root, cls, stem)}.<ext>){where}")
        partners.append(partner)
        used.add(partner)
    for path, _ in _samples(teacher):
        if path not in used:
            cls, stem = key(path, t_root)
            raise ConfigError(f"dataset.views: '{path}' (class '{cls}') has no partner in '{s_root}' (expected "
                              f"{os.path.join(s_root, cls, stem)}.<ext>); every file needs one in each view")
    return partners


class PairedFolder(torch.utils.data.Dataset):
    """One split of a paired image-folder data set: item ``i`` is the student view's image and label;
    :meth:`get_pair` adds the teacher view's image of the same sample, cropped and flipped identically
    (a partner of another size is resized to the student image's size first)."""

    def __init__(self, student_root: str, teacher_root: str, size: int, augment: bool, mean, std):
        from kdsuite.experiments.data_images import ImageLoader

        self.student = _folder(student_root)
        self.teacher = _folder(teacher_root)
        self.partners = pair_samples(self.student, self.teacher, student_root, teacher_root)
        self.targets, self.classes = list(self.student.targets), list(self.student.classes)
        self.size, self.augment, self.mean, self.std = size, augment, mean, std
        self.loader = ImageLoader("dataset.views")  # a damaged file is an error naming it

    def __len__(self) -> int:
        return len(self.student)

    def _transform(self, images):
        import torchvision.transforms as T
        import torchvision.transforms.functional as TF

        first = images[0]
        images = [im if im.size == first.size else im.resize(first.size) for im in images]
        if self.augment:
            i, j, h, w = T.RandomResizedCrop.get_params(first, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
            flip = bool(torch.rand(1) < 0.5)
            images = [TF.resized_crop(im, i, j, h, w, [self.size, self.size]) for im in images]
            images = [TF.hflip(im) if flip else im for im in images]
        else:
            images = [TF.center_crop(TF.resize(im, int(self.size * 8 / 7)), self.size) for im in images]
        return [TF.normalize(TF.to_tensor(im), self.mean, self.std) for im in images]

    def __getitem__(self, i):
        path, y = self.student.samples[i]
        (x,) = self._transform([self.loader(path)])
        return x, y

    def get_pair(self, i):
        path, y = self.student.samples[i]
        x, tx = self._transform([self.loader(path), self.loader(self.partners[i])])
        return x, y, tx

    def subset(self, idx) -> "PairedFolder":
        """The samples ``idx`` only, with their partners (the training part when a validation split is held out)."""
        import copy

        keep = [int(i) for i in idx]
        out = copy.copy(self)
        out.student = copy.copy(self.student)
        out.student.samples = [self.student.samples[i] for i in keep]
        out.student.imgs = out.student.samples
        out.student.targets = [self.student.targets[i] for i in keep]
        out.partners = [self.partners[i] for i in keep]
        out.targets = list(out.student.targets)
        return out

    def teacher_side(self) -> "torch.utils.data.Dataset":
        """The teacher view's images as ``(x, y)`` items (the teacher-output cache is filled from them)."""
        return _TeacherSide(self)


class _TeacherSide(torch.utils.data.Dataset):
    def __init__(self, paired: PairedFolder):
        self.paired, self.targets = paired, paired.targets

    def __len__(self) -> int:
        return len(self.paired)

    def __getitem__(self, i):
        _, y, tx = self.paired.get_pair(i)
        return tx, y


def _folder(root: str):
    from kdsuite.experiments.data_images import IMG_EXTENSIONS, ImageFiles

    try:
        return ImageFiles(root, field="dataset.views")
    except (FileNotFoundError, RuntimeError) as e:
        raise ConfigError(f"dataset.views: '{root}' needs one sub-folder per class holding image files "
                          f"({', '.join(IMG_EXTENSIONS)}): {e}") from None
