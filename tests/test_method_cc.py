import math

import numpy as np
import torch

from kdsuite.methods.plugins.cc import cc_loss, consecutive_delta_loss, taylor_rbf_correlation
from kdsuite.testing import make
from tests.parity_helpers import ce64, fixed_batch, forward_once, real_pair


def _normalise(a):
    a = a.astype(np.float64)
    return a / np.sqrt((a * a).sum(1, keepdims=True))


def _linear(w, b, f):
    """y = f Wᵀ + b in float64 numpy (the embeddings' weights, the features recorded in the forward)."""
    return np.asarray(f, np.float64) @ w.detach().double().numpy().T + b.detach().double().numpy()


def _repdistiller_reference(es, et):
    """RepDistiller distiller_zoo/CC.py: Δ = |e_S − e_T|; L = mean_{i<b} Σ_d Δ_{i,d}·Δ_{i+1,d} (float64 loops)."""
    b, d = es.shape
    delta = [[abs(float(es[i, k]) - float(et[i, k])) for k in range(d)] for i in range(b)]
    return sum(sum(delta[i][k] * delta[i + 1][k] for k in range(d)) for i in range(b - 1)) / (b - 1)


def _paper_reference(es, et, gamma, order):
    """Peng et al. 2019: C_ij = Σ_{p≤P} e^{−2γ}(2γ)^p/p!·(e_iᵀe_j)^p, L = ‖C_T − C_S‖_F² / b²."""
    b = es.shape[0]

    def corr(e):
        return [[sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * float(np.dot(e[i], e[j])) ** p
                     for p in range(order + 1)) for j in range(b)] for i in range(b)]

    cs, ct = corr(es), corr(et)
    return sum((ct[i][j] - cs[i][j]) ** 2 for i in range(b) for j in range(b)) / b ** 2


def test_consecutive_delta_loss_on_fixed_tensors_matches_repdistiller():
    g = torch.Generator().manual_seed(4)
    es, et = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    got = consecutive_delta_loss(es, et).item()
    assert abs(got - _repdistiller_reference(es.numpy(), et.numpy())) < 1e-12
    # order matters (consecutive pairs), and a one-sample batch has no pair
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert abs(consecutive_delta_loss(es[perm], et[perm]).item() - _repdistiller_reference(es[perm].numpy(), et[perm].numpy())) < 1e-12
    assert consecutive_delta_loss(es[:1], et[:1]).item() == 0.0


def test_taylor_kernel_converges_to_the_gaussian_rbf():
    g = torch.Generator().manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(4, 6, generator=g, dtype=torch.float64), dim=1)
    got = taylor_rbf_correlation(e, 0.4, 25)
    for i in range(4):
        for j in range(4):
            d2 = float(((e[i] - e[j]) ** 2).sum())
            assert abs(got[i, j].item() - math.exp(-0.4 * d2)) < 1e-12


def test_cc_loss_on_fixed_tensors_matches_the_paper():
    g = torch.Generator().manual_seed(2)
    es = _normalise(torch.randn(5, 4, generator=g).numpy())
    et = _normalise(torch.randn(5, 4, generator=g).numpy())
    for gamma, order in [(0.4, 2), (1.0, 3)]:
        got = cc_loss(torch.from_numpy(es), torch.from_numpy(et), gamma, order).item()
        assert abs(got - _paper_reference(es, et, gamma, order)) < 1e-12


def test_cc_plugin_defaults_to_repdistiller_two_trainable_embeddings_weight_002():
    torch.manual_seed(0)
    m = make("cc", teachers=("cifar_resnet32x4",))
    assert m.hp.variant == "repdistiller"
    assert (m.embed_s.in_features, m.embed_s.out_features) == (64, 128)     # resnet8 pooled → 128
    assert (m.embed_t.in_features, m.embed_t.out_features) == (256, 128)    # resnet32x4 pooled → 128
    x, y = torch.randn(6, 3, 16, 16), torch.arange(6)
    out, seen = forward_once(m, x, y)
    es = _linear(m.embed_s.weight, m.embed_s.bias, seen["s_pool"])
    et = _linear(m.embed_t.weight, m.embed_t.bias, seen["t_pool"])
    want = 0.02 * _repdistiller_reference(es, et)
    assert abs(out["cc"] - want) < 1e-5 * want
    # both embeddings learn with the student
    m.zero_grad()
    m.forward_train(x, y)["cc"].backward()
    assert m.embed_s.weight.grad.abs().sum() > 0 and m.embed_t.weight.grad.abs().sum() > 0


def test_cc_paper_variant_embeds_only_the_student():
    torch.manual_seed(0)
    m = make("cc", teachers=("cifar_resnet32x4",), variant="paper")
    assert not hasattr(m, "embed_t")
    x, y = torch.randn(6, 3, 16, 16), torch.arange(6)
    out, seen = forward_once(m, x, y)
    es = _normalise(_linear(m.embed_s.weight, m.embed_s.bias, seen["s_pool"]))
    et = _normalise(seen["t_pool"])
    want = 0.02 * _paper_reference(es, et, 0.4, 2)
    assert abs(out["cc"] - want) < 1e-4 * want


def test_cc_scale_vs_ce_on_resnet32x4_resnet8x4_at_init():
    m = real_pair("cc")
    x, y = fixed_batch()
    out, seen = forward_once(m, x, y)
    es = _linear(m.embed_s.weight, m.embed_s.bias, seen["s_pool"])
    et = _linear(m.embed_t.weight, m.embed_t.bias, seen["t_pool"])
    ref = 0.02 * _repdistiller_reference(es, et) / ce64(seen["s_logits"], y.numpy())
    got = out["cc"] / out["ce"]
    print(f"cc/CE at init (resnet32x4 → resnet8x4): plugin {got:.6g}, reference {ref:.6g}")
    assert abs(got - ref) < 1e-5 * ref
