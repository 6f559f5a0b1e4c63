"""The plugin kit on a package outside this checkout, as a plugin author meets it: three broken methods in a
package of their own, found through its ``kdsuite.methods`` entry point (a real distribution on
``sys.path``: a ``dist-info`` folder with ``entry_points.txt``, as pip leaves it), and ``kdsuite
check-method`` run on each in its own process. Each must fail — exit 1, ``contract FAILED`` — with the
check that matches its bug marked FAIL and saying why:

- ``flipped_kd`` pushes the student away from the teacher (a sign flip): "moves the student toward the
  teacher" fails with "wrong sign";
- ``detached_kd`` computes its KD term on a detached student output (the CE term alone still reaches every
  parameter): "each distillation term reaches the student" fails naming the term;
- ``head_kd`` deploys its student through a trained calibration head but evaluates the bare student (the
  recorded accuracy is not the deployed model's): "the deployed student is what is measured" fails.

The unbroken checks of each still run and are listed (a failing check does not stop the report)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = '''
"""Three deliberately broken KD plugins (a test package outside kdsuite)."""
import torch.nn as nn

from kdsuite.methods import Distiller, HParam, register_method
from kdsuite.methods import losses


class _KD(Distiller):
    category = "response"
    scheme = "offline"
    paper = "Hinton et al. 2015 (broken on purpose)"
    equation = "0.1·CE + 0.9·T²·KL"
    hparams = {"T": HParam(4.0, low=0.0, low_open=True)}
    distill_terms = ("kd",)

    def _parts(self, x, y):
        t, _ = self.teacher_forward(x)
        s = self.student(x)
        return s, t, 0.1 * losses.ce(s, y)


@register_method
class FlippedKD(_KD):
    name = "flipped_kd"

    def forward_train(self, x, y):
        s, t, ce = self._parts(x, y)
        return {"kd": -0.9 * losses.kd_loss(s, t, self.hp.T), "ce": ce}


@register_method
class DetachedKD(_KD):
    name = "detached_kd"

    def forward_train(self, x, y):
        s, t, ce = self._parts(x, y)
        return {"kd": 0.9 * losses.kd_loss(s.detach(), t, self.hp.T), "ce": ce}


class _Calibrated(nn.Module):
    def __init__(self, student, head):
        super().__init__()
        self.student, self.head = student, head

    def forward(self, x):
        return self.head(self.student(x))


@register_method
class HeadKD(_KD):
    name = "head_kd"

    def __init__(self, student, teachers, hp, ctx):
        super().__init__(student, teachers, hp, ctx)
        self.head = nn.Linear(ctx.num_classes, ctx.num_classes)

    def forward_train(self, x, y):
        t, _ = self.teacher_forward(x)
        s = self.head(self.student(x))
        return {"kd": 0.9 * losses.kd_loss(s, t, self.hp.T), "ce": 0.1 * losses.ce(s, y)}

    def deployed_student(self):
        return _Calibrated(self.student, self.head)

    def eval_models(self):
        return {"student": self.student}  # the bug: the record measures the student without its head
'''

BUGS = {
    "flipped_kd": ("distillation moves the student toward the teacher", "wrong sign"),
    "detached_kd": ("each distillation term reaches the student", "kd"),
    "head_kd": ("the deployed student is what is measured, counted and exported", "not deployed_student()"),
}


@pytest.fixture(scope="module")
def outside_package(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    (root / "broken_kd_plugins").mkdir()
    (root / "broken_kd_plugins" / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    info = root / "broken_kd_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-kd-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[kdsuite.methods]\nbroken = broken_kd_plugins\n")
    return root


@pytest.mark.parametrize("name", sorted(BUGS))
def test_check_method_fails_a_broken_outside_plugin_in_the_matching_check(name, outside_package, digits_teachers,
                                                                         tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(outside_package), os.environ.get("PYTHONPATH", "")]))
    cache = Path(digits_teachers[0]).parent
    out = subprocess.run([sys.executable, "-m", "kdsuite", "check-method", name, "--cache", str(cache)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    text = out.stdout + out.stderr
    assert "from broken-kd-plugins (entry point broken)" in out.stdout, text
    assert out.returncode == 1 and f"{name}: contract FAILED" in out.stdout, text
    title, why = BUGS[name]
    failed = [ln.strip() for ln in out.stdout.splitlines() if ln.strip().startswith("FAIL")]
    assert any(ln.startswith(f"FAIL  {title}") and why in ln for ln in failed), text
    assert "Traceback" not in text, text
    from kdsuite.testing import CHECKS

    listed = [t for t, _ in CHECKS if any(t in ln for ln in out.stdout.splitlines())]
    assert listed == [t for t, _ in CHECKS], out.stdout  # every check is reported, failed or not
