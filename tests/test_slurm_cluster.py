"""The local one-node Slurm cluster really schedules: a submitit job array returns its results and a
running batch job that is requeued runs again."""
import subprocess
import time

import pytest
import submitit

from tests.slurm_fixture import SCRIPT

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


def test_the_cluster_gets_every_cpu_whatever_omp_num_threads_says(tmp_path):
    """GNU nproc obeys OMP_NUM_THREADS; with it set to 1 the local cluster once had a single CPU, so a
    two-task job could never start and a second job queued behind the first instead of meeting it."""
    import os
    import re

    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_THREAD_LIMIT="1")
    out = subprocess.run(["bash", str(SCRIPT), "conf", str(tmp_path / "state")], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    conf = (tmp_path / "state" / "slurm.conf").read_text()
    assert out.stdout.strip() == str(tmp_path / "state" / "slurm.conf")
    assert int(re.search(r"CPUs=(\d+)", conf).group(1)) == len(os.sched_getaffinity(0))


def test_a_second_cluster_refuses_the_ports_of_a_live_one(slurm_cluster, tmp_path):
    """The ports are fixed: a controller of another state folder would answer this cluster's sbatch (and
    write into its own folder). Starting a cluster beside a live one names that one and starts nothing; the
    live one keeps working. (One whose folder was deleted is stopped instead: it can serve no job.)"""
    import os

    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    out = subprocess.run(["bash", str(SCRIPT), "start", str(tmp_path / "other")], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "of another cluster" in out.stderr and str(slurm_cluster / "slurm.conf") in out.stderr, out.stderr
    assert not (tmp_path / "other" / "slurmctld.pid").exists()
    status = subprocess.run(["bash", str(SCRIPT), "status", str(slurm_cluster)], capture_output=True, text=True)
    assert status.returncode == 0, status.stdout
