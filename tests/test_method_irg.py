import torch

from kdsuite.methods.plugins.irg import edge_matrix, transformation
from kdsuite.testing import make


def _edges(f):
    """A_ij = ‖f_i − f_j‖², diagonal 0, divided by the largest entry — by explicit loops."""
    n = f.shape[0]
    v = [f[i].flatten().tolist() for i in range(n)]
    a = [[0.0 if i == j else sum((p - q) ** 2 for p, q in zip(v[i], v[j])) for j in range(n)] for i in range(n)]
    m = max(max(r) for r in a)
    return [[x / m for x in r] for r in a]


def _tran(f1, f2):
    """Λ_i = ‖pool(f1)_i − chanavg(f2)_i‖², f1 (B, C, 2H, 2W) pooled 2×2, f2 (B, 2C, H, W) averaged in channel pairs."""
    b, c, h2, w2 = f1.shape
    h, w = h2 // 2, w2 // 2
    lam = []
    for i in range(b):
        s = 0.0
        for ch in range(c):
            for y in range(h):
                for x in range(w):
                    p = sum(float(f1[i, ch, 2 * y + dy, 2 * x + dx]) for dy in (0, 1) for dx in (0, 1)) / 4
                    q = (float(f2[i, 2 * ch, y, x]) + float(f2[i, 2 * ch + 1, y, x])) / 2
                    s += (p - q) ** 2
        lam.append(s)
    m = max(lam)
    return [v / m for v in lam]


def _mse(a, b):
    fa = [x for r in a for x in (r if isinstance(r, list) else [r])]
    fb = [x for r in b for x in (r if isinstance(r, list) else [r])]
    return sum((p - q) ** 2 for p, q in zip(fa, fb)) / len(fa)


def test_irg_graph_edges_and_transformation_match_the_paper():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(5, 3, 2, 2, generator=g, dtype=torch.float64)
    want = _edges(f)
    got = edge_matrix(f)
    for i in range(5):
        for j in range(5):
            assert abs(got[i, j].item() - want[i][j]) < 1e-12
    f1 = torch.randn(4, 2, 4, 4, generator=g, dtype=torch.float64)
    f2 = torch.randn(4, 4, 2, 2, generator=g, dtype=torch.float64)
    want_t = _tran(f1, f2)
    got_t = transformation(f1, f2)
    assert max(abs(got_t[i].item() - want_t[i]) for i in range(4)) < 1e-12


def test_irg_loss_terms_on_tiny_models():
    torch.manual_seed(0)
    m = make("irg").double()
    for t in m.teachers:
        t.double()
    x, y = torch.randn(6, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4, 5])
    out = m.forward_train(x, y)
    s_logits, sf = m.student_forward(x)
    t_logits, tf = m.teacher_forward(x)
    s2, s3 = sf[m.s_taps[0]], sf[m.s_taps[1]]
    t2, t3 = tf[m.t_taps[0][0]], tf[m.t_taps[0][1]]
    vert = _mse(s_logits.tolist(), t_logits.tolist())
    edge = (_mse(_edges(s2), _edges(t2)) + _mse(_edges(s3), _edges(t3)) + _mse(_edges(sf["pool"]), _edges(tf["pool"]))) / 3
    # resnet8 and resnet20 share stage widths (32 → 64 channels, 8×8 → 4×4): the transformation pools and pairs
    tran = _mse(_tran(s2, s3), _tran(t2, t3))
    assert abs(out["irg_vertex"].item() - 0.1 * vert) < 1e-9
    assert abs(out["irg_edge"].item() - 5.0 * edge) < 1e-9
    assert abs(out["irg_transform"].item() - 5.0 * tran) < 1e-9
    assert abs(out["ce"].item() - torch.nn.functional.cross_entropy(s_logits, y).item()) < 1e-12
