"""The local one-node Slurm cluster really schedules: a submitit job array returns its results and a
running batch job that is requeued runs again."""
import subprocess
import time

import pytest
import submitit

from tests.slurm_fixture import SCRIPT, slurm_cluster  # noqa: F401

pytestmark = pytest.mark.slurm


def square(x):
    return x * x


def test_submitit_job_array(slurm_cluster, tmp_path):
    ex = submitit.AutoExecutor(folder=tmp_path / "logs", cluster="slurm")
    ex.update_parameters(slurm_partition="debug", timeout_min=5, cpus_per_task=1, slurm_mem="500M")
    jobs = ex.map_array(square, [1, 2, 3])
    assert len({j.job_id.split("_")[0] for j in jobs}) == 1  # one array
    assert [j.result() for j in jobs] == [1, 4, 9]


def test_requeued_job_runs_again(slurm_cluster, tmp_path):
    marker = tmp_path / "runs.txt"
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\necho run >> {marker}\nsleep 8\n")
    out = subprocess.run(["sbatch", "--parsable", "--requeue", "-p", "debug", "-o", str(tmp_path / "o.txt"), str(script)],
                         capture_output=True, text=True, check=True)
    job = out.stdout.strip()
    deadline = time.time() + 60
    while time.time() < deadline and not (marker.exists() and marker.read_text().count("run") >= 1):
        time.sleep(0.5)
    assert marker.exists(), "the job never started"
    subprocess.run(["scontrol", "requeue", job], check=True)
    deadline = time.time() + 90
    while time.time() < deadline and marker.read_text().count("run") < 2:
        # Slurm defers a requeued job's begin time once it is pending again; make it eligible at once
        subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], capture_output=True)
        time.sleep(1)
    assert marker.read_text().count("run") == 2


def test_status_of_a_cluster_that_is_not_running(tmp_path):
    out = subprocess.run(["bash", str(SCRIPT), "status", str(tmp_path / "none")], capture_output=True, text=True)
    assert out.returncode == 1 and "not running" in out.stdout
