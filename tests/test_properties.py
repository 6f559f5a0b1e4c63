"""Property-based tests (hypothesis) of bad input, through the real entry point ``kdsuite.cli.main`` in-process:
every field of the run config (each section, and every declared hyper-parameter of every registered method),
of the grid file and of the Slurm profile gets values of a wrong type, out of range or malformed, written as
YAML text the way a user writes it; each must end in exit status 2 with a message naming the field and no
traceback, and nothing trains (the run's build step is replaced by a sentinel that fails the test).

The invalid values come from each field's declared contract (the table below, written from the docs, not
from the validators); a table that misses a field of the models fails ``test_the_tables_cover_every_field``.
"""
from __future__ import annotations

import math
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdsuite import cli

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much])


# ---- YAML text of a value (flow style), so that the text a user would write is what gets parsed ----
def yaml_text(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return ".nan"
        if math.isinf(v):
            return ".inf" if v > 0 else "-.inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(yaml_text(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{yaml_text(k)}: {yaml_text(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


# ---- invalid values by kind --------------------------------------------------------------------------
WORDS = st.text(string.ascii_letters + "_", min_size=1, max_size=12).map(lambda s: "zz" + s)
LISTS = st.lists(st.integers(-3, 3), max_size=3)
DICTS = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), min_size=1, max_size=2)
NONFINITE = st.sampled_from([math.inf, -math.inf, math.nan])
FRACTIONAL = st.floats(0.01, 1e6).filter(lambda x: not x.is_integer())


def not_int(low=None, high=None, optional=False):
    out = [FRACTIONAL, WORDS, LISTS, DICTS, st.booleans(), NONFINITE]
    if low is not None:
        out.append(st.integers(-10**9, low - 1))
    if high is not None:
        out.append(st.integers(high + 1, 10**9))
    if not optional:
        out.append(st.none())
    return st.one_of(out)


def not_number(low=None, low_open=False, high=None, high_open=False, optional=False):
    out = [WORDS, LISTS, DICTS, st.booleans(), NONFINITE]
    if low is not None:
        out.append(st.floats(-1e9, low - max(1e-9, abs(low) * 1e-6)))  # below the range
        if low_open:
            out.append(st.just(float(low)))
    if high is not None:
        out.append(st.floats(high, 1e9, exclude_min=not high_open))
    if not optional:
        out.append(st.none())
    return st.one_of(out)


def not_bool():
    return st.one_of(st.sampled_from(["yes", "no", "on", "off", "y", "n", "maybe", "true", "1"]), WORDS,
                     st.integers(-2, 2), st.floats(-1, 1), LISTS, DICTS, st.none())


def not_choice(choices):
    # a value is allowed only when it is one of the choices with the choice's own type (1.0 is not the choice 1)
    allowed = lambda v: any(type(v) is type(c) and v == c for c in choices)  # noqa: E731
    return st.one_of(WORDS, st.integers(-5, 5), LISTS, DICTS, st.none(), st.floats(-1, 1)).filter(
        lambda v: not allowed(v))


def not_auto_bool():
    return st.one_of(WORDS, st.sampled_from(["yes", "no", "on", "Auto", "AUTO"]), st.integers(-2, 2), LISTS,
                     DICTS, st.none())


def not_str(optional=False):
    out = [st.integers(-5, 5), st.floats(-1, 1), st.booleans(), LISTS, DICTS]
    return st.one_of(out if optional else out + [st.none()])


def not_path():
    return st.one_of(not_str(), st.sampled_from(["", "  "]))


def not_name():
    bad = st.one_of(st.sampled_from(["..", "../x", "a/b", "/abs", "-x", ".hidden", "a b", "x" * 101, "a..b", ""]),
                    st.tuples(WORDS, st.sampled_from(["/", "..", " ", "\\", "*", ":"]), WORDS).map("".join))
    return st.one_of(bad, st.integers(-5, 5), LISTS, DICTS, st.booleans())


