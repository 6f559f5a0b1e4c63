"""Two launches of one grid racing: the second waits for the first's lock on the grid's output folder, then
decides from the manifest the first wrote, and submits nothing twice (3 of 8 racing launches submitted
every run twice before the lock). submitit is faked and Slurm's answers given, so no cluster is needed;
the launches are two threads, each with its own lock handle, as two processes would have."""
import threading
from types import SimpleNamespace

import pytest

from kdsuite.experiments.grid import expand
from kdsuite.experiments.grid_state import LaunchBusy, launch_lock
from kdsuite.slurm import executors

TINY = {"dataset": {"name": "digits", "batch_size": 32}, "epochs": 1, "max_steps_per_epoch": 2, "progress": "none"}
GUARD_S = 120  # a guard against a hang or a missing lock, not a timing check


def _grid(root):
    return expand({"name": "race", "output": str(root), "defaults": TINY, "stages": {
        "teachers": {"runs": [{"key": "t", "student": "cifar_resnet8"}]},
        "students": {"needs": "teachers", "axes": {"method": ["kd"], "seed": [0, 1],
                                                   "pair": [{"teachers": ["t"], "student": "cifar_resnet8"}]}}}})


class _Fake:
    """submitit's AutoExecutor as the launches see it; every job it made is PENDING for job_states."""
    submitted = []
    first_inside = threading.Event()
    second_waits = threading.Event()

    def __init__(self, folder, cluster, slurm_max_num_timeout):
        self.folder = folder

    def update_parameters(self, **kw):
        pass

    def map_array(self, fn, args):
        if not _Fake.submitted:  # the first launch, inside its first submission: let the second one try now
            _Fake.first_inside.set()
            _Fake.second_waits.wait(GUARD_S)
        n = 500 + len(_Fake.submitted)
        jobs = [SimpleNamespace(job_id=f"{n}_{i}", paths=SimpleNamespace(stdout=self.folder / f"{n}_{i}.out",
                                                                        stderr=self.folder / f"{n}_{i}.err"))
                for i in range(len(args))]
        _Fake.submitted.extend(j.job_id for j in jobs)
        return jobs


def test_two_racing_launches_submit_every_run_once(tmp_path, monkeypatch):
    import submitit

    _Fake.submitted, _Fake.first_inside, _Fake.second_waits = [], threading.Event(), threading.Event()
    monkeypatch.setattr(submitit, "AutoExecutor", _Fake)
    monkeypatch.setattr(executors, "cluster_config", lambda: {"MaxArraySize": "100"})
    monkeypatch.setattr(executors, "job_states", lambda ids: {
        j: {"state": "PENDING", "reason": "Priority", "source": "squeue"} for j in ids if j in _Fake.submitted})
    grids = [_grid(tmp_path / "out"), _grid(tmp_path / "out")]  # each launch expands the grid itself
    results, logs = [None, None], [[], []]

    def launch(i):
        def log(msg):
            logs[i].append(msg)
            if "waiting for another launch" in msg:
                _Fake.second_waits.set()
        results[i] = executors.submit_slurm(grids[i], "slurm/profiles/local_test.yaml", log=log)

    first = threading.Thread(target=launch, args=(0,))
    first.start()
    assert _Fake.first_inside.wait(GUARD_S)
    second = threading.Thread(target=launch, args=(1,))
    second.start()
    first.join(GUARD_S)
    second.join(GUARD_S)
    assert not first.is_alive() and not second.is_alive()
    assert _Fake.second_waits.is_set(), logs[1]  # it waited for the lock, naming the other launch
    assert any("pid" in m for m in logs[1] if "waiting for another launch" in m), logs[1]
    assert sum(len(v) for v in results[0].values()) == 3
    assert results[1] == {"teachers": [], "students": []}, logs[1]
    assert len(_Fake.submitted) == len(set(_Fake.submitted)) == 3
    assert sum("not submitted again" in m for m in logs[1]) == 3, logs[1]
    man = executors.read_manifest(tmp_path / "out")
    assert sorted(v["job_id"] for v in man["runs"].values()) == sorted(_Fake.submitted)
    assert len(man["launches"]) == 1  # the second launch submitted nothing and recorded no launch


def test_a_local_launch_refuses_while_another_holds_the_grid(tmp_path):
    grid = _grid(tmp_path / "out")
    with launch_lock(grid.output):
        with pytest.raises(LaunchBusy, match=r"another launch of this grid is running \(pid \d+ on .*\.launch\.lock"):
            executors.run_in_process(grid, log=lambda *a: None)
    assert not any(r.run_dir.exists() for r in grid.all_runs())


def test_a_job_that_did_not_finish_its_run_never_ends_completed(tmp_path):
    """A Slurm job that finds its run busy, or diverged, must not satisfy afterok for it: it raises."""
    import json

    from kdsuite.experiments.lease import Lease
    from kdsuite.experiments.run import prepare

    cfg = dict(TINY, student="cifar_resnet8", output={"root": str(tmp_path)})
    _, h, run_dir = prepare(cfg)
    with Lease(run_dir):
        with pytest.raises(executors.RunNotDone, match=r"^busy: run .* is already being trained"):
            executors.RunJob()(cfg)
    (run_dir / "record.json").write_text(json.dumps({"status": "diverged", "run_id": h, "config_hash": h,
                                                     "run_dir": str(run_dir)}))
    with pytest.raises(executors.RunNotDone, match="^diverged: "):
        executors.RunJob()(cfg)
