"""Every run state × every grid command: one grid holds a teacher in each state a run can be in (finished,
diverged, failed, interrupted by kill -9 with its job FAILED, not started, running under a held lease,
queued in Slurm) and a student of each; ``grid plan``, the local dry run, the local launch, the Slurm
launch (submitit faked, the Slurm answers given) and ``grid status`` must each show every run as what it
is and act on it as docs/cluster.md says. No training: records are written by hand, ``run`` is faked."""
import json
from types import SimpleNamespace

import pytest
import yaml

from kdsuite.cli import main
from kdsuite.core.fileio import atomic_write_json
from kdsuite.core.run_state import (BLOCK, DIVERGED, FINISHED, HOLD, RESUME, SKIP, SUBMIT, WAIT, RunState,
                                    launch_action, run_state)
from kdsuite.experiments.grid import load_grid
from kdsuite.experiments.grid_state import grid_actions, grid_states
from kdsuite.experiments.lease import Lease
from kdsuite.methods.identity import code_identity
from kdsuite.methods.registry import get_method
from kdsuite.slurm import executors

TEACHERS = ("fin", "div", "fail", "int", "new", "run", "q")
# key -> (state shown, plain Slurm launch, Slurm launch with --rerun-failed --rerun-diverged)
TEACHER_TABLE = {"fin": ("finished", SKIP, SKIP), "div": ("diverged", SKIP, SUBMIT), "fail": ("failed", HOLD, SUBMIT),
                 "int": ("interrupted", RESUME, RESUME), "new": ("not started", SUBMIT, SUBMIT),
                 "run": ("running", WAIT, WAIT), "q": ("queued", WAIT, WAIT)}
# the student of each teacher (no record of its own, but the one of `fail`, which failed too)
STUDENT_TABLE = {"fin": ("not started", SUBMIT, SUBMIT), "div": ("blocked", BLOCK, SUBMIT),
                 "fail": ("blocked", BLOCK, SUBMIT), "int": ("not started", SUBMIT, SUBMIT),
                 "new": ("not started", SUBMIT, SUBMIT), "run": ("not started", BLOCK, BLOCK),
                 "q": ("not started", SUBMIT, SUBMIT)}
VANILLA = ("diverged", SKIP, SUBMIT)  # the grid's teacher-free student, diverged
SLURM = {"77_0": {"state": "PENDING", "reason": "Priority", "source": "squeue"},
         "76_0": {"state": "FAILED", "reason": "NonZeroExitCode", "source": "squeue"}}
RERUN = ("failed", "diverged")


def _spec(root):
    tiny = {"dataset": {"name": "digits", "batch_size": 32}, "epochs": 1, "max_steps_per_epoch": 2, "progress": "none"}
    return {"name": "states", "output": str(root), "defaults": tiny, "stages": {
        "teachers": {"runs": [{"key": k, "student": "cifar_resnet8", "seed": i} for i, k in enumerate(TEACHERS)]},
        "students": {"needs": "teachers", "axes": {
            "method": ["kd", "vanilla"], "seed": [0],
            "pair": [{"teachers": [k], "student": "cifar_resnet14"} for k in TEACHERS]}}}}


def _record(r, status, **extra):
    r.run_dir.mkdir(parents=True, exist_ok=True)
    name = r.cfg["method"]["name"]
    atomic_write_json(r.run_dir / "record.json", dict(
        status=status, run_id=r.hash, config_hash=r.hash, config=r.cfg, method=name,
        code=code_identity(get_method(name)), **extra))


