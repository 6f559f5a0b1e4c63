import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdsuite import testing
from kdsuite.experiments.run import run
from kdsuite.methods.plugins.icarl import herding, icarl_loss


def _sig(v):
    return 1.0 / (1.0 + math.exp(-float(v)))


def test_loss_matches_the_float64_formula():
    torch.manual_seed(0)
    z, zp = torch.randn(5, 10, dtype=torch.float64), torch.randn(5, 10, dtype=torch.float64)
    y = torch.tensor([4, 5, 1, 6, 0])  # two exemplars of old classes among the task's samples
    cur, old = [4, 5, 6], [0, 1, 2, 3]
    out = icarl_loss(z, zp, y, cur, old)
    bce = kd = 0.0
    for b in range(5):
        for c in cur:
            t, p = float(int(y[b]) == c), _sig(z[b, c])
            bce -= t * math.log(p) + (1 - t) * math.log(1 - p)
        for c in old:
            q, p = _sig(zp[b, c]), _sig(z[b, c])
            kd -= q * math.log(p) + (1 - q) * math.log(1 - p)
    n = 5 * 7
    assert out["bce"].item() == pytest.approx(bce / n, rel=1e-9)
    assert out["kd"].item() == pytest.approx(kd / n, rel=1e-9)


def test_herding_against_a_direct_implementation():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(30, 8))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    mu, chosen, acc = f.mean(0), [], np.zeros(8)
    for k in range(1, 7):
        best = min((i for i in range(30) if i not in chosen), key=lambda i: np.linalg.norm(mu - (acc + f[i]) / k))
        chosen.append(best)
        acc += f[best]
    assert herding(torch.tensor(f), 6) == chosen
    assert herding(torch.tensor(f), 40) and len(herding(torch.tensor(f), 40)) == 30  # never more than there are


def test_memory_holds_herded_exemplars_of_the_finished_task(tmp_path):
    parts = testing.build_parts("icarl", [], tmp_path)  # tasks 2 (classes 0-4, 5-9), memory 20
    tr, m = parts.trainer, parts.method
    tr.enter_stage(0)
    m.update_memory(tr.train_loader, tr.device)
    ys = m.mem_y.tolist()
    assert sorted(ys) == sorted([c for c in range(5) for _ in range(4)])  # ⌊20/5⌋ = 4 a class
    xs, yl = [], []
    for b in tr.train_loader:
        xs.append(b[0])
        yl.append(b[1])
    x_all, y_all = torch.cat(xs), torch.cat(yl)
    m.student.eval()
    for c in range(5):
        xc = x_all[y_all == c]
        mine = m.mem_x[m.mem_y == c]
        # every exemplar is a training image of its class
        assert all(any(torch.equal(e, s) for s in xc) for e in mine)
        # the first is the sample nearest the class's mean normalised feature
        with torch.no_grad():
            f = F.normalize(m.student_forward(xc)[1]["pool"].flatten(1), dim=1)
            fe = F.normalize(m.student_forward(mine[:1])[1]["pool"].flatten(1), dim=1)
        nearest = (f - f.mean(0)).norm(dim=1).argmin()
        assert torch.allclose(fe[0], f[nearest], atol=1e-5)


def test_a_step_of_task_two_replays_as_many_exemplars_as_task_samples(tmp_path):
    parts = testing.build_parts("icarl", [], tmp_path)
    tr, m = parts.trainer, parts.method
    tr.enter_stage(0)
    m.update_memory(tr.train_loader, tr.device)
    tr.enter_stage(1)
    seen = []
    real = m.forward_train
    m.forward_train = lambda x, y: (seen.append(y.clone()), real(x, y))[1]
    (b,) = testing.batches(parts, 1)
    losses = testing.step(parts, b, 0)
    n_task = int((b[1] >= 5).sum())
    y = seen[0].cpu()
    assert torch.equal(y[:n_task], b[1][b[1] >= 5])
    assert len(y) == n_task + min(n_task, 20) and bool((y[n_task:] < 5).all())
    assert set(losses) == {"bce", "kd"}


def test_a_digits_run_records_the_matrix_and_memory(tmp_path):
    rec = run({"student": "cifar_resnet8", "method": {"name": "icarl", "hparams": {"tasks": 2, "memory": 40}},
               "epochs": 2, "max_steps_per_epoch": 8, "dataset": {"name": "digits", "batch_size": 64},
               "optim": {"lr": 0.05}, "progress": "none", "output": {"root": str(tmp_path)}})
    met = rec["metrics"]
    print("icarl tiny run:", met["acc_matrix"], met["avg_acc"], met["forgetting"])
    A = met["acc_matrix"]
    assert met["memory"] == 40 and A[0][1] is None
    assert met["avg_acc"] == pytest.approx((A[1][0] + A[1][1]) / 2)
    assert met["forgetting"] == pytest.approx(A[0][0] - A[1][0])


def test_nearest_mean_classifier_predicts_the_class_of_the_nearest_exemplar_mean(tmp_path):
    torch.manual_seed(0)
    parts = testing.build_parts("icarl", [], tmp_path)  # tasks 2, memory 20, classifier nme
    tr, m = parts.trainer, parts.method
    tr.enter_stage(1)  # after task 2 every class is seen
    m.mem_y.fill_(-1)
    m.mem_x[:10] = torch.randn(10, 3, 16, 16)
    m.mem_y[:10] = torch.arange(10)  # one exemplar a class: its mean is its own feature
    clf = m.classifier().eval()
    x = m.mem_x[:10] + 0.0
    with torch.no_grad():
        scores = clf(x)
        m.student.eval()
        f = F.normalize(m.student_forward(x)[1]["pool"].flatten(1), dim=1)
    want = -torch.cdist(f, f)  # distance of each sample to each class's (single) exemplar
    assert torch.allclose(scores, want, atol=1e-5)
    assert torch.equal(scores.argmax(dim=1), torch.arange(10))
