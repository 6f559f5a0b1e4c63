"""Places kdsuite writes are checked before any work (a folder where a file goes and back, a file where a
folder should be), and nothing a user has is replaced without an explicit flag: ``teacher import`` refuses an
existing record and, with ``--force``, keeps the old one under ``.superseded/``. Its declared values are
checked too (``--accuracy``, ``--num-classes``, ``--dataset``). Every case: exit 2, one named error, no
traceback, nothing written."""
import json
import os

import pytest
import torch

from kdsuite import cli
from tests.test_teacher_import import _random_state, ref_resnet


def _main(args, capsys):
    code = cli.main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


@pytest.fixture
def released(tmp_path):
    f = tmp_path / "ckpt_epoch_240.pth"
    torch.save({"epoch": 240, "model": _random_state(ref_resnet(8, (16, 16, 32, 64))), "accuracy": 70.0}, f)
    return f


def _import(f, out, *extra):
    return ["teacher", "import", "--format", "repdistiller", f, "--arch", "resnet8", "--out", out, *extra]


def test_teacher_import_keeps_an_existing_record(released, tmp_path, capsys):
    out = tmp_path / "t"
    assert _main(_import(released, out), capsys)[0] == 0
    before = (out / "teacher.json").read_bytes(), (out / "teacher.safetensors").read_bytes()
    code, err = _main(_import(released, out, "--accuracy", "71"), capsys)
    assert code == 2 and "holds a teacher record already" in err and "--force" in err and str(out) in err
    assert ((out / "teacher.json").read_bytes(), (out / "teacher.safetensors").read_bytes()) == before
    assert _main(_import(released, out, "--accuracy", "71", "--force"), capsys)[0] == 0
    assert json.loads((out / "teacher.json").read_text())["top1"] == 71
    kept = list((tmp_path / ".superseded").iterdir())
    assert len(kept) == 1 and kept[0].name.startswith("t-")
    assert ((kept[0] / "teacher.json").read_bytes(), (kept[0] / "teacher.safetensors").read_bytes()) == before


@pytest.mark.parametrize("extra, words", [
    (["--accuracy", "nan"], ["--accuracy = nan", "0 to 100"]),
    (["--accuracy", "1000"], ["--accuracy = 1000", "0 to 100"]),
    (["--accuracy", "-1"], ["--accuracy = -1"]),
    (["--num-classes", "0"], ["--num-classes = 0", ">= 1"]),
    (["--num-classes", "-5"], ["--num-classes = -5", ">= 1"]),
    (["--dataset", "nosuch"], ["--dataset = 'nosuch'", "cifar100"]),
])
def test_teacher_import_refuses_bad_declarations(released, tmp_path, capsys, extra, words):
    code, err = _main(_import(released, tmp_path / "t", *extra), capsys)
    assert code == 2
    for w in words:
        assert w in err, err
    assert not (tmp_path / "t").exists()


def test_teacher_import_out_is_a_file(released, tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    code, err = _main(_import(released, tmp_path / "f"), capsys)
    assert code == 2 and f"--out '{tmp_path / 'f'}' is a file, not a folder" in err
    assert (tmp_path / "f").read_text() == "mine"
    code, err = _main(_import(released, tmp_path / "f" / "sub"), capsys)
    assert code == 2 and "is a file, not a folder" in err


def test_train_output_root_file_or_below_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    for root in (tmp_path / "f", tmp_path / "f" / "runs"):
        code, err = _main(["train", "--set", f"output.root={root}", "--set", "epochs=1"], capsys)
        assert code == 2 and "output.root" in err and "is a file, not a folder" in err, err
    assert (tmp_path / "f").read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_train_output_root_not_writable(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, err = _main(["train", "--set", f"output.root={ro / 'runs'}", "--set", "epochs=1"], capsys)
        assert code == 2 and "not writable" in err and str(ro) in err
    finally:
        ro.chmod(0o700)


def test_table_and_plot_out_of_the_wrong_kind(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "afile").write_text("x")
    code, err = _main(["table", "--source", tmp_path / "src", "--out", tmp_path], capsys)
    assert code == 2 and f"--out '{tmp_path}' is a folder" in err
    code, err = _main(["table", "--source", tmp_path / "src", "--out", tmp_path / "afile" / "t.md"], capsys)
    assert code == 2 and "is a file, not a folder" in err
    code, err = _main(["plot", "--source", tmp_path / "src", "--out", tmp_path / "afile"], capsys)
    assert code == 2 and f"--out '{tmp_path / 'afile'}' is a file, not a folder" in err
