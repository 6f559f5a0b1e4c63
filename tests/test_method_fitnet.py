import pytest
import torch

from methods.hparams import ConfigError
from tests.method_helpers import make


class _Opt:
    def __init__(self, m):
        self.m = m
        self.groups = m.optim_groups()
        self.opt = torch.optim.SGD(self.groups["hint"].params, lr=0.1)

    def optimize(self, name, losses):
        assert name == "hint"
        self.opt.zero_grad()
        sum(losses.values()).backward()
        self.opt.step()


def test_hint_loss_matches_formula_and_stage_one_trains_only_up_to_the_guided_layer():
    torch.manual_seed(0)
    m = make("fitnet", hint_epochs=1)
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    _, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    r = m.regressor(sf["feat2"]).detach()
    want = 100.0 * ((r - tf["feat2"]) ** 2).sum().item() / r.numel()
    assert abs(m.forward_train(x, y)["hint"].item() - want) < 1e-4 * want
    before = {n: p.clone() for n, p in m.named_parameters()}
    m.progress.stage = "hint"
    out = m.train_step((x, y), _Opt(m))
    assert set(out) == {"hint"}
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("regressor") for n in changed) and any(n.startswith("student.stages.1") for n in changed)
    assert not any(n.startswith(("student.stages.2", "student.fc")) for n in changed)


def test_regressor_shapes_and_unbridgeable_shapes_name_both():
    from methods.fitnet import conv_regressor

    for s_shape, t_shape in [((8, 8, 8), (16, 4, 4)), ((8, 4, 4), (16, 8, 8)), ((8, 6, 6), (16, 4, 4)), ((8, 4, 4), (8, 4, 4))]:
        out = conv_regressor(s_shape, t_shape)(torch.randn(2, *s_shape))
        assert tuple(out.shape[1:]) == t_shape
    with pytest.raises(ConfigError, match=r"\(8, 4, 4\).*\(16, 16, 16\)"):
        conv_regressor((8, 4, 4), (16, 16, 16))
