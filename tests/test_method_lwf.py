import math

import numpy as np
import pytest
import torch

from kdsuite import testing
from kdsuite.analysis.tables import runs_frame
from kdsuite.experiments.data import load_digits_split
from kdsuite.experiments.run import run
from kdsuite.methods.components.incremental import lifelong_metrics, task_classes
from kdsuite.methods.plugins.lwf import lwf_loss
from kdsuite.testing import make


def _softmax(v, T=1.0):
    e = [math.exp(float(a) / T) for a in v]
    return [a / sum(e) for a in e]


def test_tasks_split_the_classes_in_order():
    assert task_classes(10, 5) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert task_classes(10, 3) == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_loss_matches_the_float64_formula_on_task_two():
    torch.manual_seed(0)
    m = make("lwf", teachers=(), tasks=3, T=2.0, lam=0.7)
    stages = m.stages()
    m.progress.stage, m.progress.stage_index = stages[1].name, 1
    with torch.no_grad():  # pretend task 1 trained
        for p in m.student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m.on_stage_start(stages[1], None)
    with torch.no_grad():  # and the student has moved on since the task started
        for p in m.student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m.eval()
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([4, 5, 6, 4])
    out = m.forward_train(x, y)
    z, zp = m.student(x).detach().double(), m.previous(x).double()
    cur, old, T, lam = [4, 5, 6], [0, 1, 2, 3], 2.0, 0.7
    ce = kd = 0.0
    for b in range(4):
        p = _softmax([z[b, c] for c in cur])
        ce -= math.log(p[cur.index(int(y[b]))])
        pt, ps = _softmax([zp[b, c] for c in old], T), _softmax([z[b, c] for c in old], T)
        kd += T * T * sum(a * math.log(a / c) for a, c in zip(pt, ps))
    assert out["ce"].item() == pytest.approx(ce / 4, rel=1e-5)
    assert out["kd"].item() == pytest.approx(lam * kd / 4, rel=1e-4)
    assert out["kd"].item() > 0


def test_only_the_current_task_gets_ce_and_only_old_classes_get_kd():
    torch.manual_seed(1)
    z = torch.randn(6, 10, requires_grad=True)
    zp = torch.randn(6, 10)
    y = torch.tensor([4, 5, 6, 6, 5, 4])
    out = lwf_loss(z, zp, y, current=[4, 5, 6], old=[0, 1, 2, 3], lam=1.0, T=2.0)
    (g_ce,) = torch.autograd.grad(out["ce"], z, retain_graph=True)
    (g_kd,) = torch.autograd.grad(out["kd"], z)
    cur = torch.zeros(10, dtype=torch.bool)
    cur[4:7] = True
    old = torch.zeros(10, dtype=torch.bool)
    old[:4] = True
    assert torch.all(g_ce[:, ~cur] == 0) and torch.all(g_ce[:, cur].abs().sum(0) > 0)
    assert torch.all(g_kd[:, ~old] == 0) and torch.all(g_kd[:, old].abs().sum(0) > 0)
    # the first task has nothing to remember
    assert set(lwf_loss(z, None, y, [4, 5, 6], [], 1.0, 2.0)) == {"ce"}


def test_previous_model_is_frozen_and_equals_the_student_at_task_start(tmp_path):
    parts = testing.build_parts("lwf", [], tmp_path)
    tr, m = parts.trainer, parts.method
    tr.enter_stage(0)
    (b0,) = testing.batches(parts, 1)
    testing.step(parts, b0, 0)  # task 1 learns something
    tr.enter_stage(1)           # task 2 starts: the previous model is the student now
    sd = {k: v.clone() for k, v in m.student.state_dict().items()}
    assert all(torch.equal(v, sd[k]) for k, v in m.previous.state_dict().items())
    assert all(not p.requires_grad for p in m.previous.parameters())
    assert not any(p is q for p in m.previous.parameters() for g in tr.groups.values() for q in g.params)
    frozen = {k: v.clone() for k, v in m.previous.state_dict().items()}
    x, y = b0[0], b0[1].clone()
    y[0], y[1] = 0, 5  # one sample of task 1, one of task 2 (classes 5..9)
    losses = testing.step(parts, (x, y) + tuple(b0[2:]), 1)
    assert all(torch.equal(v, frozen[k]) for k, v in m.previous.state_dict().items())
    assert not all(torch.equal(v, sd[k]) for k, v in m.student.state_dict().items())
    assert set(losses) == {"ce", "kd"}


def test_the_step_trains_on_the_current_task_samples_only(tmp_path):
    parts = testing.build_parts("lwf", [], tmp_path)
    tr, m = parts.trainer, parts.method
    tr.enter_stage(1)
    seen = []
    real = m.forward_train
    m.forward_train = lambda x, y: (seen.append(y.clone()), real(x, y))[1]
    (b,) = testing.batches(parts, 1)
    testing.step(parts, b, 0)
    kept = b[1][b[1] >= 5]
    assert len(kept) and torch.equal(seen[0].cpu(), kept)


def test_metrics_from_a_matrix_against_an_independent_computation():
    rng = np.random.default_rng(0)
    A = rng.uniform(0, 100, size=(4, 4))
    A[np.triu_indices(4, 1)] = -1.0  # not measured yet: must be ignored
    got = lifelong_metrics(A.tolist())
    lower = np.where(np.tril(np.ones((4, 4), dtype=bool)), A, -np.inf)
    want_forget = np.mean(lower[:-1].max(axis=0)[:-1] - A[-1, :-1])
    assert got["avg_acc"] == pytest.approx(A[-1].mean())
    assert got["forgetting"] == pytest.approx(want_forget)
    assert got["acc_matrix"][0][1] is None and got["acc_matrix"][2][1] == pytest.approx(A[2, 1])


def test_a_digits_run_records_the_accuracy_matrix(tmp_path):
    rec = run({"student": "cifar_resnet8", "method": {"name": "lwf", "hparams": {"tasks": 3}}, "epochs": 2,
               "max_steps_per_epoch": 8, "dataset": {"name": "digits", "batch_size": 64}, "optim": {"lr": 0.05},
               "progress": "none", "output": {"root": str(tmp_path)}})
    met = rec["metrics"]
    A = met["acc_matrix"]
    print("lwf tiny run: acc_matrix", A, "avg", met["avg_acc"], "forgetting", met["forgetting"])
    assert list(rec["stage_results"]) == ["task1", "task2", "task3"]
    assert [len(r) for r in A] == [3, 3, 3] and A[0][1] is None and A[1][2] is None
    assert met["avg_acc"] == pytest.approx(sum(A[2]) / 3)
    # independent check of every row against the trainer's own evaluation: after task t the model predicts
    # among the classes seen so far, so its accuracy on the whole test split is Σ_{i≤t} n_i·A[t][i] / N
    _, _, _, yte, _, _ = load_digits_split()
    groups = task_classes(10, 3)
    n = [int(sum((yte == c).sum() for c in g)) for g in groups]
    for t in range(3):
        overall = rec["stage_results"][f"task{t + 1}"]["student"]["last_top1"]
        assert overall == pytest.approx(sum(n[i] * A[t][i] for i in range(t + 1)) / len(yte), abs=1e-6)
    assert met["last_top1"] == rec["stage_results"]["task3"]["student"]["last_top1"]
    assert A[0][0] > 100.0 / 4  # task 1 (4 classes) learnt above chance
    row = runs_frame([rec]).iloc[0]  # the long table (`kdsuite table --layout runs`) carries them
    assert row["avg_acc"] == met["avg_acc"] and row["forgetting"] == met["forgetting"]
