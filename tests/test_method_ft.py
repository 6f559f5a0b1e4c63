"""FT: RepDistiller's factor loss and the authors' variant on fixed tensors, RepDistiller's recipe
(paraphraser stage at lr 0.01 for resnet/wrn students, constant), the stage behaviour, and the scale of
200·L_FT relative to CE on a real CIFAR-100 pair, each against values computed here."""
import copy

import numpy as np
import pytest
import torch

from kdsuite.experiments.data import TensorLoader
from kdsuite.methods.plugins.ft import factor_transfer_loss
from kdsuite.engine.trainer import Trainer, TrainSettings
from kdsuite.testing import make, stage_step
from tests.stage_parity import Recorder, ce64, fixed_batch, real_pair, resnet_features64, stage_optimizers


def _pool(a, h, w):
    """Average pooling of (C, H, W) to (C, h, w) by equal blocks."""
    kh, kw = a.shape[1] // h, a.shape[2] // w
    out = np.zeros((a.shape[0], h, w))
    for c in range(a.shape[0]):
        for i in range(h):
            for j in range(w):
                out[c, i, j] = a[c, i * kh:(i + 1) * kh, j * kw:(j + 1) * kw].mean()
    return out


def _ft_repdistiller(fs, ft, p=1):
    """RepDistiller distiller_zoo/FT.py (p1 = 2, p2 = p): the larger factor pooled to the smaller size;
    per sample q = vec(mean over channels of F²) / its L2 norm; mean over batch and positions of |Δ|^p."""
    fs, ft = np.asarray(fs, dtype=np.float64), np.asarray(ft, dtype=np.float64)
    h, w = min(fs.shape[2], ft.shape[2]), min(fs.shape[3], ft.shape[3])
    total, count = 0.0, 0
    for a, b in zip(fs, ft):
        qs, qt = [], []
        for f, q in ((_pool(a, h, w), qs), (_pool(b, h, w), qt)):
            for i in range(h):
                for j in range(w):
                    q.append(sum(f[c, i, j] ** 2 for c in range(f.shape[0])) / f.shape[0])
        ns, nt = np.sqrt(sum(v * v for v in qs)), np.sqrt(sum(v * v for v in qt))
        for u, v in zip(qs, qt):
            total += abs(u / ns - v / nt) ** p
            count += 1
    return total / count


def _ft_authors(fs, ft):
    """Kim et al. 2018, Eq. (3) with p = 1, as the authors' code (utils.FT + nn.L1Loss): vectorised factors
    divided by their L2 norms, mean absolute difference over the batch and the elements."""
    out = []
    for a, b in zip(fs.astype(np.float64), ft.astype(np.float64)):
        a, b = a.flatten(), b.flatten()
        a, b = a / np.sqrt((a * a).sum()), b / np.sqrt((b * b).sum())
        out.append(sum(abs(u - v) for u, v in zip(b, a)) / len(a))
    return sum(out) / len(out)


def test_ft_repdistiller_factor_loss_on_fixed_tensors():
    g = torch.Generator().manual_seed(0)
    fs = torch.randn(3, 5, 4, 4, generator=g, dtype=torch.float64)
    ft = torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64)  # smaller: the student factor is pooled
    for p in (1, 2):
        assert factor_transfer_loss(fs, ft, p).item() == pytest.approx(_ft_repdistiller(fs, ft, p), rel=1e-12)
        assert factor_transfer_loss(ft, fs, p).item() == pytest.approx(_ft_repdistiller(ft, fs, p), rel=1e-12)


def test_ft_default_is_repdistillers_loss_and_the_authors_variant_the_papers():
    torch.manual_seed(0)
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    for variant, reference in (("repdistiller", _ft_repdistiller), ("authors", _ft_authors)):
        m = make("ft") if variant == "repdistiller" else make("ft", variant="authors")
        assert m.hp.variant == variant and m.hp.beta == 200.0
        out = m.forward_train(x, y)
        _, sf = m.student_forward(x)
        _, tf = m.teacher_forward(x)
        f_t = m.paraphraser.encoder(tf["feat3"]).detach()
        f_s = m.translator(sf["feat3"]).detach()
        assert f_t.shape[1] == 32 and f_s.shape == f_t.shape  # rate 0.5 of the teacher's 64 channels
        want = 200.0 * reference(f_s.numpy(), f_t.numpy())
        assert out["ft"].item() == pytest.approx(want, rel=1e-4), variant


