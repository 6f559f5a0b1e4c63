"""``ofa`` (Hao et al., NeurIPS 2023): the OFA loss against an independent float64 formula, the modulating
exponent's effect, the projectors' structure per family (depth-wise conv blocks for CNN stages, token blocks
for ViT stages) and a CNN → ViT build whose gradients reach the student through every projector."""
import math

import pytest
import torch

from kdsuite import testing, zoo
from kdsuite.methods.base import BuildContext
from kdsuite.methods.hparams import resolve_hparams
from kdsuite.methods.registry import get_method
from kdsuite.methods.plugins.ofa import SepConv, TokenProjector, ofa_loss


def reference(zs, zt, y, eps, T):
    """Eq. (7) element by element, in float64, with Python's math."""
    total = 0.0
    for b in range(len(y)):
        ps = [math.exp(v / T) for v in zs[b]]
        pt = [math.exp(v / T) for v in zt[b]]
        ss, st = sum(ps), sum(pt)
        for c in range(len(ps)):
            hot = 1.0 if c == y[b] else 0.0
            total -= ((pt[c] / st + hot) ** eps - hot) * math.log(ps[c] / ss)
    return total / len(y)


@pytest.mark.parametrize("eps,T", [(1.0, 1.0), (1.5, 1.0), (0.7, 2.0)])
def test_ofa_loss_is_eq7(eps, T):
    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(5, 7, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, 6, 2, 2])
    got = ofa_loss(zs, zt, y, eps, T)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(reference(zs.tolist(), zt.tolist(), y.tolist(), eps, T), rel=1e-12)


def test_eps_one_is_the_soft_cross_entropy_and_larger_eps_enhances_the_target():
    # ε = 1: (p_t + 1_y) − 1_y = p_t, so the loss is exactly H(p_t, p_s); ε > 1 weighs the true class more
    g = torch.Generator().manual_seed(1)
    zs, zt = torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([1, 0, 4, 2])
    h = -(torch.softmax(zt, 1) * torch.log_softmax(zs, 1)).sum(1).mean()
    assert ofa_loss(zs, zt, y, 1.0).item() == pytest.approx(h.item(), rel=1e-12)
    w_target = lambda e: ((torch.softmax(zt, 1)[torch.arange(4), y] + 1) ** e - 1)  # noqa: E731
    assert (w_target(1.5) > w_target(1.0)).all()


def make(student, teacher, **hp):
    cls = get_method("ofa")
    ctx = BuildContext(num_classes=10, input_shape=(3, 16, 16), epochs=1, steps_per_epoch=2, batch_size=4)
    return cls(student, [teacher.eval().requires_grad_(False)], resolve_hparams("ofa", cls.hparams, hp), ctx)


def tiny_vit(depth=4):
    return zoo.create_model("vit_tiny_patch16_224", num_classes=10, img_size=16, patch_size=4, depth=depth,
                            embed_dim=32, num_heads=2)


def test_cnn_student_gets_depthwise_conv_projectors_down_to_its_last_stage():
    m = make(zoo.create_model("cifar_resnet8", num_classes=10), tiny_vit())
    # CIFAR ResNet-8: stages 16×16, 8×8, 4×4 (3 stages, all projected): 2, 1 SepConv blocks, then a 1×1 conv
    assert m.stage_taps == ["feat1", "feat2", "feat3"]
    n_sep = [sum(isinstance(x, SepConv) for x in m.projectors[t]) for t in m.stage_taps]
    assert n_sep == [2, 1, 0]
    assert isinstance(m.projectors["feat3"][0], torch.nn.Conv2d) and m.projectors["feat3"][0].kernel_size == (1, 1)
    width = max(64, 32)  # max(student pre-logits, teacher pre-logits)
    assert all(m.projectors[t][-1].in_features == width for t in m.stage_taps)


def test_vit_student_gets_token_projectors_and_every_one_reaches_the_student():
    torch.manual_seed(0)
    s = tiny_vit(depth=8)
    m = make(s, zoo.create_model("cifar_resnet8", num_classes=10))
    # 8 blocks at depths k/8: those nearest the authors' 2/12, 4/12, 10/12, 12/12 are blocks 1, 3, 7, 8
    assert m.stage_taps == ["feat0", "feat2", "feat6", "feat7"]
    assert all(isinstance(p, TokenProjector) for p in m.projectors.values())
    assert [len(m.projectors[t].blocks) for t in m.stage_taps] == [3, 2, 1, 1]  # max(n − k, 1)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    out = m.forward_train(x, y)
    assert set(out) == {"ce", "kd", "ofa"} and all(torch.isfinite(v) for v in out.values())
    out["ofa"].backward()
    assert s.blocks[0].attn.qkv.weight.grad.abs().sum() > 0  # the ofa term alone reaches the student
    assert all(p.grad is not None for p in m.projectors.parameters())


def test_ofa_meets_the_contract(digits_teachers, tmp_path):
    testing.check_gradients("ofa", digits_teachers, tmp_path / "g")
    print(testing.check_learning("ofa", digits_teachers, tmp_path / "l"))
