"""Faults of a grid on the real local Slurm cluster that used to need a person: a failed teacher's students
are cancelled by Slurm and resubmitted after the teacher's rerun; Slurm that can't be asked means no
submission; a second job on a run exits at once; a run left failed by submitit's timeout cap is listed
with its reason and rerun by --rerun-failed."""
import json
import os
import subprocess
import time

import pytest

from kdsuite.core.records import read_record
from kdsuite.cli import main
from kdsuite.experiments.grid import expand
from kdsuite.slurm.executors import IN_FLIGHT, SlurmUnavailable, read_manifest, submit_slurm

pytestmark = pytest.mark.slurm
PROFILE = "slurm/profiles/local_test.yaml"
TINY = {"epochs": 1, "max_steps_per_epoch": 2, "progress": "none"}


def _wait(cond, timeout, poke=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        if poke:
            poke()
        time.sleep(1)
    return cond()


def _slurm_state(job_id):
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", job_id.split("_")[0], "-o", "%i|%T|%r"],
                         capture_output=True, text=True).stdout
    return dict((l.split("|")[0], l.split("|", 1)[1]) for l in out.split())


def _grid_spec(tmp_path, device):
    # device is not part of a run's identity: the same runs, first launched where they cannot run
    return {"name": "dep", "output": str(tmp_path / "out"), "defaults": dict(TINY, device=device),
            "stages": {"teachers": {"runs": [{"key": "t", "student": "cifar_resnet8"}]},
                       "students": {"needs": "teachers", "axes": {
                           "method": ["kd"], "seed": [0, 1], "pair": [{"teachers": ["t"], "student": "cifar_resnet8"}]}}}}


def test_students_of_a_failed_teacher_are_cancelled_then_resubmitted_after_its_rerun(slurm_cluster, tmp_path, capsys):
    grid = expand(_grid_spec(tmp_path, "cuda"))  # the teacher's job fails before writing a record (no CUDA)
    (teacher,), students = grid.stages["teachers"], grid.stages["students"]
    jobs = submit_slurm(grid, PROFILE)
    t_job, s_jobs = jobs["teachers"][0].job_id, [j.job_id for j in jobs["students"]]
    assert _wait(lambda: all(_slurm_state(j).get(j, "").startswith("CANCELLED|DependencyNeverSatisfied")
                             for j in s_jobs), 240), (_slurm_state(t_job), _slurm_state(s_jobs[0]))
    assert _slurm_state(t_job)[t_job].startswith("FAILED")
    assert read_record(teacher.run_dir) is None
    # status tells the truth: the teacher failed (no record, its job FAILED), its students are blocked
    spec_file = tmp_path / "dep.yaml"
    spec_file.write_text(json.dumps(_grid_spec(tmp_path, "cpu")))
    capsys.readouterr()
    assert main(["grid", "status", str(spec_file)]) == 0
    out = capsys.readouterr().out
    assert f"failed       {teacher.label}" in out and "FAILED" in out, out
    for s in students:
        assert f"blocked      {s.label}" in out and f"teacher {teacher.label} failed" in out, out
    # one rule: a failed run without a record waits for --rerun-failed like one with a record
    grid = expand(_grid_spec(tmp_path, "cpu"))
    logs = []
    assert submit_slurm(grid, PROFILE, log=logs.append) == {"teachers": [], "students": []}
    assert any("not resubmitted (relaunch with --rerun-failed)" in l for l in logs), logs
    assert sum("blocked by" in l for l in logs) == 2, logs
    again = submit_slurm(grid, PROFILE, rerun_failed=True, log=logs.append)
    assert len(again["teachers"]) == 1 and len(again["students"]) == 2
    man = read_manifest(tmp_path / "out")
    assert man["launches"][-1]["arrays"][1]["dependency"] == [again["teachers"][0].job_id]
    assert _wait(lambda: all((read_record(r.run_dir) or {}).get("status") == "finished" for r in grid.all_runs()), 400), \
        [j.paths.stderr.read_text()[-2000:] for j in again["students"] if j.paths.stderr.exists()]


