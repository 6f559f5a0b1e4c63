import math

import numpy as np
import torch

from kdsuite.methods.plugins.pkt import pkt_loss
from kdsuite.testing import make
from tests.parity_helpers import ce64, fixed_batch, forward_once, real_pair


def _pkt_reference(fs, ft, eps=1e-7, self_pairs=True):
    """Cosine kernel K = ½(cos + 1) on f/(‖f‖ + ε); p_{i|j} = K(x_i, x_j) / Σ_k K(x_k, x_j) over the k
    that are kept; L = Σ_j Σ_i p_{i|j} log((p_{i|j} + ε)/(q_{i|j} + ε)) / b² (float64 loops).
    self_pairs=True: RepDistiller's distiller_zoo/PKT.py (i = j kept); False: the paper's Σ_{i≠j}."""
    b = fs.shape[0]

    def cond(f):
        f = f.reshape(b, -1).astype(np.float64)
        f = [v / (math.sqrt(float(np.dot(v, v))) + eps) for v in f]
        k = lambda a, c: 0.5 * (float(np.dot(a, c)) + 1.0)
        keep = lambda i, j: self_pairs or i != j
        p = {}
        for j in range(b):
            den = sum(k(f[l], f[j]) for l in range(b) if keep(l, j))
            for i in range(b):
                if keep(i, j):
                    p[(i, j)] = k(f[i], f[j]) / den
        return p

    p, q = cond(ft), cond(fs)
    return sum(p[key] * math.log((p[key] + eps) / (q[key] + eps)) for key in p) / b ** 2


def test_pkt_loss_on_fixed_tensors_matches_repdistiller_and_the_paper_variant():
    g = torch.Generator().manual_seed(1)
    fs, ft = torch.randn(5, 7, generator=g), torch.randn(5, 3, generator=g)
    for self_pairs in (True, False):
        got = pkt_loss(fs.double(), ft.double(), self_pairs=self_pairs).item()
        want = _pkt_reference(fs.numpy(), ft.numpy(), self_pairs=self_pairs)
        assert abs(got - want) < 1e-10 * want
    # the two readings differ: the i = j terms are not a rounding matter
    with_diag, without = _pkt_reference(fs.numpy(), ft.numpy()), _pkt_reference(fs.numpy(), ft.numpy(), self_pairs=False)
    assert abs(with_diag - without) > 1e-3 * with_diag
    assert pkt_loss(ft.double(), ft.double()).item() < 1e-9  # identical relations: no divergence


def test_pkt_plugin_defaults_to_repdistiller_on_pooled_features_with_weight_30000():
    torch.manual_seed(0)
    m = make("pkt", teachers=("cifar_wrn_16_1",))
    assert m.hp.variant == "repdistiller"
    x, y = torch.randn(6, 3, 16, 16), torch.arange(6)
    out, seen = forward_once(m, x, y)
    want = 30000.0 * _pkt_reference(seen["s_pool"], seen["t_pool"])
    assert abs(out["pkt"] - want) < 1e-5 * want
    paper = make("pkt", teachers=("cifar_wrn_16_1",), variant="paper")
    paper.load_state_dict(m.state_dict())
    out_p, seen_p = forward_once(paper, x, y)
    want_p = 30000.0 * _pkt_reference(seen_p["s_pool"], seen_p["t_pool"], self_pairs=False)
    assert abs(out_p["pkt"] - want_p) < 1e-5 * want_p


def test_pkt_scale_vs_ce_on_resnet32x4_resnet8x4_at_init():
    m = real_pair("pkt")
    x, y = fixed_batch()
    out, seen = forward_once(m, x, y)
    ref = 30000.0 * _pkt_reference(seen["s_pool"], seen["t_pool"]) / ce64(seen["s_logits"], y.numpy())
    got = out["pkt"] / out["ce"]
    print(f"pkt/CE at init (resnet32x4 → resnet8x4): plugin {got:.6g}, reference {ref:.6g}")
    assert abs(got - ref) < 1e-5 * ref
