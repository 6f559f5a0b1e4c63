import numpy as np
import torch

from kdsuite.engine.trainer import Trainer, TrainSettings
from kdsuite.testing import make


def _sm(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def test_kdcl_minlogit_losses_match_the_paper():
    torch.manual_seed(0)
    m = make("kdcl", teachers=(), peers=["cifar_resnet8", "cifar_wrn_16_1"], T=2.0, lam=0.7)
    g = torch.Generator().manual_seed(1)
    logits = [torch.randn(4, 5, generator=g, dtype=torch.float64) for _ in range(3)]
    y = torch.tensor([0, 4, 2, 2])
    out = m.peer_losses(logits, y)
    Z = np.stack([z.numpy() for z in logits])  # (K, B, C)
    T = 2.0
    for k in range(3):
        kl, ce = [], []
        for i in range(4):
            c = int(y[i])
            teacher = np.array([min(Z[j, i, cls] - Z[j, i, c] for j in range(3)) for cls in range(5)])
            pt, ps = _sm(teacher / T), _sm(Z[k, i] / T)
            kl.append((pt * np.log(pt / ps)).sum())
            ce.append(-np.log(_sm(Z[k, i])[c]))
        assert abs(out[f"kd{k}"].item() - 0.7 * T * T * np.mean(kl)) < 1e-9
        assert abs(out[f"ce{k}"].item() - np.mean(ce)) < 1e-9


def test_each_peer_steps_its_own_optimizer():
    torch.manual_seed(0)
    m = make("kdcl", teachers=(), peers=["cifar_wrn_16_1"])
    tr = Trainer(m, [None], None, TrainSettings())
    tr.enter_stage(0)
    before = [[p.detach().clone() for p in peer.parameters()] for peer in m.peers]
    for k, peer in enumerate(m.peers):
        assert {id(p) for p in tr.groups[f"peer{k}"].params} == {id(p) for p in peer.parameters()}
    out = tr.step((torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))))
    assert set(out) == {"ce0", "kd0", "ce1", "kd1"}
    for k, peer in enumerate(m.peers):
        assert any(not torch.equal(a, b) for a, b in zip(before[k], peer.parameters()))
    assert set(m.eval_models()) == {"student", "peer1"}
