"""Shared pieces of the RepDistiller parity tests of the staged methods (fsp, ft, ab).

- :func:`real_pair` (from :mod:`tests.parity_helpers`): the plugin around a freshly initialised CIFAR-100
  pair, teacher ``cifar_resnet32x4`` → student ``cifar_resnet8x4``, and :func:`fixed_batch`, one seeded
  batch of 8: the loss-scale checks run a single step on them.
- :func:`resnet_features64`: the features RepDistiller's ``resnet.forward(is_feat=True, preact=...)``
  returns, computed in float64 on a copy of a zoo CIFAR ResNet by walking its modules directly
  (stem, stages, the stage activations, pooling, fc), not through ``kdsuite.zoo.taps``.
- :class:`Recorder`: a stand-in for the trainer whose ``optimize`` records the losses and steps nothing.
"""
import copy

import torch

from tests.parity_helpers import ce64, real_pair  # noqa: F401  (the staged methods' tests import them from here)
from tests.parity_helpers import fixed_batch as parity_batch
from kdsuite.testing import stage_step

BATCH = 8


def fixed_batch():
    return parity_batch(BATCH)


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


class Recorder:
    """``train_step``'s trainer: records the group and losses of each ``optimize`` call, steps nothing."""

    def __init__(self):
        self.calls = []

    def optimize(self, group, losses, retain_graph=False):
        self.calls.append((group, {k: float(v.detach()) for k, v in losses.items()}))


def init_then_main(m, batch, init_term):
    """One step of the init stage, then one of the main stage, as the trainer runs them; asserts the init
    stage returns ``init_term`` alone on group "init" and the main stage CE alone on "student", and
    returns (init losses, main losses)."""
    rec = Recorder()
    for stage in ("init", "main"):
        m.train()
        m.progress.stage = stage
        stage_step(m, batch, rec)
    (g_init, init), (g_main, main) = rec.calls
    assert (g_init, set(init), g_main, set(main)) == ("init", {init_term}, "student", {"ce"})
    return init, main


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
