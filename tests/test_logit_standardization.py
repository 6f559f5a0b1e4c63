"""Logit standardisation (Sun et al., CVPR 2024) as an option of the logit-based losses: with it, the
soft terms no longer depend on the teacher logits' offset and scale (Eq. 8 z-scores each vector)."""
import pytest
import torch

from kdsuite.methods.registry import get_method, list_methods
from kdsuite.testing import make

SOFT = ("kd", "dkd", "dist", "aver", "aekd")


def test_every_teacher_logit_method_offers_the_option():
    with_option = {c.name for c in list_methods() if "standardize" in c.hparams}
    assert {"kd", "dkd", "dist", "aver", "aekd", "ca_mkd", "gan_kd", "gan_kd_feat", "fitnet"} <= with_option


@pytest.mark.parametrize("name", SOFT)
def test_standardized_soft_terms_ignore_teacher_offset_and_scale(name):
    teachers = ("cifar_resnet20", "cifar_wrn_16_1") if get_method(name).num_teachers != 1 else ("cifar_resnet20",)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])

    def soft(standardize, a, b):
        torch.manual_seed(0)
        m = make(name, teachers=teachers, standardize=standardize).eval()
        m.progress.epoch, m.progress.epoch_float = 1000, 1000.0  # past any warm-up (DKD)
        real = m.teacher_forward

        def shifted(inp, index=0):
            t, f = real(inp, index)
            return a * t + b, f

        m.teacher_forward = shifted
        out = m.forward_train(x, y)
        return sum(v.item() for k, v in out.items() if k != "ce")

    assert soft(True, 3.0, 5.0) == pytest.approx(soft(True, 1.0, 0.0), rel=1e-4)
    assert soft(False, 3.0, 5.0) != pytest.approx(soft(False, 1.0, 0.0), rel=1e-2)
