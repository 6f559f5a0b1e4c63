"""Bad input fails early with the field, the value and what is allowed; the CLI lists methods by
category; third-party plugins arrive through entry points."""
import subprocess
import sys
import textwrap

import pytest

from kdsuite.cli import main
from kdsuite.experiments.config import ConfigError, config_hash, validate


@pytest.mark.parametrize("cfg,pattern", [
    ({"method": {"name": "kd", "hparams": {"T": 0}}, "teachers": ["x"]}, r"method\.hparams\.T = 0\.0 is out of range; expected a number > 0"),
    ({"method": {"name": "kd", "hparams": {"alpha": 1.5}}, "teachers": ["x"]}, r"method\.hparams\.alpha = 1\.5 .*>= 0\.0 and <= 1\.0"),
    ({"method": {"name": "kd", "hparams": {"tau": 1}}, "teachers": ["x"]}, r"unknown hyper-parameter.*'tau'.*valid: T, alpha, ce_weight, kd_weight, standardize"),
    ({"optim": {"lr": -0.1}}, r"optim\.lr = -0\.1 is out of range"),
    ({"method": "kdd"}, r"unknown method 'kdd'; registered methods: .*kd.*vanilla"),
    ({"student": "cifar_resnet9"}, r"unknown model 'cifar_resnet9'.*cifar_resnet8"),
    ({"dataset": {"name": "mnist"}}, r"dataset\.name = 'mnist' is not allowed; expected one of \['digits', 'cifar10', 'cifar100', 'imagefolder'\]"),
    ({"epochs": -1}, r"epochs = -1 is out of range"),
    ({"schedule": {"milestones": [20, 10]}}, r"schedule\.milestones"),
    ({"method": "kd"}, r"method 'kd' takes exactly 1 teacher\(s\), the config gives 0"),
    ({"optimiser": {}}, r"config: unknown field\(s\) \['optimiser'\]"),
    ({"precision": "fp16"}, r"precision = 'fp16' is not allowed"),
])
def test_bad_config_names_field_value_and_allowed(cfg, pattern):
    with pytest.raises(ConfigError, match=pattern):
        validate(cfg)


def test_hash_ignores_where_and_how_a_run_is_watched():
    a = validate({"epochs": 2})
    b = validate({"epochs": 2, "device": "cpu", "output": {"root": "elsewhere"}, "progress": "none",
                  "wandb": {"mode": "offline"}, "name": "x"})
    c = validate({"epochs": 3})
    assert config_hash(a) == config_hash(b) != config_hash(c)


def test_cli_methods_lists_vanilla_and_kd_under_their_categories(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    resp = lines.index(next(l for l in lines if l.startswith("response")))
    base = lines.index(next(l for l in lines if l.startswith("baseline")))
    kd_line = next(i for i, l in enumerate(lines) if l.strip().startswith("kd "))
    van_line = next(i for i, l in enumerate(lines) if l.strip().startswith("vanilla "))
    assert base < van_line < resp < kd_line
    assert "Hinton et al. 2015" in lines[kd_line]


def test_cli_bad_input_exits_2_with_message(capsys, tmp_path):
    rc = main(["train", "--set", "method.name=nope", "--set", f"output.root={tmp_path}"])
    assert rc == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_third_party_method_through_entry_point(tmp_path):
    """A package installed elsewhere registers its method via the kdsuite.methods entry-point group."""
    pkg = tmp_path / "site"
    (pkg / "mykd_plugin").mkdir(parents=True)
    (pkg / "mykd_plugin" / "__init__.py").write_text(textwrap.dedent('''
        from kdsuite.methods import Distiller, register_method
        from kdsuite.methods import losses

        @register_method
        class MyKD(Distiller):
            name = "my_kd"
            category = "response"
            scheme = "offline"
            paper = "Third party 2026"
            equation = "KL only"
            def forward_train(self, x, y):
                s = self.student(x)
                t, _ = self.teacher_forward(x)
                return {"kd": losses.kd_loss(s, t, 2.0)}
    '''))
    dist = pkg / "mykd_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mykd-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[kdsuite.methods]\nmy_kd = mykd_plugin\n")
    code = ("import sys; sys.path.insert(0, %r); from kdsuite.cli import main; sys.exit(main(['methods']))" % str(pkg))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "my_kd" in out.stdout and "Third party 2026" in out.stdout
