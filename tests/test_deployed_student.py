"""The deployed student (``Distiller.deployed_student``): a method that predicts through more than the
student network — here, as SimKD does, the student's pooled feature through a projector into the teacher's
own classifier — is evaluated, counted and exported as that whole model, and the record names the part it
borrows from the teacher."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from kdsuite import testing
from kdsuite.core.errors import ConfigError
from kdsuite.engine.trainer import evaluate
from kdsuite.experiments.run import build, prepare, run
from kdsuite.methods import Distiller, register_method  # noqa: F401 (the public API a plugin uses)
from kdsuite.methods.deployment import export_module, inference_parts
from kdsuite.zoo import taps as ztaps
from kdsuite.zoo.teachers import load_teacher


class ProjectedHead(nn.Module):
    """Student features → projector → the teacher's classifier (borrowed, frozen)."""

    def __init__(self, student, taps, projector, head):
        super().__init__()
        self.student, self.projector, self.head = student, projector, head
        self.taps = taps

    def forward(self, x):
        _, f = ztaps.extract(self.student, x, self.taps)
        return self.head(self.projector(f["pool"].flatten(1)))


class BorrowedHead(Distiller):
    name = "test_borrowed_head"
    category = "feature"
    scheme = "offline"
    paper = "a test plugin after Chen et al. 2022 (SimKD)"
    equation = "‖P(f_s) − f_t‖²; predicts with the teacher's classifier on P(f_s)"
    student_taps = ("pool",)
    teacher_taps = ("pool",)

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        s, t = self.student_shapes(), self.teacher_shapes()
        self.projector = nn.Linear(s["pool"][0], t["pool"][0])

    def forward_train(self, x, y):
        _, sf = self.student_forward(x)
        _, tf = self.teacher_forward(x)
        return {"sim": F.mse_loss(self.projector(sf["pool"].flatten(1)), tf["pool"].flatten(1))}

    def deployed_student(self):
        return ProjectedHead(self.student, self.s_taps, self.projector, self.teacher.get_classifier())


def _cfg(teacher, root, **kw):
    return {"student": "cifar_resnet8", "method": "test_borrowed_head", "teachers": [teacher], "epochs": 3,
            "max_steps_per_epoch": 20, "progress": "none", "dataset": {"name": "digits", "batch_size": 32},
            "output": {"root": str(root)}, **kw}


def test_default_deployed_student_is_the_student_and_eval_uses_it():
    m = testing.make("kd")
    assert m.deployed_student() is m.student and m.eval_models()["student"] is m.student
    assert inference_parts(m) == {"student": {"source": "student",
                                              "params": sum(p.numel() for p in m.student.parameters())}}
    assert export_module(m) == (m.student, False)


def test_peers_and_exits_report_the_deployed_student_as_student():
    for name in ("dml", "byot", "one"):
        m = testing.make(name)
        assert m.eval_models()["student"] is m.deployed_student(), name


def test_a_borrowed_head_is_counted_exported_evaluated_and_named(digits_teachers, tmp_path):
    with testing.registered(BorrowedHead):
        rec = run(_cfg(digits_teachers[0], tmp_path, export_teacher=True))
        cfg, h, rd = prepare(_cfg(digits_teachers[0], tmp_path / "again"))
        parts = build(cfg, h, rd)
    assert rec["status"] == "finished"
    m = parts.method
    n_student = sum(p.numel() for p in m.student.parameters())
    n_proj = sum(p.numel() for p in m.projector.parameters())
    n_head = sum(p.numel() for p in m.teacher.get_classifier().parameters())
    assert n_proj > 0 and n_head > 0
    assert rec["metrics"]["student_params"] == n_student + n_proj + n_head
    borrowed = {k: v for k, v in rec["inference_parts"].items() if v["source"].startswith("teacher")}
    assert borrowed == {"teacher0.fc": {"source": "teacher 0", "params": n_head}}
    assert rec["inference_parts"]["projector"] == {"source": "method", "params": n_proj}
    # the export holds every tensor the deployed model runs, under the deployed model's names
    ck = torch.load(f"{rec['run_dir']}/checkpoint.pt", weights_only=True)
    m.load_state_dict(ck["method"])
    deployed = m.deployed_student()
    exported = load_file(f"{rec['run_dir']}/teacher.safetensors")
    assert exported.keys() == deployed.state_dict().keys()
    for k, v in deployed.state_dict().items():
        assert torch.equal(exported[k], v), k
    assert any(k.startswith("head.") for k in exported) and any(k.startswith("projector.") for k in exported)
    # the recorded accuracy is the deployed model's, not the student network's own (untrained) head
    res = evaluate({"deployed": deployed, "own_head": m.student}, parts.data.val, torch.device("cpu"),
                   parts.trainer.autocast)
    assert rec["metrics"]["last_top1"] == pytest.approx(res["deployed"]["top1"])
    # the feature regression alone makes the borrowed head classify; the student's own classifier never
    # trains (nothing reaches it) and stays at chance (10 %). Measured: 29 % after 40 steps, so 60 steps
    # clear 20 % with room
    assert res["deployed"]["top1"] > 20.0 and res["deployed"]["top1"] > res["own_head"]["top1"] + 8.0
    # such a record is not a plain architecture: loading it as a teacher says why
    with pytest.raises(ConfigError, match="deployed student of method 'test_borrowed_head'.*teacher0.fc"):
        load_teacher(rec["run_dir"], lambda *a, **k: None)
