import contextlib

import numpy as np
import pytest
import torch

from kdsuite.core.errors import ConfigError
from kdsuite.engine.trainer import evaluate
from kdsuite.testing import make


def _softmax(v, T=1.0):
    e = np.exp((v - v.max()) / T)
    return e / e.sum()


def _np(t):
    return t.detach().double().numpy()


def _reference(m, x, y, T):
    """Eq. (1), (2), (5) written out with numpy loops over samples / branches / classes."""
    s = m.student
    h = s.stem(x)
    for stage, act in zip(list(s.stages)[:-1], list(s.stage_acts)[:-1]):
        h = act(stage(h))
    zs = [_np(s(x))]  # branch 0 is the student itself
    for b in m.extra:
        out = b.final(b.act(b.stage(h)))
        zs.append(_np(b.fc(out.mean(dim=(2, 3)))))
    gap = _np(h.mean(dim=(2, 3)))
    W, bias = _np(m.gate.fc.weight), _np(m.gate.fc.bias)
    B, C, M = len(y), zs[0].shape[1], len(zs)
    ce = ce_br = ce_e = kl = 0.0
    z_e_all = np.zeros((B, C))
    for n in range(B):
        g = _softmax(np.array([sum(W[i, c] * gap[n, c] for c in range(gap.shape[1])) + bias[i] for i in range(M)]))
        z_e = np.array([sum(g[i] * zs[i][n, k] for i in range(M)) for k in range(C)])
        z_e_all[n] = z_e
        ce_e += -np.log(_softmax(z_e)[y[n]])
        p_e = _softmax(z_e, T)
        for i in range(M):
            ce_i = -np.log(_softmax(zs[i][n])[y[n]])
            if i == 0:
                ce += ce_i
            else:
                ce_br += ce_i
            p_i = _softmax(zs[i][n], T)
            kl += T * T * sum(p_e[k] * np.log(p_e[k] / p_i[k]) for k in range(C))
    return {"ce": ce / B, "ce_branches": ce_br / B, "ce_ensemble": ce_e / B, "kl": kl / B}, z_e_all


@pytest.mark.parametrize("student", ["cifar_resnet8", "cifar_wrn_16_1"])
def test_gate_ensemble_and_loss_match_eq_1_2_5(student):
    torch.manual_seed(0)
    m = make("one", teachers=(), student=student, branches=3).double().eval()  # eval: fixed BN statistics
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    y = torch.tensor([3, 7, 0])
    out = m.forward_train(x, y)
    with torch.no_grad():
        ref, z_e = _reference(m, x, y.tolist(), T=3.0)
    for k, v in ref.items():
        assert abs(out[k].item() - v) < 1e-9 * max(1.0, abs(v)), k
    models = m.eval_models()
    assert set(models) == {"student", "ensemble"}
    with torch.no_grad():
        assert np.allclose(_np(models["ensemble"](x)), z_e, atol=1e-10)
        # the evaluated student is branch 0: shared layers + the student's own last stage and head
        assert torch.allclose(models["student"](x), m.branch_outputs(x)[0][0], atol=1e-12)


def test_gate_of_the_authors_code():
    torch.manual_seed(0)
    m = make("one", teachers=(), branches=4, gate="fc_bn_relu").double().eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        _, g, _ = m.branch_outputs(x)
        s = m.student
        h = s.stem(x)
        for stage, act in zip(list(s.stages)[:-1], list(s.stage_acts)[:-1]):
            h = act(stage(h))
        v = _np(h.mean(dim=(2, 3))) @ _np(m.gate.fc.weight).T + _np(m.gate.fc.bias)
        bn = m.gate.bn
        v = (v - _np(bn.running_mean)) / np.sqrt(_np(bn.running_var) + bn.eps) * _np(bn.weight) + _np(bn.bias)
        v = np.maximum(v, 0)
    assert g.shape == (2, 4)
    assert np.allclose(_np(g), np.stack([_softmax(r) for r in v]), atol=1e-12)


def test_gradients_reach_every_branch_and_the_gate_but_not_through_the_teacher():
    torch.manual_seed(0)
    m = make("one", teachers=())
    m.train()
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    out = m.forward_train(x, y)
    sum(out.values()).backward(retain_graph=True)
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # the KL's teacher side is a constant: the KL alone trains no gate parameter
    m.zero_grad()
    out["kl"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in m.gate.parameters())
    assert m.extra[0].fc.weight.grad.abs().sum() > 0


def test_branches_are_copies_of_the_last_stage_that_start_apart():
    torch.manual_seed(0)
    m = make("one", teachers=(), branches=3)
    s = m.student
    assert len(m.extra) == 2
    own = {id(p) for p in s.parameters()}
    for b in m.extra:
        assert not any(id(p) in own for p in b.parameters())  # copies, not shared modules
        for (n1, p1), (n2, p2) in zip(s.stages[-1].named_parameters(), b.stage.named_parameters()):
            assert n1 == n2 and p1.shape == p2.shape
            # same multiset of initial values (redrawn by shuffling), different arrangement
            assert torch.equal(p1.detach().flatten().sort().values, p2.detach().flatten().sort().values)
        assert not torch.equal(b.fc.weight, s.fc.weight)
    m.eval()
    with torch.no_grad():
        zs, _, _ = m.branch_outputs(torch.randn(2, 3, 16, 16))
    assert not torch.allclose(zs[0], zs[1]) and not torch.allclose(zs[1], zs[2])


def test_student_and_ensemble_evaluate_and_modes_are_kept():
    torch.manual_seed(0)
    m = make("one", teachers=())
    m.train()
    g = torch.Generator().manual_seed(2)
    loader = [(torch.randn(5, 3, 16, 16, generator=g), torch.randint(0, 10, (5,), generator=g)) for _ in range(2)]
    res = evaluate(m.eval_models(), loader, torch.device("cpu"), contextlib.nullcontext)
    assert set(res) == {"student", "ensemble"}
    assert all(0 <= r["top1"] <= 100 for r in res.values())
    assert all(mod.training for mod in m.modules())  # evaluation leaves the plugin in training mode
    m.eval()
    evaluate(m.eval_models(), loader, torch.device("cpu"), contextlib.nullcontext)
    assert not any(mod.training for mod in m.modules())


def test_a_student_that_is_not_a_zoo_cifar_model_is_refused():
    with pytest.raises(ConfigError, match="student.*one.*EfficientNet"):
        make("one", teachers=(), student="test_efficientnet_gn")
    with pytest.raises(ConfigError, match="branches"):
        make("one", teachers=(), branches=1)


def test_one_run_records_the_ensemble(tmp_path):
    from kdsuite.experiments.run import run

    rec = run({"student": "cifar_resnet8", "method": "one", "epochs": 1, "max_steps_per_epoch": 10,
               "progress": "none", "dataset": {"name": "digits", "batch_size": 32},
               "output": {"root": str(tmp_path)}})
    assert "ensemble/last_top1" in rec["metrics"] and "last_top1" in rec["metrics"]
