import numpy as np
import torch

from kdsuite.experiments.data import TensorLoader
from kdsuite.engine.trainer import Trainer, TrainSettings
from kdsuite.testing import make


def _ft_reference(fs, ft):
    """Kim et al. 2018, Eq. (3) with p = 1: ‖F_T/‖F_T‖₂ − F_S/‖F_S‖₂‖₁ of the vectorised factors, divided
    by the factor size D (mean absolute difference), averaged over the batch."""
    out = []
    for a, b in zip(fs.astype(np.float64), ft.astype(np.float64)):
        a, b = a.flatten(), b.flatten()
        a, b = a / np.sqrt((a * a).sum()), b / np.sqrt((b * b).sum())
        out.append(sum(abs(u - v) for u, v in zip(b, a)) / len(a))
    return sum(out) / len(out)


def test_ft_loss_matches_the_paper():
    torch.manual_seed(0)
    m = make("ft")
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    out = m.forward_train(x, y)
    _, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    f_t = m.paraphraser.encoder(tf["feat3"]).detach()
    f_s = m.translator(sf["feat3"]).detach()
    assert f_t.shape[1] == 32 and f_s.shape == f_t.shape  # rate 0.5 of the teacher's 64 channels
    want = 200.0 * _ft_reference(f_s.numpy(), f_t.numpy())
    assert abs(out["ft"].item() - want) < 1e-4 * want


def test_paraphraser_stage_trains_only_the_paraphraser_then_it_is_frozen():
    torch.manual_seed(0)
    m = make("ft", paraphraser_epochs=1)
    loader = TensorLoader(torch.randn(16, 3, 16, 16), torch.arange(16) % 10, batch_size=8, shuffle=True)
    tr = Trainer(m, loader, None, TrainSettings(epochs=2))
    assert [s.name for s in m.stages()] == ["paraphraser", "main"]
    batch = next(iter(loader))

    tr.enter_stage(0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    out = tr.step(batch)
    assert set(out) == {"rec"}
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("paraphraser.") for k in changed)  # student BN statistics untouched too

    tr.enter_stage(1)
    m.paraphraser.zero_grad(set_to_none=True)  # left from its own stage
    before = {k: v.clone() for k, v in m.state_dict().items()}
    out = tr.step(batch)
    assert set(out) == {"ce", "ft"}
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert not any(k.startswith("paraphraser.") for k in changed)
    assert any(k.startswith("translator.") for k in changed) and any(k.startswith("student.") for k in changed)
    assert all(p.grad is None for p in m.paraphraser.parameters())  # no gradient reaches it in the main stage


def test_reconstruction_loss_is_the_mse_of_the_autoencoder():
    torch.manual_seed(0)
    m = make("ft", paraphraser_epochs=1)
    m.progress.stage = "paraphraser"
    x = torch.randn(2, 3, 16, 16)

    class _T:
        def optimize(self, name, losses):
            assert name == "paraphraser"

    t = m.teacher_forward(x)[1]["feat3"]
    want = ((m.paraphraser.decoder(m.paraphraser.encoder(t)) - t) ** 2).mean().item()
    assert abs(m.train_step((x, torch.zeros(2, dtype=torch.long)), _T())["rec"].item() - want) < 1e-6
