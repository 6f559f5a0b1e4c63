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


def _stage_outputs(s, x):
    """The student's stage outputs, run by hand (post-activation), and its logits."""
    h, feats = s.stem(x), []
    for stage, act in zip(s.stages, s.stage_acts):
        h = act(stage(h))
        feats.append(h)
    return feats, s(x)


@pytest.mark.parametrize("student", ["cifar_resnet8", "cifar_wrn_16_1", "cifar_vgg8"])
def test_byot_loss_matches_the_paper(student):
    torch.manual_seed(0)
    alpha, lam, T = 0.3, 0.03, 3.0  # the defaults (the authors' code)
    m = make("byot", teachers=(), student=student).double().eval()  # eval: fixed BN statistics
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    y = [1, 2, 9]
    out = m.forward_train(x, torch.tensor(y))
    with torch.no_grad():
        feats, z = _stage_outputs(m.student, x)
        z = _np(z)
        f_c = _np(feats[-1]).mean(axis=(2, 3))
        assert len(m.exits) == len(feats) - 1
        ce = ce_exits = kd = hint = 0.0
        for n in range(3):
            ce += -np.log(_softmax(z[n])[y[n]])
            p_c = _softmax(z[n], T)
            for i, head in enumerate(m.exits):
                mapped = head.bottleneck(feats[i])
                f_i = _np(mapped).mean(axis=(2, 3))
                z_i = _np(head.fc(mapped.mean(dim=(2, 3))))
                ce_exits += (1 - alpha) * -np.log(_softmax(z_i[n])[y[n]])
                p_i = _softmax(z_i[n], T)
                kd += alpha * T * T * sum(p_c[k] * np.log(p_c[k] / p_i[k]) for k in range(len(p_c)))
                hint += lam * sum((f_i[n, c] - f_c[n, c]) ** 2 for c in range(f_c.shape[1]))
    ref = {"ce": ce / 3, "ce_exits": ce_exits / 3, "kd": kd / 3, "hint": hint / 3}
    for k, v in ref.items():
        assert abs(out[k].item() - v) < 1e-9 * max(1.0, abs(v)), k


@pytest.mark.parametrize("student", ["cifar_resnet8", "cifar_mobilenetv2", "cifar_shufflenetv1"])
def test_each_bottleneck_brings_its_stage_to_the_last_stages_shape(student):
    torch.manual_seed(0)
    m = make("byot", teachers=(), student=student).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats, _ = _stage_outputs(m.student, x)
        for i, head in enumerate(m.exits):
            assert head.bottleneck(feats[i]).shape == feats[-1].shape
    assert len(m.exits) == len(m.student.stages) - 1


def test_gradients_and_the_deepest_exit_as_a_constant_teacher():
    torch.manual_seed(0)
    m = make("byot", teachers=())
    m.train()
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([1, 2, 3, 4])
    out = m.forward_train(x, y)
    sum(out.values()).backward(retain_graph=True)
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # KD and hint: z_C and F_C are targets, so they train exits and the layers below them only
    for term in ("kd", "hint"):
        m.zero_grad()
        out[term].backward(retain_graph=True)
        for mod in (m.student.stages[-1], m.student.fc):
            assert all(p.grad is None or p.grad.abs().sum() == 0 for p in mod.parameters()), term
        assert m.exits[0].bottleneck[0][0].weight.grad.abs().sum() > 0
        assert m.student.stages[0][0].conv1.weight.grad.abs().sum() > 0
    # exit 2 sits after stage 2: its losses never reach stage 3 but do reach stage 1
    m.zero_grad()
    z2 = m.exits[1](m.student.forward_taps(x)[1][2])[0]
    z2.sum().backward()
    assert all(p.grad is None for p in m.student.stages[2].parameters())
    assert m.student.stages[0][0].conv1.weight.grad.abs().sum() > 0


def test_every_exit_is_evaluated():
    torch.manual_seed(0)
    m = make("byot", teachers=())
    models = m.eval_models()
    assert set(models) == {"student", "exit1", "exit2"}
    m.eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        feats, z = _stage_outputs(m.student, x)
        assert torch.allclose(models["student"](x), z)
        for k in (1, 2):
            head = m.exits[k - 1]
            expected = head.fc(head.bottleneck(feats[k - 1]).mean(dim=(2, 3)))
            assert torch.allclose(models[f"exit{k}"](x), expected, atol=1e-6)
    m.train()
    g = torch.Generator().manual_seed(2)
    loader = [(torch.randn(5, 3, 16, 16, generator=g), torch.randint(0, 10, (5,), generator=g)) for _ in range(2)]
    res = evaluate(m.eval_models(), loader, torch.device("cpu"), contextlib.nullcontext)
    assert set(res) == {"student", "exit1", "exit2"}
    assert all(mod.training for mod in m.modules())  # evaluation leaves the plugin in training mode


def test_byot_needs_a_zoo_cifar_model():
    with pytest.raises(ConfigError, match="student.*byot.*EfficientNet"):
        make("byot", teachers=(), student="test_efficientnet_gn")
    with pytest.raises(ConfigError, match="alpha"):
        make("byot", teachers=(), alpha=1.5)


def test_byot_run_records_every_exit(tmp_path):
    from kdsuite.experiments.run import run

    rec = run({"student": "cifar_resnet8", "method": "byot", "epochs": 1, "max_steps_per_epoch": 10,
               "progress": "none", "dataset": {"name": "digits", "batch_size": 32},
               "output": {"root": str(tmp_path)}})
    assert {"exit1/last_top1", "exit2/last_top1", "last_top1"} <= set(rec["metrics"])
