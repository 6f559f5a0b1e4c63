"""The embedded default data set: scikit-learn's handwritten digits, as device-resident tensors.

Role in the flow: :func:`kdsuite.experiments.data.build_data` calls :func:`build_digits` for
``dataset.name: digits``. The digits have derived views (:data:`kdsuite.experiments.views.DIGITS_VIEWS`,
``dataset.views``); the validation split (:mod:`kdsuite.experiments.data_splits`) comes first, then the
transfer-set subset (``dataset.train_fraction``) of the rest; batches come from
:class:`kdsuite.experiments.data_tensor.TensorLoader`.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch
import torch.nn.functional as F

from kdsuite.experiments.data_bundle import DataBundle
from kdsuite.experiments.data_splits import _stratified_subset, holdout_split, split_record, val_fraction
from kdsuite.experiments.data_strong import WEAK, aug_views
from kdsuite.experiments.data_tensor import TensorLoader


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


def build_digits(cfg: Dict[str, Any], device: torch.device, fields=("x", "y")) -> DataBundle:
    """The digits as a :class:`DataBundle` (``cfg``: the ``dataset`` section, pipeline resolved)."""
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
    views_aug = aug_views(cfg)
    tl = TensorLoader(xtr[tr], ytr[tr], cfg["batch_size"], shuffle=True, crop_pad=1 if augment else 0,
                      fields=fields, pad_fill=[-m / s for m, s in zip(mean, std)], teacher_x=txtr,
                      teacher_pad_fill=tfill, aug_views=views_aug, norm=(mean, std)).to(device)
    augment = augment or views_aug != (WEAK,)
    vl = TensorLoader(xte, yte, cfg["eval_batch_size"], shuffle=False).to(device)
    hl = TensorLoader(xtr[va], ytr[va], cfg["eval_batch_size"], shuffle=False).to(device) if len(va) else None
    return DataBundle(tl, vl, 10, (3, size, size), len(tr), mean, std, "digits", augment, ytr[tr].clone(),
                      teacher_test=teacher_val, validation=hl, split=split_record(cfg, len(tr), len(va), len(yte)))
