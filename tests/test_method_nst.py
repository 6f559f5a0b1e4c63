import numpy as np
import pytest
import torch

from kdsuite.testing import make


def _mmd2_reference(s, t, d=2, c=0.0):
    """Eq. (5) with explicit sums over channel pairs, per sample, then the batch mean (numpy, float64)."""
    out = []
    for b in range(s.shape[0]):
        # an all-zero map (a dead ReLU channel) stays zero, as F.normalize leaves it
        fs = [v / max(np.linalg.norm(v), 1e-12) for v in s[b].reshape(s.shape[1], -1)]
        ft = [v / max(np.linalg.norm(v), 1e-12) for v in t[b].reshape(t.shape[1], -1)]
        k = lambda x, y: (float(np.dot(x, y)) + c) ** d  # noqa: E731
        tt = sum(k(a, b_) for a in ft for b_ in ft) / len(ft) ** 2
        ss = sum(k(a, b_) for a in fs for b_ in fs) / len(fs) ** 2
        ts = sum(k(a, b_) for a in ft for b_ in fs) / (len(ft) * len(fs))
        out.append(tt + ss - 2 * ts)
    return float(np.mean(out))


def test_nst_mmd_matches_the_papers_formula_with_different_channel_counts():
    from kdsuite.methods.plugins.nst import poly_mmd2

    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 6, 5, 5, generator=g)
    for d, c in ((2, 0.0), (3, 0.5)):
        got = poly_mmd2(s, t, d, c).item()
        assert got == pytest.approx(_mmd2_reference(s.double().numpy(), t.double().numpy(), d, c), rel=1e-5)
    assert poly_mmd2(t, t).item() == pytest.approx(0.0, abs=1e-6)


def test_nst_total_loss_over_stages():
    torch.manual_seed(0)
    m = make("nst")
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([0, 1])
    out = m.forward_train(x, y)
    _, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    want = sum(_mmd2_reference(sf[k].detach().double().numpy(), tf[k].double().numpy()) for k in ("feat1", "feat2", "feat3"))
    assert out["nst"].item() == pytest.approx(50.0 * want, rel=1e-4)
    # other stage counts (ResNet-8's 3, VGG-8's 4) pair by relative depth, recorded — no longer refused
    paired = make("nst", teachers=("cifar_vgg8",))
    assert [(p["student"], p["teacher"]) for p in paired.stage_pairs] == [("feat1", "feat1"), ("feat2", "feat3"),
                                                                           ("feat3", "feat4")]
    assert all("relative depth" in p["rule"] for p in paired.stage_pairs)
