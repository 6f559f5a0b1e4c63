"""Faults of files a run reads back: a damaged checkpoint is named, moved aside and the run resumes from
the previous one (to the uninterrupted result); a CIFAR batch read without checksums cannot run code; a
checksum mismatch suggests turning checks off only for well-formed files; resumes and reuses say so; a
second process on a run exits at once (the run's lease); SIGTERM leaves an ``interrupted`` run that says
how to resume."""
import json
import os
import pickle

import numpy as np
import pytest
import torch

from kdsuite.experiments.config import ConfigError
from kdsuite.experiments.data import build_data
from kdsuite.experiments.run import run


def _cfg(root, **kw):
    cfg = {"student": "cifar_resnet8", "epochs": 3, "max_steps_per_epoch": 4, "progress": "none",
           "dataset": {"name": "digits", "batch_size": 32}, "output": {"root": str(root)}}
    cfg.update(kw)
    return cfg


def test_a_truncated_checkpoint_is_moved_aside_and_the_previous_one_resumes_exactly(tmp_path, capfd):
    straight = run(_cfg(tmp_path / "a"))
    partial = run(_cfg(tmp_path / "b"), stop_after_epochs=2)
    run_dir = tmp_path / "b" / partial["run_dir"].split("/")[-1]
    ckpt, prev = run_dir / "checkpoint.pt", run_dir / "checkpoint.prev.pt"
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2 and torch.load(prev, weights_only=True)["epoch"] == 1
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])  # a disk that filled up, a copy cut short
    capfd.readouterr()
    resumed = run(_cfg(tmp_path / "b"))
    err = capfd.readouterr().err
    assert resumed["status"] == "finished"
    assert f"checkpoint {ckpt} cannot be read" in err and "moved aside" in err, err
    assert "resuming from epoch 1" in err, err
    aside = [p for p in run_dir.iterdir() if p.name.startswith("checkpoint.pt.damaged-")]
    assert len(aside) == 1 and aside[0].read_bytes() == data[: len(data) // 2]
    assert [h["train/loss"] for h in resumed["history"]] == [h["train/loss"] for h in straight["history"]]
    assert resumed["metrics"]["last_top1"] == straight["metrics"]["last_top1"]
    # and a finished run asked again says it was reused
    again = run(_cfg(tmp_path / "b"))
    assert again["finished"] == resumed["finished"]
    assert "reused, not retrained" in capfd.readouterr().err


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _official_like(folder, files, key, classes, n=4):
    rng = np.random.default_rng(0)
    for f in files:
        with open(folder / f, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         key: rng.integers(0, classes, n).tolist()}, fh)


def test_a_crafted_cifar_batch_cannot_run_code_without_checksums(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    _official_like(folder, files, "labels", 10)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    marker = tmp_path / "payload-ran"
    with open(folder / "data_batch_1", "wb") as fh:
        pickle.dump({"data": _Payload(marker), "labels": [0]}, fh)
    # the payload is real: plain pickle runs it (on a copy, with its own marker)
    probe = tmp_path / "probe-ran"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()
    with pytest.raises(ConfigError, match=r"data_batch_1' is not a CIFAR batch file .*posix\.system|"
                                          r"data_batch_1' is not a CIFAR batch file .*os\.system"):
        build_data({"name": "cifar10", "root": str(tmp_path), "download": False, "verify_checksums": False,
                    "batch_size": 8, "eval_batch_size": 8, "num_workers": 0, "image_size": None, "augment": False,
                    "pipeline": "loader", "train_fraction": 1.0}, "cpu")
    assert not marker.exists()


def _ds(root, **kw):
    d = {"name": "cifar100", "root": str(root), "download": False, "verify_checksums": True, "batch_size": 8,
         "eval_batch_size": 8, "num_workers": 0, "image_size": None, "augment": False, "pipeline": "loader",
         "train_fraction": 1.0}
    d.update(kw)
    return d


def test_a_checksum_mismatch_suggests_turning_checks_off_only_for_well_formed_files(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _official_like(folder, ["train", "test"], "fine_labels", 100)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, fh)
    with pytest.raises(ConfigError, match="verify_checksums: false"):
        build_data(_ds(tmp_path), "cpu")
    (folder / "test").write_bytes((folder / "test").read_bytes()[:100])  # cut short
    with pytest.raises(ConfigError) as e:
        build_data(_ds(tmp_path), "cpu")
    assert "verify_checksums: false" not in str(e.value) and "damaged" in str(e.value) and "test'" in str(e.value)


def _cli_env():
    from pathlib import Path

    return dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent), WANDB_MODE="disabled")


