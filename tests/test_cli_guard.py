"""The CLI's last resort (kdsuite.cli.main): a kdsuite error is one line and exit 2; an OSError about a path
is one line naming the path, exit 2; anything else one line naming the command and the file that holds the
full traceback, exit 1 — never a traceback on the terminal."""
import errno

import pytest

from kdsuite import cli
from kdsuite.core.errors import ConfigError, KdsuiteError


def _raising(exc):
    def fn(args):
        raise exc
    return fn


@pytest.fixture
def fake_command(monkeypatch):
    def use(exc):
        monkeypatch.setattr(cli, "cmd_methods", _raising(exc))
    return use


def test_kdsuite_error_is_one_line_exit_2(fake_command, capsys):
    fake_command(KdsuiteError("record 'x' is of schema 9; this kdsuite reads up to 2"))
    assert cli.main(["methods"]) == 2
    err = capsys.readouterr().err
    assert err == "kdsuite: error: record 'x' is of schema 9; this kdsuite reads up to 2\n"
    assert issubclass(ConfigError, KdsuiteError)


def test_oserror_with_a_path_names_it(fake_command, capsys):
    fake_command(PermissionError(errno.EACCES, "Permission denied", "/shared/runs/x/record.json"))
    assert cli.main(["methods"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/shared/runs/x/record.json: Permission denied" in err
    fake_command(OSError(errno.ENOSPC, "No space left on device", "/full/ckpt.pt"))
    assert cli.main(["methods"]) == 2
    assert "/full/ckpt.pt: No space left on device" in capsys.readouterr().err


def test_anything_else_saves_the_traceback(fake_command, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("KDSUITE_CRASH_DIR", str(tmp_path))
    fake_command(ZeroDivisionError("division by zero"))
    assert cli.main(["methods"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "ZeroDivisionError: division by zero" in err and "kdsuite methods" in err
    saved = list(tmp_path.iterdir())
    assert len(saved) == 1 and str(saved[0]) in err
    text = saved[0].read_text()
    assert "Traceback (most recent call last)" in text and "ZeroDivisionError" in text and "kdsuite methods" in text
    fake_command(OSError("no path here"))  # an OSError about no file is not the user's: last resort too
    assert cli.main(["methods"]) == 1
