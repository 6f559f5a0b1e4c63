import math

import numpy as np
import pytest
import torch

from kdsuite.core.errors import ConfigError
from kdsuite.testing import make, stage_step


class _Trainer:
    """The part of the trainer a train_step uses: optimize(group, losses) with SGD on that group."""

    def __init__(self, m, group):
        self.group = group
        self.opt = torch.optim.SGD(m.optim_groups()[group].params, lr=0.1)

    def optimize(self, name, losses):
        assert name == self.group
        self.opt.zero_grad()
        sum(losses.values()).backward()
        self.opt.step()


def test_fitnet_stages_and_groups():
    m = make("fitnet", hint_epochs=3)
    assert [(s.name, s.epochs, list(s.optimizers)) for s in m.stages()] == [("hint", 3, ["hint"]), ("main", 2, ["student"])]
    groups = m.optim_groups()
    reg = {id(p) for p in m.regressor.parameters()}
    assert reg <= {id(p) for p in groups["hint"].params} and not reg & {id(p) for p in groups["student"].params}
    assert [s.name for s in make("fitnet", hint_epochs=0).stages()] == ["main"]
    assert make("fitnet").hp.hint_epochs == 30


def test_hint_loss_is_eq3_and_the_hint_stage_trains_only_up_to_the_guided_layer():
    torch.manual_seed(0)
    m = make("fitnet", hint_epochs=1)
    m.progress.stage = "hint"
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    m.eval()  # BN in eval mode: the loss is a function of the weights only
    _, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    r = m.regressor(sf["feat2"]).detach().double()
    t = tf["feat2"].double()
    want = sum(0.5 * float(((r[i] - t[i]) ** 2).sum()) for i in range(3)) / 3
    got = m.hint_step_losses(x)["hint"].item()
    assert abs(got - want) < 1e-5 * want
    m.train()
    before = {n: p.clone() for n, p in m.named_parameters()}
    out = stage_step(m, (x, y), _Trainer(m, "hint"))
    assert set(out) == {"hint"}
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("regressor") for n in changed)
    assert any(n.startswith("student.stages.1") for n in changed) and any(n.startswith("student.stem") for n in changed)
    assert not any(n.startswith(("student.stages.2", "student.fc")) for n in changed), changed


def test_main_stage_is_the_papers_kd_eq2_with_annealed_lambda():
    torch.manual_seed(0)
    m = make("fitnet", hint_epochs=1, T=3.0, lambda_start=4.0, lambda_end=1.0)
    m.eval()
    m.progress.stage = "main"
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    s = m.student(x).detach().double().numpy()
    t = m.teacher(x).double().numpy()
    sm = lambda v: np.exp(v - v.max()) / np.exp(v - v.max()).sum()  # noqa: E731
    soft = np.mean([-(sm(t[i] / 3.0) * np.log(sm(s[i] / 3.0))).sum() for i in range(4)])
    hard = np.mean([-math.log(sm(s[i])[int(y[i])]) for i in range(4)])
    for epoch_float, lam in ((0.0, 4.0), (1.0, 2.5), (2.0, 1.0), (5.0, 1.0)):  # ctx.epochs = 2
        m.progress.epoch_float = epoch_float
        out = m.forward_train(x, y)
        assert abs(out["kd"].item() - lam * soft) < 1e-5 * lam * soft
        assert abs(out["ce"].item() - hard) < 1e-5
    # the main stage steps the student only: the regressor stays as it is
    m.train()
    before = {n: p.clone() for n, p in m.regressor.named_parameters()}
    stage_step(m, (x, y), _Trainer(m, "student"))
    assert all(torch.equal(p, before[n]) for n, p in m.regressor.named_parameters())


def test_regressor_shapes_and_unbridgeable_shapes_name_both():
    from kdsuite.methods.components.connectors import conv_regressor

    for s_shape, t_shape in [((8, 8, 8), (16, 4, 4)), ((8, 4, 4), (16, 8, 8)), ((8, 6, 6), (16, 4, 4)), ((8, 4, 4), (8, 4, 4))]:
        reg = conv_regressor(s_shape, t_shape)
        assert tuple(reg(torch.randn(2, *s_shape)).shape[1:]) == t_shape
        assert isinstance(reg[1], torch.nn.BatchNorm2d) and isinstance(reg[2], torch.nn.ReLU)
    assert conv_regressor((8, 4, 4), (8, 4, 4))[0].kernel_size == (1, 1)
    assert conv_regressor((8, 8, 8), (16, 4, 4))[0].kernel_size == (3, 3)
    with pytest.raises(ConfigError, match=r"\(8, 4, 4\).*\(16, 16, 16\)"):
        conv_regressor((8, 4, 4), (16, 16, 16))
    with pytest.raises(ConfigError, match=r"\(8, 3, 3\).*\(16, 4, 4\)"):
        conv_regressor((8, 3, 3), (16, 4, 4))
