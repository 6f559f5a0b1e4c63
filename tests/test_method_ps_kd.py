import math

import pytest
import torch

from kdsuite.testing import make


def _ce(z, target):
    lse = math.log(sum(math.exp(float(v)) for v in z))
    return -sum(t * (float(v) - lse) for t, v in zip(target, z))


def test_ps_kd_targets_mix_labels_with_last_epochs_predictions():
    torch.manual_seed(0)
    m = make("ps_kd", alpha_T=0.8)  # num_train = 100, 10 classes
    x, y, idx = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3]), torch.tensor([5, 6, 7, 8])
    m.batch_extras = {"index": idx}
    m.progress.epoch, m.progress.total_epochs = 0, 4
    first = m.forward_train(x, y)["ps"].item()
    z0 = m.student(x).detach()
    assert first == pytest.approx(sum(_ce(z0[i], [1.0 if k == i else 0.0 for k in range(10)]) for i in range(4)) / 4,
                                  rel=1e-5)
    past = torch.softmax(z0, 1)
    assert torch.allclose(m.past[idx], past) and m.seen[idx].all() and not m.seen[:5].any()
    # epoch 2 of 4: α = 0.8 · 2/4 = 0.4; the target is 0.6·one-hot + 0.4·(the prediction stored above)
    with torch.no_grad():
        for p in m.student.parameters():
            p.add_(0.01)
    m.progress.epoch = 2
    got = m.forward_train(x, y)["ps"].item()
    z2 = m.student(x).detach()
    want = sum(_ce(z2[i], [0.6 * (k == i) + 0.4 * float(past[i, k]) for k in range(10)]) for i in range(4)) / 4
    assert got == pytest.approx(want, rel=1e-5)
    assert "past" in m.state_dict() and "seen" in m.state_dict()
