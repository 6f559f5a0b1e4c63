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


# ---- the checks' forms for other kinds of method (issue 26's gaps): each planted bug fails its check. The
# unbroken plugins are the controls of the registry-wide contract (tests/test_method_contract.py).
def _negated(cls, key, monkeypatch):
    real = cls.forward_train
    monkeypatch.setattr(cls, "forward_train", lambda self, x, y: {k: (-v if k == key else v)
                                                                   for k, v in real(self, x, y).items()})


def test_a_sign_flipped_dist_term_fails_toward(digits_teachers, tmp_path, monkeypatch):
    # DIST declares its own discrepancy (check_discrepancy = "terms"): its correlation terms on fresh batches
    _negated(get_method("dist"), "inter", monkeypatch)
    _negated(get_method("dist"), "intra", monkeypatch)
    status, detail = _run("dist", digits_teachers, tmp_path, TOWARD)[TOWARD]
    assert status == "FAIL" and "|inter+intra| on fresh batches" in detail and "wrong sign" in detail, (status, detail)


def test_a_sign_flipped_ps_kd_fails_toward(digits_teachers, tmp_path, monkeypatch):
    # measured at the epoch it was trained to (its targets depend on the epoch)
    _negated(get_method("ps_kd"), "ps", monkeypatch)
    status, detail = _run("ps_kd", digits_teachers, tmp_path, TOWARD)[TOWARD]
    assert status == "FAIL" and "|ps|" in detail and "wrong sign" in detail, (status, detail)


def _dml_with(monkeypatch, bug):
    cls = get_method("dml")
    real = cls.peer_loss

    def peer_loss(self, logits, y, k):
        ce, kl = real(self, logits, y, k)
        return ce, bug(self, logits, k, kl)

    monkeypatch.setattr(cls, "peer_loss", peer_loss)


def test_a_dml_peer_term_detached_fails_term(digits_teachers, tmp_path, monkeypatch):
    # only peer 1's mutual term is cut from peer 1: the check follows each peer's term to that peer
    def detached_peer1(self, logits, k, kl):
        if k != 1:
            return kl
        K = len(logits)
        return sum(losses.kl_div(logits[i].detach(), logits[k].detach(), self.hp.T) for i in range(K) if i != k)

    _dml_with(monkeypatch, detached_peer1)
    status, detail = _run("dml", digits_teachers, tmp_path, TERMS)[TERMS]
    assert status == "FAIL" and "['kl1'] send no gradient" in detail, (status, detail)


def test_a_sign_flipped_dml_fails_toward(digits_teachers, tmp_path, monkeypatch):
    # no fixed teacher: the discrepancy between the peers (their mutual terms) must fall
    _dml_with(monkeypatch, lambda self, logits, k, kl: -kl)
    status, detail = _run("dml", digits_teachers, tmp_path, TOWARD)[TOWARD]
    assert status == "FAIL" and "|kl0+kl1|" in detail and "wrong sign" in detail, (status, detail)


@pytest.mark.parametrize("name, where", [("dafl", "held-out synthetic batches"),  # check_synthetic "fresh"
                                         ("deepinversion", "its last trained synthetic batches")])  # "trained"
def test_a_sign_flipped_data_free_student_fails_toward(name, where, digits_teachers, tmp_path, monkeypatch):
    # the student maximising its KD, measured on the method's own synthetic images
    import importlib
    import types

    plugin = importlib.import_module(f"kdsuite.methods.plugins.{name}")
    monkeypatch.setattr(plugin, "losses", types.SimpleNamespace(kd_loss=lambda *a: -losses.kd_loss(*a)))
    status, detail = _run(name, digits_teachers, tmp_path, TOWARD)[TOWARD]
    assert status == "FAIL" and where in detail and "wrong sign" in detail, (status, detail)


def test_ctkd_without_its_reversal_fails_adversary(digits_teachers, tmp_path, monkeypatch):
    # a negative strength undoes the gradient reversal: τ then lowers kd with the student
    monkeypatch.setattr(get_method("ctkd"), "reversal_strength", lambda self: -1.0)
    status, detail = _run("ctkd", digits_teachers, tmp_path, ADVERSARY)[ADVERSARY]
    assert status == "FAIL" and "maximisation lost" in detail, (status, detail)
