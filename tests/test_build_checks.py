"""Incompatibilities found at build time, not at step 1: a model that cannot take the data's images, a
stage index a model lacks, a memory-bank draw larger than the training set or a neighbour graph larger than
a batch. Each goes through the command line's entry point and must end with exit status 2 and a one-line
error naming the field, the value and what is allowed, with nothing written. The forward check that finds
the models' misfits must leave the run it precedes unchanged (weights, BN statistics, RNG state)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from kdsuite import zoo

ROOT = Path(__file__).resolve().parent.parent


def _args(tmp, teacher, *sets):
    base = [f"output.root={tmp / 'out'}", "epochs=1", "max_steps_per_epoch=2", "progress=none",
            "student.arch=cifar_resnet8"] + ([f"teachers=[{teacher}]"] if teacher else [])
    return ["train", *(a for s in base + list(sets) for a in ("--set", s))]


VIEWS = "dataset.views={student: edges, teacher: image}"
# case: (needs a teacher, --set values, patterns the message must match)
CASES = {
    "convnext-on-16px": (False, ["method.name=vanilla", "student.arch=convnext_atto"],
                         [r"student\.arch = 'convnext_atto'", r"3×16×16", "Kernel size", r"dataset\.image_size"]),
    "vit-224-on-16px": (False, ["method.name=vanilla", "student.arch=vit_tiny_patch16_224"],
                        [r"student\.arch = 'vit_tiny_patch16_224'", r"224×224", r"16×16", r"student\.kwargs",
                         "img_size"]),
    "dml-peer-on-16px": (False, ["method.name=dml", "method.hparams.peers=[cifar_resnet8, convnext_atto]"],
                         [r"method\.hparams\.peers\[1\] = 'convnext_atto'", r"3×16×16", "Kernel size"]),
    # above the digits' whole training split: refused when the config is read (grid plan does the same)
    "crd-nce-k-100000": (True, ["method.name=crd", "method.hparams.nce_k=100000"],
                         [r"method\.hparams\.nce_k = 100000", r"dataset 'digits'", r"allowed: below 1437"]),
    "crd-default-nce-k-on-digits": (True, ["method.name=crd"], [r"method\.hparams\.nce_k = 16384", r"below 1437"]),
    # within the split but above this run's training set (the split less its validation share): refused at build
    "crd-nce-k-over-num-train": (True, ["method.name=crd", "method.hparams.nce_k=1400"],
                                 [r"method\.hparams\.nce_k = 1400", r"allowed: 1\.\.\d+ \(below the training set's \d+"]),
    "hkd-nce-k": (True, ["method.name=hkd", "method.hparams.nce_k=5000"], [r"method\.hparams\.nce_k = 5000"]),
    "hkd-knn-over-batch": (True, ["method.name=hkd", "method.hparams.nce_k=64", "method.hparams.knn=100",
                                  "dataset.batch_size=32"],
                           [r"method\.hparams\.knn = 100", r"allowed: 1\.\.32 \(dataset\.batch_size = 32\)"]),
    "fitnet-hint-layer": (True, ["method.name=fitnet", "method.hparams.hint_layer=7"],
                          [r"method\.hparams\.hint_layer = 7", r"feat0\.\.feat3", r"allowed: 1\.\.3"]),
    "fitnet-1stage-hint-layer": (True, ["method.name=fitnet_1stage", "method.hparams.hint_layer=4"],
                                 [r"method\.hparams\.hint_layer = 4", r"allowed: 1\.\.3"]),
    "supervision-transfer-layer": (True, ["method.name=supervision_transfer", "method.hparams.layer=-5", VIEWS],
                                   [r"method\.hparams\.layer = -5", r"allowed: 0\.\.3, or -4\.\.-1"]),
}


def _nothing_written(tmp):
    return not list(tmp.rglob("record.json")) and not list(tmp.rglob("checkpoint*.pt"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_incompatible_build_is_a_named_error_before_training(case, tmp_path, capsys, monkeypatch, digits_teachers):
    from kdsuite.cli import main

    needs_teacher, sets, patterns = CASES[case]
    monkeypatch.chdir(tmp_path)
    rc = main(_args(tmp_path, digits_teachers[0] if needs_teacher else None, *sets))
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("kdsuite: error: ") and err.count("\n") == 1, err
    for p in patterns:
        assert re.search(p, err), (p, err)
    assert _nothing_written(tmp_path)


def test_through_a_fresh_process_exits_2_without_traceback(tmp_path, digits_teachers):
    env = dict(os.environ, PYTHONPATH=str(ROOT), WANDB_MODE="disabled")
    for teacher, sets, pattern in (
            (None, ["method.name=vanilla", "student.arch=convnext_atto"], r"student\.arch = 'convnext_atto'"),
            (digits_teachers[0], ["method.name=fitnet", "method.hparams.hint_layer=7"], r"method\.hparams\.hint_layer = 7")):
        out = subprocess.run([sys.executable, "-m", "kdsuite.cli", *_args(tmp_path, teacher, *sets)],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
        assert out.returncode == 2, out.stderr[-3000:]
        assert "Traceback" not in out.stderr and re.search(pattern, out.stderr), out.stderr[-3000:]
    assert _nothing_written(tmp_path)


def test_nce_k_bound_is_the_training_set_size(tmp_path, digits_teachers):
    """The largest nce_k allowed builds; one more is refused, and the bound is the data's num_train."""
    from kdsuite.core.errors import ConfigError
    from kdsuite.experiments.run import build, prepare

    def parts(k):
        cfg = {"student": "cifar_resnet8", "teachers": [{"checkpoint": digits_teachers[0]}], "progress": "none",
               "method": {"name": "crd", "hparams": {"nce_k": k}}, "epochs": 1, "max_steps_per_epoch": 1,
               "dataset": {"name": "digits", "batch_size": 32, "train_fraction": 0.1},
               "output": {"root": str(tmp_path)}}
        return build(*prepare(cfg))

    with pytest.raises(ConfigError, match=r"nce_k = 1000 .*allowed: 1\.\.(\d+)") as e:
        parts(1000)
    high = int(re.search(r"allowed: 1\.\.(\d+)", str(e.value)).group(1))
    assert parts(high).data.num_train == high + 1
    with pytest.raises(ConfigError, match=rf"nce_k = {high + 1} is too large"):
        parts(high + 1)


