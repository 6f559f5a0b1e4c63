"""The validation split (dataset.val_fraction): fixed, seeded, class-stratified, carved from the training
split; "best" = test top-1 at the epoch of best validation top-1, best-test = max test over epochs."""
import json
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from kdsuite.core.errors import ConfigError
from kdsuite.experiments.config import DEFAULTS, config_hash, validate
from kdsuite.experiments.data import VAL_SPLIT_SEED, build_data, holdout_split, load_digits_split
from kdsuite.experiments.run import build, prepare, run


def _ds(**kw):
    return dict(DEFAULTS["dataset"], **kw)


def test_split_is_stratified_disjoint_and_covers_the_training_split():
    _x, y, *_ = load_digits_split(16)
    tr, va = holdout_split(y, 0.1, "digits")
    assert set(tr.tolist()).isdisjoint(va.tolist())
    assert sorted(tr.tolist() + va.tolist()) == list(range(len(y)))
    total, held = Counter(y.tolist()), Counter(y[va].tolist())
    assert len(va) == pytest.approx(0.1 * len(y), abs=1)
    for c, n in total.items():  # every class held out in proportion (±1 image)
        assert abs(held[c] - 0.1 * n) <= 1, (c, held[c], n)


def test_bundle_trains_on_the_rest_and_validates_on_the_held_out_images():
    xfull, yfull, xte, _yte, *_ = load_digits_split(16)
    data = build_data(_ds(val_fraction=0.2), "cpu")
    tr, va = holdout_split(yfull, 0.2, "digits")
    assert torch.equal(data.train.x, xfull[tr]) and torch.equal(data.validation.x, xfull[va])
    assert torch.equal(data.test.x, xte)  # the test split is untouched
    # the names the bundle's fields had before (val was the test split, holdout the validation split)
    assert data.val is data.test and data.holdout is data.validation and data.teacher_val is data.teacher_test
    assert data.num_train == len(tr) and data.split == {"val_fraction": 0.2, "seed": VAL_SPLIT_SEED,
                                                        "train": len(tr), "val": len(va), "test": len(xte),
                                                        "from": data.split["from"]}


def test_split_changes_with_val_fraction_and_none_at_zero():
    _x, y, *_ = load_digits_split(16)
    a, b = holdout_split(y, 0.1, "digits")[1], holdout_split(y, 0.2, "digits")[1]
    assert len(b) > len(a) and set(a.tolist()) != set(b.tolist())
    assert len(holdout_split(y, 0.0, "digits")[1]) == 0
    assert build_data(_ds(val_fraction=0), "cpu").holdout is None


def test_train_fraction_subsets_the_rest_after_the_validation_split():
    xfull, yfull, *_ = load_digits_split(16)
    rest, va = holdout_split(yfull, 0.1, "digits")
    data = build_data(_ds(val_fraction=0.1, train_fraction=0.1), "cpu")
    assert torch.equal(data.holdout.x, xfull[va])  # the same validation split as without train_fraction
    assert data.num_train == pytest.approx(0.1 * len(rest), abs=1)
    train_rows = {tuple(r.flatten().tolist()) for r in data.train.x}
    assert train_rows <= {tuple(r.flatten().tolist()) for r in xfull[rest]}  # drawn from the rest only


def _cfg(root, **kw):
    cfg = {"student": "cifar_resnet8", "epochs": 4, "max_steps_per_epoch": 5, "progress": "none",
           "dataset": {"name": "digits", "batch_size": 32}, "optim": {"lr": 0.1},
           "output": {"root": str(root)}}
    cfg.update(kw)
    return cfg


def test_split_is_the_same_for_every_run_seed(tmp_path):
    parts = [build(*prepare(_cfg(tmp_path, seed=s))) for s in (0, 7)]
    a, b = (p.data.holdout for p in parts)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert torch.equal(parts[0].data.train.x, parts[1].data.train.x)


