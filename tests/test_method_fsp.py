"""FSP: the loss on fixed tensors, RepDistiller's recipe (FSP-only init stage, then CE alone) and the
scale of the init term relative to CE on a real CIFAR-100 pair, each against values computed here."""
import numpy as np
import pytest
import torch

from kdsuite.methods.plugins.fsp import fsp_loss
from kdsuite.core.errors import ConfigError
from kdsuite.testing import make, stage_step
from tests.stage_parity import (Recorder, ce64, fixed_batch, init_then_main, real_pair, resnet_features64,
                                stage_optimizers)


def _pool(a, h):
    """Average pooling of (C, H, W) to (C, h, h) by H/h blocks."""
    k = a.shape[1] // h
    return np.array([[[a[c, i * k:(i + 1) * k, j * k:(j + 1) * k].mean() for j in range(h)] for i in range(h)]
                     for c in range(a.shape[0])])


def _fsp_reference(s_feats, t_feats):
    """Yim et al. 2017, Eq. (1) G_ij = Σ_{s,t} F¹_{s,t,i}F²_{s,t,j}/(h·w) between consecutive maps, the larger
    map average-pooled to the smaller; Eq. (2) with λ_i = 1/(m·n) as RepDistiller's FSP.compute_loss:
    mean squared difference per pair (over samples and entries), summed over pairs."""
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


def test_fsp_recipe_is_repdistillers_init_stage_then_ce_alone():
    """RepDistiller (train_student.py, helper/pretrain.py, helper/loops.py): 30 init epochs training the
    student's feature modules on the unweighted FSP sum with their own SGD at the run's lr (constant),
    then the 240-epoch main stage on CE alone (loss_kd = 0 for fsp: -b 50 never enters)."""
    torch.manual_seed(0)
    m = make("fsp", teachers=("cifar_resnet20",))
    assert m.hp.beta == 0.0 and m.hp.init_epochs == 30
    assert [(s.name, s.epochs, list(s.optimizers), s.evaluate) for s in m.stages()] == \
        [("init", 30, ["init"], False), ("main", m.ctx.epochs, ["student"], True)]
    feature = {id(p) for n, p in m.student.named_parameters() if n.startswith(("stem.", "stages."))}
    assert feature and not any(id(p) in feature for p in m.student.get_classifier().parameters())

    init = stage_optimizers(m, 0)
    assert set(init) == {"init"} and init["init"]["params"] == feature
    assert (init["init"]["lr"], init["init"]["momentum"], init["init"]["weight_decay"]) == (0.05, 0.9, 5e-4)
    assert init["init"]["lr_later"] == 0.05  # constant lr in the init stage, whatever the run's schedule
    main = stage_optimizers(m, 1)
    assert set(main) == {"student"} and main["student"]["params"] == {id(p) for p in m.student.parameters()}
    assert main["student"]["lr_later"] < 0.05  # the main stage follows the run's (cosine) schedule

    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    rec = Recorder()
    m.progress.stage = "init"
    assert set(stage_step(m, (x, y), rec)) == {"fsp"}
    m.progress.stage = "main"
    assert set(stage_step(m, (x, y), rec)) == {"ce"}
    assert [(g, sorted(v)) for g, v in rec.calls] == [("init", ["fsp"]), ("student", ["ce"])]


def test_fsp_scale_on_resnet32x4_to_resnet8x4_matches_repdistiller():
    """One seeded batch through a fresh CIFAR-100 resnet32x4 → resnet8x4: the init-stage FSP term and the
    main-stage CE equal RepDistiller's formulas computed here in float64 on the same models (features
    taken by walking the modules, not through the plugin's taps), so their ratio does too."""
    m = real_pair("fsp")
    x, y = fixed_batch()
    m.train()
    s_logits, s_post, _ = resnet_features64(m.student, x)
    _, t_post, _ = resnet_features64(m.teacher, x)
    want_fsp = _fsp_reference(s_post, t_post)
    want_ce = ce64(s_logits, y.numpy())

    init, main = init_then_main(m, (x, y), "fsp")
    print(f"fsp resnet32x4→resnet8x4 at init: FSP {init['fsp']:.6g}, CE {main['ce']:.6g}, "
          f"FSP/CE {init['fsp'] / main['ce']:.6g} (reference {want_fsp / want_ce:.6g}); main-stage FSP weight 0")
    assert init["fsp"] == pytest.approx(want_fsp, rel=1e-4)
    assert main["ce"] == pytest.approx(want_ce, rel=1e-5)
    assert init["fsp"] / main["ce"] == pytest.approx(want_fsp / want_ce, rel=1e-4)


def test_fsp_one_stage_option_adds_beta_times_fsp_to_ce():
    torch.manual_seed(0)
    m = make("fsp", teachers=("cifar_wrn_16_1",), init_epochs=0, beta=50.0)
    assert [s.name for s in m.stages()] == ["main"]
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    out = m.forward_train(x, y)
    _, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    keys = ["feat0", "feat1", "feat2", "feat3"]
    want = 50.0 * _fsp_reference([sf[k].detach().numpy() for k in keys], [tf[k].numpy() for k in keys])
    assert set(out) == {"ce", "fsp"} and abs(out["fsp"].item() - want) < 1e-4 * want


def test_fsp_init_step_trains_only_the_feature_layers():
    torch.manual_seed(0)
    m = make("fsp", teachers=("cifar_wrn_16_1",), init_epochs=1)

    class _Step:
        def __init__(self):
            self.opt = torch.optim.SGD(m.optim_groups()["init"].params, lr=0.1)

        def optimize(self, name, losses):
            assert name == "init"
            self.opt.zero_grad()
            sum(losses.values()).backward()
            self.opt.step()

    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    before = {n: p.clone() for n, p in m.named_parameters()}
    m.progress.stage = "init"
    assert set(stage_step(m, (x, y), _Step())) == {"fsp"}
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("student.stages") for n in changed)
    assert not any(n.startswith("student.fc") for n in changed)


def test_fsp_refuses_different_channel_counts_naming_both_shapes():
    with pytest.raises(ConfigError, match=r"\(32, 16, 16\).*\(16, 16, 16\)"):
        make("fsp", student="cifar_resnet8x4")
