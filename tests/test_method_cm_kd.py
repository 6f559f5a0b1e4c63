"""cm_kd: Hinton's KD between the teacher's logits on its view and the student's on the paired view, float64 loops."""
import math

import pytest
import torch

from kdsuite.testing import make


def _log_softmax(v):
    m = max(v)
    lse = m + math.log(sum(math.exp(a - m) for a in v))
    return [a - lse for a in v]


def _expected(s, t, y, T, alpha):
    kl = ce = 0.0
    for i in range(len(s)):
        ls, lt = _log_softmax([v / T for v in s[i]]), _log_softmax([v / T for v in t[i]])
        kl += sum(math.exp(b) * (b - a) for a, b in zip(ls, lt))
        ce -= _log_softmax(s[i])[int(y[i])]
    n = len(s)
    return (1 - alpha) * T * T * kl / n, alpha * ce / n


@pytest.mark.parametrize("T, alpha", [(4.0, 0.1), (1.0, 0.0), (2.0, 0.5)])
def test_cm_kd_distils_the_teachers_view_into_the_students(T, alpha):
    """L = α·CE(y, σ(z_s(x^B))) + (1 − α)·T²·(1/B)·Σ_i Σ_c p_t(x_i^A) log(p_t(x_i^A)/p_s(x_i^B))."""
    torch.manual_seed(0)
    m = make("cm_kd", T=T, alpha=alpha)
    x_student, x_teacher = torch.randn(5, 3, 16, 16), torch.randn(5, 3, 16, 16)
    y = torch.tensor([0, 3, 5, 9, 1])
    m.batch_extras = {"teacher_x": x_teacher}
    out = m.forward_train(x_student, y)
    s = m.student(x_student).detach().double().tolist()  # BN in train mode: the same batch gives the same logits
    t = m.teacher(x_teacher).double().tolist()
    kd, ce = _expected(s, t, y, T, alpha)
    assert out["kd"].item() == pytest.approx(kd, rel=1e-5)
    if alpha > 0:
        assert out["ce"].item() == pytest.approx(ce, rel=1e-5)
    else:
        assert "ce" not in out  # Thoker & Gall's label-free setting
    # the teacher's input is its own view: on the student's images the target (and the loss) would differ
    wrong, _ = _expected(s, m.teacher(x_student).double().tolist(), y, T, alpha)
    assert abs(wrong - kd) > 1e-3 * abs(kd)


def test_cm_kd_defaults_are_kds_and_one_view_is_kd():
    from kdsuite.methods.registry import get_method

    assert (get_method("cm_kd").category, get_method("cm_kd").batch_fields) == ("cross_modal", ("x", "y", "teacher_x"))
    torch.manual_seed(1)
    m = make("cm_kd")
    assert (m.hp.T, m.hp.alpha) == (4.0, 0.1)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([1, 2, 3, 4])
    out = m.forward_train(x, y)  # no teacher view given: the teacher sees the student's input
    kd, ce = _expected(m.student(x).detach().double().tolist(), m.teacher(x).double().tolist(), y, 4.0, 0.1)
    assert out["kd"].item() == pytest.approx(kd, rel=1e-5) and out["ce"].item() == pytest.approx(ce, rel=1e-5)
