import math

import numpy as np
import torch

from kdsuite.experiments.run import run
from kdsuite.methods.plugins.dafl import generator_losses


def test_generator_losses_match_eq_3_to_5():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(4, 3, generator=g, dtype=torch.float64)
    f = torch.randn(4, 5, generator=g, dtype=torch.float64)
    l_oh, l_a, l_ie = generator_losses(t, f)
    sm = lambda v: np.exp(v - v.max()) / np.exp(v - v.max()).sum()  # noqa: E731
    oh = np.mean([-math.log(sm(t[i].numpy())[int(t[i].argmax())]) for i in range(4)])
    assert abs(l_oh.item() - oh) < 1e-9
    assert abs(l_a.item() - (-np.abs(f.numpy()).sum() / 20)) < 1e-9
    p = np.mean([sm(t[i].numpy()) for i in range(4)], axis=0)
    assert abs(l_ie.item() - (p * np.log10(p)).sum()) < 1e-9  # the authors' code: Σ p̄·log10 p̄
    _, _, l_ie_nats = generator_losses(t, f, "ln")
    assert abs(l_ie_nats.item() - (p * np.log(p)).sum()) < 1e-9  # the paper's −H(p̄) in nats


def test_dafl_defaults_are_the_authors_script_defaults():
    from kdsuite.methods.plugins.dafl import DAFL

    hp = {k: v.default for k, v in DAFL.hparams.items()}
    assert (hp["alpha"], hp["beta"], hp["T"], hp["entropy_log"]) == (0.1, 5.0, 1.0, "log10")


def test_student_learns_without_touching_the_training_data(tmp_path, digits_teachers, monkeypatch):
    import kdsuite.experiments.data as data

    real_iter = data.TensorLoader.__iter__
    touched = []

    def guarded(self):
        if self.shuffle:  # the training loader shuffles; the test loader does not
            touched.append(1)
            raise AssertionError("the data-free student touched the training loader")
        return real_iter(self)

    monkeypatch.setattr(data.TensorLoader, "__iter__", guarded)
    rec = run({"student": "cifar_resnet8", "method": {"name": "dafl", "hparams": {"batch": 128}},
               "teachers": [digits_teachers[0]], "epochs": 6, "max_steps_per_epoch": 20, "progress": "none",
               "teacher_cache": False, "dataset": {"name": "digits"}, "output": {"root": str(tmp_path)}})
    assert not touched
    print("data-free student top-1:", rec["metrics"]["last_top1"], "teacher:", rec["metrics"]["teacher_top1"])
    # a margin over chance (10 %: 360 balanced test images), not a figure seen on one host: measured 2026-12-04
    # over 2 digits teachers × seeds 0-2 on one host, best top-1 33.6-76.7 % (teacher 95-96 %); the same seed
    # differs more across hosts (their CPU kernels and tiny teachers differ), so twice chance is the bar
    assert rec["metrics"]["best_top1"] > 20.0
