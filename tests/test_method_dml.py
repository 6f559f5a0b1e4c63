import numpy as np
import torch

from kdsuite.experiments.run import run
from kdsuite.engine.trainer import Trainer, TrainSettings
from kdsuite.testing import make


def _sm(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def test_dml_peer_losses_match_eq_9():
    torch.manual_seed(0)
    m = make("dml", teachers=(), peers=["cifar_resnet8", "cifar_wrn_16_1"])
    g = torch.Generator().manual_seed(1)
    logits = [torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    y = torch.tensor([0, 1, 3])
    out = m.peer_losses(logits, y)
    for k in range(3):
        kls = []
        for l in range(3):
            if l != k:
                kls.append(np.mean([(_sm(logits[l][i].numpy()) * np.log(_sm(logits[l][i].numpy()) / _sm(logits[k][i].numpy()))).sum()
                                    for i in range(3)]))
        assert abs(out[f"kl{k}"].item() - np.mean(kls)) < 1e-9
        ce = np.mean([-np.log(_sm(logits[k][i].numpy())[int(y[i])]) for i in range(3)])
        assert abs(out[f"ce{k}"].item() - ce) < 1e-9


def _trainer(m):
    tr = Trainer(m, [None], None, TrainSettings(optim={"name": "sgd", "lr": 0.1, "momentum": 0.0}))
    tr.enter_stage(0)
    return tr


def _batch():
    g = torch.Generator().manual_seed(3)
    return torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)


def test_every_peer_changes_and_each_optimizer_owns_one_peer():
    torch.manual_seed(0)
    m = make("dml", teachers=(), peers=["cifar_wrn_16_1", "cifar_resnet8"])
    tr = _trainer(m)
    # each group holds exactly its peer's parameters
    for k, peer in enumerate(m.peers):
        assert {id(p) for p in tr.groups[f"peer{k}"].params} == {id(p) for p in peer.parameters()}
        assert {id(p) for pg in tr.optimizers[f"peer{k}"].param_groups for p in pg["params"]} == \
            {id(p) for p in peer.parameters()}
    before = [[p.detach().clone() for p in peer.parameters()] for peer in m.peers]
    # stepping one peer's optimizer leaves the other peers untouched
    x, y = _batch()
    m.train()
    logits = [p(x) for p in m.peers]
    ce, kl = m.peer_loss(logits, y, 1)
    tr.optimize("peer1", {"ce": ce, "kl": kl})
    for k, peer in enumerate(m.peers):
        same = all(torch.equal(a, b) for a, b in zip(before[k], peer.parameters()))
        assert same == (k != 1), f"peer{k}"
    # a full train step moves every peer
    tr.step(_batch())
    for k, peer in enumerate(m.peers):
        assert any(not torch.equal(a, b) for a, b in zip(before[k], peer.parameters())), f"peer{k} did not move"


def test_sequential_update_recomputes_after_each_peer():
    # Algorithm 1 of the paper: peer 1's KL target is peer 0's prediction *after* peer 0's update
    torch.manual_seed(0)
    m = make("dml", teachers=(), update="sequential")
    tr = _trainer(m)
    m.eval()  # fixed BN statistics: the test's own forward passes see the same networks
    x, y = _batch()
    p1_before = m.peers[1](x).detach()
    out = tr.step((x, y))
    with torch.no_grad():
        z0_after = m.peers[0](x).double().numpy()
    z1 = p1_before.double().numpy()
    kl = np.mean([(_sm(z0_after[i]) * np.log(_sm(z0_after[i]) / _sm(z1[i]))).sum() for i in range(len(y))])
    assert abs(out["kl1"].item() - kl) < 1e-5


def test_dml_run_records_every_peer(tmp_path):
    rec = run({"student": "cifar_resnet8", "method": {"name": "dml", "hparams": {"peers": ["cifar_wrn_16_1"]}},
               "epochs": 2, "progress": "none", "dataset": {"name": "digits", "batch_size": 32},
               "optimizers": {"peer1": {"lr": 0.02}}, "output": {"root": str(tmp_path)}})
    m = rec["metrics"]
    assert m["last_top1"] > 20 and m["peer1/last_top1"] > 20  # both peers learn (chance: 10)
    assert rec["history"][-1]["lr"]["peer1"] < rec["history"][-1]["lr"]["peer0"]  # per-peer optimizer settings
    assert {"student", "peer1"} <= set(rec["stage_results"]["main"])
