"""The example plugin package (examples/kdsuite-mse-kd), installed by `make test` as a user would install
any third-party plugin: found through its entry point, marked with its origin, and checked by
`kdsuite check-method` — the plugin kit working outside this checkout's own tests."""
import subprocess
import sys
from pathlib import Path

import torch

from kdsuite.methods.registry import ORIGINS, get_method

KDSUITE = [sys.executable, "-m", "kdsuite"]


def test_the_installed_example_is_registered_with_its_origin():
    cls = get_method("mse_kd")  # fails here if `make test` did not install examples/kdsuite-mse-kd
    assert ORIGINS["mse_kd"] == "kdsuite-mse-kd (entry point mse_kd)"
    out = subprocess.run(KDSUITE + ["methods"], capture_output=True, text=True, timeout=600)
    line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith("mse_kd"))
    assert "from kdsuite-mse-kd" in line and cls.paper in line


def test_example_loss_is_the_papers_formula():
    from kdsuite.testing import make

    m = make("mse_kd", alpha=0.25)
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 3, 7, 9])
    losses = m.forward_train(x, y)
    zs, zt = m.student(x).double(), m.teacher(x).double()
    mse = sum((zs[b, c] - zt[b, c]) ** 2 for b in range(4) for c in range(10)) / 40
    logp = torch.log_softmax(zs, 1)
    ce = -sum(logp[b, y[b]] for b in range(4)) / 4
    assert torch.allclose(losses["mse"].double(), 0.25 * mse, rtol=1e-5)
    assert torch.allclose(losses["ce"].double(), 0.75 * ce, rtol=1e-5)


def test_check_method_passes_on_the_example(digits_teachers, tmp_path):
    cache = Path(digits_teachers[0]).parent  # the session's tiny teachers: reused by config hash, not retrained
    out = subprocess.run(KDSUITE + ["check-method", "mse_kd", "--cache", str(cache)], capture_output=True,
                         text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    # every check of the kit is listed: ok, or skipped with its reason (mse_kd is no min-max method); none failed
    from kdsuite.testing import CHECKS

    listed = {}
    for line in out.stdout.splitlines():  # "  ok    <title> (detail)" / "  skip  <title>: why"
        status, _, rest = line.strip().partition(" ")
        listed.update({title: status for title, _ in CHECKS if rest.strip().startswith(title)})
    assert set(listed) == {t for t, _ in CHECKS}, out.stdout
    assert listed.pop("the adversary maximises (min-max)") == "skip" and set(listed.values()) == {"ok"}, out.stdout
    assert "mse_kd: contract passed" in out.stdout
    assert "from kdsuite-mse-kd (entry point mse_kd)" in out.stdout


def test_check_method_names_an_unknown_method():
    out = subprocess.run(KDSUITE + ["check-method", "no_such_kd"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "unknown method 'no_such_kd'" in out.stderr and "Traceback" not in out.stderr
