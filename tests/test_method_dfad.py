import torch

from kdsuite.testing import make, run_data_free


def test_discrepancy_is_the_mean_absolute_logit_difference():
    from kdsuite.methods.plugins.dfad import discrepancy

    t, s = torch.tensor([[1.0, -2.0, 0.5]]), torch.tensor([[0.0, 1.0, 0.5]])
    assert abs(discrepancy(t, s).item() - (1.0 + 3.0 + 0.0) / 3) < 1e-6


def test_generator_step_never_moves_the_student_and_student_steps_never_move_the_generator():
    torch.manual_seed(0)
    m = make("dfad", batch=8, student_steps=2, nz=16)

    class Recorder:
        def __init__(self):
            self.calls = []

        def optimize(self, group, losses):
            params = list(m.generator.parameters()) if group == "generator" else list(m.student.parameters())
            others = list(m.student.parameters()) if group == "generator" else list(m.generator.parameters())
            for p in params + others:
                p.grad = None
            sum(losses.values()).backward()
            self.calls.append((group, all(p.grad is not None for p in params if p.requires_grad),
                               all(p.grad is None for p in others)))

    rec = Recorder()
    out = m.train_step(None, rec)
    assert [c[0] for c in rec.calls] == ["generator", "student", "student"]
    assert all(c[1] for c in rec.calls)
    # the generator's loss reaches the student too (it is computed through it) but only the generator
    # group steps; the student's losses never reach the generator (images are made without a graph)
    assert [c[2] for c in rec.calls] == [False, True, True]
    assert out["adv"].item() == -out["adv"].abs().item()


def test_dfad_student_learns_without_the_training_data(tmp_path, digits_teachers, monkeypatch):
    rec = run_data_free("dfad", {"batch": 64, "student_steps": 5}, digits_teachers[0], tmp_path, monkeypatch, epochs=8, steps=15)
    # twice chance (10 %): measured 2026-12-04 over 2 digits teachers × seeds 0-2 on one host, 54.7-91.9 %
    # (teachers 95-96 %), 74 % on another; DeepInversion's same-seed result fell 60 → 33.6 % across hosts
    assert rec["metrics"]["last_top1"] > 20.0
