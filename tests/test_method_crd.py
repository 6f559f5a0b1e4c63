import math

import numpy as np
import torch
import torch.nn.functional as F

from kdsuite.experiments.data import TensorLoader
from kdsuite.engine.trainer import Trainer, TrainSettings
from kdsuite.testing import make


def _nce_reference(anchor, bank, cidx, num_data, tau):
    """Tian et al. 2020 with the memory bank: P = exp(bankᵀv/τ)/Z, Z = M·mean exp(·/τ) (first batch),
    h = P/(P + N/M); L = −(Σ_i log h(pos_i) + Σ_i Σ_k log(1 − h(neg_ik))) / B (float64 loops)."""
    b, k1 = cidx.shape
    n = k1 - 1
    e = [[math.exp(float(np.dot(bank[cidx[i, j]], anchor[i])) / tau) for j in range(k1)] for i in range(b)]
    z = num_data * sum(sum(row) for row in e) / (b * k1)
    noise = n / num_data
    total = 0.0
    for i in range(b):
        p = [v / z for v in e[i]]
        total += math.log(p[0] / (p[0] + noise))
        total += sum(math.log(1.0 - p[j] / (p[j] + noise)) for j in range(1, k1))
    return -total / b


def test_crd_nce_loss_both_ways_and_momentum_update_match_the_paper():
    torch.manual_seed(0)
    m = make("crd", nce_k=5)  # num_train = 100 in the helper
    assert m.memory_s.shape == (100, 128) and m.memory_t.shape == (100, 128)
    g = torch.Generator().manual_seed(3)
    v_s = F.normalize(torch.randn(4, 128, generator=g), dim=1)
    v_t = F.normalize(torch.randn(4, 128, generator=g), dim=1)
    index = torch.tensor([7, 3, 42, 99])
    cidx = torch.cat([index[:, None], torch.randint(0, 100, (4, 5), generator=g)], dim=1)
    mem_s, mem_t = m.memory_s.clone().double().numpy(), m.memory_t.clone().double().numpy()
    got = m.contrast_loss(v_s, v_t, index, cidx).item()
    vs, vt, ci = v_s.double().numpy(), v_t.double().numpy(), cidx.numpy()
    want = _nce_reference(vs, mem_t, ci, 100, 0.07) + _nce_reference(vt, mem_s, ci, 100, 0.07)
    assert abs(got - want) < 1e-4 * abs(want)
    # bank rows of the batch: normalise(0.5·old + 0.5·v); every other row unchanged
    for bank, old, v in ((m.memory_s, mem_s, vs), (m.memory_t, mem_t, vt)):
        new = bank.double().numpy()
        for r in range(100):
            if r in index.tolist():
                u = 0.5 * old[r] + 0.5 * v[index.tolist().index(r)]
                assert np.allclose(new[r], u / np.sqrt((u * u).sum()), atol=1e-6)
            else:
                assert np.array_equal(new[r], old[r])
    # Z is set once, from the first batch, and kept
    z = (m.z_s.item(), m.z_t.item())
    assert z[0] > 0 and z[1] > 0
    m.contrast_loss(v_s, v_t, index, cidx)
    assert (m.z_s.item(), m.z_t.item()) == z


def test_crd_batches_carry_loader_indices_and_update_their_bank_rows():
    torch.manual_seed(0)
    m = make("crd", nce_k=16)
    assert tuple(m.batch_fields) == ("x", "y", "index")
    loader = TensorLoader(torch.randn(100, 3, 16, 16), torch.arange(100) % 10, batch_size=8, shuffle=True,
                          fields=m.batch_fields)
    tr = Trainer(m, loader, None, TrainSettings(epochs=1))
    tr.enter_stage(-1)
    batch = next(iter(loader))
    idx = batch[2]
    assert len(batch) == 3 and idx.dtype == torch.long and len(set(idx.tolist())) == 8
    before_s, before_t = m.memory_s.clone(), m.memory_t.clone()
    out = tr.step(batch)
    assert set(out) == {"ce", "crd"} and torch.isfinite(out["crd"])
    rows = torch.zeros(100, dtype=torch.bool)
    rows[idx] = True
    for bank, before in ((m.memory_s, before_s), (m.memory_t, before_t)):
        assert torch.equal(bank[~rows], before[~rows])
        assert not torch.isclose(bank[rows], before[rows]).all(dim=1).any()
        assert torch.allclose(bank[rows].norm(dim=1), torch.ones(8), atol=1e-5)
    assert m.embed_t.weight.grad is not None and all(p.grad is None for p in m.teacher.parameters())
    assert "memory_s" in m.state_dict() and "z_t" in m.state_dict()  # banks travel with checkpoints
