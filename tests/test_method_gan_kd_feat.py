import math

import torch

from kdsuite.testing import make
from tests.test_method_gan_kd import _Trainer


def test_feature_discriminator_losses_and_who_steps():
    torch.manual_seed(0)
    m = make("gan_kd_feat")
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        _, tf = m.teacher_forward(x)
        s, sf = m.student_forward(x)
        fs = m.connector(sf["pool"])
        d_t, d_s = m.discriminator(tf["pool"]).squeeze(1), m.discriminator(fs).squeeze(1)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    want_real = -sum(math.log(sig(float(v))) for v in d_t) / 4
    want_fake = -sum(math.log(1 - sig(float(v))) for v in d_s) / 4
    student_before = [p.clone() for p in m.student.parameters()]
    disc_before = [p.clone() for p in m.discriminator.parameters()]
    conn_before = [p.clone() for p in m.connector.parameters()]
    tr = _Trainer(m)
    out = m.train_step((x, y), tr)
    assert tr.calls == ["discriminator", "student"]
    assert abs(out["d_real"].item() - want_real) < 1e-5 and abs(out["d_fake"].item() - want_fake) < 1e-5
    assert any(not torch.equal(a, b) for a, b in zip(disc_before, m.discriminator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(student_before, m.student.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(conn_before, m.connector.parameters()))
    groups = m.optim_groups()
    d_ids = {id(p) for p in groups["discriminator"].params}
    assert not d_ids & {id(p) for p in list(m.student.parameters()) + list(m.connector.parameters())}
    assert d_ids == {id(p) for p in m.discriminator.parameters()}