def not_mapping(optional=False):
    out = [st.integers(-5, 5), WORDS, st.lists(st.integers(), min_size=1, max_size=2), st.booleans(), st.floats(-1, 1)]
    return st.one_of(out if optional else out + [st.none()])


def not_milestones():
    return st.one_of(st.integers(-5, 5), WORDS, DICTS, st.none(),
                     st.lists(st.integers(-10, 0), min_size=1, max_size=3),
                     st.lists(WORDS, min_size=1, max_size=2),
                     st.lists(st.integers(1, 50), min_size=2, max_size=4, unique=True).map(
                         lambda xs: sorted(xs, reverse=True)))


def not_str_list():
    return st.one_of(st.integers(-5, 5), WORDS, DICTS, st.none(), st.lists(st.integers(), min_size=1, max_size=2))


def not_teachers():
    return st.one_of(st.integers(-5, 5), WORDS, DICTS.filter(lambda d: "checkpoint" not in d), st.booleans(),
                     st.lists(st.one_of(st.integers(), st.booleans(), st.none(), LISTS), min_size=1, max_size=2),
                     st.lists(st.just({"checkpoint": 5}), min_size=1, max_size=1),
                     st.lists(st.just({"checkpoint": "t", "colour": "red"}), min_size=1, max_size=1))


def not_augment():
    return st.one_of(WORDS.filter(lambda s: s != "cifar"), st.sampled_from(["yes", "no", "maybe", "on"]),
                     st.integers(-2, 2), st.floats(-1, 1), LISTS, DICTS)


def not_views():
    return st.one_of(st.integers(-5, 5), WORDS, LISTS, st.booleans(),
                     st.fixed_dictionaries({"student": WORDS}),
                     st.fixed_dictionaries({"teacher": WORDS}))


def not_aug_views():
    names = st.sampled_from(["weak", "strong", "autoaugment"])
    return st.one_of(st.integers(-5, 5), WORDS, DICTS, st.booleans(), st.just([]),
                     st.lists(names, min_size=3, max_size=4),
                     st.lists(WORDS.filter(lambda s: s not in ("weak", "strong", "autoaugment")), min_size=1, max_size=2),
                     st.lists(st.integers(), min_size=1, max_size=2))


def not_pairs():
    taps = st.sampled_from(["feat0", "feat2_pre", "feat11"])
    bad_tap = st.one_of(st.sampled_from(["logits", "feat", "feat-1", "2", "feat1_post", ""]), st.integers(0, 3), st.none())
    pair = st.fixed_dictionaries({"student": taps, "teacher": taps})
    return st.one_of(st.integers(-5, 5), WORDS, DICTS, st.booleans(), st.just([]),
                     st.lists(st.one_of(st.integers(), WORDS, LISTS), min_size=1, max_size=2),
                     st.fixed_dictionaries({"student": bad_tap, "teacher": taps}).map(lambda p: [p]),
                     st.fixed_dictionaries({"student": taps, "teacher": bad_tap}).map(lambda p: [p]),
                     pair.map(lambda p: [{**p, "weight": 1}]),
                     pair.map(lambda p: [p, dict(p)]))  # the same pair twice


def not_search():
    return st.one_of(st.integers(-5, 5), WORDS, LISTS, st.booleans(), st.just({"candidates": []}),
                     st.fixed_dictionaries({"candidates": st.lists(st.integers(), min_size=1, max_size=2)}))


