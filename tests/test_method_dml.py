import numpy as np
import torch

from experiments.run import run
from tests.method_helpers import make


def test_dml_peer_losses_match_eq_9():
    torch.manual_seed(0)
    m = make("dml", teachers=(), peers=["cifar_resnet8", "cifar_wrn_16_1"])
    g = torch.Generator().manual_seed(1)
    logits = [torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    y = torch.tensor([0, 1, 3])
    out = m.peer_losses(logits, y)
    sm = lambda v: np.exp(v - v.max()) / np.exp(v - v.max()).sum()  # noqa: E731
    for k in range(3):
        kls = []
        for l in range(3):
            if l != k:
                kls.append(np.mean([(sm(logits[l][i].numpy()) * np.log(sm(logits[l][i].numpy()) / sm(logits[k][i].numpy()))).sum()
                                    for i in range(3)]))
        assert abs(out[f"kl{k}"].item() - np.mean(kls)) < 1e-9
        ce = np.mean([-np.log(sm(logits[k][i].numpy())[int(y[i])]) for i in range(3)])
        assert abs(out[f"ce{k}"].item() - ce) < 1e-9


def test_dml_run_records_every_peer(tmp_path):
    rec = run({"student": "cifar_resnet8", "method": {"name": "dml", "hparams": {"peers": ["cifar_wrn_16_1"]}},
               "epochs": 2, "progress": "none", "dataset": {"name": "digits", "batch_size": 32},
               "optimizers": {"peer1": {"lr": 0.02}}, "output": {"root": str(tmp_path)}})
    m = rec["metrics"]
    assert m["last_top1"] > 20 and m["peer1/last_top1"] > 20  # both peers learn (chance: 10)
    assert rec["history"][-1]["lr"]["peer1"] < rec["history"][-1]["lr"]["peer0"]  # per-peer optimizer settings
