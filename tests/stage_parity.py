"""Shared pieces of the RepDistiller parity tests of the staged methods (fsp, ft, ab).

- :func:`real_pair`: the plugin around a freshly initialised CIFAR-100 pair, teacher
  ``cifar_resnet32x4`` → student ``cifar_resnet8x4`` (100 classes, 32×32 inputs, seeded), and
  :func:`fixed_batch`, one seeded batch: the loss-scale checks run a single forward on them.
- :func:`resnet_features64`: the features RepDistiller's ``resnet.forward(is_feat=True, preact=...)``
  returns, computed in float64 on a copy of a zoo CIFAR ResNet by walking its modules directly
  (stem, stages, the stage activations, pooling, fc), not through ``kdsuite.zoo.taps``.
- :func:`ce64`: cross-entropy in float64 numpy.
- :class:`Recorder`: a stand-in for the trainer whose ``optimize`` records the losses and steps nothing.
"""
import copy

import numpy as np
import torch

from kdsuite import zoo
from kdsuite.methods.base import BuildContext
from kdsuite.methods.hparams import resolve_hparams
from kdsuite.methods.registry import get_method

BATCH = 8


def real_pair(name, **hp):
    cls = get_method(name)
    torch.manual_seed(0)
    student = zoo.create_model("cifar_resnet8x4", num_classes=100)
    teacher = zoo.create_model("cifar_resnet32x4", num_classes=100).eval().requires_grad_(False)
    ctx = BuildContext(num_classes=100, input_shape=(3, 32, 32), epochs=240, steps_per_epoch=782, batch_size=64,
                       num_train=50000)
    return cls(student, [teacher], resolve_hparams(cls.name, cls.hparams, hp), ctx)


def fixed_batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 3, 32, 32, generator=g), torch.randint(0, 100, (BATCH,), generator=g)


@torch.no_grad()
def resnet_features64(model, x):
    """(logits, post, pre) in float64 numpy: ``post`` = [stem, stage 1 … N] after their activations
    (RepDistiller's feat[:-1]), ``pre`` = the stage outputs before their trailing ReLU (its
    feat[1:-1] with preact=True). The copy keeps the model's train/eval mode (BN statistics)."""
    m = copy.deepcopy(model).double()
    h = m.stem(x.double())
    post, pre = [h], []
    for stage, act in zip(m.stages, m.stage_acts):
        p = stage(h)
        pre.append(p.clone())
        h = act(p)
        post.append(h)
    logits = m.fc(h.mean(dim=(2, 3)))
    return logits.numpy(), [a.numpy() for a in post], [a.numpy() for a in pre]


def ce64(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(y)), np.asarray(y)]))


class Recorder:
    """``train_step``'s trainer: records the group and losses of each ``optimize`` call, steps nothing."""

    def __init__(self):
        self.calls = []

    def optimize(self, group, losses, retain_graph=False):
        self.calls.append((group, {k: float(v.detach()) for k, v in losses.items()}))


def stage_optimizers(m, index, optim=None, schedule=None, at_epoch=None):
    """Build a real Trainer around plugin ``m``, enter stage ``index`` and report, per active optimizer
    group: {"params": set of parameter ids, "lr", "momentum", "weight_decay", "lr_later"} where
    ``lr_later`` is the learning rate the trainer sets ``at_epoch`` epochs into the stage."""
    from kdsuite.experiments.data import TensorLoader
    from kdsuite.engine.trainer import Trainer, TrainSettings

    optim = optim or {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
    schedule = schedule or {"name": "cosine"}
    shape = m.ctx.input_shape
    loader = TensorLoader(torch.zeros(4, *shape), torch.zeros(4, dtype=torch.long), batch_size=4, shuffle=False)
    tr = Trainer(m, loader, None, TrainSettings(epochs=m.ctx.epochs, optim=optim, schedule=schedule, progress="none"))
    stage = tr.enter_stage(index)
    out = {}
    for name, opt in tr.optimizers.items():
        pg = opt.param_groups[0]
        out[name] = {"params": {id(p) for g in opt.param_groups for p in g["params"]}, "lr": pg["lr"],
                     "momentum": pg["momentum"], "weight_decay": pg["weight_decay"]}
    tr._set_lrs(stage.epochs * 0.7 if at_epoch is None else at_epoch)
    for name, opt in tr.optimizers.items():
        out[name]["lr_later"] = opt.param_groups[0]["lr"]
    return out
