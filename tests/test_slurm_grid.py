"""Grids on the real local Slurm cluster: stages larger than MaxArraySize split into several arrays,
a relaunch while jobs are queued submits nothing, the launch manifest names every job, and a run
preempted mid-training (submitit's signal, requeue) finishes with exactly an uninterrupted run's result."""
import json
import subprocess
import time

import pytest
import torch

from kdsuite.core.records import read_record
from kdsuite.experiments.grid import expand
from kdsuite.experiments.run import run
from kdsuite.slurm.executors import MANIFEST, read_manifest, submit_slurm
from tests.slurm_fixture import MAX_ARRAY

pytestmark = pytest.mark.slurm
PROFILE = "slurm/profiles/local_test.yaml"


def _wait(cond, timeout, poke=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        if poke:
            poke()
        time.sleep(1)
    return cond()


def test_a_stage_larger_than_max_array_size_is_split_and_relaunches_never_duplicate(slurm_cluster, tmp_path):
    spec = {"name": "split", "output": str(tmp_path / "out"), "defaults": {
        "dataset": {"name": "digits", "batch_size": 64}, "epochs": 1, "max_steps_per_epoch": 2, "progress": "none"},
        "stages": {"teachers": {"runs": [{"key": "t", "student": "cifar_resnet14"}]},
                   "students": {"needs": "teachers", "axes": {
                       "method": ["kd"], "seed": [0, 1, 2, 3, 4, 5],
                       "pair": [{"teachers": ["t"], "student": "cifar_resnet8"}]}}}}
    grid = expand(spec)
    assert len(grid.stages["students"]) == 6 > MAX_ARRAY
    logs = []
    jobs = submit_slurm(grid, PROFILE, log=logs.append)
    arrays = {j.job_id.split("_")[0] for j in jobs["students"]}
    # one teacher set (students are grouped by the teacher tasks they wait for), split at MaxArraySize
    assert len(jobs["students"]) == 6 and len(arrays) == 2  # 4 + 2 tasks
    teacher_task = jobs["teachers"][0].job_id
    man = json.loads((tmp_path / "out" / MANIFEST).read_text())
    student_arrays = [a for a in man["launches"][0]["arrays"] if a["stage"] == "students"]
    assert sorted(a["tasks"] for a in student_arrays) == [2, 4]
    assert all(a["dependency"] == [teacher_task] for a in student_arrays)
    assert {r.hash for r in grid.all_runs()} == set(man["runs"])
    # launched again while the jobs are queued or running: nothing is submitted twice
    again = submit_slurm(grid, PROFILE, log=logs.append)
    assert again == {"teachers": [], "students": []}
    assert _wait(lambda: all((read_record(r.run_dir) or {}).get("status") == "finished" for r in grid.all_runs()), 400), \
        [open(j.paths.stderr).read()[-2000:] for j in jobs["students"] if j.paths.stderr.exists()][:1]
    recs = [read_record(r.run_dir) for r in grid.all_runs()]
    assert len({r["provenance"]["slurm_job_id"] for r in recs}) == 7
    assert submit_slurm(grid, PROFILE, log=logs.append) == {"teachers": [], "students": []}
    assert len(read_manifest(tmp_path / "out")["launches"]) == 1  # launches that submit nothing leave no entry


def _history(rec):
    return [{k: v for k, v in h.items() if "time" not in k} for h in rec["history"]]


def test_a_preempted_run_resumes_to_the_uninterrupted_result(slurm_cluster, tmp_path):
    cfg = {"student": "cifar_resnet8", "epochs": 16, "progress": "none", "dataset": {"batch_size": 16},
           "schedule": {"name": "cosine"}}
    spec = {"name": "preempt", "output": str(tmp_path / "slurm"), "defaults": cfg,
            "stages": {"only": {"runs": [{"seed": 3}]}}}
    grid = expand(spec)
    (r,) = grid.stages["only"]
    (job,) = submit_slurm(grid, PROFILE)["only"]
    ckpt = r.run_dir / "checkpoint.pt"
    assert _wait(ckpt.exists, 240), "the job never wrote its first epoch checkpoint"
    assert (read_record(r.run_dir) or {}).get("status") == "running"
    job._interrupt()  # what Slurm does on preemption: SIGTERM, then submitit's USR2 → checkpoint + requeue
    job_id = job.job_id
    # while it waits to run again the run is interrupted (resumable), not failed (submitit's SystemExit: -1)
    assert _wait(lambda: (read_record(r.run_dir) or {}).get("status") == "interrupted", 120), read_record(r.run_dir)

    def poke():  # the local cluster defers a requeued job's start; make it eligible at once
        subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], capture_output=True)

    assert _wait(lambda: (read_record(r.run_dir) or {}).get("status") == "finished", 400, poke), \
        job.paths.stderr.read_text()[-3000:] if job.paths.stderr.exists() else "no log"
    log = job.paths.stderr.read_text() + job.paths.stdout.read_text()
    assert "this job is preempted" in log and "requeu" in log.lower(), log[-3000:]

    ref = run(dict(cfg, seed=3, output={"root": str(tmp_path / "plain")}))
    got = read_record(r.run_dir)
    assert got["config_hash"] == ref["config_hash"]
    for k in ("last_top1", "best_top1", "last_top5", "best_epoch"):
        assert got["metrics"][k] == ref["metrics"][k], k
    assert _history(got) == _history(ref)
    a = torch.load(r.run_dir / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "plain" / got["run_dir"].split("/")[-1] / "checkpoint.pt", weights_only=False)
    for k, v in a["method"].items():
        assert torch.equal(v, b["method"][k]), k


