"""Several augmented views per sample (``dataset.aug_views``): the field's checks and identity, the batched
strong views against torchvision's per-image operations, both pipelines replaying an epoch from its seed,
and a run stopped mid-epoch resuming to the very batches and weights of one that never stopped."""
import json
import os

import pytest
import torch

from kdsuite.core.errors import ConfigError
from kdsuite.experiments.config import DEFAULTS, config_hash, validate
from kdsuite.experiments.data import build_data
from kdsuite.experiments.data_strong import _plan_autoaugment, _plan_randaugment, apply_plan, cutout_
from tests.test_data import _write_cifar


def _ds(**kw):
    return dict(DEFAULTS["dataset"], **kw)


@pytest.mark.parametrize("value", ["strong", ["weak", "heavy"], [], ["weak", "strong", "weak"], [1]])
def test_a_bad_aug_views_names_the_field_the_value_and_what_is_allowed(value):
    with pytest.raises(ConfigError) as e:
        validate({"dataset": {"aug_views": value}})
    msg = str(e.value)
    assert "dataset.aug_views" in msg and repr(value) in msg and "['weak', 'strong', 'autoaugment']" in msg, msg


def test_aug_views_refuses_image_folders_and_sensor_views():
    with pytest.raises(ConfigError, match="dataset.aug_views.*image folders"):
        validate({"dataset": {"name": "imagefolder", "aug_views": ["strong"]}})
    with pytest.raises(ConfigError, match="dataset.aug_views.*dataset.views"):
        validate({"dataset": {"aug_views": ["strong"], "views": {"student": "edges"}}})


def test_the_default_view_leaves_the_config_hash_as_it_was():
    plain = validate({})
    assert config_hash(validate({"dataset": {"aug_views": ["weak"]}})) == config_hash(plain)
    assert config_hash(validate({"dataset": {"aug_views": None}})) == config_hash(plain)
    assert config_hash(validate({"dataset": {"aug_views": ["strong"]}})) != config_hash(plain)
    assert config_hash(validate({"dataset": {"aug_views": ["autoaugment"]}})) != \
        config_hash(validate({"dataset": {"aug_views": ["strong"]}}))


@pytest.mark.parametrize("view, planner", [("strong", _plan_randaugment), ("autoaugment", _plan_autoaugment)])
def test_grouped_operations_equal_each_image_on_its_own(view, planner):
    """Each (operation, sign) runs once on the samples that drew it: the result must be what torchvision's
    operation gives each image alone, in each image's drawn order."""
    g = torch.Generator().manual_seed(5)
    u8 = torch.randint(0, 256, (24, 3, 12, 12), dtype=torch.uint8, generator=g)
    plan = planner(24, torch.Generator().manual_seed(7), "cpu")
    batched = apply_plan(u8.clone(), view, plan)
    for i in range(24):
        one = apply_plan(u8[i:i + 1].clone(), view, [[slot[i]] for slot in plan])
        assert torch.equal(batched[i:i + 1], one), i
    assert not torch.equal(batched, u8)


def test_cutout_blanks_one_clipped_square_of_at_most_half_the_side():
    x = torch.ones(3, 1, 10, 10)
    u = torch.tensor([[1.0, 0.5, 0.5], [0.4, 0.0, 0.95], [0.0, 0.3, 0.3]])
    out = cutout_(x.clone(), u)
    assert torch.equal(out[0, 0, 2:7, 2:7], torch.zeros(5, 5)) and int((out[0] == 0).sum()) == 25
    assert int((out[1] == 0).sum()) == 2 * 2 and torch.equal(out[1, 0, 8:10, 0:2], torch.zeros(2, 2))
    assert torch.equal(out[2], x[2])


def _epoch(source, seed, torch_seed=None):
    if torch_seed is not None:
        torch.manual_seed(torch_seed)  # the trainer seeds torch's RNG too (the loader pipeline's transforms)
    source.set_epoch_seed(seed)
    return [tuple(t.clone() for t in b) for b in source]


