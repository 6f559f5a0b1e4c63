"""What planning and the CLI's help import: no torch, no trainer (issue 23's one-pass rule).

Each check runs in a fresh interpreter, since this test process has long imported torch."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

TORCH_FREE = ["kdsuite.experiments.grid", "kdsuite.experiments.grid_rules", "kdsuite.experiments.grid_resources",
              "kdsuite.experiments.grid_teachers", "kdsuite.experiments.config", "kdsuite.experiments.settings",
              "kdsuite.experiments.run_paths", "kdsuite.experiments.teacher_checks", "kdsuite.experiments.view_rules",
              "kdsuite.core.records", "kdsuite.core.fileio", "kdsuite.methods.registry", "kdsuite.methods.hparams"]


def _imports(code: str) -> set:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", TORCH_FREE)
def test_planning_modules_import_neither_torch_nor_the_trainer(module):
    mods = _imports(f"import {module}")
    assert module in mods
    assert "torch" not in mods and "kdsuite.engine.trainer" not in mods, module


@pytest.mark.parametrize("argv", [["--help"], ["grid", "--help"], ["grid", "plan", "--help"],
                                  ["grid", "status", "--help"], ["teacher", "import", "--help"], ["table", "--help"]])
def test_cli_help_imports_no_torch(argv):
    mods = _imports(f"from kdsuite import cli\ntry:\n    cli.main({argv!r})\nexcept SystemExit:\n    pass")
    assert "kdsuite.cli" in mods and "torch" not in mods


def test_teacher_import_help_names_exactly_the_formats_the_importer_takes():
    from kdsuite.cli import build_parser
    from kdsuite.zoo.teacher_import import FORMATS

    parser = build_parser()
    teacher = next(a for a in parser._subparsers._group_actions[0].choices["teacher"]._actions
                   if a.dest == "teacher_cmd").choices["import"]
    fmt = next(a for a in teacher._actions if a.dest == "format")
    assert tuple(re.fullmatch(r"\{(.*)\}", fmt.metavar).group(1).split(",")) == FORMATS


def test_an_unknown_teacher_format_is_refused_by_name(tmp_path, capsys):
    from kdsuite.cli import main

    f = tmp_path / "w.pth"
    f.write_bytes(b"")
    assert main(["teacher", "import", str(f), "--format", "caffe", "--arch", "cifar_resnet8"]) == 2
    err = capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert "'caffe'" in err and "repdistiller" in err and "Traceback" not in err
