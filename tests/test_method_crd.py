import math

import numpy as np
import torch
import torch.nn.functional as F

from kdsuite.experiments.data import TensorLoader
from kdsuite.engine.trainer import Trainer, TrainSettings
from kdsuite.testing import make
from tests.parity_helpers import ce64, fixed_batch, forward_once, real_pair


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


def _labels(n, classes):
    return torch.arange(n) % classes


def test_crd_exact_sampling_draws_distinct_negatives_from_other_classes_only():
    """RepDistiller's CIFAR100InstanceSample (mode 'exact'): column 0 is the sample itself; nce_k negatives
    from cls_negative[target] (every sample of the other classes), without replacement while the pool
    is large enough. Labels 0..9 repeated (100 samples): each pool holds 90."""
    torch.manual_seed(0)
    labels = _labels(100, 10).numpy()
    for k in (40, 90):
        m = make("crd", nce_k=k)
        assert m.hp.sampling == "exact" and not m.hp.neg_replacement
        index = torch.tensor([0, 7, 13, 55, 99, 42])
        ci = m.contrast_indices(index, torch.zeros(6, dtype=torch.long)).numpy()  # labels come from the dataset
        assert ci.shape == (6, 1 + k)
        for row, i in zip(ci, index.tolist()):
            assert row[0] == i
            neg = [int(v) for v in row[1:]]
            assert all(labels[v] != labels[i] for v in neg)
            assert len(set(neg)) == k                      # without replacement
            if k == 90:                                    # the whole pool, each once
                assert sorted(neg) == [v for v in range(100) if labels[v] != labels[i]]


def test_crd_exact_sampling_is_uniform_over_the_other_classes():
    """Over many draws each other-class sample is picked about equally often (k/pool per draw), and
    never one of the anchor's class."""
    torch.manual_seed(1)
    m = make("crd", nce_k=30)
    labels = _labels(100, 10).numpy()
    index = torch.full((400,), 3)
    ci = m.contrast_indices(index, index).numpy()[:, 1:]
    counts = np.bincount(ci.ravel(), minlength=100)
    pool = [v for v in range(100) if labels[v] != labels[3]]
    assert counts[[v for v in range(100) if labels[v] == labels[3]]].sum() == 0
    expected = 400 * 30 / 90
    assert np.abs(counts[pool] - expected).max() < 5 * math.sqrt(expected)  # ~2.5σ of a binomial


def test_crd_pool_smaller_than_nce_k_draws_with_replacement_and_neg_replacement_option():
    torch.manual_seed(2)
    labels = _labels(100, 10).numpy()
    for m in (make("crd", nce_k=120), make("crd", nce_k=40, neg_replacement=True)):
        k = m.hp.nce_k
        ci = m.contrast_indices(torch.arange(100), torch.arange(100)).numpy()
        assert ci.shape == (100, 1 + k)
        assert all(labels[v] != labels[r] for r in range(100) for v in ci[r, 1:])
        assert any(len(set(ci[r, 1:].tolist())) < k for r in range(100))  # repeats occur
    # classes of unequal size: only the rows whose pool is too small fall back to replacement
    m = make("crd", nce_k=60)
    uneven = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)   # pools 50, 70, 80
    m._index_classes(uneven)
    ci = m.contrast_indices(torch.tensor([0, 60, 90]), torch.zeros(3, dtype=torch.long)).numpy()
    lab = uneven.numpy()
    for row in ci:
        assert all(lab[v] != lab[row[0]] for v in row[1:])
    assert len(set(ci[1, 1:].tolist())) == 60 and len(set(ci[2, 1:].tolist())) == 60


def test_crd_relax_and_uniform_sampling_options():
    torch.manual_seed(3)
    labels = _labels(100, 10).numpy()
    m = make("crd", nce_k=20, sampling="relax")
    index = torch.arange(100)
    ci = m.contrast_indices(index, index).numpy()
    assert all(labels[ci[r, 0]] == labels[r] for r in range(100)) and (ci[:, 0] != np.arange(100)).any()
    assert all(labels[v] != labels[r] for r in range(100) for v in ci[r, 1:])
    u = make("crd", nce_k=20, sampling="uniform")
    ci = u.contrast_indices(index, index).numpy()
    assert (ci[:, 0] == np.arange(100)).all()
    assert any(labels[v] == labels[r] for r in range(100) for v in ci[r, 1:])  # the whole set, own class included


def test_crd_class_aware_sampling_without_labels_is_a_config_error():
    import pytest

    from kdsuite.core.errors import ConfigError
    with pytest.raises(ConfigError, match="sampling: uniform"):
        real_pair("crd", num_train=100, train_labels=None, nce_k=8)
    assert real_pair("crd", num_train=100, train_labels=None, nce_k=8, sampling="uniform").hp.sampling == "uniform"


def test_crd_scale_vs_ce_on_resnet32x4_resnet8x4_at_init():
    """CIFAR-100 sizes: 50,000 samples, 100 classes, 16,384 negatives from other classes, τ 0.07, β 0.8."""
    labels = torch.arange(50000) % 100
    m = real_pair("crd", train_labels=labels)
    x, y = fixed_batch()
    index = torch.arange(0, 16 * 3000, 3000)
    m.batch_extras = {"index": index}
    drawn = []
    real_draw = m.contrast_indices
    m.contrast_indices = lambda i, yy: drawn.append(real_draw(i, yy)) or drawn[-1]
    mem_s, mem_t = m.memory_s.double().numpy().copy(), m.memory_t.double().numpy().copy()
    out, seen = forward_once(m, x, y)
    ci = drawn[0].numpy()
    assert all((labels[ci[r, 1:]] != labels[index[r]]).all() for r in range(16)) and ci.shape == (16, 16385)

    def embed(lin, f):
        v = np.asarray(f, np.float64) @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()
        return v / np.sqrt((v * v).sum(1, keepdims=True))

    vs, vt = embed(m.embed_s, seen["s_pool"]), embed(m.embed_t, seen["t_pool"])
    ref_term = 0.8 * (_nce_reference_np(vs, mem_t, ci, 50000, 0.07) + _nce_reference_np(vt, mem_s, ci, 50000, 0.07))
    ref = ref_term / ce64(seen["s_logits"], y.numpy())
    got = out["crd"] / out["ce"]
    print(f"crd/CE at init (resnet32x4 → resnet8x4): plugin {got:.6g}, reference {ref:.6g}")
    assert abs(got - ref) < 1e-4 * ref


def _nce_reference_np(anchor, bank, cidx, num_data, tau, eps=1e-7):
    """RepDistiller's crd/criterion.py ContrastLoss on crd/memory.py's scores, vectorised in float64 numpy
    for 16,385 columns: e = exp(bank[c]·v/τ), Z = M·mean(e) (first batch), P = e/Z,
    L = −(Σ log P⁺/(P⁺ + N/M + ε) + Σ log (N/M)/(P⁻ + N/M + ε)) / B, ε = 1e-7 as there."""
    b, k1 = cidx.shape
    e = np.exp(np.einsum("bkd,bd->bk", bank[cidx], anchor) / tau)
    p = e / (num_data * e.mean())
    noise = (k1 - 1) / num_data
    return -(np.log(p[:, 0] / (p[:, 0] + noise + eps)).sum() + np.log(noise / (p[:, 1:] + noise + eps)).sum()) / b
