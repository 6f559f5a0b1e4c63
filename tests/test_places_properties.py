"""Property-based test (hypothesis) of the places each command reads and writes, through the real entry point
``kdsuite.cli.main``: every input (run config, grid file, Slurm profile, teacher checkpoint, table/plot
source) is made missing, a broken link, the wrong kind (folder for file and back), a path below a file, empty,
binary, a FIFO; every output (train's output root, a grid's output, ``table/plot/teacher import --out``) is
made a file where a folder goes and back, below a file, a broken link, or a disk that is full or refuses
the write. Each case must exit 2 with one message naming the path and no traceback, train nothing, and leave
every file that was there as it was. The CLI's last-resort guard, which also names the path of an OSError, does
not count: each place is checked by the command itself."""
from __future__ import annotations

import errno
import os
import tempfile
import uuid
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdsuite import cli
from kdsuite.core.records import write_record

# each of the 85 (place, fault) cases with 3 generated names (and binary contents): 255 generated cases
SETTINGS = settings(max_examples=3, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
ROOT = os.geteuid() == 0


class Trained(AssertionError):
    pass


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """What the valid half of each command needs: records to tabulate, a released checkpoint, a tiny grid."""
    from tests.test_teacher_import import _random_state, ref_resnet

    base = tmp_path_factory.mktemp("assets")
    for i, method in enumerate(("vanilla", "kd")):
        write_record(base / "src" / f"r{i}", {
            "status": "finished", "method": method, "category": "response", "scheme": "offline", "dataset": "digits",
            "student": "cifar_resnet8", "pair": "resnet8", "seed": 0, "config_hash": str(i),
            "metrics": {"last_top1": 50.0 + i, "best_top1": 51.0}})
    torch.save({"epoch": 240, "model": _random_state(ref_resnet(8, (16, 16, 32, 64))), "accuracy": 70.0},
               base / "ckpt_epoch_240.pth")
    (base / "grid.yaml").write_text(yaml.safe_dump({"name": "tiny", "defaults": {"epochs": 1},
                                                    "stages": {"a": {"runs": [{"seed": 0}]}}}))
    return base


@pytest.fixture
def no_training(monkeypatch):
    from kdsuite.experiments import run as run_mod

    def refuse(*a, **k):
        raise Trained("the places were accepted and the run would train")
    monkeypatch.setattr(run_mod, "build", refuse)


# ---- the commands, each with the place under test written as {P} and the valid rest ----
INPUTS = {
    "train config": ["train", "{P}"],
    "grid file (plan)": ["grid", "plan", "{P}"],
    "grid file (status)": ["grid", "status", "{P}"],
    "grid file (launch)": ["grid", "launch", "{P}", "--cluster", "local"],
    "slurm profile": ["grid", "launch", "{A}/grid.yaml", "--output", "{W}/g", "--cluster", "slurm", "--profile",
                      "{P}", "--dry-run"],
    "teacher checkpoint": ["teacher", "import", "--format", "repdistiller", "{P}", "--arch", "resnet8",
                           "--out", "{W}/t"],
    "table source": ["table", "--source", "{P}"],
    "plot source": ["plot", "--source", "{P}", "--out", "{W}/fig"],
}
FOLDER_INPUTS = {"table source", "plot source"}
OUTPUTS = {
    "train output.root": (["train", "--set", "output.root={P}", "--set", "epochs=1"], "dir"),
    "grid output": (["grid", "launch", "{A}/grid.yaml", "--output", "{P}", "--cluster", "local"], "dir"),
    "table --out": (["table", "--source", "{A}/src", "--out", "{P}"], "file"),
    "plot --out": (["plot", "--source", "{A}/src", "--out", "{P}"], "dir"),
    "teacher import --out": (["teacher", "import", "--format", "repdistiller", "{A}/ckpt_epoch_240.pth", "--arch",
                              "resnet8", "--out", "{P}"], "dir"),
}
WRITTEN_WITHOUT_TRAINING = {"table --out", "plot --out", "teacher import --out"}

INPUT_FAULTS = ("missing", "broken link", "wrong kind", "below a file", "empty", "binary", "fifo", "list yaml")
OUTPUT_FAULTS = ("wrong kind", "below a file", "broken link", "full disk", "read-only file system")


def _make_input(fault: str, w: Path, folder: bool, name: str, junk: bytes) -> tuple:
    """The faulty path and the path the message must name."""
    p = w / name
    if fault == "missing":
        return p, p
    if fault == "broken link":
        p.symlink_to(w / "gone")
        return p, p
    if fault == "wrong kind":
        (p.write_text("x\n") if folder else p.mkdir())
        return p, p
    if fault == "below a file":
        (w / "afile").write_text("x\n")
        return w / "afile" / name, w / "afile" / name
    if fault == "fifo":
        os.mkfifo(p)
        return p, p
    if folder:  # empty / binary / list as a source folder: a folder holding such a record.json
        (p / "r").mkdir(parents=True)
        (p / "r" / "record.json").write_bytes({"empty": b"", "binary": b"\x00\xff\x13x", "list yaml": b"[1, 2]"}[fault])
        return p, p / "r" / "record.json"
    p.write_bytes({"empty": b"", "binary": b"\x00\xff\x13garbage", "list yaml": b"- 1\n- 2\n"}[fault])
    return p, p


def _make_output(fault: str, w: Path, kind: str, name: str) -> tuple:
    p = w / name
    if fault == "wrong kind":
        (p.mkdir() if kind == "file" else p.write_text("mine\n"))
        return p, p
    if fault == "below a file":
        (w / "afile").write_text("mine\n")
        return w / "afile" / name, w / "afile"
    if fault == "broken link":
        p.symlink_to(w / "gone")
        return p, p
    if kind == "file":
        p.write_text("the table I had\n")
    return p, p  # full disk / read-only: injected at the write itself


def _snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            q = Path(dirpath) / name
            if q.is_symlink():
                out[str(q)] = ("link", os.readlink(q))
            elif q.is_file():
                out[str(q)] = ("file", q.read_bytes())
            elif q.is_dir():
                out[str(q)] = ("dir", None)
            else:
                out[str(q)] = ("other", None)
    return out


def _inject(monkeypatch, fault: str) -> None:
    code = {"full disk": (errno.ENOSPC, "No space left on device"),
            "read-only file system": (errno.EROFS, "Read-only file system")}[fault]
    real = tempfile.mkstemp

    def mkstemp(*a, **k):  # every atomic write starts here
        if fault == "full disk":
            fd, name = real(*a, **k)
            os.close(fd)
            os.unlink(name)
        raise OSError(code[0], code[1])
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


# names a user gives: spaces, dots, dashes, accents; nested up to three folders deep
NAMES = st.lists(st.text(alphabet="abcXYZ019 -_.é", min_size=1, max_size=10).filter(
    lambda t: t.strip(". ") == t and t not in (".", "..")), min_size=1, max_size=3).map("/".join)
JUNK = st.binary(min_size=0, max_size=64)
ALL_CASES = [("in", r, f) for r in sorted(INPUTS) for f in INPUT_FAULTS] + [
    ("out", r, f) for r in sorted(OUTPUTS) for f in OUTPUT_FAULTS
    if f not in ("full disk", "read-only file system") or r in WRITTEN_WITHOUT_TRAINING]


@pytest.mark.parametrize("case", ALL_CASES, ids=["-".join(c).replace(" ", "_") for c in ALL_CASES])
@SETTINGS
@given(name=NAMES, junk=JUNK)
def test_every_place_a_command_reads_or_writes_is_named_when_wrong(case, name, junk, assets, tmp_path_factory,
                                                                    capsys, monkeypatch, no_training):
    side, role, fault = case
    w = tmp_path_factory.getbasetemp() / "places" / uuid.uuid4().hex[:10]
    (w / name).parent.mkdir(parents=True, exist_ok=True)
    if side == "in":
        template = INPUTS[role]
        path, named = _make_input(fault, w, role in FOLDER_INPUTS, name, junk)
    else:
        template, kind = OUTPUTS[role]
        path, named = _make_output(fault, w, kind, name)
    args = [a.replace("{P}", str(path)).replace("{A}", str(assets)).replace("{W}", str(w)) for a in template]
    before, assets_before = _snapshot(w), _snapshot(assets)
    with monkeypatch.context() as m:
        if side == "out" and fault in ("full disk", "read-only file system"):
            _inject(m, fault)
        code = cli.main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err, (args, err)
    assert code == 2, (case, args, err)
    assert "kdsuite: error: " in err and str(named) in err, (case, err)
    assert "(while running `kdsuite" not in err, (case, "only the last-resort guard caught it", err)
    after = _snapshot(w)
    assert {k: v for k, v in after.items() if k in before} == before, (case, "a file that was there changed")
    new = sorted(set(after) - set(before))
    assert new == [] or all(after[k][0] == "dir" for k in new), (case, new)  # at most empty folders made
    assert _snapshot(assets) == assets_before
