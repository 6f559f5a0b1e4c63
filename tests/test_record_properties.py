"""Property-based tests (hypothesis) of the two records kdsuite reads back, through the real CLI entry point:
a ``teacher.json`` with any of its typed fields given a wrong type or an out-of-range value is refused by
``grid plan`` naming the record and the field (exit 2, no traceback); a ``record.json`` with a wrong status,
schema version or metric value is named as unreadable by ``table`` while the good records are still
tabulated. The bad values come from each field's declared contract, written out here."""
from __future__ import annotations

import json
import math
import uuid

import pytest
import timm
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kdsuite.zoo  # noqa: F401  (registers cifar_*)
from kdsuite import cli
from kdsuite.core.teacher_record import TeacherRecord
from kdsuite.zoo.teachers import META, save_teacher

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

TEXT = st.text(max_size=8)
NOT_INT = st.one_of(TEXT, st.booleans(), st.floats(allow_nan=False).filter(lambda x: x != int(x) if math.isfinite(x)
                                                                         else True), st.lists(st.integers(), max_size=2))
NOT_NUMBER = st.one_of(TEXT, st.booleans(), st.lists(st.integers(), max_size=2), st.dictionaries(TEXT, TEXT, max_size=1))
# field -> values its contract refuses
TEACHER_BAD = {
    "arch": st.one_of(st.just(""), st.integers(), st.booleans(), st.none(), st.lists(TEXT, max_size=2)),
    "num_classes": st.one_of(NOT_INT, st.none(), st.integers(max_value=0)),
    "dataset": st.one_of(st.just(""), st.integers(), st.booleans(), st.none()),
    "sha256": st.one_of(st.integers(), st.none(), TEXT, st.text(alphabet="0123456789abcdef", min_size=63, max_size=63),
                        st.text(alphabet="ABCDEFG", min_size=64, max_size=64)),
    "config_hash": st.one_of(st.integers(), st.booleans(), st.lists(TEXT, max_size=2)),
    "in_chans": st.one_of(NOT_INT, st.integers(max_value=0)),
    "image_size": st.one_of(NOT_INT, st.integers(max_value=0)),
    "model_kwargs": st.one_of(st.integers(), TEXT, st.lists(st.integers(), max_size=2)),
    "top1": st.one_of(NOT_NUMBER, st.floats(min_value=100, exclude_min=True, allow_infinity=False),
                      st.floats(max_value=0, exclude_max=True, allow_infinity=False)),
    "top5": st.one_of(NOT_NUMBER, st.floats(min_value=100, exclude_min=True, allow_infinity=False)),
    "view": st.one_of(st.integers(), st.booleans(), st.lists(TEXT, max_size=2)),
}


def test_the_table_covers_every_teacher_record_field():
    assert set(TEACHER_BAD) == set(TeacherRecord.model_fields)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    save_teacher(timm.create_model("cifar_resnet8", num_classes=10), folder,
                 {"arch": "cifar_resnet8", "num_classes": 10, "in_chans": 3, "dataset": "digits"})
    return folder


@SETTINGS
@given(data=st.data())
def test_a_teacher_record_field_of_the_wrong_type_or_range_is_named_at_plan(data, teacher, tmp_path_factory, capsys):
    field = data.draw(st.sampled_from(sorted(TEACHER_BAD)), label="field")
    value = data.draw(TEACHER_BAD[field], label="value")
    w = tmp_path_factory.getbasetemp() / "teachers" / uuid.uuid4().hex[:10]
    w.mkdir(parents=True)
    for f in teacher.iterdir():
        (w / f.name).write_bytes(f.read_bytes())
    meta = json.loads((w / META).read_text())
    meta[field] = value
    (w / META).write_text(json.dumps(meta))
    grid = w / "g.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "output": str(w / "out"), "teachers": {"t": str(w)},
                                    "defaults": {"epochs": 1},
                                    "stages": {"s": {"axes": {"method": ["kd"], "pair": [
                                        {"teachers": ["t"], "student": "cifar_resnet8"}]}}}}))
    code = cli.main(["grid", "plan", str(grid)])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code == 2, (field, value, err)
    assert str(w) in err and f"{field}" in err, (field, value, err)


GOOD_RECORD = {"status": "finished", "method": "kd", "category": "response", "scheme": "offline", "dataset": "digits",
               "student": "cifar_resnet8", "pair": "resnet8", "seed": 0, "config_hash": "a",
               "metrics": {"last_top1": 50.0, "best_top1": 51.0}}
METRIC_KEYS = ("last_top1", "last_top5", "best_top1", "best_top5", "best_test_top1", "student_params", "wall_time_s")
RECORD_BAD = st.one_of(
    st.tuples(st.just("status"), st.one_of(TEXT.filter(lambda t: t not in (
        "running", "finished", "diverged", "failed", "interrupted", "stopped")), st.integers(), st.none())),
    st.tuples(st.just("schema"), st.one_of(st.integers(min_value=3), st.integers(max_value=0), TEXT, st.booleans())),
    st.tuples(st.sampled_from(METRIC_KEYS).map(lambda k: f"metrics.{k}"), NOT_NUMBER),
    st.tuples(st.just("metrics"), st.one_of(st.integers(), TEXT, st.lists(st.integers(), max_size=2))),
)


@pytest.fixture(scope="module")
def good_records(tmp_path_factory):
    return tmp_path_factory.mktemp("records")


@SETTINGS
@given(case=RECORD_BAD)
def test_a_run_record_field_of_the_wrong_type_or_range_is_named_by_table(case, tmp_path_factory, capsys):
    field, value = case
    w = tmp_path_factory.getbasetemp() / "records" / uuid.uuid4().hex[:10]
    for i in range(2):
        (w / f"good{i}").mkdir(parents=True)
        (w / f"good{i}" / "record.json").write_text(json.dumps(dict(GOOD_RECORD, seed=i, config_hash=str(i))))
    bad = json.loads(json.dumps(GOOD_RECORD))
    if field.startswith("metrics."):
        bad["metrics"][field.split(".", 1)[1]] = value
    else:
        bad[field] = value
    (w / "bad").mkdir()
    (w / "bad" / "record.json").write_text(json.dumps(bad))
    code = cli.main(["table", "--source", str(w)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert code == 0 and "(2)" in out, (case, out, err)  # the good seeds, and only they
    assert f"{w / 'bad' / 'record.json'}: unreadable run record" in err, (case, err)
    assert field.split(".")[-1] in err or "schema" in err, (case, err)
