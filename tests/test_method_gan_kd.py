import torch
import torch.nn.functional as F

from kdsuite.testing import make


class _Trainer:
    def __init__(self, m):
        self.groups = m.optim_groups()
        self.opts = {k: torch.optim.SGD(g.params, lr=0.1) for k, g in self.groups.items()}
        self.calls = []

    def optimize(self, name, losses):
        self.calls.append(name)
        self.opts[name].zero_grad()
        sum(losses.values()).backward()
        self.opts[name].step()


def test_discriminator_losses_and_alternation():
    torch.manual_seed(0)
    m = make("gan_kd")
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        s, t = m.student(x), m.teachers[0](x)
        d_t = m.discriminator(torch.cat([F.softmax(t, 1), F.one_hot(y, 10).float()], 1)).squeeze(1)
        d_s = m.discriminator(torch.cat([F.softmax(s, 1), F.one_hot(y, 10).float()], 1)).squeeze(1)
    sig = torch.sigmoid
    want_real = -torch.log(sig(d_t)).mean()
    want_fake = -torch.log(1 - sig(d_s)).mean()
    student_before = [p.clone() for p in m.student.parameters()]
    disc_before = [p.clone() for p in m.discriminator.parameters()]
    tr = _Trainer(m)
    out = m.train_step((x, y), tr)
    assert tr.calls == ["discriminator", "student"]
    assert abs(out["d_real"].item() - want_real.item()) < 1e-5 and abs(out["d_fake"].item() - want_fake.item()) < 1e-5
    assert any(not torch.equal(a, b) for a, b in zip(disc_before, m.discriminator.parameters()))


def test_discriminator_step_alone_leaves_the_student_unchanged():
    torch.manual_seed(0)
    m = make("gan_kd")
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    tr = _Trainer(m)
    before = [p.clone() for p in m.student.parameters()]
    s = m.student(x)
    real = m.disc(m.teachers[0](x), y)
    fake = m.disc(s, y)  # not even detached: the discriminator's optimizer must still not touch the student
    tr.optimize("discriminator", {"d": F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                                       + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))})
    assert all(torch.equal(a, b) for a, b in zip(before, m.student.parameters()))
