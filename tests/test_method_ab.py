"""AB: the alternative loss on fixed tensors, RepDistiller's connectors (none for equal shapes), its
recipe (AB-only init stage, then CE alone) and the scale of the init term relative to CE on a real
CIFAR-100 pair, each against values computed here."""
import pytest
import torch
import torch.nn as nn

from kdsuite.methods.plugins.ab import alternative_loss, connector
from kdsuite.core.errors import ConfigError
from kdsuite.testing import make, stage_step
from tests.stage_parity import (Recorder, ce64, fixed_batch, init_then_main, real_pair, resnet_features64,
                                stage_optimizers)


def _alt_reference(r, t, margin=1.0):
    """RepDistiller's ABLoss.criterion_alternative_l2 (= the authors' criterion_alternative_L2), elementwise:
    (r + μ)² where r > −μ and the teacher is off (t ≤ 0), (r − μ)² where r ≤ μ and the teacher is on."""
    total = 0.0
    for rv, tv in zip(r.flatten().tolist(), t.flatten().tolist()):
        if tv <= 0 and rv > -margin:
            total += (rv + margin) ** 2
        if tv > 0 and rv <= margin:
            total += (rv - margin) ** 2
    return total


def _ab_reference(s_feats, t_feats, conns=None, margin=1.0):
    """RepDistiller's ABLoss: stage l of n weighs 2^(l−n+1); each stage's sum / batch size · 3/1000; summed."""
    n, b = len(s_feats), s_feats[0].shape[0]
    total = 0.0
    for i, (s, t) in enumerate(zip(s_feats, t_feats)):
        r = s if conns is None else conns[i](s).detach()
        total += 2.0 ** (i - n + 1) * _alt_reference(r, t, margin) / b * 3 / 1000
    return total


def test_ab_alternative_loss_on_fixed_tensors():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) * 2
    t = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    r[0, 0, 0, :2] = torch.tensor([1.0, -1.0], dtype=torch.float64)  # on the margins
    for margin in (1.0, 0.5):
        assert alternative_loss(r, t, margin).item() == pytest.approx(_alt_reference(r, t, margin), rel=1e-12)


def test_ab_loss_on_preactivations_of_same_shape_stages_has_no_connector():
    torch.manual_seed(0)
    m = make("ab")  # resnet20 → resnet8: equal stage shapes
    assert m.s_taps == ["feat1_pre", "feat2_pre", "feat3_pre"]
    assert all(isinstance(c, nn.Identity) for c in m.connectors)
    x = torch.randn(3, 3, 16, 16)
    _, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    assert (tf["feat3_pre"] < 0).any()  # pre-activation: negative responses are kept
    got = m.ab_loss([sf[k] for k in m.s_taps], [tf[k] for k in m.t_taps[0]]).item()
    want = _ab_reference([sf[k].detach() for k in m.s_taps], [tf[k] for k in m.t_taps[0]])
    assert got == pytest.approx(want, rel=1e-5)


def test_ab_connectors_follow_repdistiller_and_the_authors_variant():
    m = make("ab", teachers=("cifar_resnet32x4",))  # same sizes, 4× the channels: 1×1 ConvReg (bias) + BN
    for conn, (cin, cout) in zip(m.connectors, [(16, 64), (32, 128), (64, 256)]):
        assert isinstance(conn[0], nn.Conv2d) and conn[0].kernel_size == (1, 1) and conn[0].bias is not None
        assert (conn[0].in_channels, conn[0].out_channels) == (cin, cout) and isinstance(conn[1], nn.BatchNorm2d)
    assert isinstance(connector((16, 8, 8), (16, 8, 8)), nn.Identity)
    c = connector((16, 8, 8), (16, 4, 4))  # same channels, twice the size: a connector all the same
    assert (c[0].kernel_size, c[0].stride) == ((3, 3), (2, 2))
    c = connector((8, 4, 4), (16, 8, 8))
    assert isinstance(c[0], nn.ConvTranspose2d) and (c[0].kernel_size, c[0].stride) == ((4, 4), (2, 2))
    c = connector((8, 6, 6), (16, 4, 4))
    assert c[0].kernel_size == (3, 3) and c[0].stride == (1, 1)
    x = torch.randn(2, 8, 6, 6)
    assert c(x).shape == (2, 16, 4, 4)
    with pytest.raises(ConfigError, match=r"\(8, 3, 3\).*\(16, 8, 8\)"):
        connector((8, 3, 3), (16, 8, 8))
    # the authors' code: no connector for equal channel counts, else a bias-free 1×1 conv + BN
    assert isinstance(connector((16, 8, 8), (16, 8, 8), "authors"), nn.Identity)
    c = connector((8, 8, 8), (16, 8, 8), "authors")
    assert c[0].kernel_size == (1, 1) and c[0].bias is None
    with pytest.raises(ConfigError, match="authors"):
        connector((8, 8, 8), (16, 4, 4), "authors")
    with pytest.raises(ConfigError, match="stages"):
        make("ab", teachers=("cifar_vgg8",))


