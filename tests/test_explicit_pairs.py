"""``method.pairs``: a run names its teacher↔student stage pairs instead of the relative-depth rule. Bad values
are refused by name (field, value, allowed) when the config is read or when the method is built, before any
folder is written; the pairs and their rule reach the run's config and record; a config without the field keeps
its hash."""
import pytest

from kdsuite.core.errors import ConfigError
from kdsuite.experiments.config import config_hash, validate
from kdsuite.experiments.run import run
from tests.test_hetero_runs import VIT, cfg, cnn_teacher  # noqa: F401 (fixture)

PAIRS = [{"student": "feat2", "teacher": "feat1"}, {"student": "feat0", "teacher": "feat3"}]


def with_pairs(c, pairs):
    c["method"]["pairs"] = pairs
    return c


@pytest.mark.parametrize("pairs,match", [
    ([], r"method.pairs = \[\]: expected a non-empty list of \{student: feat<i>, teacher: feat<j>\}"),
    ("feat1", r"method.pairs = 'feat1': expected a non-empty list"),
    ([{"student": "feat1"}], r"method.pairs\[0\] = \{'student': 'feat1'\}: expected \{student: feat<i>, teacher"),
    ([{"student": "feat1", "teacher": "layer3"}], r"method.pairs\[0\].teacher = 'layer3': expected a feature tap"),
    ([{"student": "feat1", "teacher": "feat2"}] * 2, r"a pair is named twice"),
])
def test_malformed_pairs_are_refused_when_the_config_is_read(pairs, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        validate(with_pairs(cfg("at", VIT, tmp_path), pairs))


def test_the_field_left_out_or_null_keeps_the_hash_and_pairs_change_it(tmp_path):
    base = config_hash(validate(cfg("vanilla", VIT, tmp_path)))
    assert config_hash(validate(with_pairs(cfg("vanilla", VIT, tmp_path), None))) == base
    assert config_hash(validate(with_pairs(cfg("vanilla", VIT, tmp_path), PAIRS))) != base


def test_explicit_pairs_replace_the_rule_and_are_recorded(cnn_teacher, tmp_path):  # noqa: F811
    rule = run(cfg("at", VIT, tmp_path / "rule", cnn_teacher))["features"]
    assert [(p["student"], p["teacher"]) for p in rule["pairs"]] == [("feat0", "feat1"), ("feat1", "feat2"),
                                                                     ("feat2", "feat3")]
    rec = run(with_pairs(cfg("at", VIT, tmp_path / "explicit", cnn_teacher), PAIRS))
    assert rec["status"] == "finished"
    f = rec["features"]
    assert [(p["student"], p["teacher"]) for p in f["pairs"]] == [("feat2", "feat1"), ("feat0", "feat3")]
    assert all(p["rule"] == f["pairing_rule"] for p in f["pairs"]) and "method.pairs" in f["pairing_rule"]
    assert [p["teacher_depth"] for p in f["pairs"]] == [pytest.approx(1 / 3, abs=1e-4), 1.0]
    assert rec["config"]["method"]["pairs"] == PAIRS
    assert {t["name"] for t in f["student"]["taps"]} == {"feat0", "feat2"}


def test_a_single_hint_takes_its_pair(cnn_teacher, tmp_path):  # noqa: F811
    # the hinted student stage stays hint_layer's (2: the ViT's feat2); the pair names its teacher stage
    rule = run(cfg("fitnet_1stage", VIT, tmp_path / "rule", cnn_teacher))["features"]["pairs"]
    assert [(p["student"], p["teacher"]) for p in rule] == [("feat2", "feat3")]
    rec = run(with_pairs(cfg("fitnet_1stage", VIT, tmp_path / "explicit", cnn_teacher),
                         [{"student": "feat2", "teacher": "feat2"}]))
    assert [(p["student"], p["teacher"], p["rule"]) for p in rec["features"]["pairs"]] == \
        [("feat2", "feat2", "explicit: the run's method.pairs")]


@pytest.mark.parametrize("method,pairs,match", [
    ("at", [{"student": "feat0", "teacher": "feat9"}],
     r"method.pairs\[0\].teacher = 'feat9': .*out of range.*feat0..feat3"),
    ("kd", PAIRS, r"method.pairs = .*method 'kd' compares no teacher and student stages; allowed only for"),
    ("fitnet_1stage", PAIRS, r"method 'fitnet_1stage' hints one student stage, feat2; allowed: one pair whose student is 'feat2'"),
])
def test_pairs_that_do_not_fit_the_models_or_the_method_are_refused_and_leave_no_folder(
        cnn_teacher, tmp_path, method, pairs, match):  # noqa: F811
    root = tmp_path / "runs"
    with pytest.raises(ConfigError, match=match):
        run(with_pairs(cfg(method, VIT, root, cnn_teacher), pairs))
    assert not root.exists() or not any(root.iterdir())