@pytest.fixture
def world(tmp_path):
    gfile = tmp_path / "g.yaml"
    gfile.write_text(yaml.safe_dump(_spec(tmp_path / "out"), sort_keys=False))
    grid = load_grid(str(gfile))
    t = {r.key: r for r in grid.stages["teachers"]}
    s = {r.teacher_keys[0]: r for r in grid.stages["students"] if r.teacher_keys}
    (v,) = [r for r in grid.stages["students"] if not r.teacher_keys]
    _record(t["fin"], "finished", metrics={"last_top1": 71.5})
    _record(t["div"], "diverged", divergence={"stage": "main", "epoch": 2, "step": 17, "what": "loss is nan"})
    _record(v, "diverged", divergence={"stage": "main", "epoch": 1, "step": 3, "what": "grad is inf"})
    _record(t["fail"], "failed", error="RuntimeError: boom in the data loader")
    _record(s["fail"], "failed", error="ConfigError: teacher record not finished")
    _record(t["int"], "running")  # kill -9: nothing could mark it; its epoch checkpoint exists
    (t["int"].run_dir / "checkpoint.pt").write_bytes(b"x")
    _record(t["run"], "running")
    manifest = {"launches": [], "runs": {
        t["q"].hash: {"job_id": "77_0", "stage": "teachers", "run_dir": str(t["q"].run_dir),
                      "stdout": str(tmp_path / "77.out"), "stderr": str(tmp_path / "77.err")},
        t["int"].hash: {"job_id": "76_0", "stage": "teachers", "run_dir": str(t["int"].run_dir),
                        "stdout": str(tmp_path / "76.out"), "stderr": str(tmp_path / "76.err")}}}
    (tmp_path / "out").mkdir(exist_ok=True)
    atomic_write_json(tmp_path / "out" / executors.MANIFEST, manifest)
    with Lease(t["run"].run_dir):  # a live process trains it (this one)
        yield SimpleNamespace(grid=grid, gfile=str(gfile), t=t, s=s, v=v, manifest=manifest)


def _expected(world, col):
    out = {world.t[k].hash: TEACHER_TABLE[k][col] for k in TEACHERS}
    out.update({world.s[k].hash: STUDENT_TABLE[k][col] for k in TEACHERS})
    out[world.v.hash] = VANILLA[col]
    return out


def test_state_of_every_run_and_the_launch_decision(world):
    states = grid_states(world.grid, world.manifest["runs"], SLURM)
    assert {h: st.state for h, st in states.items()} == _expected(world, 0)
    assert states[world.s["fail"].hash].base == "failed" and states[world.s["div"].hash].blocked_by == (world.t["div"].label,)
    assert "loss is nan" in states[world.t["div"].hash].detail and "step 17" in states[world.t["div"].hash].detail
    assert "resumes from its last checkpoint" in states[world.t["int"].hash].detail
    assert "FAILED" in states[world.t["int"].hash].detail  # the job's end is said, the run is still interrupted
    assert states[world.t["q"].hash].job == "77_0" and "Priority" in states[world.t["q"].hash].detail
    for col, rerun in ((1, ()), (2, RERUN)):
        acts = grid_actions(world.grid, states, rerun)
        assert {h: a.verb for h, a in acts.items()} == _expected(world, col), rerun


def test_plan_and_local_dry_run_say_what_each_run_is(world, capsys):
    assert main(["grid", "plan", world.gfile]) == 0
    out = capsys.readouterr().out
    assert "stage teachers: 7 runs (1 already finished, 1 diverged, 1 failed, 1 interrupted, 1 running)" in out
    for k in ("div", "fail", "int", "run"):
        st = TEACHER_TABLE[k][0]
        assert f"{st:<12} {world.t[k].label}" in out, (k, out)
    assert f"blocked      {world.s['div'].label}  by {world.t['div'].label}: teacher {world.t['div'].label} diverged" in out
    assert "kept; --rerun-diverged reruns it" in out and "--rerun-failed reruns it" in out
    assert "a launch would: submit 6 (not started), resume 1 (interrupted), wait for 1 (running), keep 2 diverged, " \
           "keep 1 finished, hold 1 failed, block 3" in out
    # the local dry run: the plan, with the flags the launch was given
    assert main(["grid", "launch", world.gfile, "--dry-run", "--rerun-failed", "--rerun-diverged"]) == 0
    out = capsys.readouterr().out
    assert ("a launch with --rerun-failed --rerun-diverged would: submit 2 (diverged), submit 2 (failed), "
            "submit 7 (not started), resume 1 (interrupted), wait for 1 (running), keep 1 finished, block 1") in out
    assert not (world.t["div"].run_dir.parent / ".superseded").exists()  # a dry run moves nothing


