import numpy as np
import pytest
import torch

from kdsuite.methods.plugins.fsp import fsp_loss
from kdsuite.methods.hparams import ConfigError
from kdsuite.testing import make


def _pool(a, h):
    """Average pooling of (C, H, W) to (C, h, h) by H/h blocks."""
    k = a.shape[1] // h
    return np.array([[[a[c, i * k:(i + 1) * k, j * k:(j + 1) * k].mean() for j in range(h)] for i in range(h)]
                     for c in range(a.shape[0])])


def _fsp_reference(s_feats, t_feats):
    """Yim et al. 2017, Eq. (1) G_ij = Σ_{s,t} F¹_{s,t,i}F²_{s,t,j}/(h·w) between consecutive maps; Eq. (2)
    with λ_i = 1/(m·n): mean squared difference per pair, summed over pairs, averaged over samples."""
    b = s_feats[0].shape[0]
    total = 0.0
    for i in range(len(s_feats) - 1):
        for x in range(b):
            mats = []
            for feats in (s_feats, t_feats):
                f1, f2 = feats[i][x].astype(np.float64), feats[i + 1][x].astype(np.float64)
                h = min(f1.shape[1], f2.shape[1])
                f1, f2 = _pool(f1, h), _pool(f2, h)
                g = np.zeros((f1.shape[0], f2.shape[0]))
                for a in range(f1.shape[0]):
                    for c in range(f2.shape[0]):
                        g[a, c] = sum(f1[a, p, q] * f2[c, p, q] for p in range(h) for q in range(h)) / (h * h)
                mats.append(g)
            total += ((mats[0] - mats[1]) ** 2).mean() / b
    return total


def test_fsp_loss_on_fixed_tensors_matches_the_paper():
    g = torch.Generator().manual_seed(0)
    shapes = [(2, 4, 4), (3, 4, 4), (2, 2, 2)]
    s = [torch.randn(2, *sh, generator=g, dtype=torch.float64) for sh in shapes]
    t = [torch.randn(2, *sh, generator=g, dtype=torch.float64) for sh in shapes]
    want = _fsp_reference([a.numpy() for a in s], [a.numpy() for a in t])
    assert abs(fsp_loss(s, t).item() - want) < 1e-12


class _Trainer:
    def __init__(self, m, group):
        self.group = group
        self.opt = torch.optim.SGD(m.optim_groups()[group].params, lr=0.1)

    def optimize(self, name, losses):
        assert name == self.group
        self.opt.zero_grad()
        sum(losses.values()).backward()
        self.opt.step()


def test_fsp_plugin_weight_and_init_stage_trains_only_the_feature_layers():
    torch.manual_seed(0)
    m = make("fsp", teachers=("cifar_wrn_16_1",), init_epochs=1)
    assert [s.name for s in m.stages()] == ["init", "main"]
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    out = m.forward_train(x, y)
    _, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    keys = ["feat0", "feat1", "feat2", "feat3"]
    want = 50.0 * _fsp_reference([sf[k].detach().numpy() for k in keys], [tf[k].numpy() for k in keys])
    assert abs(out["fsp"].item() - want) < 1e-4 * want
    before = {n: p.clone() for n, p in m.named_parameters()}
    m.progress.stage = "init"
    out = m.train_step((x, y), _Trainer(m, "init"))
    assert set(out) == {"fsp"}
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("student.stages") for n in changed)
    assert not any(n.startswith("student.fc") for n in changed)


def test_fsp_refuses_different_channel_counts_naming_both_shapes():
    with pytest.raises(ConfigError, match=r"\(32, 16, 16\).*\(16, 16, 16\)"):
        make("fsp", student="cifar_resnet8x4")
