import numpy as np
import torch

from kdsuite.methods.plugins.sp import sp_loss
from kdsuite.testing import make


def _sp_reference(fs, ft):
    """Tung & Mori 2019: G̃ = Q·Qᵀ, rows ℓ2-normalised, L = ‖G_T − G_S‖_F² / b² (float64 loops)."""
    b = fs.shape[0]

    def gram(f):
        q = f.reshape(b, -1).astype(np.float64)
        g = np.array([[sum(q[i, k] * q[j, k] for k in range(q.shape[1])) for j in range(b)] for i in range(b)])
        return np.array([row / np.sqrt(sum(v * v for v in row)) for row in g])

    gs, gt = gram(fs), gram(ft)
    return sum((gt[i, j] - gs[i, j]) ** 2 for i in range(b) for j in range(b)) / b ** 2


def test_sp_loss_on_fixed_tensors_matches_the_paper():
    g = torch.Generator().manual_seed(0)
    fs, ft = torch.randn(4, 3, 2, 2, generator=g), torch.randn(4, 5, 3, 3, generator=g)  # shapes may differ
    assert abs(sp_loss(fs.double(), ft.double()).item() - _sp_reference(fs.numpy(), ft.numpy())) < 1e-12


def test_sp_plugin_uses_the_last_stage_and_weight_3000():
    torch.manual_seed(0)
    m = make("sp", teachers=("cifar_resnet32x4",))  # different widths: b×b matrices need no adaptation
    x, y = torch.randn(5, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4])
    out = m.forward_train(x, y)
    _, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    assert m.s_taps == ["feat3"] and m.t_taps[0] == ["feat3"]
    want = 3000.0 * _sp_reference(sf["feat3"].detach().numpy(), tf["feat3"].numpy())
    assert abs(out["sp"].item() - want) < 1e-4 * max(1.0, want)
    assert set(out) == {"ce", "sp"}