# every field of the run config: its dotted path -> its invalid values (from docs/configuration.md)
RUN_FIELDS = {
    "epochs": not_int(low=0), "seed": not_int(low=0), "eval_every": not_int(low=1), "log_every": not_int(low=1),
    "max_steps_per_epoch": not_int(low=1, optional=True),
    "optim.name": not_choice(("sgd", "adamw", "adam")),
    "optim.lr": not_number(low=0, low_open=True, high=10.0),
    "optim.momentum": not_number(low=0, high=1, high_open=True),
    "optim.weight_decay": not_number(low=0, high=1), "optim.nesterov": not_bool(),
    "schedule.name": not_choice(("step", "cosine", "constant")), "schedule.milestones": not_milestones(),
    "schedule.gamma": not_number(low=0, low_open=True, high=1), "schedule.warmup_epochs": not_number(low=0),
    "schedule.min_lr_ratio": not_number(low=0, high=1),
    "optimizers": not_mapping(),
    "precision": not_choice(("auto", "fp32", "bf16")), "channels_last": not_auto_bool(),
    "grad_clip": not_number(low=0, low_open=True, optional=True),
    "progress": not_choice(("auto", "bar", "lines", "none")), "name": not_name(),
    "dataset.name": not_choice(("digits", "cifar10", "cifar100", "imagefolder")), "dataset.root": not_path(),
    "dataset.download": not_bool(), "dataset.verify_checksums": not_bool(),
    "dataset.batch_size": not_int(low=1), "dataset.eval_batch_size": not_int(low=1),
    "dataset.num_workers": not_int(low=0), "dataset.image_size": not_int(low=8, optional=True),
    "dataset.augment": not_augment(), "dataset.pipeline": not_choice(("auto", "loader", "tensor")),
    "dataset.train_fraction": not_number(low=0, low_open=True, high=1.0),
    "dataset.val_fraction": not_number(low=0, high=0.5, high_open=True), "dataset.views": not_views(),
    "dataset.aug_views": not_aug_views(),
    "student.arch": not_choice(()), "student.kwargs": not_mapping(), "student.search": not_search(),
    "teachers": not_teachers(),
    "method.name": not_choice(()), "method.hparams": not_mapping(), "method.pairs": not_pairs(),
    "fast_path": not_auto_bool(), "compile": not_bool(), "teacher_cache": not_auto_bool(), "sync_bn": not_bool(),
    "device": not_str(), "deterministic": not_bool(), "export_teacher": not_bool(),
    "output.root": not_path(),
    "wandb.mode": not_choice(("online", "offline", "disabled")), "wandb.project": not_str(),
    "wandb.entity": not_str(optional=True), "wandb.group": not_str(optional=True), "wandb.tags": not_str_list(),
}
# the same field may be written as a whole section, e.g. `optim: 5`
RUN_SECTIONS = {"optim": not_mapping(), "schedule": not_mapping(), "dataset": not_mapping(), "output": not_mapping(),
                "wandb": not_mapping()}


def _hparam_cases():
    """(method, hyper-parameter, invalid values) for every declared hyper-parameter of every method."""
    from kdsuite.methods.registry import list_methods

    out = []
    for cls in list_methods():
        for name, spec in cls.hparams.items():
            kind = spec._kind()
            if spec.choices is not None:
                vals = not_choice(tuple(spec.choices))
            elif kind is bool:
                vals = not_bool()
            elif kind is int:
                vals = not_int(low=None if spec.low is None else math.floor(spec.low) + (1 if spec.low_open else 0),
                               high=None if spec.high is None else math.ceil(spec.high) - (1 if spec.high_open else 0))
            elif kind is float:
                vals = not_number(low=spec.low, low_open=spec.low_open, high=spec.high, high_open=spec.high_open)
            elif kind is str:
                vals = not_str()
            else:
                continue  # any value (lists, None defaults): checked where used
            out.append((cls.name, name, vals))
    return out


def test_the_tables_cover_every_field():
    from pydantic import BaseModel

    from kdsuite.experiments.schemas import GridFile, StageSpec
    from kdsuite.experiments.settings import RunConfig
    from kdsuite.slurm.profile_schema import Profile

    def leaves(model, pre=""):
        for k, f in model.model_fields.items():
            a = f.annotation
            if isinstance(a, type) and issubclass(a, BaseModel):
                yield from leaves(a, pre + k + ".")
            else:
                yield pre + k
    assert set(leaves(RunConfig)) == set(RUN_FIELDS)
    assert set(GridFile.model_fields) == set(GRID_FIELDS)
    assert set(StageSpec.model_fields) == set(STAGE_FIELDS)
    assert set(Profile.model_fields) == set(PROFILE_FIELDS)
    assert len(_hparam_cases()) > 50


