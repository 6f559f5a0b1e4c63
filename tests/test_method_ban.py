import math

import pytest
import torch

from kdsuite.experiments.run import run
from kdsuite.testing import make


def test_generation_two_restarts_and_learns_from_generation_one():
    torch.manual_seed(0)
    m = make("ban", generations=2, T=2.0)
    stages = m.stages()
    assert [s.name for s in stages] == ["gen1", "gen2"]
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([1, 2, 3])
    m.progress.stage = "gen1"
    assert set(m.forward_train(x, y)) == {"ce"}
    with torch.no_grad():  # pretend generation 1 trained
        for p in m.student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    gen1 = {k: v.clone() for k, v in m.student.state_dict().items()}
    m.on_stage_start(stages[1], None)
    m.progress.stage = "gen2"
    # the previous generation holds generation 1; the student starts over
    assert all(torch.equal(m.previous.state_dict()[k], v) for k, v in gen1.items())
    weights = [k for k, v in gen1.items() if k.endswith("weight") and v.dim() == 4]
    assert weights and all(not torch.equal(m.student.state_dict()[k], gen1[k]) for k in weights)
    assert all(not p.requires_grad for p in m.previous.parameters())
    m.eval()
    out = m.forward_train(x, y)
    z, zp = m.student(x).detach(), m.previous(x)
    T = 2.0
    want = 0.0
    for b in range(3):
        pp = [math.exp(float(v) / T) for v in zp[b]]
        ps = [math.exp(float(v) / T) for v in z[b]]
        pp, ps = [v / sum(pp) for v in pp], [v / sum(ps) for v in ps]
        want += T * T * sum(a * math.log(a / c) for a, c in zip(pp, ps))
    assert out["kd"].item() == pytest.approx(want / 3, rel=1e-4)


def test_a_run_records_every_generation(tmp_path):
    rec = run({"student": "cifar_resnet8", "method": {"name": "ban", "hparams": {"generations": 3}}, "epochs": 2,
               "max_steps_per_epoch": 6, "progress": "none", "output": {"root": str(tmp_path)}})
    gens = rec["stage_results"]
    assert list(gens) == ["gen1", "gen2", "gen3"]
    assert rec["metrics"]["last_top1"] == gens["gen3"]["student"]["last_top1"]
    assert [h["stage"] for h in rec["history"]] == ["gen1", "gen1", "gen2", "gen2", "gen3", "gen3"]
    g1_last = [h for h in rec["history"] if h["stage"] == "gen1"][-1]
    g2 = [h for h in rec["history"] if h["stage"] == "gen2"]
    assert "train/kd" in g2[0] and "train/ce" in g1_last
