"""Grids: expansion counts, errors listed together, idempotent relaunch, the CLI; and a real launch
through sbatch on the local one-node cluster (teacher array, then students waiting with afterok)."""
import time

import pytest
import yaml

from kdsuite.core.records import read_record
from kdsuite.cli import main
from kdsuite.experiments.config import ConfigError
from kdsuite.experiments.grid import GRID_DIR, expand, load_grid
from kdsuite.slurm.executors import load_profile, read_manifest, run_in_process, submit_slurm


def _spec(root, methods=("vanilla", "kd"), seeds=(0, 1)):
    return {"name": "tiny", "output": str(root), "defaults": {
        "dataset": {"name": "digits", "batch_size": 64}, "epochs": 1, "max_steps_per_epoch": 4, "progress": "none"},
        "stages": {"teachers": {"runs": [{"key": "t", "student": "cifar_resnet14"}]},
                   "students": {"needs": "teachers", "axes": {"method": list(methods),
                                                            "pair": [{"teachers": ["t"], "student": "cifar_resnet8"}],
                                                            "seed": list(seeds)}}}}


def test_expansion_counts_and_dedup(tmp_path):
    g = expand(_spec(tmp_path, methods=("vanilla", "kd", "dkd"), seeds=(0, 1, 2)))
    assert len(g.stages["teachers"]) == 1
    assert len(g.stages["students"]) == 3 * 3  # methods × seeds × 1 pair
    g2 = expand(dict(_spec(tmp_path), stages=dict(_spec(tmp_path)["stages"], students=dict(
        _spec(tmp_path)["stages"]["students"], axes={"method": ["vanilla"], "seed": [0],
                                                     "pair": [{"teachers": ["t"], "student": "cifar_resnet8"},
                                                              {"teachers": ["t"], "student": "cifar_resnet8"}]}))))
    assert len(g2.stages["students"]) == 1  # identical configs are planned once


def test_every_problem_is_listed_at_once(tmp_path):
    spec = _spec(tmp_path, methods=("kd", "nope"))
    spec["stages"]["students"]["axes"]["seed"] = [0, -1]
    spec["stages"]["students"]["axes"]["pair"] = [{"teachers": ["ghost"], "student": "cifar_resnet8"}]
    with pytest.raises(ConfigError) as e:
        expand(spec)
    msg = str(e.value)
    assert "problem(s)" in msg and "nope" in msg and "seed = -1" in msg and "'ghost'" in msg


def test_overrides_merge_by_student_then_method_and_bad_resources_are_named(tmp_path):
    spec = _spec(tmp_path)
    st = spec["stages"]["students"]
    st["student_overrides"] = {"cifar_resnet8": {"optim": {"lr": 0.01}, "epochs": 2}}
    st["method_overrides"] = {"kd": {"epochs": 3}}
    g = expand(spec)
    by_method = {r.cfg["method"]["name"]: r.cfg for r in g.stages["students"]}
    assert by_method["vanilla"]["optim"]["lr"] == 0.01 and by_method["kd"]["optim"]["lr"] == 0.01
    assert by_method["vanilla"]["epochs"] == 2 and by_method["kd"]["epochs"] == 3  # method's override wins
    spec["resources"] = {"gpus_per_node": -1, "colour": "red"}
    st["method_overrides"] = {"kdd": {}}
    with pytest.raises(ConfigError) as e:
        expand(spec)
    msg = str(e.value)
    assert "resources.gpus_per_node = -1" in msg and "resources.colour" in msg and "method_overrides.kdd" in msg