class Accepted(BaseException):
    """Raised where the run would be built: the bad value was accepted (a BaseException: the CLI's guard
    does not catch it)."""


@pytest.fixture
def no_training(monkeypatch):
    from kdsuite.experiments import run as run_mod

    def refuse(*a, **k):
        raise Accepted("validation accepted the value and the run would train")
    monkeypatch.setattr(run_mod, "build", refuse)


def _check(args, capsys, field):
    code = cli.main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code == 2, (args, err)
    assert field in err, (field, err)
    assert err.count("\n") <= 12, err  # a short answer, not a dump


RUN_CASES = st.one_of(
    st.sampled_from(sorted(RUN_FIELDS)).flatmap(lambda f: RUN_FIELDS[f].map(lambda v: ([], f, v, f))),
    st.sampled_from(sorted(RUN_SECTIONS)).flatmap(lambda f: RUN_SECTIONS[f].map(lambda v: ([], f, v, f))),
)


@SETTINGS
@given(case=RUN_CASES)
def test_run_config_fields_refuse_bad_values(case, tmp_path_factory, capsys, no_training):
    extra, field, value, named = case
    out = tmp_path_factory.getbasetemp() / "out"
    sets = [f"output.root={out}", *extra, f"{field}={yaml_text(value)}"] if field != "output.root" and \
        field != "output" else [*extra, f"{field}={yaml_text(value)}"]
    args = ["train"] + [a for s in sets for a in ("--set", s)]
    _check(args, capsys, named)


@SETTINGS
@given(data=st.data())
def test_method_hyper_parameters_refuse_bad_values(data, tmp_path_factory, capsys, no_training):
    cases = _hparam_cases()
    method, name, values = data.draw(st.sampled_from(cases), label="hyper-parameter")
    value = data.draw(values, label="value")
    out = tmp_path_factory.getbasetemp() / "out"
    args = ["train", "--set", f"output.root={out}", "--set", f"method.name={method}",
            "--set", f"method.hparams.{name}={yaml_text(value)}"]
    _check(args, capsys, f"method.hparams.{name}")


# ---- grid files ----------------------------------------------------------------------------------------
GRID_FIELDS = {
    "name": not_name(), "description": not_str(optional=True), "output": not_path().filter(lambda v: v is not None),
    "gpu_hours_per_run": not_number(low=0, optional=True), "resources": not_mapping(optional=True),
    "defaults": not_mapping(optional=True), "teachers": not_mapping(optional=True), "stages": not_mapping(),
}
STAGE_FIELDS = {
    "runs": st.one_of(not_mapping(optional=True), st.lists(st.one_of(st.integers(), WORDS, LISTS), min_size=1, max_size=2)),
    "axes": st.one_of(not_mapping(optional=True), st.fixed_dictionaries({"seed": st.one_of(st.integers(), WORDS, DICTS)})),
    "needs": st.one_of(st.integers(), LISTS, DICTS, st.booleans(), WORDS),  # a word: no earlier stage has it
    "resources": st.one_of(not_mapping(optional=True),
                           st.fixed_dictionaries({"timeout_min": not_int(low=1, optional=True)})),
    "method_overrides": st.one_of(not_mapping(optional=True), st.fixed_dictionaries({"kd": not_mapping()})),
    "method_pairs": st.one_of(not_mapping(optional=True), st.fixed_dictionaries({"kd": st.one_of(st.integers(), WORDS, DICTS)})),
    "exclude": st.one_of(not_mapping(optional=True).filter(lambda v: not isinstance(v, list)),
                         st.lists(st.one_of(st.integers(), WORDS, LISTS), min_size=1, max_size=2)),
    "parallel": st.nothing(),  # unused, any value
    "student_overrides": st.one_of(not_mapping(optional=True), st.fixed_dictionaries({"cifar_resnet8": not_mapping()})),
    "gpu_hours_per_run": not_number(low=0, optional=True),
    "overrides": st.one_of(st.integers(), WORDS, DICTS, st.lists(st.one_of(st.integers(), WORDS), min_size=1, max_size=2)),
}
GOOD_STAGE = {"axes": {"seed": [0]}}