def test_best_is_test_at_the_best_validation_epoch(tmp_path):
    rec = run(_cfg(tmp_path))
    hist = rec["history"]
    val = [h["val/student/top1"] for h in hist]
    test = [h["test/student/top1"] for h in hist]
    e = max(range(len(val)), key=lambda i: (val[i], -i))  # first epoch of the highest validation top-1
    m = rec["metrics"]
    assert m["best_epoch"] == hist[e]["epoch"] and m["best_val_top1"] == val[e]
    assert m["best_top1"] == test[e]
    assert m["best_test_top1"] == max(test) and m["last_top1"] == test[-1]
    assert rec["data"]["split"]["val_fraction"] == 0.1 and rec["data"]["split"]["val"] == len(
        build_data(_ds(), "cpu").holdout.y)
    # the split is part of the identity: another fraction, another run
    assert config_hash(validate(_cfg(tmp_path))) != config_hash(validate(_cfg(tmp_path, dataset={
        "name": "digits", "batch_size": 32, "val_fraction": 0.2})))


def test_without_validation_split_there_is_no_best_and_tables_refuse_it(tmp_path):
    from kdsuite.analysis.cli_table import render_table

    rec = run(_cfg(tmp_path, epochs=2, dataset={"name": "digits", "batch_size": 32, "val_fraction": 0}))
    assert "best_top1" not in rec["metrics"] and "best_epoch" not in rec["metrics"]
    assert rec["metrics"]["best_test_top1"] == max(h["test/student/top1"] for h in rec["history"])
    assert not any(k.startswith("val/") for h in rec["history"] for k in h)
    with pytest.raises(ConfigError, match="--metric best.*no validation split.*best-test"):
        render_table([rec], "methods", "md", "best")
    md = render_table([rec], "methods", "md", "best-test")
    assert f"{rec['metrics']['best_test_top1']:.2f}" in md
    assert "best test top-1 over epochs (literature convention: selected on test)" in md


def test_old_records_best_is_read_as_best_on_test():
    from kdsuite.analysis.tables import runs_frame

    old = {"status": "finished", "method": "vanilla", "metrics": {"best_top1": 91.0, "last_top1": 90.0}}
    new = {"status": "finished", "method": "vanilla",
           "metrics": {"best_top1": 89.5, "best_val_top1": 93.0, "best_test_top1": 91.0, "last_top1": 90.0}}
    df = runs_frame([old, new])
    assert df["best_top1"].isna().tolist() == [True, False] and df["best_top1"].iloc[1] == 89.5
    assert df["best_test_top1"].tolist() == [91.0, 91.0]


@pytest.mark.parametrize("bad", [0.5, 0.7, -0.1, "a tenth", True])
def test_bad_val_fraction_is_a_config_error(bad):
    with pytest.raises(ConfigError, match=r"dataset\.val_fraction"):
        validate({"dataset": {"val_fraction": bad}})


def test_published_best_on_test_sits_beside_best_test_and_marked_beside_best():
    from kdsuite.analysis.references import comparable, selected_on_test

    assert comparable("best", "best_test_top1") is True and not selected_on_test("best", "best_test_top1")
    assert comparable("best", "best_top1") is True and selected_on_test("best", "best_top1")
    assert comparable("best", "last_top1") is False and comparable("last", "best_test_top1") is False
    assert comparable("last", "last_top1") is True and comparable("", "best_top1") is None


def _write_cifar10(root, per_batch=20):
    """CIFAR-10's official layout with balanced labels (i % 10) and distinct images (pixel 0 = index)."""
    import pickle

    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b, f in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = np.zeros((per_batch, 3072), dtype=np.uint8)
        data[:, 0] = np.arange(per_batch) + b * per_batch  # 120 distinct images
        with open(folder / f, "wb") as fh:
            pickle.dump({"data": data, "labels": [i % 10 for i in range(per_batch)]}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)


