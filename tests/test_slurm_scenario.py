"""Issue 24's whole scenario on the real local Slurm cluster, launched through the CLI as a user does:
a grid holding a teacher that diverges (with a student), a healthy teacher with a student that diverges, a
student killed by ``kill -9`` after its first epoch checkpoint, and a plain student.

1. Two launches race (two processes started together): every run is submitted once between them.
2. When the queue is empty, ``grid status`` says what each run is: diverged (with where), blocked by the
   diverged teacher, interrupted (record ``running``, checkpoint, no job holds it), finished.
3. A plain relaunch submits the killed run alone, which resumes from its checkpoint and finishes; the
   launch after it submits nothing.
4. ``--rerun-diverged`` submits exactly the two diverged runs and the student blocked by the diverged teacher.

Divergence is real: SGD at lr 10 with weight decay 1 multiplies every weight by −9 at each step until the
loss is not finite (about ten steps on digits)."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kdsuite.core.records import read_record
from kdsuite.experiments.grid import load_grid

pytestmark = pytest.mark.slurm
PROFILE = str(Path(__file__).resolve().parents[1] / "slurm" / "profiles" / "local_test.yaml")
KDSUITE = [sys.executable, "-m", "kdsuite"]
TINY = {"epochs": 1, "max_steps_per_epoch": 2, "progress": "none"}
DIVERGE = {"epochs": 2, "max_steps_per_epoch": 30, "optim": {"lr": 10.0, "weight_decay": 1.0, "momentum": 0.0}}
# long enough to be killed after its first epoch checkpoint: 81 steps of 16 images per epoch
LONG = {"epochs": 4, "max_steps_per_epoch": None, "dataset": {"batch_size": 16}}
GUARD_S = 400  # a bound against a hang, not a timing check


def _spec(root: Path) -> dict:
    pair_t = {"teachers": ["t"], "student": "cifar_resnet8"}
    return {"name": "scenario", "output": str(root / "out"), "defaults": TINY, "stages": {
        "teachers": {"runs": [{"key": "t", "student": "cifar_resnet8"},
                              dict(DIVERGE, key="tdiv", student="cifar_resnet8", seed=1)]},
        "students": {"needs": "teachers", "axes": {"method": ["kd"], "seed": [0], "pair": [
            pair_t, {"teachers": ["tdiv"], "student": "cifar_resnet8"}]}},
        "diverging": {"needs": "teachers", "axes": {"method": ["kd"], "seed": [1], "pair": [pair_t]},
                      "method_overrides": {"kd": DIVERGE}},
        "killed": {"needs": "teachers", "axes": {"method": ["kd"], "seed": [2], "pair": [pair_t]},
                   "method_overrides": {"kd": LONG}}}}


def _launch(spec_file: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(KDSUITE + ["grid", "launch", str(spec_file), "--cluster", "slurm", "--profile", PROFILE,
                                       *flags], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=GUARD_S)
    assert proc.returncode == 0, out
    return out


def _submitted(out: str) -> int:
    """How many runs a launch says it submitted ("submitted N run(s)" lines, summed)."""
    return sum(int(n) for n in re.findall(r"submitted (\d+) run", out))


def _queue_empty() -> bool:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
    return out.returncode == 0 and not out.stdout.strip()


def _wait(cond, what: str, poll_s: float = 1.0) -> None:
    deadline = time.time() + GUARD_S
    while time.time() < deadline:
        if cond():
            return
        time.sleep(poll_s)
    raise AssertionError(f"not reached in {GUARD_S}s: {what}")


def _status(spec_file: Path) -> str:
    out = subprocess.run(KDSUITE + ["grid", "status", str(spec_file)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _line(status: str, label: str) -> str:
    return next((ln for ln in status.splitlines() if label in ln.split()), f"<no line for {label}>")


def _state(status: str, label: str) -> str:
    """The state column of a run's status line (``STAGE STATE LABEL …``)."""
    cols = _line(status, label).split()
    return cols[1] if cols[2:3] == [label] else f"<no line for {label}>"


def test_three_launches_of_a_grid_with_every_kind_of_trouble(slurm_cluster, tmp_path):
    spec_file = tmp_path / "scenario.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(tmp_path), sort_keys=False))  # stages in order
    grid = load_grid(str(spec_file))
    runs = {r.label: r for r in grid.all_runs()}
    (t, tdiv) = grid.stages["teachers"]
    (ok_student, blocked) = grid.stages["students"]
    (diverging,), (killed,) = grid.stages["diverging"], grid.stages["killed"]
    assert len(runs) == 6

    # 1. two launches race: every run once between them
    first, second = _launch(spec_file), _launch(spec_file)
    outs = [_finish(first), _finish(second)]
    assert sum(_submitted(o) for o in outs) == 6, outs

    # kill -9 the long student once its first epoch checkpoint exists (the lease names the process)
    _wait(lambda: (killed.run_dir / "checkpoint.pt").exists(), "the long student's first checkpoint", 0.2)
    assert (read_record(killed.run_dir) or {}).get("status") == "running"  # killed while it trains
    holder = json.loads((killed.run_dir / "lease.lock").read_text().splitlines()[0])
    os.kill(int(holder["pid"]), signal.SIGKILL)
    _wait(_queue_empty, "every job of the first launch ended")

    # 2. status says what each run is
    status = _status(spec_file)
    want = {t.label: "finished", ok_student.label: "finished", tdiv.label: "diverged", diverging.label: "diverged",
            blocked.label: "blocked", killed.label: "interrupted"}
    assert {label: _state(status, label) for label in want} == want, status
    assert "non-finite loss" in _line(status, tdiv.label) and "--rerun-diverged" in _line(status, tdiv.label), status
    assert f"teacher {tdiv.label} diverged" in _line(status, blocked.label), status
    assert "resumes from its last checkpoint" in _line(status, killed.label), status
    assert (read_record(killed.run_dir) or {}).get("status") == "running"  # as the kill left it

    # 3. a plain relaunch resumes the killed run alone; the one after submits nothing
    out = _finish(_launch(spec_file))
    assert _submitted(out) == 1, out
    _wait(lambda: (read_record(killed.run_dir) or {}).get("status") == "finished", "the killed run resumed")
    _wait(_queue_empty, "the resumed job ended")
    attempts = (killed.run_dir / "lease.log").read_text().strip().splitlines()
    assert len(attempts) == 2, attempts  # trained twice: once killed, once resumed
    assert len(read_record(killed.run_dir)["history"]) == 4
    out = _finish(_launch(spec_file))
    assert _submitted(out) == 0, out

    # 4. --rerun-diverged: exactly the diverged runs and the student their teacher blocked
    dry = subprocess.run(KDSUITE + ["grid", "launch", str(spec_file), "--cluster", "slurm", "--profile", PROFILE,
                                    "--rerun-diverged", "--dry-run"], capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    would = {label for label in runs if f"    {label}" in dry.stdout.splitlines()}  # a dry run lists each array's runs
    assert would == {tdiv.label, diverging.label, blocked.label}, dry.stdout
