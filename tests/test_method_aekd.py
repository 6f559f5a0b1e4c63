import itertools

import pytest
import torch

from kdsuite.core.errors import ConfigError
from kdsuite.testing import make


def _brute(G, cap, steps=200):
    """Min of ‖αᵀG‖² over a fine grid of the capped simplex (2 or 3 teachers)."""
    K = G.shape[0]
    best, arg = None, None
    grid = [i / steps for i in range(steps + 1)]
    for head in itertools.product(grid, repeat=K - 1):
        last = 1.0 - sum(head)
        a = list(head) + [last]
        if last < -1e-12 or any(v > cap + 1e-12 for v in a):
            continue
        v = torch.tensor(a, dtype=torch.float64) @ G
        n = float(v @ v)
        if best is None or n < best:
            best, arg = n, a
    return best, arg


@pytest.mark.parametrize("K,cap", [(2, 1.0), (3, 1.0), (3, 0.4)])
def test_min_norm_weights_against_a_grid_search(K, cap):
    from kdsuite.methods.plugins.aekd import min_norm_weights

    g = torch.Generator().manual_seed(K)
    G = torch.randn(K, 6, generator=g, dtype=torch.float64)
    G[1] = -0.5 * G[0] + 0.1 * G[1]  # teachers that disagree
    a = min_norm_weights(G, cap)
    assert a.sum().item() == pytest.approx(1.0) and (a >= -1e-12).all() and (a <= cap + 1e-9).all()
    best, _ = _brute(G, cap, steps=200 if K == 2 else 60)
    got = float((a @ G) @ (a @ G))
    assert got <= best + 1e-6


def test_aekd_loss_uses_the_min_norm_weights_of_the_logit_gradients():
    torch.manual_seed(0)
    m = make("aekd", teachers=("cifar_resnet20", "cifar_wrn_16_1"))
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    out = m.forward_train(x, y)
    s = m.student(x).detach().double()
    ts = [m.teacher_forward(x, k)[0].double() for k in range(2)]
    T, B = 4.0, 4
    ps = torch.softmax(s / T, 1)
    G = torch.stack([(T * (ps - torch.softmax(t / T, 1)) / B).flatten() for t in ts])
    # two teachers: the closed form α₀ = clip(((g1 − g0)·g1) / ‖g0 − g1‖², 0, 1)
    d = G[0] - G[1]
    a0 = float(((G[1] - G[0]) @ G[1]) / (d @ d))
    a0 = min(max(a0, 0.0), 1.0)
    kl = [float((torch.softmax(t / T, 1) * (torch.log_softmax(t / T, 1) - torch.log_softmax(s / T, 1))).sum(1).mean())
          * T * T for t in ts]
    want = 0.9 * (a0 * kl[0] + (1 - a0) * kl[1])
    assert out["kd"].item() == pytest.approx(want, rel=1e-4)
    with pytest.raises(ConfigError, match="C = 0.3"):
        make("aekd", teachers=("cifar_resnet20", "cifar_wrn_16_1", "cifar_resnet20"), C=0.3)
