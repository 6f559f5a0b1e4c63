import torch

from kdsuite.testing import make


def test_at_loss_matches_formula():
    torch.manual_seed(0)
    m = make("at")
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([1, 2])
    out = m.forward_train(x, y)
    _, sf = m.student_forward(x)
    _, tf = m.teacher_forward(x)
    total = 0.0
    for k in ("feat1", "feat2", "feat3"):
        a, b = sf[k].detach().double(), tf[k].double()
        diff_sq = []
        for i in range(2):
            qa = (a[i] ** 2).mean(0).flatten()
            qb = (b[i] ** 2).mean(0).flatten()
            qa, qb = qa / qa.norm(), qb / qb.norm()
            diff_sq.append(((qa - qb) ** 2).tolist())
        flat = [v for row in diff_sq for v in row]
        total += sum(flat) / len(flat)
    assert abs(out["at"].item() - 1000.0 * total) < 1e-3 * max(1.0, out["at"].item())


def test_at_pairs_models_with_different_stage_counts_by_relative_depth():
    # VGG-8 has 4 stages, ResNet-8 3: each student stage meets the teacher stage nearest in relative depth
    # (1/3 → 1/4, 2/3 → 3/4, 1 → 1), recorded with its rule (issue 28: pairing by meaning, not by index)
    m = make("at", teachers=("cifar_vgg8",))
    assert [(p["student"], p["teacher"]) for p in m.stage_pairs] == [("feat1", "feat1"), ("feat2", "feat3"),
                                                                      ("feat3", "feat4")]
    assert all("relative depth" in p["rule"] for p in m.stage_pairs)
    assert m.feature_plan()["pairs"] == m.stage_pairs
