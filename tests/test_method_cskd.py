import numpy as np
import torch

from kdsuite.testing import make


def test_cskd_loss_matches_eq_3():
    torch.manual_seed(0)
    m = make("cskd", teachers=())
    m.eval()  # fixed BN statistics so the test's own forward passes see the same network
    x, pair, y = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16), torch.tensor([1, 5])
    m.batch_extras = {"pair_x": pair}
    out = m.forward_train(x, y)
    z, zp = m.student(x).detach().double().numpy(), m.student(pair).detach().double().numpy()
    T = 4.0
    sm = lambda v: np.exp(v - v.max()) / np.exp(v - v.max()).sum()  # noqa: E731
    kl = np.mean([(sm(zp[i] / T) * np.log(sm(zp[i] / T) / sm(z[i] / T))).sum() for i in range(2)])
    assert abs(out["cls"].item() - T * T * kl) < 1e-4
    ce = np.mean([-np.log(sm(z[i])[int(y[i])]) for i in range(2)])
    assert abs(out["ce"].item() - ce) < 1e-5


def test_no_gradient_through_the_partners_prediction():
    # in training mode BN couples the concatenated batch through its statistics (as in the authors'
    # code); with fixed statistics nothing may flow back through the prediction on x'
    m = make("cskd", teachers=())
    m.eval()
    x, pair, y = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16, requires_grad=True), torch.tensor([1, 5])
    m.batch_extras = {"pair_x": pair}
    m.forward_train(x, y)["cls"].backward()
    assert pair.grad is None or torch.count_nonzero(pair.grad) == 0