def test_a_second_process_on_a_run_exits_at_once_naming_the_holder(tmp_path, capsys):
    import subprocess
    import sys

    from kdsuite.cli import main
    from kdsuite.experiments.run import prepare

    sets = ["--set", f"output.root={tmp_path}", "--set", "epochs=1", "--set", "max_steps_per_epoch=2",
            "--set", "progress=none"]
    _, _, run_dir = prepare({"epochs": 1, "max_steps_per_epoch": 2, "progress": "none",
                             "output": {"root": str(tmp_path)}})
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom kdsuite.experiments.lease import Lease\n"
                               f"with Lease({str(run_dir)!r}):\n    print('held', flush=True)\n    time.sleep(120)\n"],
                              stdout=subprocess.PIPE, text=True, env=_cli_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["train", *sets]) == 3
        err = capsys.readouterr().err
        assert f"run {run_dir} is already being trained" in err and f"pid {holder.pid}" in err, err
        assert not (run_dir / "record.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the dead holder's lease: the run trains now
    assert main(["train", *sets]) == 0
    assert json.loads((run_dir / "record.json").read_text())["status"] == "finished"


def test_sigterm_leaves_an_interrupted_run_that_says_how_to_resume(tmp_path, capfd):
    import signal
    import subprocess
    import sys
    import time

    cfg = _cfg(tmp_path, epochs=200, max_steps_per_epoch=2)
    args = [sys.executable, "-m", "kdsuite.cli", "train", *(a for k, v in (
        ("output.root", tmp_path), ("epochs", 200), ("max_steps_per_epoch", 2), ("progress", "none"),
        ("student", "cifar_resnet8"), ("dataset.batch_size", 32)) for a in ("--set", f"{k}={v}"))]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli_env())
    from kdsuite.experiments.run import prepare

    _, _, run_dir = prepare(cfg)
    deadline = time.time() + 300
    while time.time() < deadline and not (run_dir / "checkpoint.pt").exists():
        time.sleep(0.5)
    assert (run_dir / "checkpoint.pt").exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err, err
    assert "interrupted (stopped by SIGTERM" in err and "resumable from its last checkpoint" in err, err
    rec = json.loads((run_dir / "record.json").read_text())
    assert rec["status"] == "interrupted" and rec["error"].startswith("stopped by SIGTERM")
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    # the signal landed in a training step (checkpoint after it) or elsewhere (the last epoch checkpoint)
    at = f"step {ckpt['mid']['step']} of epoch {ckpt['epoch'] + 1}" if ckpt.get("mid") else f"epoch {ckpt['epoch']}"
    capfd.readouterr()
    run(cfg, stop_after_epochs=1)
    assert f"resuming from {at}" in capfd.readouterr().err


def test_sigterm_in_a_step_writes_a_mid_epoch_checkpoint_and_the_resumed_run_is_exact(tmp_path, capfd, monkeypatch):
    """SIGTERM arriving during step 2 of epoch 2 (of 5 steps): the step finishes, a checkpoint after it is
    written, the record says interrupted and where; the resumed run replays the batch source (random crops
    and CS-KD's same-class partners follow the epoch seed) and continues with the global RNG where it was —
    the draws of every later step, the loss history and the final weights equal an uninterrupted run's."""
    import signal

    from kdsuite.engine.stop import RunInterrupted
    from kdsuite.engine.trainer import Trainer

    cfg = _cfg(tmp_path, epochs=3, max_steps_per_epoch=5, method={"name": "cskd"})
    cfg["dataset"] = dict(cfg["dataset"], augment=True)
    draws, stop_at = {}, []
    real_step = Trainer.step

    def step(self, batch):
        g = self.method.progress.step
        draws[g] = torch.rand(()).item()  # a plugin's own use of the global RNG
        if g in stop_at:
            stop_at.remove(g)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(self, batch)

    monkeypatch.setattr(Trainer, "step", step)
    straight = run(dict(cfg, output={"root": str(tmp_path / "a")}))
    want = dict(draws)
    draws.clear()
    stop_at.append(6)  # epoch 2, step index 1: stop after two steps of epoch 2
    cfg_b = dict(cfg, output={"root": str(tmp_path / "b")})
    with pytest.raises(RunInterrupted):
        run(cfg_b)
    run_dir = tmp_path / "b" / straight["run_dir"].split("/")[-1]
    rec = json.loads((run_dir / "record.json").read_text())
    assert rec["status"] == "interrupted" and "after step 2/5 of epoch 2" in rec["error"], rec["error"]
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert (ckpt["epoch"], ckpt["mid"]["step"], len(ckpt["history"])) == (1, 2, 1)
    assert sorted(draws) == list(range(7))
    draws.clear()
    capfd.readouterr()
    resumed = run(cfg_b)
    assert "resuming from step 2 of epoch 2" in capfd.readouterr().err
    assert sorted(draws) == list(range(7, 15)) and all(draws[g] == want[g] for g in draws)
    assert resumed["status"] == "finished"
    for a, b in zip(straight["history"], resumed["history"], strict=True):
        assert {k: v for k, v in a.items() if k.startswith(("train/", "val/"))} == \
            {k: v for k, v in b.items() if k.startswith(("train/", "val/"))}
    w_a = torch.load(tmp_path / "a" / run_dir.name / "checkpoint.pt", weights_only=False)["method"]
    w_b = torch.load(run_dir / "checkpoint.pt", weights_only=False)["method"]
    assert w_a.keys() == w_b.keys() and all(torch.equal(w_a[k], w_b[k]) for k in w_a)


def test_a_foreign_checkpoint_in_a_run_folder_is_named_and_kept(tmp_path, capsys):
    """A checkpoint of another run (other models) copied into a run folder is refused by name, exit 2, the file
    left as it was — never resumed from, never a torch traceback."""
    from kdsuite.cli import main

    other = run(_cfg(tmp_path / "o", student="cifar_wrn_16_1", epochs=1))
    mine = run(_cfg(tmp_path / "m", epochs=1), stop_after_epochs=0)
    mine_dir = tmp_path / "m" / mine["run_dir"].split("/")[-1]
    foreign = (tmp_path / "o" / other["run_dir"].split("/")[-1] / "checkpoint.pt").read_bytes()
    (mine_dir / "checkpoint.pt").write_bytes(foreign)
    capsys.readouterr()
    args = ["train", "--set", "epochs=1", "--set", "max_steps_per_epoch=4", "--set", "progress=none",
            "--set", "dataset.batch_size=32", "--set", f"output.root={tmp_path / 'm'}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert f"{mine_dir / 'checkpoint.pt'}: this checkpoint is not this run's" in err and "move it aside" in err
    assert (mine_dir / "checkpoint.pt").read_bytes() == foreign
