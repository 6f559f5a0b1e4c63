import math

import pytest
import torch

from methods.hparams import ConfigError
from tests.method_helpers import make


def _softmax(v, T=1.0):
    e = [math.exp(float(a) / T) for a in v]
    return [a / sum(e) for a in e]


def test_one_gate_ensemble_and_loss_match_the_paper():
    torch.manual_seed(0)
    m = make("one", branches=3).eval()  # eval: BN uses running stats, so repeated passes agree
    torch.set_grad_enabled(False)
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([3, 7])
    out = m.forward_train(x, y)
    # recompute by hand from the modules: shared part, each branch, the gate
    _, post, _, _ = m.student.traverse(x, stop_at=len(m.student.stages) - 1)
    shared = post[-1]
    zs = [m.student(x)] + [b(shared) for b in m.extra]
    g_logits = m.gate(shared.mean((2, 3)))
    T = 3.0
    ce_b = ce_e = kl = 0.0
    for b in range(2):
        g = _softmax(g_logits[b])
        z_e = [sum(g[i] * float(zs[i][b, c]) for i in range(3)) for c in range(10)]
        ce_e += -math.log(_softmax(z_e)[int(y[b])])
        for i in range(3):
            if i > 0:
                ce_b += -math.log(_softmax(zs[i][b])[int(y[b])])
            pe, pi = _softmax(z_e, T), _softmax(zs[i][b], T)
            kl += T * T * sum(a * math.log(a / c) for a, c in zip(pe, pi))
    assert out["ce_ensemble"].item() == pytest.approx(ce_e / 2, rel=1e-4)
    assert out["ce_branches"].item() == pytest.approx(ce_b / 2, rel=1e-4)
    assert out["kl"].item() == pytest.approx(kl / 2, rel=1e-3)
    assert torch.allclose(m.eval_models()["ensemble"](x), m.branch_logits(x)[1], atol=1e-6)
    assert set(m.eval_models()) == {"student", "ensemble", "branch1", "branch2"}
    torch.set_grad_enabled(True)


def test_branches_start_apart_and_all_learn():
    torch.manual_seed(0)
    m = make("one", branches=3)
    assert not torch.equal(m.extra[0].fc.weight, m.student.fc.weight)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    sum(m.forward_train(x, y).values()).backward()
    for mod in (m.gate, m.extra[0], m.extra[1], m.student.stages[0], m.student.fc):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters())
    with pytest.raises(ConfigError, match="cifar"):
        make("one", student="test_efficientnet_gn")
