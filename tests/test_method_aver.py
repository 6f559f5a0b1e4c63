import math

import numpy as np
import torch

from kdsuite.testing import make


def test_averaged_soft_targets_formula():
    torch.manual_seed(0)
    m = make("aver", teachers=("cifar_resnet20", "cifar_wrn_16_1"))
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([3, 4])
    out = m.forward_train(x, y)
    s = m.student(x).detach().double().numpy()
    ts = [t(x).double().numpy() for t in m.teachers]
    T = 4.0
    sm = lambda v: np.exp(v - v.max()) / np.exp(v - v.max()).sum()  # noqa: E731
    kl = []
    for i in range(2):
        p = np.mean([sm(t[i] / T) for t in ts], axis=0)
        q = sm(s[i] / T)
        kl.append(float((p * np.log(p / q)).sum()))
    assert abs(out["kd"].item() - 0.9 * T * T * np.mean(kl)) < 1e-4
    ce = np.mean([-math.log(sm(s[i])[int(y[i])]) for i in range(2)])
    assert abs(out["ce"].item() - 0.1 * ce) < 1e-5
