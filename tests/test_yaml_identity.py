"""YAML loading and run identity (issue 25): one strict loader for every YAML kdsuite reads (duplicate keys,
empty documents and non-mapping roots refused by name; ``1e-3`` a number; only true/false booleans), ``--set``
values that do not parse named with their key, overrides that compose in any order and through the
``method: kd`` shorthand, non-finite numbers refused, and one identity for one run however its numbers are
spelled — with the run folders of the old spelling still found."""
import json

import pytest
import yaml

from kdsuite import cli
from kdsuite.core.errors import ConfigError
from kdsuite.core.yamlio import load_yaml_text, read_yaml_mapping
from kdsuite.experiments.config import apply_overrides, config_hash, legacy_config_hash, validate


def _main(args, capsys):
    code = cli.main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _file(tmp_path, text, name="run.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, words", [
    ("optim:\n  lr: 0.1\noptim:\n  momentum: 0.8\n", ["'optim' is given twice", "lines 1 and 3"]),
    ("optim: {lr: 0.1, lr: 0.2}\n", ["'lr' is given twice"]),
    ("", ["is empty"]),
    ("# only a comment\n", ["is empty"]),
    ("- 1\n- 2\n", ["must hold a mapping", "not a list"]),
    ("just words\n", ["must hold a mapping", "not a str"]),
    ("epochs: [1\n", ["not valid YAML (line"]),
])
def test_bad_files_are_named(tmp_path, capsys, text, words):
    p = _file(tmp_path, text)
    code, err = _main(["train", str(p), "--set", f"output.root={tmp_path / 'out'}"], capsys)
    assert code == 2
    assert str(p) in err
    for w in words:
        assert w in err
    assert not (tmp_path / "out").exists()


def test_loader_reads_numbers_and_strict_booleans():
    data = load_yaml_text("a: 1e-3\nb: 5E-4\nc: 1e3\nd: no\ne: on\nf: true\ng: False\nh: .inf\ni: 0x10\nj: 2.5\n"
                          "k: '1e-3'\n", "t")
    assert data == {"a": 0.001, "b": 0.0005, "c": 1000.0, "d": "no", "e": "on", "f": True, "g": False,
                    "h": float("inf"), "i": 16, "j": 2.5, "k": "1e-3"}
    assert isinstance(data["c"], float)


def test_grid_and_profile_files_use_the_same_loader(tmp_path):
    p = _file(tmp_path, "name: g\nname: h\n", "g.yaml")
    with pytest.raises(ConfigError, match="'name' is given twice"):
        read_yaml_mapping(p, "grid file")
    from kdsuite.experiments.grid import load_grid
    from kdsuite.slurm.executors import load_profile

    with pytest.raises(ConfigError, match=r"g\.yaml.*'name' is given twice"):
        load_grid(str(p))
    prof = _file(tmp_path, "partition: a\npartition: b\n", "p.yaml")
    with pytest.raises(ConfigError, match=r"p\.yaml.*'partition' is given twice"):
        load_profile(str(prof))


@pytest.mark.parametrize("pair, words", [
    ("schedule.milestones=[1,2", ["schedule.milestones", "[1,2", "not valid YAML"]),
    ("optim={lr: 0.1", ["optim", "not valid YAML"]),
    ("method.hparams=5", ["method.hparams = 5", "mapping"]),
    ("output.root=123", ["output.root = 123", "path"]),
    ("dataset.root=5", ["dataset.root = 5", "path"]),
    ("dataset.augment=maybe", ["dataset.augment = 'maybe'", "true, false"]),
    ("dataset.download=no", ["dataset.download = 'no'", "boolean"]),
    ("deterministic=on", ["deterministic = 'on'", "boolean"]),
    ("method.hparams.T=.inf", ["method.hparams.T = inf is not finite"]),
    ("optim.lr=.inf", ["optim.lr", "not finite"]),
    ("method.hparams.T=.nan", ["method.hparams.T = nan"]),
    ("epochs.x=1", ["epochs = {'x': 1}", "integer"]),
    ("optim.lr.x=1", ["optim.lr = {'x': 1}", "number"]),
    ("=3", ["key before '=' is empty"]),
    ("wandb.tags=5", ["wandb.tags = 5", "list of strings"]),
])
def test_bad_set_values_are_named(tmp_path, capsys, pair, words):
    extra = ["--set", "method=kd", "--set", "teachers=[t]"] if "hparams" in pair else []
    code, err = _main(["train", "--set", f"output.root={tmp_path / 'out'}", *extra, "--set", pair], capsys)
    assert code == 2, err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "out").exists()


def _kd(*pairs, base=None):
    return validate(apply_overrides(base or {}, ["teachers=[{checkpoint: t, arch: cifar_resnet8, sha256: ab}]",
                                                 *pairs]))


def test_overrides_compose_in_any_order_and_through_the_shorthand():
    a = _kd("method=kd", "method.hparams.T=2")
    b = _kd("method.hparams.T=2", "method=kd")
    c = _kd("method.hparams.T=2", base={"method": "kd"})
    for cfg in (a, b, c):
        assert cfg["method"]["name"] == "kd" and cfg["method"]["hparams"]["T"] == 2
    assert config_hash(a) == config_hash(b) == config_hash(c)
    d = _kd("method=kd")
    assert d["method"]["hparams"]["T"] != 2 and config_hash(d) != config_hash(a)  # T is part of the identity
    s = validate(apply_overrides({"student": "cifar_resnet8"}, ["student.kwargs={}"]))
    assert s["student"]["arch"] == "cifar_resnet8"


def test_one_run_one_identity_whatever_the_spelling():
    h = {t: config_hash(validate(apply_overrides({}, [f"optim.lr={t}"]))) for t in ("1e-3", "0.001", "1.0e-3")}
    assert len(set(h.values())) == 1, h
    assert config_hash(validate(apply_overrides({}, ["optim.lr=0.002"]))) != h["0.001"]  # the value counts
    # a config that wrote the number as a string (YAML 1.1) hashes as the number too
    old = validate(apply_overrides({}, ["optim.lr='1e-3'"]))
    assert old["optim"]["lr"] == "1e-3" and config_hash(old) == h["0.001"]
    assert legacy_config_hash(old) != h["0.001"]


def test_run_folders_of_the_old_spelling_are_found(tmp_path):
    from kdsuite.experiments.run import run_dir_for

    root = str(tmp_path / "runs")
    old = validate(apply_overrides({}, ["optim.lr='1e-3'", f"output.root={root}", "epochs=1"]))
    old_hash = legacy_config_hash(old)  # the hash the run was recorded under, before numbers were read by value
    from kdsuite.experiments.run import student_label

    folder = tmp_path / "runs" / f"vanilla-{student_label(old)}-s0-{old_hash[:10]}"
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps({"config": old, "config_hash": old_hash, "status": "finished"}))
    new = validate(apply_overrides({}, ["optim.lr=1e-3", f"output.root={root}", "epochs=1"]))
    assert run_dir_for(new, config_hash(new)) == folder
    other = validate(apply_overrides({}, ["optim.lr=2e-3", f"output.root={root}", "epochs=1"]))
    assert run_dir_for(other, config_hash(other)) != folder  # a different value is a different run


def test_yaml_safe_load_is_the_old_reading():
    # documents the spelling the legacy hash stands for: PyYAML's YAML 1.1 resolver
    assert yaml.safe_load("1e-3") == "1e-3" and yaml.safe_load("no") is False
