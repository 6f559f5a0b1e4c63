"""The shared trainer: exact resume, determinism, schedules, evaluation, stages and optimizer groups."""
import math

import pytest
import torch
import torch.nn as nn

from kdsuite.experiments.run import build, prepare, run
from kdsuite.engine.trainer import evaluate, lr_factor


def _cfg(root, **kw):
    cfg = {"student": "cifar_resnet8", "epochs": 3, "max_steps_per_epoch": 6, "progress": "none",
           "dataset": {"name": "digits", "batch_size": 32, "augment": True},
           "schedule": {"name": "step", "milestones": [2], "gamma": 0.1},
           "output": {"root": str(root)}}
    cfg.update(kw)
    return cfg


def _weights(run_dir):
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    return ck["method"], ck["optimizers"]


def test_stopped_and_resumed_run_ends_with_identical_weights(tmp_path):
    straight = run(_cfg(tmp_path / "a"))
    cfg_b = _cfg(tmp_path / "b")
    partial = run(cfg_b, stop_after_epochs=2)
    assert partial["status"] == "interrupted"
    resumed = run(cfg_b)
    assert resumed["status"] == "finished"
    wa, oa = _weights(tmp_path / "a" / straight["run_dir"].split("/")[-1])
    wb, ob = _weights(tmp_path / "b" / resumed["run_dir"].split("/")[-1])
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert oa["student"]["state"].keys() == ob["student"]["state"].keys()
    for i in oa["student"]["state"]:
        assert torch.equal(oa["student"]["state"][i]["momentum_buffer"], ob["student"]["state"][i]["momentum_buffer"])
    assert straight["metrics"]["last_top1"] == resumed["metrics"]["last_top1"]
    assert [h["train/loss"] for h in straight["history"]] == [h["train/loss"] for h in resumed["history"]]


def test_finished_record_is_returned_not_retrained(tmp_path):
    first = run(_cfg(tmp_path, epochs=1))
    again = run(_cfg(tmp_path, epochs=1))
    assert again["finished"] == first["finished"] and again["run_id"] == first["run_id"]


def test_different_seed_gives_different_run(tmp_path):
    a = run(_cfg(tmp_path, epochs=1, seed=0))
    b = run(_cfg(tmp_path, epochs=1, seed=1))
    assert a["run_id"] != b["run_id"]
    assert a["history"][0]["train/loss"] != b["history"][0]["train/loss"]


def test_lr_schedules_follow_their_formulas():
    step = {"name": "step", "milestones": [150, 180, 210], "gamma": 0.1}
    assert lr_factor(step, 149.9, 240) == 1.0
    assert lr_factor(step, 150.0, 240) == pytest.approx(0.1)
    assert lr_factor(step, 200.5, 240) == pytest.approx(0.01)
    assert lr_factor(step, 239.0, 240) == pytest.approx(0.001)
    cos = {"name": "cosine", "warmup_epochs": 5, "min_lr_ratio": 0.0}
    assert lr_factor(cos, 2.5, 105) == pytest.approx(0.5)  # linear warm-up: 2.5 / 5
    assert lr_factor(cos, 55.0, 105) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(cos, 105.0, 105) == pytest.approx(0.0, abs=1e-12)


def test_trainer_sets_the_scheduled_lr_each_epoch(tmp_path):
    rec = run(_cfg(tmp_path, optim={"lr": 0.2}))
    lrs = [h["lr"]["student"] for h in rec["history"]]
    # the lr logged after epoch e is the one of its last step: epoch 1 and 2 at 0.2 (milestone 2 applies
    # from the start of epoch 3, i.e. after 2 epochs done), epoch 3 at 0.02
    assert lrs == pytest.approx([0.2, 0.2, 0.02])


class _Fixed(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits[x[:, 0].long()]


def test_evaluate_top1_top5_against_hand_count():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20, 7, generator=g)
    y = torch.randint(0, 7, (20,), generator=g)
    x = torch.arange(20).float()[:, None]
    loader = [(x[:12], y[:12]), (x[12:], y[12:])]
    res = evaluate({"m": _Fixed(logits)}, loader, torch.device("cpu"), lambda: torch.autocast("cpu", enabled=False))
    order = logits.argsort(dim=1, descending=True)
    top1 = sum(int(order[i, 0] == y[i]) for i in range(20)) / 20 * 100
    top5 = sum(int(y[i] in order[i, :5].tolist()) for i in range(20)) / 20 * 100
    ce = sum(-torch.log_softmax(logits[i], 0)[y[i]].item() for i in range(20)) / 20
    assert res["m"]["top1"] == pytest.approx(top1)
    assert res["m"]["top5"] == pytest.approx(top5)
    assert res["m"]["loss"] == pytest.approx(ce, rel=1e-5)


def test_a_short_vanilla_run_learns(tmp_path):
    rec = run(_cfg(tmp_path, epochs=4, max_steps_per_epoch=None))
    assert rec["metrics"]["last_top1"] > 60.0  # chance is 10%
    assert rec["metrics"]["best_test_top1"] >= rec["metrics"]["last_top1"]
    assert rec["metrics"]["student_params"] == sum(
        p.numel() for p in __import__("kdsuite.zoo", fromlist=["create_model"]).create_model("cifar_resnet8", num_classes=10).parameters())


def test_bf16_autocast_and_channels_last_run_on_cpu(tmp_path):
    rec = run(_cfg(tmp_path, epochs=1, precision="bf16", channels_last=True))
    assert rec["status"] == "finished" and math.isfinite(rec["history"][0]["train/loss"])


def test_no_per_step_host_sync_in_the_training_loop(tmp_path, monkeypatch):
    """Loss terms are read back only at log points and epoch ends, not at every step."""
    cfg, h, rd = prepare(_cfg(tmp_path, epochs=1, max_steps_per_epoch=12, log_every=100))
    parts = build(cfg, h, rd)
    calls = {"n": 0}
    real_item = torch.Tensor.item

    def counting_item(self):
        calls["n"] += 1
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    parts.trainer.test_loader = None
    parts.trainer.fit()
    # one read per logged loss term at the epoch end (ce) — independent of the 12 steps
    assert calls["n"] <= 3


def test_split_names_and_their_old_names():
    """The trainer names the splits as records do (test / validation / train); the old keyword and attribute
    names (``val_loader`` was the test split, ``select_loader`` the validation split) still work."""
    from kdsuite.engine.trainer import Trainer, TrainSettings
    from kdsuite.testing import make

    batch = (torch.zeros(2, 3, 16, 16), torch.zeros(2, dtype=torch.long))
    test, val, teacher_test = [batch], [batch, batch], [batch, batch, batch]
    tr = Trainer(make("kd"), [batch], test, TrainSettings(progress="none"), validation_loader=val,
                 teacher_test_loader=teacher_test)
    assert tr.test_loader is test and tr.validation_loader is val and tr.teacher_test_loader is teacher_test
    old = Trainer(make("kd"), [batch], test, TrainSettings(progress="none"), select_loader=val,
                  teacher_val_loader=teacher_test)
    assert old.validation_loader is val and old.teacher_test_loader is teacher_test
    assert old.val_loader is test and old.select_loader is val
    old.val_loader = None
    assert old.test_loader is None
    with pytest.raises(TypeError, match="validation_loader or its old name select_loader"):
        Trainer(make("kd"), [batch], test, TrainSettings(progress="none"), validation_loader=val, select_loader=val)