def test_slurm_that_cannot_be_asked_means_no_submission(slurm_cluster, tmp_path, monkeypatch, capsys):
    grid = expand({"name": "q", "output": str(tmp_path / "out"), "defaults": TINY,
                   "stages": {"only": {"runs": [{"seed": 0}]}}})
    (r,) = grid.stages["only"]
    # an earlier launch queued this run (job 999999_0 may still be running, for all we know)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "slurm-manifest.json").write_text(json.dumps(
        {"launches": [], "runs": {r.hash: {"job_id": "999999_0", "stage": "only", "run_dir": str(r.run_dir),
                                           "stdout": "x", "stderr": "x"}}}))
    before = set(subprocess.run(["squeue", "-h", "-t", "all", "-o", "%F"], capture_output=True, text=True).stdout.split())
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "squeue").write_text("#!/bin/sh\necho 'squeue: error: Unable to contact slurm controller' >&2\nexit 1\n")
    (fake / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    with pytest.raises(SlurmUnavailable, match="Unable to contact slurm controller.*Nothing was submitted"):
        submit_slurm(grid, PROFILE)
    capsys.readouterr()
    assert main(["grid", "status", "--output", str(tmp_path / "out"), _write(tmp_path, grid.spec)]) == 2
    assert "cannot ask Slurm for job states" in capsys.readouterr().err
    # no controller at all (a shipped profile named from outside the repository root still resolves);
    # a real scontrol takes up to a minute to give up on a dead controller, this one answers at once
    (fake / "scontrol").write_text("#!/bin/sh\necho 'slurm_load_ctl_conf error: Unable to contact slurm "
                                   "controller (connect failure)' >&2\nexit 1\n")
    (fake / "scontrol").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    assert main(["grid", "launch", _write(tmp_path, grid.spec), "--cluster", "slurm", "--profile", PROFILE]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdsuite: error: cannot read the Slurm configuration") and "Traceback" not in err, err
    assert main(["grid", "launch", _write(tmp_path, grid.spec), "--cluster", "slurm"]) == 2
    assert "--cluster slurm needs --profile" in capsys.readouterr().err
    monkeypatch.undo()
    after = set(subprocess.run(["squeue", "-h", "-t", "all", "-o", "%F"], capture_output=True, text=True).stdout.split())
    assert after <= before and read_record(r.run_dir) is None  # no new job (ended ones may be purged meanwhile)


def _write(tmp_path, spec):
    p = tmp_path / "grid.yaml"
    p.write_text(json.dumps(spec))
    return str(p)


def test_a_second_job_on_a_running_run_exits_at_once(slurm_cluster, tmp_path):
    import submitit

    from kdsuite.slurm.executors import RunJob

    cfg = {"student": "cifar_resnet8", "epochs": 5, "max_steps_per_epoch": 40, "progress": "none",
           "dataset": {"batch_size": 16}}
    grid = expand({"name": "twice", "output": str(tmp_path / "out"), "defaults": cfg,
                   "stages": {"only": {"runs": [{"seed": 0}]}}})
    (r,) = grid.stages["only"]
    (first,) = submit_slurm(grid, PROFILE)["only"]
    assert _wait(lambda: (r.run_dir / "checkpoint.pt").exists(), 240), "the first job never trained"
    # the first job is suspended (SIGSTOP: it keeps its lease) while a second job for the same run, submitted
    # behind the launcher's back, starts — without that, a fast host finished the first job before the
    # second one had imported torch, and the second found a finished run
    subprocess.run(["scontrol", "suspend", first.job_id], check=True, capture_output=True)
    try:
        ex = submitit.AutoExecutor(folder=tmp_path / "logs", cluster="slurm")
        ex.update_parameters(slurm_partition="debug", timeout_min=10, cpus_per_task=1, mem_gb=2)
        second = ex.submit(RunJob(), r.cfg)
        # it ends FAILED ("busy"), not COMPLETED: a COMPLETED duplicate satisfied its run's students' afterok
        with pytest.raises(Exception, match="busy") as failed:
            second.result()
    finally:
        subprocess.run(["scontrol", "resume", first.job_id], check=True, capture_output=True)
    assert f"Slurm job {first.job_id}" in str(failed.value), failed.value
    assert (read_record(r.run_dir) or {}).get("status") == "running"  # still the first job's
    assert _wait(lambda: (read_record(r.run_dir) or {}).get("status") == "finished", 400), \
        first.paths.stderr.read_text()[-3000:] if first.paths.stderr.exists() else "no log"
    assert read_record(r.run_dir)["provenance"]["slurm_job_id"] == first.job_id.split("_")[0]


def test_a_run_failed_by_the_timeout_cap_is_listed_and_rerun(slurm_cluster, tmp_path, capsys):
    profile = tmp_path / "capped.yaml"
    # every signal counts as a timeout when timeout_min <= 10 (submitit's rule); no requeue after one
    profile.write_text("partition: debug\ntimeout_min: 5\ncpus_per_task: 1\nmem_gb: 2\nmax_num_timeout: 0\n")
    cfg = {"student": "cifar_resnet8", "epochs": 10, "max_steps_per_epoch": 30, "progress": "none",
           "dataset": {"batch_size": 16}}
    spec = {"name": "cap", "output": str(tmp_path / "out"), "defaults": cfg, "stages": {"only": {"runs": [{"seed": 0}]}}}
    grid = expand(spec)
    (r,) = grid.stages["only"]
    (job,) = submit_slurm(grid, profile)["only"]
    assert _wait(lambda: (r.run_dir / "checkpoint.pt").exists(), 240), "the job never trained"
    job._interrupt(timeout=True)
    assert _wait(lambda: (read_record(r.run_dir) or {}).get("status") == "failed", 120), read_record(r.run_dir)
    assert "timeout" in read_record(r.run_dir)["error"] and "max_num_timeout" in read_record(r.run_dir)["error"]
    assert _wait(lambda: _slurm_state(job.job_id).get(job.job_id, "").split("|")[0] not in IN_FLIGHT, 120)
    logs = []
    assert submit_slurm(grid, profile, log=logs.append) == {"only": []}
    assert any("failed — timeout" in l and "--rerun-failed" in l for l in logs), logs
    capsys.readouterr()
    assert main(["grid", "status", _write(tmp_path, spec)]) == 0
    out = capsys.readouterr().out
    assert f"failed       {r.label}" in out and "max_num_timeout" in out, out
    # rerun as the error advises, with a longer time limit (the profile is not part of the run's identity)
    profile.write_text(profile.read_text().replace("timeout_min: 5", "timeout_min: 30"))
    (again,) = submit_slurm(grid, profile, rerun_failed=True)["only"]
    assert _wait(lambda: (read_record(r.run_dir) or {}).get("status") == "finished", 400), \
        again.paths.stderr.read_text()[-3000:] if again.paths.stderr.exists() else "no log"
    assert "resuming from epoch" in again.paths.stderr.read_text()


def test_dry_run_prints_arrays_dependencies_and_sbatch_lines_and_submits_nothing(slurm_cluster, tmp_path, capsys):
    profile = tmp_path / "site.yaml"
    profile.write_text("partition: debug\ntimeout_min: 30\naccount: proj\nqos: high\ngres: 'gpu:1'\nexclusive: true\n"
                       "mail_user: me@example.org\nmail_type: END,FAIL\nmax_num_timeout: 7\n"
                       "sbatch: {reservation: kd-res, nice: 5}\n")
    spec = _grid_spec(tmp_path, "cpu")
    before = set(subprocess.run(["squeue", "-h", "-t", "all", "-o", "%F"], capture_output=True, text=True).stdout.split())
    assert main(["grid", "launch", _write(tmp_path, spec), "--cluster", "slurm", "--profile", str(profile),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    teachers, students = out.split("array 1 (stage students)")
    assert "array 0 (stage teachers): 1 tasks, 1 runs" in teachers and "depends on: nothing" in teachers
    assert "2 tasks, 2 runs" in students and "depends on: array0_0" in students
    for line in ("#SBATCH --partition=debug", "#SBATCH --account=proj", "#SBATCH --qos=high", "#SBATCH --gres=gpu:1",
                 "#SBATCH --exclusive", "#SBATCH --mail-user=me@example.org", "#SBATCH --mail-type=END,FAIL",
                 "#SBATCH --reservation=kd-res", "#SBATCH --nice=5"):
        assert line in teachers and line in students, (line, out)
    assert "#SBATCH --dependency=afterok:array0_0" in students and "--kill-on-invalid-dep=yes" in students
    assert "#SBATCH --array=0-1%" in students
    assert "would submit 3 array tasks: teachers 1, students 2" in out
    after = set(subprocess.run(["squeue", "-h", "-t", "all", "-o", "%F"], capture_output=True, text=True).stdout.split())
    assert after <= before and not (tmp_path / "out" / "slurm-manifest.json").exists()
