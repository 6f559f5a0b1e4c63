import math

import pytest
import torch

from kdsuite.testing import make


def test_vid_negative_log_likelihood_matches_the_gaussian_formula():
    torch.manual_seed(0)
    m = make("vid")
    head = m.heads[0]
    with torch.no_grad():
        head.alpha.copy_(torch.randn_like(head.alpha))
    s = torch.randn(2, head.mean[0].in_channels, 3, 3)
    t = torch.randn(2, head.mean[4].out_channels, 3, 3)
    got = head.nll(s, t).item()
    mu = head.mean(s).detach().double()
    total, count = 0.0, 0
    for b in range(2):
        for c in range(t.shape[1]):
            var = math.log1p(math.exp(head.alpha[c].item())) + 1e-5
            for i in range(3):
                for j in range(3):
                    d = t[b, c, i, j].item() - mu[b, c, i, j].item()
                    total += 0.5 * math.log(var) + d * d / (2 * var)
                    count += 1
    assert got == pytest.approx(total / count, rel=1e-5)


def test_vid_initial_variance_and_total_loss():
    torch.manual_seed(0)
    m = make("vid", init_var=3.0)
    assert torch.allclose(m.heads[1].variance(), torch.full_like(m.heads[1].alpha, 3.0), atol=1e-5)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    out = m.forward_train(x, y)
    _, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    want = sum(h.nll(sf[k], tf[k]) for h, k in zip(m.heads, ("feat1", "feat2", "feat3")))
    assert out["vid"].item() == pytest.approx(want.item(), rel=1e-5)
    # the regressors and variances learn; the teacher does not
    out["vid"].backward()
    assert all(p.grad is not None for p in m.heads.parameters())
    assert all(p.grad is None for p in m.teacher.parameters())


def test_vid_pools_the_larger_map_and_pairs_other_stage_counts_by_depth():
    torch.manual_seed(0)
    m = make("vid", teachers=("cifar_wrn_16_1",), student="cifar_resnet8")
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([0, 1])
    assert torch.isfinite(m.forward_train(x, y)["vid"])
    from kdsuite.methods.components.features import match_resolution

    big, small = torch.randn(1, 2, 8, 8), torch.randn(1, 3, 4, 4)
    a, b = match_resolution(big, small)
    assert b is small and a.shape[-2:] == (4, 4)
    assert torch.allclose(a[0, 1, 2, 3], big[0, 1, 4:6, 6:8].mean())  # each output = mean of its 2×2 block
    # other stage counts (ResNet-8's 3, VGG-8's 4) pair by relative depth, recorded — no longer refused
    paired = make("vid", teachers=("cifar_vgg8",))
    assert [(p["student"], p["teacher"]) for p in paired.stage_pairs] == [("feat1", "feat1"), ("feat2", "feat3"),
                                                                           ("feat3", "feat4")]
    assert all("relative depth" in p["rule"] for p in paired.stage_pairs)