@pytest.mark.parametrize("rerun", [(), RERUN])
def test_local_launch_runs_exactly_what_the_rule_submits(world, monkeypatch, rerun):
    ran = []

    def fake_run(cfg):
        r = next(x for x in world.grid.all_runs() if x.cfg == cfg)
        ran.append(r.hash)
        _record(r, "finished", metrics={"last_top1": 50.0})
        return {"status": "finished", "run_dir": str(r.run_dir), "metrics": {"last_top1": 50.0}}

    monkeypatch.setattr(executors, "run", fake_run)
    counts = executors.run_in_process(world.grid, log=lambda *a: None, rerun=rerun)
    # locally nothing asks Slurm: the queued teacher is not started here and runs
    want = {h for h, v in _expected(world, 2 if rerun else 1).items() if v in (SUBMIT, RESUME)}
    want.add(world.t["q"].hash)
    assert set(ran) == want and len(ran) == len(want)  # each once
    assert counts["failed"] == 0 and counts.get("busy") == 1 and counts.get("blocked", 0) == (3 if not rerun else 1)
    if rerun:  # diverged runs were moved aside, then run afresh
        moved = [p for p in world.grid.output.rglob("*") if p.parent.name == ".superseded"]
        assert len(moved) == 2 and all((p / "record.json").exists() for p in moved)


class _Job:
    def __init__(self, jid, folder):
        self.job_id = jid
        self.paths = SimpleNamespace(stdout=folder / f"{jid}.out", stderr=folder / f"{jid}.err")


class _Executor:
    arrays = []

    def __init__(self, folder, cluster, slurm_max_num_timeout):
        self.folder, self.params = folder, {}

    def update_parameters(self, **kw):
        self.params = kw

    def map_array(self, fn, args):
        n = 100 + len(_Executor.arrays)
        jobs = [_Job(f"{n}_{i}", self.folder) for i in range(len(args))]
        _Executor.arrays.append((self.params, list(args), jobs))
        return jobs


@pytest.mark.parametrize("rerun", [(), RERUN])
def test_slurm_launch_submits_exactly_what_the_rule_submits(world, monkeypatch, rerun):
    import submitit

    _Executor.arrays = []
    monkeypatch.setattr(submitit, "AutoExecutor", _Executor)
    monkeypatch.setattr(executors, "cluster_config", lambda: {"MaxArraySize": "100"})
    monkeypatch.setattr(executors, "job_states", lambda ids: {j: SLURM[j] for j in ids if j in SLURM})
    logs = []
    jobs = executors.submit_slurm(world.grid, "slurm/profiles/local_test.yaml", rerun=rerun, log=logs.append)
    submitted = {}
    for params, cfgs, js in _Executor.arrays:
        dep = (params.get("slurm_additional_parameters") or {}).get("dependency", "")
        for cfg, j in zip(cfgs, js):
            r = next(x for x in world.grid.all_runs() if x.cfg == cfg)
            submitted[r.hash] = (j.job_id, dep)
    want = {h for h, v in _expected(world, 2 if rerun else 1).items() if v in (SUBMIT, RESUME)}
    assert set(submitted) == want and sum(len(v) for v in jobs.values()) == len(want)
    # students wait for the teacher's task: queued from an earlier launch (77_0) or submitted now
    t_jobs = {k: submitted.get(world.t[k].hash, ("77_0" if k == "q" else None,))[0] for k in TEACHERS}
    for k in TEACHERS:  # each student waits for its own teacher's task only (one array per teacher set)
        if world.s[k].hash in submitted:
            want_dep = "" if k == "fin" else f"afterok:{t_jobs[k]}"
            assert submitted[world.s[k].hash][1] == want_dep, (k, submitted[world.s[k].hash])
    text = "\n".join(logs)
    assert f"{world.t['int'].label}: interrupted" in text and "resumes from its last checkpoint" in text
    assert f"{world.s['run'].label}: blocked by {world.t['run'].label}" in text
    if not rerun:
        assert f"{world.t['fail'].label}: failed — RuntimeError: boom" in text and "--rerun-failed" in text
        assert f"{world.t['div'].label}: diverged: kept" in text and "--rerun-diverged reruns it" in text
        assert f"{world.s['div'].label}: blocked by {world.t['div'].label}: teacher {world.t['div'].label} diverged" in text
    man = json.loads((world.grid.output / executors.MANIFEST).read_text())
    assert all(man["runs"][h]["job_id"] == submitted[h][0] for h in submitted)


