"""``trainer.optimize(groups, losses)``: one backward, then every named group steps (a student and a
learnable temperature trained through gradient reversal, as CTKD does); groups not named are left alone."""
import pytest
import torch
import torch.nn as nn

from kdsuite.engine.trainer import Trainer, TrainSettings
from kdsuite.methods import Distiller, OptimGroup
from kdsuite.methods import losses
from kdsuite.methods.base import BuildContext
from kdsuite.methods.components.reversal import LearnableTemperature, grad_reverse
from kdsuite.methods.hparams import HParams


class TwoGroups(Distiller):
    name = "test_two_groups"
    category = "response"
    paper = equation = "test"

    def __init__(self):
        torch.manual_seed(0)
        ctx = BuildContext(num_classes=3, input_shape=(4,), epochs=1, steps_per_epoch=1, batch_size=5)
        teacher = nn.Linear(4, 3).requires_grad_(False)
        super().__init__(nn.Linear(4, 3), [teacher], HParams(), ctx)
        self.temperature = LearnableTemperature(2.0)
        self.bystander = nn.Linear(2, 2)

    def optim_groups(self):
        return {"student": OptimGroup(list(self.student.parameters())),
                "temperature": OptimGroup(list(self.temperature.parameters())),
                "bystander": OptimGroup(list(self.bystander.parameters()))}

    def forward_train(self, x, y):
        return {"kd": losses.kd_loss(self.student(x), self.teacher(x), self.temperature())}


def _trainer(m):
    tr = Trainer(m, [(torch.zeros(1, 4), torch.zeros(1, dtype=torch.long))], None,
                 TrainSettings(epochs=1, progress="none", optim={"name": "sgd", "lr": 0.1, "momentum": 0.0,
                                                                 "weight_decay": 0.0}))
    tr.enter_stage(0)
    return tr


def test_one_backward_steps_every_named_group_with_its_own_gradient():
    m = TwoGroups()
    tr = _trainer(m)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    w, tau = m.student.weight.detach().clone(), m.temperature.tau.detach().clone()
    # the expected gradients, computed without the trainer: d kd / dW, and −d kd / dτ (the reversal)
    w_ref, tau_ref = w.clone().requires_grad_(True), tau.clone().requires_grad_(True)
    ref = losses.kd_loss(x @ w_ref.t() + m.student.bias.detach(), m.teacher(x), tau_ref)
    g_w, g_tau = torch.autograd.grad(ref, [w_ref, tau_ref])
    m.bystander.weight.grad = torch.ones_like(m.bystander.weight)  # must survive: not a named group
    by = m.bystander.weight.detach().clone()
    tr.optimize(["student", "temperature"], m.forward_train(x, None))
    assert torch.allclose(m.student.weight, w - 0.1 * g_w, atol=1e-7)
    assert torch.allclose(m.temperature.tau, tau + 0.1 * g_tau, atol=1e-7)  # ascent: reversed gradient
    assert g_tau.abs() > 0
    assert torch.equal(m.bystander.weight, by) and torch.equal(m.bystander.weight.grad, torch.ones(2, 2))


def test_a_single_name_still_steps_that_group_alone_and_unknown_groups_are_named():
    m = TwoGroups()
    tr = _trainer(m)
    x = torch.randn(5, 4)
    tau = m.temperature.tau.detach().clone()
    tr.optimize("student", m.forward_train(x, None))
    assert torch.equal(m.temperature.tau, tau)
    with pytest.raises(KeyError, match=r"\['disc'\] not active.*'student'"):
        tr.optimize(["student", "disc"], m.forward_train(x, None))


def test_retain_graph_allows_a_second_backward_through_the_same_forward():
    m = TwoGroups()
    tr = _trainer(m)
    out = m.forward_train(torch.randn(5, 4), None)
    tr.optimize("temperature", out, retain_graph=True)
    tr.optimize("student", out)  # would raise without the retained graph
    with pytest.raises(RuntimeError):
        tr.optimize("student", out)


def test_gradient_reversal_negates_and_scales():
    x = torch.tensor([1.5, -2.0], requires_grad=True)
    (grad_reverse(x, 0.5) * torch.tensor([3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [-1.5, -2.0]