def test_axes_without_a_method_and_a_student_written_as_a_name(tmp_path):
    """Shorthands the single-run config accepts work in grids too: no method axis means the config's
    default (vanilla), and ``student: ARCH`` still picks up that architecture's overrides."""
    spec = {"name": "short", "output": str(tmp_path), "defaults": {"student": "cifar_resnet8", "epochs": 1},
            "stages": {"only": {"axes": {"seed": [0, 1]},
                                "student_overrides": {"cifar_resnet8": {"optim": {"lr": 0.02}}}}}}
    runs = expand(spec).stages["only"]
    assert [r.cfg["seed"] for r in runs] == [0, 1]
    assert all(r.cfg["method"]["name"] == "vanilla" and r.cfg["optim"]["lr"] == 0.02 for r in runs)
    assert all(r.cfg["student"]["arch"] == "cifar_resnet8" for r in runs)


def test_one_cause_shared_by_many_runs_is_named_once(tmp_path):
    """A bad default or ``--set`` is one problem, not one per run; the students of a refused teacher run say
    that, not that no stage produces their teacher; a problem of one run keeps that run's label."""
    spec = _spec(tmp_path, methods=("vanilla", "kd", "dkd"), seeds=(0, 1, 2))
    with pytest.raises(ConfigError) as e:
        expand(spec, overrides=["optim.lr=-1"])
    lines = str(e.value).splitlines()
    assert lines[0] == "grid 'tiny' has 2 problem(s):", lines
    lr = [x for x in lines if "optim.lr = -1.0" in x]
    assert lr == ["  - 10 runs (the first: stages.teachers.runs[0]): optim.lr = -1.0 is out of range; expected a "
                  "number > 0 and <= 10.0"], lines
    cascade = [x for x in lines if "teacher key 't'" in x]
    assert len(cascade) == 1 and cascade[0].startswith("  - 9 runs (the first: stages.students[method=vanilla")
    assert "is not planned: its run stages.teachers.runs[0] has problems" in cascade[0]
    spec["stages"]["students"]["overrides"] = [{"match": {"method": "kd", "seed": 1}, "set": {"optim": {"lr": -2}}}]
    with pytest.raises(ConfigError) as e:
        expand(spec)
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and lines[1].startswith("  - stages.students[method=kd, ") and "seed=1]: optim.lr = -2" in lines[1]


def test_profile_missing_fields(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"cpus_per_task": 2, "colour": "red"}))
    with pytest.raises(ConfigError, match="partition.*timeout_min.*colour|missing required field 'partition'"):
        load_profile(p)