def test_tensor_pipeline_two_views_replay_from_the_epoch_seed_and_keep_the_first_view():
    fields = ("x", "y", "index", "aug_x")
    two = build_data(_ds(aug_views=["weak", "strong"], augment=True), "cpu", pipeline="tensor", fields=fields)
    one = build_data(_ds(augment=True), "cpu", pipeline="tensor", fields=("x", "y", "index"))
    assert two.augmented
    a, b, c = _epoch(two.train, 3)[:4], _epoch(two.train, 3)[:4], _epoch(two.train, 4)[:4]
    assert all(torch.equal(p, q) for u, v in zip(a, b) for p, q in zip(u, v))
    assert not torch.equal(a[0][3], c[0][3])
    x0, _, idx0 = next(iter(_epoch(one.train, 3)))
    assert torch.equal(a[0][0], x0) and torch.equal(a[0][2], idx0)  # the weak view draws first, as alone
    assert not torch.equal(a[0][3], a[0][0])
    # a fresh build (a resumed process) replaying to batch 2 gets batch 2 and on bit for bit
    again = build_data(_ds(aug_views=["weak", "strong"], augment=True), "cpu", pipeline="tensor", fields=fields)
    again.train.set_epoch_seed(3)
    it = iter(again.train)
    next(it), next(it)
    assert all(torch.equal(p, q) for p, q in zip(next(it), a[2]))


def test_loader_pipeline_two_views_replay_from_the_epoch_seed(tmp_path):
    _write_cifar(tmp_path, "cifar10")
    cfg = _ds(name="cifar10", root=str(tmp_path), download=False, verify_checksums=False, batch_size=16,
              aug_views=["weak", "autoaugment"], pipeline="loader", val_fraction=0)
    data = build_data(cfg, "cpu", pipeline="loader", fields=("x", "y", "index", "aug_x"))
    a = _epoch(data.train, 2, torch_seed=9)
    b = _epoch(build_data(cfg, "cpu", pipeline="loader", fields=("x", "y", "index", "aug_x")).train, 2, torch_seed=9)
    assert len(a) == 7 and all(torch.equal(p, q) for u, v in zip(a, b) for p, q in zip(u, v))
    c = _epoch(data.train, 2, torch_seed=10)
    assert not torch.equal(a[0][3], c[0][3])
    assert all(not torch.equal(u[0], u[3]) for u in a)


def test_a_two_view_run_stopped_mid_epoch_resumes_to_the_same_batches_and_weights(tmp_path, monkeypatch):
    import signal

    from kdsuite.engine.stop import RunInterrupted
    from kdsuite.engine.trainer import Trainer
    from kdsuite.kit.fixtures import digits_teachers

    teacher = digits_teachers(archs=("cifar_resnet8",))[0]
    cfg = {"student": "cifar_resnet8", "epochs": 2, "max_steps_per_epoch": 4, "progress": "none",
           "teachers": [{"checkpoint": teacher}], "method": "mlkd",
           "dataset": {"name": "digits", "batch_size": 16, "augment": True, "aug_views": ["weak", "strong"]}}
    seen, stop_at = {}, []
    real_step = Trainer.step

    def step(self, batch):
        g = self.method.progress.step
        seen[g] = [t.clone() for t in batch]
        if g in stop_at:
            stop_at.remove(g)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(self, batch)

    monkeypatch.setattr(Trainer, "step", step)
    from kdsuite.experiments.run import run

    straight = run(dict(cfg, output={"root": str(tmp_path / "a")}))
    want = dict(seen)
    seen.clear()
    stop_at.append(5)
    cfg_b = dict(cfg, output={"root": str(tmp_path / "b")})
    with pytest.raises(RunInterrupted):
        run(cfg_b)
    run_dir = tmp_path / "b" / straight["run_dir"].split("/")[-1]
    assert json.loads((run_dir / "record.json").read_text())["status"] == "interrupted"
    seen.clear()
    run(cfg_b)
    assert sorted(seen) == [6, 7]
    for g in seen:
        assert all(torch.equal(p, q) for p, q in zip(seen[g], want[g], strict=True)), g
    w_a = torch.load(tmp_path / "a" / run_dir.name / "checkpoint.pt", weights_only=False)["method"]
    w_b = torch.load(run_dir / "checkpoint.pt", weights_only=False)["method"]
    assert all(torch.equal(w_a[k], w_b[k]) for k in w_a)