def _grid_case():
    top = st.sampled_from(sorted(GRID_FIELDS)).flatmap(lambda f: GRID_FIELDS[f].map(lambda v: ({f: v}, None, f)))
    stage = st.sampled_from(sorted(k for k in STAGE_FIELDS if k != "parallel")).flatmap(
        lambda f: STAGE_FIELDS[f].map(lambda v: ({}, {f: v}, f"stages.a.{f}" if f != "needs" else "needs")))
    return st.one_of(top, stage)


@SETTINGS
@given(case=_grid_case())
def test_grid_file_fields_refuse_bad_values(case, tmp_path_factory, capsys, no_training):
    top, stage, named = case
    folder = tmp_path_factory.mktemp("grid")
    spec = {"name": "g", "output": str(folder / "out"), "defaults": {"epochs": 1},
            "stages": {"a": dict(GOOD_STAGE, **(stage or {}))}}
    spec.update(top)
    p = folder / "g.yaml"
    p.write_text(yaml_text(spec) + "\n")
    _check(["grid", "plan", str(p)], capsys, named)


# ---- Slurm profiles -----------------------------------------------------------------------------------
PROFILE_FIELDS = {
    "partition": not_str().filter(lambda v: v is not None), "timeout_min": not_int(low=1),
    "account": not_str(optional=True), "qos": not_str(optional=True), "gres": not_str(optional=True),
    "constraint": not_str(optional=True), "exclusive": st.one_of(st.integers(), st.floats(-1, 1), LISTS, DICTS),
    "mail_user": not_str(optional=True), "mail_type": not_str(optional=True),
    "nodes": not_int(low=1, optional=True), "gpus_per_node": not_int(low=0, optional=True),
    "tasks_per_node": not_int(low=1, optional=True), "cpus_per_task": not_int(low=1, optional=True),
    "mem_gb": not_number(low=0, low_open=True, optional=True), "array_parallelism": not_int(low=1, optional=True),
    "slurm_setup": st.one_of(WORDS, st.integers(), DICTS, st.lists(st.integers(), min_size=1, max_size=2)),
    "folder": not_str(optional=True), "pack": not_int(low=1, optional=True),
    "max_array_size": not_int(low=1, optional=True), "max_num_timeout": not_int(low=0, optional=True),
    "sbatch": st.one_of(WORDS, st.integers(), st.lists(st.integers(), min_size=1, max_size=2),
                        st.fixed_dictionaries({"time": st.one_of(LISTS, DICTS, st.none())})),
}


@pytest.fixture(scope="module")
def small_grid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pgrid")
    p = folder / "g.yaml"
    p.write_text(yaml_text({"name": "g", "output": str(folder / "out"), "defaults": {"epochs": 1},
                            "stages": {"a": GOOD_STAGE}}) + "\n")
    return p


@SETTINGS
@given(field=st.sampled_from(sorted(PROFILE_FIELDS)), data=st.data())
def test_profile_fields_refuse_bad_values(field, data, small_grid, tmp_path_factory, capsys, no_training):
    value = data.draw(PROFILE_FIELDS[field], label="value")
    prof = {"partition": "debug", "timeout_min": 30, field: value}
    p = tmp_path_factory.getbasetemp() / "profile.yaml"
    p.write_text(yaml_text(prof) + "\n")
    _check(["grid", "launch", str(small_grid), "--cluster", "slurm", "--profile", str(p), "--dry-run"], capsys, field)
