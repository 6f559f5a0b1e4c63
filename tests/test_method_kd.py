"""KD against RepDistiller's DistillKL and train_student.py weights (-r 0.1 -a 0.9, kd_T 4), float64 loops."""
import math

import pytest
import torch

from kdsuite.testing import make


def _log_softmax(v):
    m = max(v)
    lse = m + math.log(sum(math.exp(a - m) for a in v))
    return [a - lse for a in v]


def test_kd_default_is_repdistillers_recipe():
    """L = 0.1·CE + 0.9·T²·(1/B)·Σ_i Σ_c p_t log(p_t/p_s) at T = 4 (sum over classes, batch mean)."""
    torch.manual_seed(0)
    m = make("kd")
    assert (m.hp.T, m.hp.alpha, m.hp.standardize) == (4.0, 0.1, False)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 3, 5, 9])
    out = m.forward_train(x, y)
    s = m.student(x).detach().double().tolist()  # BN in train mode: the same batch gives the same logits
    t = m.teacher(x).double().tolist()
    T, kl, ce = 4.0, 0.0, 0.0
    for i in range(4):
        ls, lt = _log_softmax([v / T for v in s[i]]), _log_softmax([v / T for v in t[i]])
        kl += sum(math.exp(b) * (b - a) for a, b in zip(ls, lt))
        ce -= _log_softmax(s[i])[int(y[i])]
    assert out["kd"].item() == pytest.approx(0.9 * T * T * kl / 4, rel=1e-5)
    assert out["ce"].item() == pytest.approx(0.1 * ce / 4, rel=1e-5)


def test_kd_imagenet_setting_of_mdistiller():
    """configs/imagenet/r34_r18/kd.yaml: T 1, CE 0.5, KD 0.5 (the imagenet_r34_r18 grid's override)."""
    torch.manual_seed(1)
    m = make("kd", T=1.0, alpha=0.5)
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([1, 2, 3])
    out = m.forward_train(x, y)
    s, t = m.student(x).detach().double().tolist(), m.teacher(x).double().tolist()
    kl = sum(sum(math.exp(b) * (b - a) for a, b in zip(_log_softmax(s[i]), _log_softmax(t[i]))) for i in range(3))
    assert out["kd"].item() == pytest.approx(0.5 * kl / 3, rel=1e-5)


def test_separate_ce_and_kd_weights_as_logit_standardisation_sets_them():
    """Sun et al. 2024 (mdistiller's CE_WEIGHT 0.1, KD_WEIGHT 9 with standardised logits): each weight set on its
    own; the one left unset follows α."""
    torch.manual_seed(2)
    m = make("kd", ce_weight=0.1, kd_weight=9.0, standardize=True, T=2.0)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    out = m.forward_train(x, y)
    s, t = m.student(x).detach().double().tolist(), m.teacher(x).double().tolist()

    def z(v):
        mu = sum(v) / len(v)
        sd = math.sqrt(sum((a - mu) ** 2 for a in v) / (len(v) - 1))  # unbiased, as torch.std
        return [(a - mu) / (sd + 1e-7) for a in v]
    T, kl, ce = 2.0, 0.0, 0.0
    for i in range(4):
        ls, lt = _log_softmax([v / T for v in z(s[i])]), _log_softmax([v / T for v in z(t[i])])
        kl += sum(math.exp(b) * (b - a) for a, b in zip(ls, lt))
        ce -= _log_softmax(s[i])[int(y[i])]
    assert out["kd"].item() == pytest.approx(9.0 * T * T * kl / 4, rel=1e-5)
    assert out["ce"].item() == pytest.approx(0.1 * ce / 4, rel=1e-5)
    torch.manual_seed(3)
    only_kd = make("kd", kd_weight=9.0).forward_train(x, y)  # CE keeps α = 0.1
    torch.manual_seed(3)
    base = make("kd").forward_train(x, y)  # the same models
    assert only_kd["kd"].item() == pytest.approx(base["kd"].item() / 0.9 * 9.0, rel=1e-5)
    assert only_kd["ce"].item() == pytest.approx(base["ce"].item(), rel=1e-6)
    assert "ce" not in make("kd", ce_weight=0.0).forward_train(x, y)


def test_the_new_weights_at_their_defaults_leave_kd_hashes_as_they_were():
    from kdsuite.core.errors import ConfigError
    from kdsuite.experiments.config import config_hash, validate

    base = {"method": "kd", "teachers": [{"checkpoint": "t", "sha256": "0" * 64, "arch": "cifar_resnet20"}]}
    cfg = validate(base)
    assert cfg["method"]["hparams"]["ce_weight"] is None  # recorded as unset
    ident_without = dict(cfg)
    ident_without["method"] = dict(cfg["method"], hparams={k: v for k, v in cfg["method"]["hparams"].items()
                                                           if k not in ("ce_weight", "kd_weight")})
    assert config_hash(cfg) == config_hash(ident_without)  # the hash of a config written before they existed
    set_ = validate({**base, "method": {"name": "kd", "hparams": {"kd_weight": 9}}})
    assert config_hash(set_) != config_hash(cfg)
    with pytest.raises(ConfigError, match=r"method.hparams.kd_weight = -1.0 is out of range; expected a number >= 0"):
        validate({**base, "method": {"name": "kd", "hparams": {"kd_weight": -1}}})
