import pytest
import torch

from kdsuite.methods.hparams import ConfigError
from kdsuite.testing import make


def _ab_reference(r, t, margin=1.0):
    """Heo et al. 2019, Eq. (6): teacher neuron on (t > 0): (μ − r)² where r < μ; off: (μ + r)² where r > −μ."""
    total = 0.0
    for rv, tv in zip(r.flatten().tolist(), t.flatten().tolist()):
        if tv > 0:
            total += (margin - rv) ** 2 if rv < margin else 0.0
        else:
            total += (margin + rv) ** 2 if rv > -margin else 0.0
    return total


class _Trainer:
    def __init__(self, m, group):
        self.group = group
        self.opt = torch.optim.SGD(m.optim_groups()[group].params, lr=0.1)

    def optimize(self, name, losses):
        assert name == self.group
        self.opt.zero_grad()
        sum(losses.values()).backward()
        self.opt.step()


def test_ab_alternative_loss_matches_the_paper_on_preactivations():
    torch.manual_seed(0)
    m = make("ab")
    assert m.s_taps == ["feat1_pre", "feat2_pre", "feat3_pre"]
    x = torch.randn(3, 3, 16, 16)
    _, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    assert (tf["feat3_pre"] < 0).any()  # pre-activation: negative responses are kept
    got = m.ab_loss([sf[k] for k in m.s_taps], [tf[k] for k in m.t_taps[0]]).item()
    want = 0.0
    for w, conn, k in zip([0.25, 0.5, 1.0], m.connectors, m.s_taps):
        want += w * _ab_reference(conn(sf[k]).detach(), tf[k]) / 3
    want *= 3 / 1000
    assert abs(got - want) < 1e-5 * want


def test_ab_init_stage_uses_only_the_ab_loss_and_main_stage_only_ce():
    torch.manual_seed(0)
    m = make("ab", init_epochs=2)
    assert [(s.name, s.epochs, list(s.optimizers)) for s in m.stages()] == [("init", 2, ["init"]), ("main", 2, ["student"])]
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    before = {n: p.clone() for n, p in m.named_parameters()}
    m.progress.stage = "init"
    out = m.train_step((x, y), _Trainer(m, "init"))
    assert set(out) == {"ab"}
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("connectors") for n in changed) and any(n.startswith("student.stages") for n in changed)
    assert not any(n.startswith("student.fc") for n in changed)  # AB alone gives the classifier no gradient
    before = {n: p.clone() for n, p in m.named_parameters()}
    m.progress.stage = "main"
    out = m.train_step((x, y), _Trainer(m, "student"))
    assert set(out) == {"ce"}
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert "student.fc.weight" in changed and not any(n.startswith("connectors") for n in changed)
    m2 = make("ab", kd_weight=0.5)
    assert set(m2.forward_train(x, y)) == {"ce", "kd"}


def test_ab_connectors_and_unbridgeable_shapes():
    m = make("ab", teachers=("cifar_resnet32x4",))
    for conn, (cin, cout) in zip(m.connectors, [(16, 64), (32, 128), (64, 256)]):
        assert (conn[0].in_channels, conn[0].out_channels) == (cin, cout)
    from kdsuite.methods.plugins.ab import connector

    with pytest.raises(ConfigError, match=r"\(8, 4, 4\).*\(16, 16, 16\)"):
        connector((8, 4, 4), (16, 16, 16))
    with pytest.raises(ConfigError, match="stages"):
        make("ab", teachers=("cifar_vgg8",))