def test_ab_recipe_is_repdistillers_init_stage_then_ce_alone():
    """RepDistiller: 30 init epochs training the student's feature modules and the connectors on the
    (unweighted) AB loss with their own SGD at the run's lr, constant; then CE alone (loss_kd = 0 for
    abound; -b never enters), stepping the student only (the connectors are not in its optimizer)."""
    torch.manual_seed(0)
    m = make("ab", teachers=("cifar_resnet32x4",))
    assert (m.hp.beta, m.hp.init_epochs, m.hp.kd_weight, m.hp.margin) == (1.0, 30, 0.0, 1.0)
    assert [(s.name, s.epochs, list(s.optimizers), s.evaluate) for s in m.stages()] == \
        [("init", 30, ["init"], False), ("main", m.ctx.epochs, ["student"], True)]
    feature = {id(p) for n, p in m.student.named_parameters() if n.startswith(("stem.", "stages."))}
    conns = {id(p) for p in m.connectors.parameters()}
    init = stage_optimizers(m, 0)
    assert set(init) == {"init"} and init["init"]["params"] == feature | conns
    assert (init["init"]["lr"], init["init"]["lr_later"], init["init"]["weight_decay"]) == (0.05, 0.05, 5e-4)
    main = stage_optimizers(m, 1)
    assert set(main) == {"student"} and main["student"]["params"] == {id(p) for p in m.student.parameters()}

    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    rec = Recorder()
    m.train()
    m.progress.stage = "init"
    stage_step(m, (x, y), rec)
    m.train()
    m.progress.stage = "main"
    stage_step(m, (x, y), rec)
    assert [(g, sorted(v)) for g, v in rec.calls] == [("init", ["ab"]), ("student", ["ce"])]
    m2 = make("ab", kd_weight=0.5)
    assert set(m2.forward_train(x, y)) == {"ce", "kd"}


def test_ab_init_stage_leaves_a_wrn_final_bn_alone():
    """RepDistiller's init stage trains only get_feat_modules() (a WRN's: conv1, block1-3) with the rest of
    the student in eval mode, so the final BN that gives the last stage's pre-activation normalises with
    its running statistics and neither learns nor updates them."""
    torch.manual_seed(0)
    m = make("ab", student="cifar_wrn_16_1", teachers=("cifar_wrn_16_1",))
    init_ids = {id(p) for p in m.optim_groups()["init"].params}
    bn = m.student.final[0]
    assert not any(id(p) in init_ids for p in bn.parameters())
    opt = torch.optim.SGD(m.optim_groups()["init"].params, lr=0.1)

    class _Step:
        def optimize(self, name, losses):
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()

    before = {k: v.clone() for k, v in bn.state_dict().items()}
    m.train()
    m.progress.stage = "init"
    stage_step(m, (torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])), _Step())
    assert not bn.training and all(torch.equal(v, before[k]) for k, v in bn.state_dict().items())
    assert m.student.stages[0][0].bn1.training  # the feature modules themselves train


def test_ab_scale_on_resnet32x4_to_resnet8x4_matches_repdistiller():
    """One seeded batch through a fresh CIFAR-100 resnet32x4 → resnet8x4 (equal stage shapes: no
    connector): the init-stage AB term and the main-stage CE equal RepDistiller's formulas computed here in
    float64 on the same models' pre-activations (taken by walking the modules, not through the taps)."""
    m = real_pair("ab")
    assert all(isinstance(c, nn.Identity) for c in m.connectors)
    x, y = fixed_batch()
    m.train()
    s_logits, _, s_pre = resnet_features64(m.student, x)
    _, _, t_pre = resnet_features64(m.teacher, x)
    want_ab, want_ce = _ab_reference(s_pre, t_pre), ce64(s_logits, y.numpy())

    init, main = init_then_main(m, (x, y), "ab")
    print(f"ab resnet32x4→resnet8x4 at init: AB {init['ab']:.6g}, CE {main['ce']:.6g}, AB/CE "
          f"{init['ab'] / main['ce']:.6g} (reference {want_ab / want_ce:.6g}); main stage CE alone")
    assert init["ab"] == pytest.approx(want_ab, rel=1e-4)
    assert main["ce"] == pytest.approx(want_ce, rel=1e-5)
    assert init["ab"] / main["ce"] == pytest.approx(want_ab / want_ce, rel=1e-4)
