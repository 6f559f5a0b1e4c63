"""A write that fails — a full disk (ENOSPC, injected at the file system call and on a real small tmpfs)
or a quota — is a kdsuite error naming the path and the reason (exit 2, no traceback); the file it would
have replaced is kept, no temporary file is left, and a run stopped by it resumes, once space is free, to the
uninterrupted result. Each command that writes is driven through the real CLI entry point."""
import errno
import json
import os
import subprocess
import uuid

import pytest
import torch

from kdsuite.core.records import write_record
from tests.test_write_places import _main  # the CLI in-process: (exit code, stderr), never a traceback

TRAIN = ["--set", "epochs=3", "--set", "max_steps_per_epoch=3", "--set", "progress=none",
         "--set", "dataset.batch_size=32"]


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(word, after=0)``: fsync of a temporary file whose name holds ``word`` fails with ENOSPC,
    from its ``after+1``-th write on (the call where a network file system reports a full disk); the
    returned ``free()`` makes space again."""
    real = os.fsync

    def arm(word, after=0):
        seen = []

        def fsync(fd):
            name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
            if word in os.path.basename(name):
                seen.append(name)
                if len(seen) > after:
                    raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd)
        monkeypatch.setattr(os, "fsync", fsync)
        return lambda: monkeypatch.setattr(os, "fsync", real)
    return arm


def _no_temporaries(root):
    return [p for p in root.rglob("*.tmp")] == []


def test_a_full_disk_at_a_checkpoint_keeps_the_last_one_and_the_run_resumes_exactly(tmp_path, capsys, full_disk):
    code, _ = _main(["train", *TRAIN, "--set", f"output.root={tmp_path / 'straight'}"], capsys)
    assert code == 0
    (straight,) = [json.loads(p.read_text()) for p in (tmp_path / "straight").rglob("record.json")]

    root = tmp_path / "full"
    free = full_disk(".checkpoint.pt.", after=1)  # the first epoch's checkpoint is written, the second's is not
    code, err = _main(["train", *TRAIN, "--set", f"output.root={root}"], capsys)
    (run_dir,) = [p.parent for p in root.rglob("record.json")]
    assert code == 2, err
    assert f"{run_dir / 'checkpoint.pt'}: could not be written (No space left on device [ENOSPC])" in err
    assert "free space there, then run the same command again" in err and err.count("\n") == 1
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"] == 1  # the last good state
    assert _no_temporaries(root)
    rec = json.loads((run_dir / "record.json").read_text())
    assert rec["status"] == "failed" and "ENOSPC" in rec["error"]

    free()
    code, err = _main(["train", *TRAIN, "--set", f"output.root={root}"], capsys)
    assert code == 0 and "resuming from epoch 1" in err, err
    resumed = json.loads((run_dir / "record.json").read_text())
    assert resumed["status"] == "finished"
    assert [h["train/loss"] for h in resumed["history"]] == [h["train/loss"] for h in straight["history"]]
    assert resumed["metrics"]["last_top1"] == straight["metrics"]["last_top1"]


def test_a_full_disk_at_a_record_keeps_the_previous_record(tmp_path, full_disk):
    write_record(tmp_path, {"status": "running", "method": "kd"})
    before = (tmp_path / "record.json").read_bytes()
    full_disk(".record.json.")
    from kdsuite.core.errors import WriteError

    with pytest.raises(WriteError, match=r"record.json: could not be written \(No space left on device \[ENOSPC\]\)"):
        write_record(tmp_path, {"status": "interrupted", "method": "kd"})
    assert (tmp_path / "record.json").read_bytes() == before and _no_temporaries(tmp_path)


def _finished_records(src):
    for i, method in enumerate(("vanilla", "kd")):
        write_record(src / f"r{i}", {"status": "finished", "method": method, "category": "response", "scheme": "offline",
                                     "dataset": "digits", "student": "cifar_resnet8", "pair": "resnet8", "seed": 0,
                                     "config_hash": str(i), "metrics": {"last_top1": 50.0 + i, "best_top1": 51.0}})


@pytest.mark.parametrize("command, out_name, word", [
    ("table", "t.md", ".t.md."),
    ("plot", "fig", ".png."),
])
def test_a_full_disk_under_table_and_plot_out_names_the_file(tmp_path, capsys, full_disk, command, out_name, word):
    _finished_records(tmp_path / "src")
    out = tmp_path / out_name
    if command == "table":
        out.write_text("the table I had\n")
    full_disk(word)
    code, err = _main([command, "--source", tmp_path / "src", "--out", out], capsys)
    assert code == 2 and "could not be written (No space left on device [ENOSPC])" in err and str(out) in err, err
    if command == "table":
        assert out.read_text() == "the table I had\n"
    assert _no_temporaries(tmp_path)


def test_a_full_disk_under_teacher_import_leaves_no_half_record(tmp_path, capsys, full_disk):
    from tests.test_teacher_import import _random_state, ref_resnet

    f = tmp_path / "ckpt_epoch_240.pth"
    torch.save({"epoch": 240, "model": _random_state(ref_resnet(8, (16, 16, 32, 64))), "accuracy": 70.0}, f)
    full_disk(".teacher.safetensors.")
    code, err = _main(["teacher", "import", "--format", "repdistiller", f, "--arch", "resnet8", "--out",
                       tmp_path / "t"], capsys)
    assert code == 2 and f"{tmp_path / 't' / 'teacher.safetensors'}: could not be written" in err, err
    assert not (tmp_path / "t" / "teacher.json").exists() and _no_temporaries(tmp_path)


def _mount_tmpfs(where, size):
    where.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", f"kd-{uuid.uuid4().hex[:6]}", str(where)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def test_a_real_full_file_system_is_named_not_a_torch_traceback(tmp_path, capsys):
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "256k"):  # needs root and mount; the injected cases above run everywhere
        pytest.skip("cannot mount a small tmpfs here")
    try:
        code, err = _main(["train", *TRAIN, "--set", f"output.root={small}"], capsys)
        assert code == 2 and "could not be written (No space left on device [ENOSPC])" in err, err
        assert "checkpoint.pt" in err and "enforce fail" not in err
        assert _no_temporaries(small)
    finally:
        subprocess.run(["umount", str(small)], capture_output=True, timeout=30)
