"""Divergence: a non-finite loss or non-finite weights stop the run as ``diverged`` (with where), never
``finished``; a diverged record is not retrained."""
from kdsuite.core.records import read_record
from kdsuite.experiments.run import run

TINY = {"epochs": 1, "max_steps_per_epoch": 2, "progress": "none", "dataset": {"name": "digits", "batch_size": 32}}


def test_a_nan_run_is_recorded_as_diverged_with_its_step(tmp_path, monkeypatch):
    # lr 1000 is refused by config validation (lr ≤ MAX_LR, tested in test_bad_inputs); lifted here because
    # this test is about what the trainer does when a run really diverges (lr 10 does not, on digits)
    from kdsuite.engine import settings

    monkeypatch.setattr(settings, "MAX_LR", 1e4)
    rec = run(dict(TINY, epochs=3, max_steps_per_epoch=5, optim={"lr": 1000.0}, output={"root": str(tmp_path)}))
    on_disk = read_record(rec["run_dir"])
    assert on_disk["status"] == "diverged" and on_disk["status"] == rec["status"]
    d = on_disk["divergence"]
    print("divergence:", d)
    assert d["what"].startswith(("non-finite loss", "non-finite weights")) and isinstance(d["step"], int)
    # it stopped in the first epoch that was not finite: every epoch in the history has a finite loss
    # and the step lies in the epoch after them
    assert all(h["train/loss"] == h["train/loss"] for h in on_disk["history"])
    assert d["epoch"] == len(on_disk["history"]) + 1 < 3 + 1
    assert 5 * len(on_disk["history"]) <= d["step"] < 5 * d["epoch"]
    assert run(dict(TINY, epochs=3, max_steps_per_epoch=5, optim={"lr": 1000.0},
                    output={"root": str(tmp_path)}))["updated"] == on_disk["updated"]  # not retrained


def test_the_first_non_finite_loss_stops_the_run_at_its_step(tmp_path, monkeypatch):
    from kdsuite.engine.trainer import Trainer

    real_step = Trainer.step

    def poisoned(self, batch):
        losses = real_step(self, batch)
        if self.method.progress.step == 7:
            losses["ce"] = losses["ce"] * float("nan")
        return losses

    monkeypatch.setattr(Trainer, "step", poisoned)
    rec = run(dict(TINY, epochs=4, max_steps_per_epoch=5, output={"root": str(tmp_path)}))
    assert rec["status"] == "diverged" and rec["divergence"] == {"stage": "main", "epoch": 2, "step": 7,
                                                               "what": "non-finite loss (ce)"}
    assert len(rec["history"]) == 1  # epoch 1 only; nothing of the diverged epoch is kept as a result