@pytest.mark.parametrize("pipeline", ["tensor", "loader"])
def test_cifar_validation_split_comes_from_the_training_files(tmp_path, pipeline):
    _write_cifar10(tmp_path)
    data = build_data(_ds(name="cifar10", root=str(tmp_path), download=False, verify_checksums=False, augment=False,
                          pipeline=pipeline, eval_batch_size=1000, batch_size=1000, val_fraction=0.2), "cpu")

    def ids(loader):
        xs, ys = zip(*[(b[0], b[1]) for b in loader])
        x, y = torch.cat(xs), torch.cat(ys)
        from kdsuite.experiments.data import CIFAR_MEAN, CIFAR_STD
        raw = torch.round((x[:, 0, 0, 0] * CIFAR_STD["cifar10"][0] + CIFAR_MEAN["cifar10"][0]) * 255).long()
        return raw.tolist(), y.tolist()

    val, val_y = ids(data.holdout)
    train, _ = ids(data.train)
    test, _ = ids(data.val)
    assert len(val) == 20 and len(train) == 80 and data.num_train == 80
    assert set(val).isdisjoint(train) and set(val) | set(train) == set(range(100))
    assert set(test) == set(range(100, 120))
    assert Counter(val_y) == {c: 2 for c in range(10)}  # stratified: 2 of each class's 10
    labels = [i % 10 for i in range(20)] * 5
    assert sorted(val) == sorted(holdout_split(labels, 0.2, "cifar10")[1].tolist())


def test_imagefolder_validation_split_comes_from_train(tmp_path):
    import numpy as np
    from PIL import Image

    for split, n in (("train", 5), ("val", 2)):
        for c in ("cat", "dog"):
            d = tmp_path / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8, 3), 10 * i, dtype=np.uint8)).save(d / f"{i}.png")
    data = build_data(_ds(name="imagefolder", root=str(tmp_path), image_size=8, val_fraction=0.2), "cpu")
    held = [p for p, _ in data.holdout.dataset.samples]
    kept = [p for p, _ in data.train.dataset.samples] if hasattr(data.train.dataset, "samples") else \
        [p for p, _ in data.train.dataset.base.samples]
    assert len(held) == 2 and len(kept) == 8 and set(held).isdisjoint(kept)
    assert sorted(p.split("/")[-2] for p in held) == ["cat", "dog"] and all("/train/" in p for p in held + kept)
    assert data.split["test"] == 4


def test_reproduction_grids_train_on_the_whole_training_split():
    """Reference parity: the grids that reproduce published tables hold nothing out (val_fraction 0, as the
    reference code trains on all 50k / all of train/); the demo keeps the default validation split."""
    import glob

    import yaml

    seen = {}
    for path in sorted(glob.glob("experiments/grids/*.yaml")):
        spec = yaml.safe_load(open(path))
        seen[spec["name"]] = spec["defaults"]["dataset"].get("val_fraction")
    assert {k: v for k, v in seen.items() if k != "demo"} == {
        "cifar100_hetero": 0, "cifar100_leaders": 0, "cifar100_lifelong": 0, "cifar100_repdistiller": 0, "cifar100_taxonomy": 0,
        "imagenet_r34_r18": 0}
    assert seen["demo"] is None  # the default, 0.1


def test_config_hashes_change_at_the_default_split_and_stay_at_zero():
    """Migration: the held-out images change what a run at the default trains on, so the hash of a config
    written before the split (no val_fraction field) differs from the same config now; at val_fraction 0 the
    run trains on exactly the data it did before and keeps its hash (docs/records.md: upgrading)."""
    for raw in ({}, {"dataset": {"name": "cifar100", "root": "x"}}):
        cfg = validate(raw)
        before = dict(cfg, dataset={k: v for k, v in cfg["dataset"].items() if k != "val_fraction"})
        assert config_hash(cfg) != config_hash(before)
        zero = validate(dict(raw, dataset=dict(raw.get("dataset", {}), val_fraction=0)))
        before = dict(zero, dataset={k: v for k, v in zero["dataset"].items() if k != "val_fraction"})
        assert config_hash(zero) == config_hash(before)
