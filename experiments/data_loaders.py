"""torch ``DataLoader`` sources for map-style data sets (CIFAR's loader pipeline, image folders), and the
teacher-cache loader of every kind.

Role in the flow: the per-kind builders (:mod:`kdsuite.experiments.data_cifar`,
:mod:`kdsuite.experiments.data_folders`) wrap their training and evaluation sets here
(:func:`_loaders`, :func:`_eval_loader`; sharded per process in a data-parallel run);
:class:`FieldsDataset` adds the batch fields a method asks for; :func:`cache_loader` is what
:mod:`kdsuite.experiments.run` fills the teacher-output cache from.
"""
from __future__ import annotations

import torch

from kdsuite.engine.batches import LoaderSource
from kdsuite.experiments.data_tensor import TensorLoader, check_fields


class FieldsDataset(torch.utils.data.Dataset):
    """Wraps a map-style data set to return ``(x, y, index[, pair_x])`` for a DataLoader; the
    same-class partner is drawn from torch's RNG, which the trainer re-seeds every epoch (in worker
    processes it is seeded from the loader's per-epoch generator), so epochs replay exactly."""

    def __init__(self, base, targets, fields, second=None):
        # second: the same samples through another transform (the batch field aug_x, dataset.aug_views)
        self.base, self.fields, self.second = base, check_fields(fields), second
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
        if "aug_x" in self.fields:
            out["aug_x"] = self.second[i][0]
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


def _loaders(train, test, cfg, device, fields=("x", "y"), dist_info=None, second=None):
    g = torch.Generator()
    g.manual_seed(0)
    if tuple(fields) != ("x", "y"):
        train = FieldsDataset(train, train.targets, fields, second)
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