def test_grid_plan_refuses_nce_k_above_the_whole_training_split(tmp_path, capsys, digits_teachers):
    from kdsuite.cli import main

    grid = tmp_path / "g.yaml"
    grid.write_text(f"name: g\noutput: {tmp_path / 'runs'}\nteachers: {{r20: {digits_teachers[0]}}}\n"
                    "defaults: {dataset: {name: digits}, epochs: 1}\nstages:\n  s:\n    axes:\n"
                    "      method: [crd]\n      method.hparams.nce_k: [64, 100000]\n"
                    "      pair: [{teachers: [r20], student: cifar_resnet8}]\n")
    assert main(["grid", "plan", str(grid)]) == 2
    err = capsys.readouterr().err
    assert "1 problem(s)" in err and "nce_k=100000" in err and "nce_k=64," not in err, err
    assert re.search(r"method\.hparams\.nce_k = 100000 is too large .* allowed: below 1437", err), err
    assert not (tmp_path / "runs").exists()


def test_the_known_training_split_sizes_are_the_loaded_ones():
    """The plan-time bound is the whole training split as the data layer loads it (digits; CIFAR's 50,000
    training images are the data set's own definition)."""
    from kdsuite.experiments.data_bundle import TRAIN_SPLIT_IMAGES
    from kdsuite.experiments.data_digits import load_digits_split

    assert len(load_digits_split()[1]) == TRAIN_SPLIT_IMAGES["digits"]


class _DrawsInEval(nn.Module):
    """A BN model that also draws from the RNG in eval mode: the check must restore both."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x)).mean((2, 3)) + torch.rand(1)


@pytest.mark.parametrize("model", [_DrawsInEval, lambda: zoo.create_model("cifar_resnet8", num_classes=10)])
def test_the_input_check_leaves_weights_bn_statistics_rng_and_mode_unchanged(model):
    m = model()
    m.train()
    frozen = next(c for c in m.modules() if isinstance(c, nn.BatchNorm2d)).eval()  # a part kept in eval stays so
    before = {k: v.clone() for k, v in m.state_dict().items()}
    rng = torch.get_rng_state()
    zoo.check_input(m, "x", (3, 16, 16))
    assert m.training and not frozen.training and sum(c.training for c in m.modules()) == len(list(m.modules())) - 1
    assert torch.equal(torch.get_rng_state(), rng)
    after = m.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def _final_weights(root):
    from kdsuite.experiments.run import run

    rec = run({"student": "cifar_resnet8", "method": {"name": "vanilla"}, "epochs": 1, "max_steps_per_epoch": 3,
               "progress": "none", "dataset": {"name": "digits", "batch_size": 32}, "output": {"root": str(root)}})
    assert rec["status"] == "finished"
    state = torch.load(Path(rec["run_dir"]) / "checkpoint.pt", map_location="cpu", weights_only=False)["method"]
    return rec["metrics"], state


def test_a_run_trains_the_same_with_and_without_the_input_check(tmp_path, monkeypatch):
    calls = []
    real = zoo.check_input
    monkeypatch.setattr(zoo, "check_input", lambda *a, **k: (calls.append(a[1]), real(*a, **k)))
    m_checked, w_checked = _final_weights(tmp_path / "checked")
    assert calls == ["cifar_resnet8"]  # the check ran (on the student) in the first run only
    monkeypatch.setattr(zoo, "check_input", lambda *a, **k: None)
    m_skipped, w_skipped = _final_weights(tmp_path / "skipped")
    assert w_checked.keys() == w_skipped.keys()
    assert all(torch.equal(w_checked[k], w_skipped[k]) for k in w_checked)
    for k in ("last_top1", "best_top1", "last_top5"):
        assert m_checked[k] == m_skipped[k], k
