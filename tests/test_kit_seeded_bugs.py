"""The plugin kit tests itself: each built-in plugin is broken on purpose the way a plugin author breaks a
method (a sign flip, a term detached from the student, a dropped term, a NaN, the wrong model evaluated, the
adversary's maximisation removed) and the kit must fail it *in the matching check*, with a message saying
why; the unbroken plugin passes that same check (the control). Each case runs only the checks it needs,
on tiny models for a few steps, against the cached tiny teachers."""
import pytest
import torch

from kdsuite import testing
from kdsuite.methods import losses
from kdsuite.methods.registry import get_method

GRADIENTS = "gradients reach exactly the learners"
TERMS = "each distillation term reaches the student"
TOWARD = "distillation moves the student toward the teacher"
DEPLOYED = "the deployed student is what is measured, counted and exported"
ADVERSARY = "the adversary maximises (min-max)"


def _checks(*titles):
    return [c for c in testing.CHECKS if c[0] in titles]


def _run(name, teachers, tmp_path, *titles):
    return {t: (status, detail) for t, status, detail in testing.run_checks(name, tmp_path, teachers, _checks(*titles))}


def _kd_parts(self, x, y):
    t, _ = self.teacher_forward(x)
    s = self.student(x)
    return s, t, 0.9 * losses.kd_loss(s, t, self.hp.T), 0.1 * losses.ce(s, y)


def sign_flipped(self, x, y):
    s, t, kd, ce = _kd_parts(self, x, y)
    return {"kd": -kd, "ce": ce}


def detached(self, x, y):
    s, t, kd, ce = _kd_parts(self, x, y)
    return {"kd": 0.9 * losses.kd_loss(s.detach(), t, self.hp.T), "ce": ce}


def dropped(self, x, y):
    s, t, kd, ce = _kd_parts(self, x, y)
    return {"ce": ce}


def nan_term(self, x, y):
    s, t, kd, ce = _kd_parts(self, x, y)
    return {"kd": kd * float("nan"), "ce": ce}


@pytest.mark.parametrize("bug, check, says", [
    (sign_flipped, TOWARD, "moved the student away from the teacher"),
    (detached, TERMS, "send no gradient to the student"),
    (dropped, TERMS, "no distillation term"),
    (nan_term, GRADIENTS, "not finite"),
])
def test_a_broken_kd_fails_the_matching_check(bug, check, says, digits_teachers, tmp_path, monkeypatch):
    monkeypatch.setattr(get_method("kd"), "forward_train", bug)
    status, detail = _run("kd", digits_teachers, tmp_path, check)[check]
    assert status == "FAIL" and says in detail, (status, detail)


def test_the_unbroken_kd_passes_those_checks(digits_teachers, tmp_path):
    res = _run("kd", digits_teachers, tmp_path, GRADIENTS, TERMS, TOWARD)
    assert all(status == "ok" for status, _ in res.values()), res


def test_a_sign_flipped_feature_term_fails(digits_teachers, tmp_path, monkeypatch):
    # AT is measured on its own term (check_discrepancy = "terms"): the flipped term grows in magnitude
    cls = get_method("at")
    real = cls.forward_train
    monkeypatch.setattr(cls, "forward_train", lambda self, x, y: {k: (-v if k == "at" else v)
                                                                   for k, v in real(self, x, y).items()})
    status, detail = _run("at", digits_teachers, tmp_path, TOWARD)[TOWARD]
    assert status == "FAIL" and "wrong sign" in detail, (status, detail)


def test_evaluating_the_wrong_model_fails(digits_teachers, tmp_path, monkeypatch):
    # ONE's deployed student is its first branch; reporting the gated ensemble as "student" is the bug
    cls = get_method("one")
    real = cls.eval_models
    monkeypatch.setattr(cls, "eval_models", lambda self: {"student": real(self)["ensemble"]})
    status, detail = _run("one", digits_teachers, tmp_path, DEPLOYED)[DEPLOYED]
    assert status == "FAIL" and "not deployed_student()" in detail, (status, detail)


def test_a_min_max_method_without_its_maximisation_fails(digits_teachers, tmp_path, monkeypatch):
    import kdsuite.methods.plugins.dfad as dfad

    res = _run("dfad", digits_teachers, tmp_path / "control", ADVERSARY)[ADVERSARY]
    assert res[0] == "ok", res
    # the generator's loss is −L1 (it maximises what the student minimises); drop the minus sign
    real = dfad.discrepancy
    calls = {"n": 0}

    def flipped(t, s):
        calls["n"] += 1
        d = real(t, s)
        return -d if torch.is_grad_enabled() and t.requires_grad else d

    monkeypatch.setattr(dfad, "discrepancy", flipped)
    status, detail = _run("dfad", digits_teachers, tmp_path / "bug", ADVERSARY)[ADVERSARY]
    assert calls["n"] and status == "FAIL" and "maximisation lost" in detail, (status, detail)


def test_an_exception_inside_a_check_is_that_check_failing(digits_teachers, tmp_path, monkeypatch):
    def broken(self, x, y):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(get_method("kd"), "forward_train", broken)
    res = testing.run_checks("kd", tmp_path, digits_teachers, _checks(GRADIENTS, ADVERSARY))
    assert [t for t, _, _ in res] == [GRADIENTS, ADVERSARY]  # the later check still ran and is listed
    assert res[0][1] == "FAIL" and res[0][2].startswith("RuntimeError: mat1 and mat2"), res
    assert res[1][1] == "skip"
