"""supervision_transfer (Gupta et al. 2016, Eq. 1 with f = L2, Caffe's Euclidean loss) in float64: the student's
last-stage features on its view regress the teacher's on the paired view; then the student is fine-tuned on labels."""
import pytest
import torch

from kdsuite.testing import make
from kdsuite.zoo import taps as ztaps


def _feat(model, x, name="feat-1"):
    _, feats = ztaps.extract(model, x, ztaps.resolve(model, (name,)))
    return next(iter(feats.values()))


def test_transfer_loss_is_half_the_squared_l2_distance_batch_mean():
    torch.manual_seed(0)
    m = make("supervision_transfer", beta=2.0)
    assert isinstance(m.connector, torch.nn.Identity)  # resnet20 and resnet8 end in the same 64×4×4 map
    xs, xt = torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16)
    m.batch_extras = {"teacher_x": xt}
    out = m.transfer_losses(xs)
    a = _feat(m.student, xs).detach().double()
    with torch.no_grad():
        b = _feat(m.teacher, xt).double()
    want = 0.0
    for i in range(3):  # β · (1/2N) Σ_i Σ_k (a_ik − b_ik)²
        want += sum((p - q) ** 2 for p, q in zip(a[i].flatten().tolist(), b[i].flatten().tolist()))
    want = 2.0 * want / (2 * 3)
    assert out["transfer"].item() == pytest.approx(want, rel=1e-5)
    # the teacher's features are those of its own view, not the student's images
    with torch.no_grad():
        b_wrong = _feat(m.teacher, xs).double()
    assert not torch.allclose(b, b_wrong)


def test_a_connector_maps_other_shapes_and_is_trained_in_the_transfer_stage():
    torch.manual_seed(1)
    m = make("supervision_transfer", teachers=("cifar_wrn_16_2",))  # 128 channels at the last stage vs 64
    assert not isinstance(m.connector, torch.nn.Identity)
    xs, xt = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    m.batch_extras = {"teacher_x": xt}
    out = m.transfer_losses(xs)
    a = m.connector(_feat(m.student, xs)).detach().double()
    with torch.no_grad():
        b = _feat(m.teacher, xt).double()
    assert a.shape == b.shape == (4, 128, 4, 4)
    want = 0.5 * sum(((a[i] - b[i]) ** 2).sum().item() for i in range(4)) / 4
    assert out["transfer"].item() == pytest.approx(want, rel=1e-5)
    groups = m.optim_groups()
    transfer_ids = {id(p) for p in groups["transfer"].params}
    assert all(id(p) in transfer_ids for p in m.connector.parameters())
    assert all(id(p) not in transfer_ids for p in m.student.get_classifier().parameters())  # no labels, no head
    assert [s.name for s in m.stages()] == ["transfer", "main"] and m.stages()[0].optimizers == ["transfer"]


def test_main_stage_fine_tunes_on_labels_only():
    torch.manual_seed(2)
    m = make("supervision_transfer", transfer_epochs=0)
    assert [s.name for s in m.stages()] == ["main"] and set(m.optim_groups()) == {"student"}
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    out = m.forward_train(x, y)
    logits = m.student(x).detach().double()
    want = -sum(torch.log_softmax(logits[i], 0)[int(y[i])].item() for i in range(4)) / 4
    assert set(out) == {"ce"} and out["ce"].item() == pytest.approx(want, rel=1e-6)
