"""``dfad``: data-free adversarial distillation.

Paper: Fang, Song, Zhang, Shen, Song & Wang, "Data-Free Adversarial Distillation", arXiv 1912.11006
(2019), Eq. (3)–(6). A generator G(z) plays a min-max game with the student through the frozen teacher:
the student imitates the teacher on generated images, the generator looks for images where they
disagree most. With the mean absolute error of the logits as the discrepancy (Eq. 4),

    D(x) = (1/K)·‖t(x) − s(x)‖₁,   student:  min_S E_z D(G(z)),   generator:  max_G E_z D(G(z)),

one step of this method is one generator update (loss −D, through the teacher and the student) followed
by ``student_steps`` student updates (loss D, on fresh z, images detached) — 5 as in the authors' code,
which also uses Adam (lr 1e-3) for the generator. The generator is DAFL's (``kdsuite.methods.components.generators.Generator``).
The student never sees a real training image: the trainer gives this method no training loader.
"""
from __future__ import annotations

import torch

from kdsuite.methods.base import Distiller, OptimGroup
from kdsuite.methods.components.generators import Generator
from kdsuite.methods.hparams import HParam
from kdsuite.methods.registry import register_method


def discrepancy(t_logits: torch.Tensor, s_logits: torch.Tensor) -> torch.Tensor:
    """Eq. (4): mean over batch and classes of |t − s|."""
    return (t_logits - s_logits).abs().mean()


@register_method
class DFAD(Distiller):
    name = "dfad"
    display_name = "DFAD"
    category = "data_free"
    scheme = "data_free"
    paper = "Fang et al. 2019, Data-Free Adversarial Distillation (arXiv 1912.11006)"
    equation = "S: min mean|t(G(z)) − s(G(z))|; G: max the same (alternating, student_steps per G step)"
    needs_train_data = False
    hparams = {"nz": HParam(256, low=1, doc="latent size"),
               "batch": HParam(256, low=2, doc="generated images per update"),
               "student_steps": HParam(5, low=1, doc="student updates per generator update"),
               "lr_generator": HParam(1e-3, low=0.0, low_open=True)}
    smoke_hparams = {"batch": 64, "student_steps": 2}
    distill_terms = ("l1",)
    adversary_groups = ("generator",)  # it maximises l1

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.generator = Generator(hp.nz, ctx.input_shape[0], ctx.input_shape[-1])
        self.synthetic_batch_size = hp.batch * hp.student_steps

    def optim_groups(self):
        return {"student": OptimGroup(list(self.student.parameters())),
                "generator": OptimGroup(list(self.generator.parameters()),
                                        defaults={"name": "adam", "lr": self.hp.lr_generator, "weight_decay": 0.0})}

    def _z(self):
        return torch.randn(self.hp.batch, self.hp.nz, device=next(self.generator.parameters()).device)

    def train_step(self, batch, trainer):
        images = self.generator(self._z())
        t = self.teacher(images)  # gradients flow through the frozen teacher into the generator
        g_loss = -discrepancy(t, self.student(images))
        trainer.optimize("generator", {"adv": g_loss})
        total = 0.0
        for _ in range(self.hp.student_steps):
            with torch.no_grad():
                images = self.generator(self._z())
                t = self.teacher(images)
            d = discrepancy(t, self.student(images))
            trainer.optimize("student", {"l1": d})
            total = total + d.detach()
        return {"l1": total / self.hp.student_steps, "adv": g_loss.detach()}