def test_local_launch_is_idempotent_and_status_reports(tmp_path, capsys):
    gfile = tmp_path / "g.yaml"
    gfile.write_text(yaml.safe_dump(_spec(tmp_path / "out", seeds=(0,)), sort_keys=False))
    assert main(["grid", "plan", str(gfile)]) == 0
    assert "stage students: 2 runs (0 already finished)" in capsys.readouterr().out
    assert main(["grid", "launch", str(gfile), "--cluster", "local"]) == 0
    first = {p: p.stat().st_mtime for p in (tmp_path / "out").rglob("record.json")}
    assert len(first) == 3
    assert main(["grid", "launch", str(gfile), "--cluster", "local"]) == 0
    assert {p: p.stat().st_mtime for p in (tmp_path / "out").rglob("record.json")} == first  # nothing rerun
    capsys.readouterr()
    assert main(["grid", "status", str(gfile)]) == 0
    assert "finished: 3" in capsys.readouterr().out
    # --set changes the grid's defaults for plan / launch / status alike: other values are other runs
    assert main(["grid", "status", str(gfile), "--set", "optim.lr=0.02"]) == 0
    out = capsys.readouterr().out
    assert "not started: 3" in out and "finished" not in out.replace("not started", "")
    assert main(["grid", "plan", str(gfile), "--set", "optim.lr=0.02"]) == 0
    assert "stage students: 2 runs (0 already finished)" in capsys.readouterr().out
    assert main(["grid", "plan", str(gfile), "--set", "optim.lr=-1"]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert main(["table", "--source", str(tmp_path / "out")]) == 0
    assert "| kd |" in capsys.readouterr().out


@pytest.mark.slurm
def test_grid_runs_through_sbatch(slurm_cluster, tmp_path):
    grid = expand(_spec(tmp_path / "out", seeds=(0, 1)))
    jobs = submit_slurm(grid, "slurm/profiles/local_test.yaml")
    assert len(jobs["teachers"]) == 1 and len(jobs["students"]) == 4
    # one array per teacher set: the kd students wait for their teacher's task, the vanilla ones (no teacher)
    # wait for nothing
    assert len({j.job_id.split("_")[0] for j in jobs["students"]}) == 2
    arrays = read_manifest(tmp_path / "out")["launches"][-1]["arrays"]
    assert sorted(a["dependency"] for a in arrays if a["stage"] == "students") == [[], [jobs["teachers"][0].job_id]]
    deadline = time.time() + 300
    while time.time() < deadline and not all(
            (read_record(r.run_dir) or {}).get("status") == "finished" for r in grid.all_runs()):
        time.sleep(2)
    recs = [read_record(r.run_dir) for r in grid.all_runs()]
    assert all(r and r["status"] == "finished" for r in recs), [j.stderr() for j in jobs["students"]][:1]
    assert all(r["provenance"]["slurm_job_id"] for r in recs)
    again = submit_slurm(grid, "slurm/profiles/local_test.yaml")
    assert again == {"teachers": [], "students": []}  # a relaunch submits nothing new


SHIPPED = sorted(p.stem for p in GRID_DIR.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_grids_are_valid(name, tmp_path):
    grid = load_grid(name, output=str(tmp_path / name))
    assert grid.stages and all(grid.stages.values())
    if name == "cifar100_repdistiller":
        # 13 pairs × 16 methods × 3 seeds, FSP left out on its 7 cross-resolution pairs, and vanilla
        # planned once per student architecture (9 of them), not once per pair
        assert len(grid.stages["teachers"]) == 6
        assert len(grid.stages["students"]) == 13 * 15 * 3 - 7 * 3 + 9 * 3
    if name == "imagenet_r34_r18":
        assert grid.resources("students")["tasks_per_node"] == 8 and grid.resources("teachers")["tasks_per_node"] == 1


def test_shipped_grid_names_cover_the_issue():
    assert {"demo", "cifar100_repdistiller", "cifar100_taxonomy", "imagenet_r34_r18"} <= set(SHIPPED)


def test_a_run_killed_hard_resumes_from_its_last_epoch_when_relaunched(tmp_path):
    """SIGKILL (no handler can run) after an epoch checkpoint; the relaunched grid finishes the run with
    exactly the result of an uninterrupted one."""
    import os
    import signal
    import subprocess
    import sys

    import torch

    from kdsuite.experiments.run import run

    cfg = {"student": "cifar_resnet8", "epochs": 12, "progress": "none", "dataset": {"batch_size": 16},
           "schedule": {"name": "cosine"}}
    gfile = tmp_path / "g.yaml"
    gfile.write_text(yaml.safe_dump({"name": "kill", "output": str(tmp_path / "grid"), "defaults": cfg,
                                     "stages": {"only": {"runs": [{"seed": 5}]}}}, sort_keys=False))
    (r,) = load_grid(str(gfile)).stages["only"]
    proc = subprocess.Popen([sys.executable, "-m", "kdsuite.cli", "grid", "launch", str(gfile)],
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = r.run_dir / "checkpoint.pt"
    deadline = time.time() + 240
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.2)
    assert ckpt.exists(), "no epoch checkpoint was written"
    time.sleep(1.0)  # somewhere inside a later epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = read_record(r.run_dir)
    assert killed["status"] == "running"  # nothing could mark it
    done_epochs = torch.load(ckpt, weights_only=False)["epoch"]
    assert 1 <= done_epochs < 12, done_epochs
    assert main(["grid", "launch", str(gfile)]) == 0
    got = read_record(r.run_dir)
    ref = run(dict(cfg, seed=5, output={"root": str(tmp_path / "plain")}))
    assert got["status"] == "finished" and got["config_hash"] == ref["config_hash"]
    assert got["metrics"]["last_top1"] == ref["metrics"]["last_top1"]
    assert [h["test/student/loss"] for h in got["history"]] == [h["test/student/loss"] for h in ref["history"]]
    a = torch.load(ckpt, weights_only=False)["method"]
    b = torch.load(tmp_path / "plain" / r.run_dir.name / "checkpoint.pt", weights_only=False)["method"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_time_limit_shorter_than_submitits_signal_delay_is_refused_by_name(tmp_path, capsys):
    """submitit signals 90 s before the limit: `timeout_min: 1` made every attempt "time out" at once."""
    gfile = tmp_path / "g.yaml"
    gfile.write_text(yaml.safe_dump(_spec(tmp_path / "out", seeds=(0,)), sort_keys=False))
    for minutes in (1, 3):
        p = tmp_path / f"p{minutes}.yaml"
        p.write_text(f"partition: debug\ntimeout_min: {minutes}\n")
        with pytest.raises(ConfigError, match=rf"profile '{p}': timeout_min = {minutes}: expected an integer >= 4 "
                                              r"\(minutes\): submitit signals a job 90 s before"):
            load_profile(p)
        capsys.readouterr()
        assert main(["grid", "launch", str(gfile), "--cluster", "slurm", "--profile", str(p)]) == 2
        err = capsys.readouterr().err
        assert str(p) in err and "timeout_min = " in err and "Traceback" not in err
        assert not (tmp_path / "out").exists()  # refused before anything was submitted or written
    p = tmp_path / "ok.yaml"
    p.write_text("partition: debug\ntimeout_min: 4\n")
    assert load_profile(p)["timeout_min"] == 4
    # a grid's own resources are checked when it is planned
    spec = _spec(tmp_path / "out", seeds=(0,))
    spec["stages"]["students"]["resources"] = {"timeout_min": 2}
    gfile.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["grid", "plan", str(gfile)]) == 2
    assert "stages.students.resources.timeout_min = 2: expected an integer >= 4" in capsys.readouterr().err


def test_a_huge_grid_is_refused_before_expansion_with_its_arithmetic(tmp_path, capsys, monkeypatch):
    from kdsuite.experiments import grid_size

    spec = {"name": "huge", "output": str(tmp_path), "defaults": {"epochs": 1},
            "stages": {"s": {"axes": {"seed": list(range(1000)), "optim.lr": [0.01 * i for i in range(1, 1001)]}}}}
    gfile = tmp_path / "huge.yaml"
    gfile.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["grid", "plan", str(gfile)]) == 2
    err = capsys.readouterr().err
    assert "would plan up to 1,000,000 runs (s: 1,000,000 (seed 1000 × optim.lr 1000)); the limit is 10,000" in err
    assert "--max-runs 1000000" in err and "Traceback" not in err
    # the count is the expansion's own (method_pairs replacing the pair axis for their method)
    small = _spec(tmp_path, methods=("vanilla", "kd", "dkd"), seeds=(0, 1, 2))
    small["stages"]["students"]["method_pairs"] = {"kd": [{"teachers": ["t"], "student": "cifar_resnet8"},
                                                          {"teachers": ["t"], "student": "cifar_wrn_16_1"}]}
    counts = grid_size.check_size(small, "tiny", None)
    g = expand(small)
    assert counts == {s: len(runs) for s, runs in g.stages.items()} == {"teachers": 1, "students": 12}
    with pytest.raises(ConfigError, match="would plan up to 13 runs .* the limit is 12"):
        expand(small, max_runs=12)
    monkeypatch.setattr(grid_size, "PROGRESS_EVERY", 5)
    assert len(expand(small, max_runs=13).all_runs()) == 13
    assert capsys.readouterr().err.splitlines() == [f"grid 'tiny': planned {n} of up to 13 runs" for n in (5, 10)]
