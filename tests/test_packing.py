"""Packed runs (several runs in one job, one process each) give the same records as runs made one
at a time, and one failing run does not take its neighbours down."""
from kdsuite.experiments.run import run
from kdsuite.slurm.packing import run_packed


def _cfg(root, seed):
    return {"student": "cifar_resnet8", "epochs": 1, "max_steps_per_epoch": 6, "seed": seed, "progress": "none",
            "dataset": {"name": "digits", "batch_size": 32}, "output": {"root": str(root)}}


def test_packed_runs_equal_sequential_runs(tmp_path):
    packed = run_packed([_cfg(tmp_path / "packed", 0), _cfg(tmp_path / "packed", 1),
                         dict(_cfg(tmp_path / "packed", 2), method="no_such_method")], cpus=2)
    assert [p["status"] for p in packed] == ["finished", "finished", "failed"]
    assert "no_such_method" in packed[2]["error"]
    for seed in (0, 1):
        alone = run(_cfg(tmp_path / "alone", seed))
        # packed processes use 1 thread each, the lone run 2: float re-association may move a test image
        # or two (0.28 points each) across the decision boundary, nothing more
        assert abs(packed[seed]["metrics"]["last_top1"] - alone["metrics"]["last_top1"]) <= 0.6
        assert packed[seed]["run_dir"] == alone["run_dir"].replace("/alone/", "/packed/")


def test_a_packed_run_held_by_another_job_is_busy_not_failed(tmp_path):
    """A packed task whose run is being trained by another job (its lease is held) reports ``busy`` and
    leaves that run's folder alone; its neighbour trains."""
    import subprocess
    import sys

    from kdsuite.experiments.run import prepare

    held = _cfg(tmp_path, 0)
    _, _, run_dir = prepare(held)
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom kdsuite.experiments.lease import Lease\n"
                               f"with Lease({str(run_dir)!r}):\n    print('held', flush=True)\n    time.sleep(120)\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(p.name for p in run_dir.iterdir())
        out = run_packed([held, _cfg(tmp_path, 1)], cpus=2)
        assert [o["status"] for o in out] == ["busy", "finished"], out
        assert "already being trained" in out[0]["error"] and f"pid {holder.pid}" in out[0]["error"]
        assert sorted(p.name for p in run_dir.iterdir()) == before  # no record, no checkpoint written there
    finally:
        holder.kill()
        holder.wait()


def _kill_seed_99(args):
    """The packed worker of the test below: the run with seed 99 is killed as the OOM killer would."""
    import os
    import signal

    from kdsuite.slurm.packing import _run_one

    if args[0].get("seed") == 99:
        os.kill(os.getpid(), signal.SIGKILL)
    return _run_one(args)


def test_a_killed_packed_run_fails_at_once_and_its_neighbours_finish(tmp_path):
    """multiprocessing.Pool.map never returned when one of its children was killed; the job hung to its time
    limit. Now the killed run fails naming the signal and the other runs finish."""
    import threading

    box = []
    t = threading.Thread(target=lambda: box.append(run_packed(
        [_cfg(tmp_path, 0), _cfg(tmp_path, 99), _cfg(tmp_path, 1)], cpus=2, worker=_kill_seed_99)), daemon=True)
    t.start()
    t.join(timeout=1800)  # a guard against the old hang, not a timing check
    assert box, "run_packed did not return after one of its children was killed"
    (out,) = box
    assert [o["status"] for o in out] == ["finished", "failed", "finished"], out
    assert "SIGKILL" in out[1]["error"], out[1]