def test_a_two_task_slurm_job_trains_data_parallel(slurm_cluster, tmp_path):
    """tasks_per_node: 2 → submitit starts the run in 2 Slurm tasks, which join one gloo process group."""
    cfg = {"student": "test_efficientnet_gn", "epochs": 1, "max_steps_per_epoch": 4, "progress": "none",
           "optim": {"lr": 0.01}, "dataset": {"batch_size": 30}}
    spec = {"name": "ddp", "output": str(tmp_path / "slurm"), "defaults": cfg,
            "resources": {"tasks_per_node": 2, "cpus_per_task": 1},
            "stages": {"only": {"runs": [{"seed": 0}]}}}
    grid = expand(spec)
    (r,) = grid.stages["only"]
    (job,) = submit_slurm(grid, PROFILE)["only"]
    assert _wait(lambda: (read_record(r.run_dir) or {}).get("status") in ("finished", "failed"), 300), \
        job.paths.stderr.read_text()[-3000:] if job.paths.stderr.exists() else "no log"
    got = read_record(r.run_dir)
    assert got["status"] == "finished" and got["effective"]["world_size"] == 2, got.get("error")
    ref = run(dict(cfg, seed=0, output={"root": str(tmp_path / "plain")}))
    for h1, h2 in zip(ref["history"], got["history"]):
        assert h2["test/student/loss"] == pytest.approx(h1["test/student/loss"], rel=1e-3)


def test_failed_runs_are_resubmitted_only_with_rerun_failed(slurm_cluster, tmp_path):
    from kdsuite.core.records import write_record

    spec = {"name": "rerun", "output": str(tmp_path / "out"), "defaults": {
        "epochs": 1, "max_steps_per_epoch": 2, "progress": "none"},
        "stages": {"only": {"runs": [{"seed": 0}, {"seed": 1}]}}}
    grid = expand(spec)
    bad, good = grid.stages["only"]
    write_record(bad.run_dir, {"run_id": bad.hash, "config_hash": bad.hash, "status": "failed", "error": "boom"})
    first = submit_slurm(grid, PROFILE)["only"]
    assert len(first) == 1  # only the run without a record; the failed one waits for --rerun-failed
    assert _wait(lambda: (read_record(good.run_dir) or {}).get("status") == "finished", 300)
    assert submit_slurm(grid, PROFILE)["only"] == []
    again = submit_slurm(grid, PROFILE, rerun_failed=True)["only"]
    assert len(again) == 1
    assert _wait(lambda: (read_record(bad.run_dir) or {}).get("status") == "finished", 300)



