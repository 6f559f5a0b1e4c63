import math

import numpy as np
import torch

from kdsuite.testing import make


def test_one_stage_hint_loss_is_ce_plus_100_mse():
    torch.manual_seed(0)
    m = make("fitnet_1stage")
    assert [s.name for s in m.stages()] == ["main"] and m.hp.beta == 100.0
    m.eval()
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    out = m.forward_train(x, y)
    assert set(out) == {"ce", "hint"}
    _, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    r = m.regressor(sf["feat2"]).detach().double().numpy()
    t = tf["feat2"].double().numpy()
    assert r.shape == t.shape  # resnet8's and resnet20's middle stages: 32 channels, 8×8 at 16×16 input
    want = 100.0 * float(((r - t) ** 2).sum()) / r.size
    assert abs(out["hint"].item() - want) < 1e-5 * want
    s = m.student(x).detach().double().numpy()
    sm = lambda v: np.exp(v - v.max()) / np.exp(v - v.max()).sum()  # noqa: E731
    ce = np.mean([-math.log(sm(s[i])[int(y[i])]) for i in range(3)])
    assert abs(out["ce"].item() - ce) < 1e-5


def test_one_stage_regressor_is_trained_with_the_student():
    m = make("fitnet_1stage", student="cifar_wrn_16_1")
    ids = {id(p) for p in m.optim_groups()["student"].params}
    assert all(id(p) in ids for p in m.regressor.parameters())
    assert all(id(p) in ids for p in m.student.parameters())