def test_status_shows_each_run_as_what_it_is(world, monkeypatch, capsys):
    monkeypatch.setattr(executors, "job_states", lambda ids: {j: SLURM[j] for j in ids if j in SLURM})
    capsys.readouterr()
    assert main(["grid", "status", world.gfile]) == 0
    lines = capsys.readouterr().out.splitlines()

    def line(r):
        (ln,) = [x for x in lines if x[24:].split()[:1] == [r.label]]
        return ln

    for k in TEACHERS:
        assert line(world.t[k]).startswith(f"teachers   {TEACHER_TABLE[k][0]:<12} "), (k, line(world.t[k]))
        assert line(world.s[k]).startswith(f"students   {STUDENT_TABLE[k][0]:<12} "), (k, line(world.s[k]))
    assert "a launch resumes it" in line(world.t["int"]) and "job 76_0 FAILED" in line(world.t["int"])
    assert "kept; --rerun-diverged reruns it" in line(world.t["div"]) and "loss is nan" in line(world.t["div"])
    assert "--rerun-failed reruns it" in line(world.t["fail"]) and "boom" in line(world.t["fail"])
    assert f"by {world.t['fail'].label}: teacher {world.t['fail'].label} failed" in line(world.s["fail"])
    assert "a launch with --rerun-failed reruns the teacher, then it" in line(world.s["fail"])
    # its teacher trains outside Slurm (a held lease, no job to wait for): not blocked, but not submitted yet
    assert "not submitted until its teacher is" in line(world.s["run"])
    assert "a launch submits it" in line(world.s["new"])
    assert "Priority" in line(world.t["q"]) and line(world.v).startswith("students   diverged     ")
    assert lines[-1] == ("finished: 1, diverged: 2, failed: 1, interrupted: 1, not started: 6, running: 1, "
                         "queued: 1, blocked: 2")


def test_the_rule_itself_on_edge_cases():
    dead = RunState("failed", "x")
    # a record that says running under a held lease is running, whatever Slurm says of an older job
    assert run_state({"status": "running"}, lease_held=True, job={"job_id": "1", "state": "FAILED"}).state == "running"
    # a job left pending on a dependency that can never be met is not in flight
    assert run_state(None, job={"job_id": "1", "state": "PENDING", "reason": "DependencyNeverSatisfied"}).state == "not started"
    assert run_state(None, job={"job_id": "1", "state": "OUT_OF_MEMORY"}).state == "failed"
    assert run_state(None, checkpoint=True).state == "interrupted"
    assert run_state({"status": "finished"}, stale="code changed").state == "stale"
    assert run_state({"status": "finished"}, teachers=[("t", RunState("stale"))]).state == "stale"
    assert run_state({"status": DIVERGED}, teachers=[("t", dead)]).state == DIVERGED  # a result stays a result
    assert run_state({"status": FINISHED}, teachers=[("t", dead)]).state == FINISHED
    blocked = run_state({"status": "interrupted"}, teachers=[("t", dead)])
    assert blocked.state == "blocked" and blocked.base == "interrupted"
    assert launch_action(blocked, (), [("t", dead, launch_action(dead))]).verb == BLOCK
    assert launch_action(blocked, ("failed",), [("t", dead, launch_action(dead, ("failed",)))]).verb == RESUME
