"""Submission planning without Slurm: :func:`kdsuite.slurm.plan.plan_submission` is a pure function of the
grid, its runs' states and actions, the earlier launches' jobs, the profile and the array size limit. Each
expectation is derived here from the grid (which runs need which teacher), not copied from a plan."""
import subprocess

import pytest
import yaml

from kdsuite.experiments.grid import load_grid
from kdsuite.experiments.grid_state import grid_actions, grid_states
from kdsuite.slurm.plan import Cancel, Note, PlannedArray, plan_submission

TEACHERS = ("a", "b", "c")
PROFILE = {"partition": "debug", "timeout_min": 30}


@pytest.fixture
def grid(tmp_path):
    tiny = {"dataset": {"name": "digits", "batch_size": 32}, "epochs": 1, "max_steps_per_epoch": 2, "progress": "none"}
    spec = {"name": "plan", "output": str(tmp_path / "out"), "defaults": tiny, "stages": {
        "teachers": {"runs": [{"key": k, "student": "cifar_resnet8", "seed": i} for i, k in enumerate(TEACHERS)]},
        "students": {"needs": "teachers", "axes": {
            "method": ["kd"], "seed": [0, 1],
            "pair": [{"teachers": [k], "student": "cifar_resnet14"} for k in TEACHERS]}}}}
    gfile = tmp_path / "g.yaml"
    gfile.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_grid(str(gfile))


@pytest.fixture(autouse=True)
def no_slurm(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError(f"planning ran a command: {a}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


def _plan(grid, earlier=None, slurm=None, profile=PROFILE, limit=1001):
    earlier, slurm = earlier or {}, slurm or {}
    states = grid_states(grid, earlier, slurm)
    return plan_submission(grid, states, grid_actions(grid, states), earlier, slurm, profile, limit)


def _arrays(steps):
    return [s for s in steps if isinstance(s, PlannedArray)]


def _task_of(arrays):
    """run hash -> the plan's name of the task that trains it."""
    return {r.hash: a.task_name(t) for a in arrays for t, g in enumerate(a.groups) for r in g}


def test_fresh_grid_one_teacher_array_and_one_student_array_per_teacher(grid):
    arrays = _arrays(_plan(grid))
    teachers, students = grid.stages["teachers"], grid.stages["students"]
    assert [a.index for a in arrays] == list(range(len(arrays)))
    assert arrays[0].stage == "teachers" and arrays[0].deps == []
    assert [g for a in arrays if a.stage == "teachers" for g in a.groups] == [[r] for r in teachers]
    task = _task_of(arrays)
    by_key = {r.key: r for r in teachers}
    student_arrays = [a for a in arrays if a.stage == "students"]
    assert len(student_arrays) == len(TEACHERS)  # a student waits for its own teacher only
    for a in student_arrays:
        for g in a.groups:
            (r,) = g
            assert a.deps == [task[by_key[r.teacher_keys[0]].hash]]
    assert sorted(r.hash for a in student_arrays for g in a.groups for r in g) == sorted(r.hash for r in students)
    assert all(a.resources["partition"] == "debug" for a in arrays)


def test_array_size_limit_and_pack(grid):
    teachers = grid.stages["teachers"]
    arrays = [a for a in _arrays(_plan(grid, limit=2)) if a.stage == "teachers"]
    assert [len(a.groups) for a in arrays] == [2, len(teachers) - 2]
    packed = [a for a in _arrays(_plan(grid, profile=dict(PROFILE, pack=2))) if a.stage == "teachers"]
    assert len(packed) == 1 and packed[0].pack == 2
    assert [[r.hash for r in g] for g in packed[0].groups] == [[r.hash for r in teachers[i:i + 2]]
                                                              for i in range(0, len(teachers), 2)]


def test_a_queued_teacher_is_waited_for_by_its_job_and_a_stuck_job_is_cancelled(grid):
    by_key = {r.key: r for r in grid.stages["teachers"]}
    queued = by_key["a"]
    stuck = next(r for r in grid.stages["students"] if r.teacher_keys == ["b"])
    earlier = {queued.hash: {"job_id": "77_0"}, stuck.hash: {"job_id": "80_3"}}
    slurm = {"77_0": {"state": "PENDING", "reason": "Priority", "source": "squeue"},
             "80_3": {"state": "PENDING", "reason": "DependencyNeverSatisfied", "source": "squeue"}}
    steps = _plan(grid, earlier, slurm)
    arrays = _arrays(steps)
    assert queued.hash not in _task_of(arrays)  # never submitted twice
    assert any(isinstance(s, Note) and queued.label in s.text and "queued" in s.text for s in steps)
    waiting = [a for a in arrays if a.stage == "students" and a.groups[0][0].teacher_keys == ["a"]]
    assert len(waiting) == 1 and waiting[0].deps == ["77_0"]  # its students wait for the queued job
    assert {r.hash for g in waiting[0].groups for r in g} == {r.hash for r in grid.stages["students"]
                                                             if r.teacher_keys == ["a"]}
    (cancel,) = [s for s in steps if isinstance(s, Cancel)]
    assert cancel.job_id == "80_3" and stuck.label in cancel.text
    holding = next(i for i, s in enumerate(steps) if isinstance(s, PlannedArray)
                   and any(r.hash == stuck.hash for g in s.groups for r in g))
    assert steps.index(cancel) < holding  # cancelled before it is submitted again


def test_planning_is_pure(grid, tmp_path):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    first, second = _plan(grid), _plan(grid)
    assert first == second
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