def test_ft_recipe_is_repdistillers():
    """RepDistiller: 30 epochs pre-training the paraphraser alone (MSE reconstruction) with its own SGD at
    a constant lr — 0.01 for resnet/wrn students, the run's lr otherwise (helper/pretrain.py) — then the
    main stage on CE + 200·FT stepping the student and the translator (not the paraphraser)."""
    torch.manual_seed(0)
    for student, lr in (("cifar_resnet8", 0.01), ("cifar_wrn_16_1", 0.01), ("cifar_mobilenetv2", 0.03)):
        m = make("ft", student=student)
        assert m.hp.paraphraser_epochs == 30
        assert [(s.name, s.epochs, list(s.optimizers), s.evaluate) for s in m.stages()] == \
            [("paraphraser", 30, ["paraphraser"], False), ("main", m.ctx.epochs, ["student"], True)]
        optim = {"name": "sgd", "lr": 0.03, "momentum": 0.9, "weight_decay": 5e-4}
        pre = stage_optimizers(m, 0, optim=optim)
        assert set(pre) == {"paraphraser"}
        assert pre["paraphraser"]["params"] == {id(p) for p in m.paraphraser.parameters()}
        assert (pre["paraphraser"]["lr"], pre["paraphraser"]["lr_later"]) == (lr, lr), student
        assert (pre["paraphraser"]["momentum"], pre["paraphraser"]["weight_decay"]) == (0.9, 5e-4)
        main = stage_optimizers(m, 1, optim=optim)
        assert set(main) == {"student"} and main["student"]["lr"] == 0.03
        assert main["student"]["params"] == {id(p) for p in list(m.student.parameters()) + list(m.translator.parameters())}


def test_ft_scale_on_resnet32x4_to_resnet8x4_matches_repdistiller():
    """One seeded batch through a fresh CIFAR-100 resnet32x4 → resnet8x4 (its paraphraser and translator at
    their initial weights): 200·L_FT and CE equal RepDistiller's formulas computed here in float64 on the
    same models (features taken by walking the modules, not through the plugin's taps)."""
    m = real_pair("ft")
    x, y = fixed_batch()
    m.train()
    s_logits, s_post, _ = resnet_features64(m.student, x)
    _, t_post, _ = resnet_features64(m.teacher, x)
    with torch.no_grad():
        f_t = copy.deepcopy(m.paraphraser.encoder).double()(torch.from_numpy(t_post[-1])).numpy()
        f_s = copy.deepcopy(m.translator).double()(torch.from_numpy(s_post[-1])).numpy()  # train mode: batch stats
    want_ft, want_ce = 200.0 * _ft_repdistiller(f_s, f_t), ce64(s_logits, y.numpy())
    want_authors = 200.0 * _ft_authors(f_s, f_t)

    rec = Recorder()
    m.progress.stage = "main"
    stage_step(m, (x, y), rec)
    ((group, out),) = rec.calls
    assert group == "student" and set(out) == {"ce", "ft"}
    print(f"ft resnet32x4→resnet8x4 at init: 200·FT {out['ft']:.6g}, CE {out['ce']:.6g}, FT/CE "
          f"{out['ft'] / out['ce']:.6g} (reference {want_ft / want_ce:.6g}; the authors' form would give "
          f"{want_authors / want_ce:.6g})")
    assert out["ft"] == pytest.approx(want_ft, rel=1e-4)
    assert out["ce"] == pytest.approx(want_ce, rel=1e-5)
    assert out["ft"] / out["ce"] == pytest.approx(want_ft / want_ce, rel=1e-4)


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
    assert abs(stage_step(m, (x, torch.zeros(2, dtype=torch.long)), _T())["rec"].item() - want) < 1e-6
