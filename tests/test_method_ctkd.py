"""CTKD against the authors' code (github.com/zhengli97/CTKD: models/temp_global.py, helper/loops.py,
distiller_zoo/KD.py, train_student.py's CosineDecay and scripts/run_cifar_distill.sh), float64 formulas
written here from that code."""
import math

import numpy as np
import pytest
import torch

from kdsuite.engine.trainer import Trainer, TrainSettings
from kdsuite.methods.components.reversal import SigmoidTemperature, cosine_curriculum
from kdsuite.testing import make


def _authors_cosine_decay(i, max_value=0.0, min_value=-1.0, num_loops=10):
    """train_student.py's CosineDecay.get_value, transcribed: the signed factor its GRL multiplies by."""
    i = min(max(i, 0), num_loops)
    return (math.cos(i * math.pi / num_loops) + 1.0) * 0.5 * (max_value - min_value) + min_value


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _ref_kd(s, t, theta, weight=0.9, t_start=1.0, t_end=20.0):
    tau = t_start + t_end / (1.0 + math.exp(-theta))
    ps, pt = _softmax(s / tau), _softmax(t / tau)
    return weight * tau * tau * np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), 1))


def test_curriculum_is_the_authors_cosine_decay_negated():
    for e in range(0, 14):
        assert cosine_curriculum(e, 10) == pytest.approx(-_authors_cosine_decay(e), abs=1e-12)
    assert cosine_curriculum(3, 0) == 1.0
    assert cosine_curriculum(5, 10, 0.2, 0.6) == pytest.approx(0.4)
    m = make("ctkd")
    m.progress.epoch = 0  # the trainer's first epoch is the authors' epoch 1
    assert m.reversal_strength() == pytest.approx(-_authors_cosine_decay(1))
    m.progress.epoch = 30
    assert m.reversal_strength() == 1.0


def test_ctkd_loss_and_the_reversed_temperature_gradient_match_the_authors_formulas():
    torch.manual_seed(0)
    m = make("ctkd")
    assert (m.hp.t_start, m.hp.t_end, m.hp.theta_init, m.hp.ce_weight, m.hp.kd_weight) == (1.0, 20.0, 1.0, 0.1, 0.9)
    m.double()
    m.teacher.double()  # the whole check in float64: τ² ≈ 244 amplifies float32 rounding of the small KL
    x, y = torch.randn(4, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 3, 5, 9])
    m.train()
    m.progress.epoch = 2  # λ of the authors' epoch 3
    out = m.forward_train(x, y)
    s = m.student(x).detach().double().numpy()
    t = m.teacher(x).double().numpy()
    theta = m.temperature.theta.item()
    assert theta == 1.0
    want = _ref_kd(s, t, theta)
    assert out["kd"].item() == pytest.approx(want, rel=1e-9)
    zs = s - s.max(1, keepdims=True)
    ce = -np.mean((zs - np.log(np.exp(zs).sum(1, keepdims=True)))[np.arange(4), y.numpy()])
    assert out["ce"].item() == pytest.approx(0.1 * ce, rel=1e-9)
    # the gradient reaching θ: the authors' GRL factor (CosineDecay at epoch 3) times dL/dθ (central differences)
    sum(out.values()).backward()
    h = 1e-5
    d_ref = (_ref_kd(s, t, theta + h) - _ref_kd(s, t, theta - h)) / (2 * h)
    assert abs(d_ref) > 1e-6
    assert m.temperature.theta.grad.item() == pytest.approx(_authors_cosine_decay(3) * d_ref, rel=1e-6)


def test_one_step_moves_the_student_down_and_the_temperature_up_the_same_loss():
    torch.manual_seed(1)
    m = make("ctkd", lambda_epochs=0.0)  # full reversal
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 10
    tr = Trainer(m, [(x, y)], None, TrainSettings(epochs=1, progress="none",
                                                  optim={"name": "sgd", "lr": 0.5, "momentum": 0.0,
                                                         "weight_decay": 0.0}))
    tr.enter_stage(0)
    with torch.no_grad():
        s0, t0 = m.student(x).double().numpy(), m.teacher(x).double().numpy()
    theta0 = m.temperature.theta.item()
    tr.step_at((x, y), 0)
    theta1 = m.temperature.theta.item()
    assert theta1 != theta0
    # θ moved up the gradient of the KD term it maximises (evaluated at the pre-step student)
    d_ref = (_ref_kd(s0, t0, theta0 + 1e-5) - _ref_kd(s0, t0, theta0 - 1e-5)) / 2e-5
    assert theta1 - theta0 == pytest.approx(0.5 * d_ref, rel=1e-3)
    assert m.record_metrics(None)["ctkd_temperature"] == pytest.approx(1 + 20 / (1 + math.exp(-theta1)), rel=1e-6)


def test_sigmoid_temperature_range_and_start():
    tau = SigmoidTemperature()
    assert tau(1.0).item() == pytest.approx(1 + 20 / (1 + math.exp(-1)))
    with torch.no_grad():
        tau.theta.fill_(50.0)
    assert tau(1.0).item() == pytest.approx(21.0)