def test_a_packed_stage_trains_several_runs_in_one_array_task(slurm_cluster, tmp_path):
    """resources.pack: 2 → two runs share one array task (one process each, the task's CPUs split between
    them), each writes its own record, and each equals the same run trained alone with as many threads."""
    cfg = {"epochs": 2, "max_steps_per_epoch": 8, "progress": "none"}
    spec = {"name": "packed", "output": str(tmp_path / "slurm"), "defaults": cfg,
            "resources": {"pack": 2, "cpus_per_task": 2},
            "stages": {"only": {"axes": {"seed": [0, 1, 2]}}}}
    grid = expand(spec)
    runs = grid.stages["only"]
    jobs = submit_slurm(grid, PROFILE)["only"]
    assert len(jobs) == 2  # 3 runs packed by 2 → 2 array tasks
    assert _wait(lambda: all((read_record(r.run_dir) or {}).get("status") in ("finished", "failed") for r in runs), 400), \
        [j.paths.stderr.read_text()[-3000:] for j in jobs if j.paths.stderr.exists()]
    recs = [read_record(r.run_dir) for r in runs]
    assert [r["status"] for r in recs] == ["finished"] * 3, [r.get("error") for r in recs]
    ids = [r["provenance"]["slurm_job_id"] for r in recs]
    assert ids[0] == ids[1] != ids[2]
    assert [s["status"] for j in jobs for s in j.result()] == ["finished"] * 3
    threads = torch.get_num_threads()
    try:
        for r, rec, n in zip(runs, recs, (1, 1, 2)):  # 2 CPUs: 1 thread each in the pair, 2 for the lone run
            torch.set_num_threads(n)
            alone = run(dict(r.cfg, output={"root": str(tmp_path / "alone")}))
            assert [h["test/student/loss"] for h in rec["history"]] == [h["test/student/loss"] for h in alone["history"]]
            assert rec["metrics"]["last_top1"] == alone["metrics"]["last_top1"]
    finally:
        torch.set_num_threads(threads)


def test_a_preempted_packed_task_resumes_every_run_to_its_uninterrupted_result(slurm_cluster, tmp_path):
    cfg = {"student": "cifar_resnet8", "epochs": 12, "progress": "none", "dataset": {"batch_size": 16},
           "schedule": {"name": "cosine"}}
    spec = {"name": "preempt_packed", "output": str(tmp_path / "slurm"), "defaults": cfg,
            "resources": {"pack": 2, "cpus_per_task": 2},
            "stages": {"only": {"axes": {"seed": [4, 5]}}}}
    grid = expand(spec)
    runs = grid.stages["only"]
    (job,) = submit_slurm(grid, PROFILE)["only"]
    assert _wait(lambda: all((r.run_dir / "checkpoint.pt").exists() for r in runs), 240), \
        "the packed runs never wrote their first epoch checkpoints"
    assert all((read_record(r.run_dir) or {}).get("status") == "running" for r in runs)
    job._interrupt()
    job_id = job.job_id

    def poke():
        subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], capture_output=True)

    assert _wait(lambda: all((read_record(r.run_dir) or {}).get("status") == "finished" for r in runs), 400, poke), \
        job.paths.stderr.read_text()[-3000:] if job.paths.stderr.exists() else "no log"
    log = job.paths.stderr.read_text() + job.paths.stdout.read_text()
    assert "this job is preempted" in log and "requeu" in log.lower(), log[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each of the two packed processes had
    try:
        for r in runs:
            ref = run(dict(r.cfg, output={"root": str(tmp_path / "plain")}))
            got = read_record(r.run_dir)
            assert got["metrics"]["last_top1"] == ref["metrics"]["last_top1"]
            assert _history(got) == _history(ref)
    finally:
        torch.set_num_threads(threads)
