"""W&B mirrors runs (offline mode here, no server) and can never stop one."""
import glob

from kdsuite.experiments.run import run


def _cfg(root, mode):
    return {"student": "cifar_resnet8", "epochs": 1, "max_steps_per_epoch": 3, "progress": "none",
            "wandb": {"mode": mode, "project": "kdsuite-test"}, "output": {"root": str(root)}}


def test_offline_mode_writes_an_offline_run_beside_the_record(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    rec = run(_cfg(tmp_path, "offline"))
    assert rec["status"] == "finished"
    logs = glob.glob(f"{rec['run_dir']}/wandb/offline-run-*/run-*.wandb")
    assert logs, "no offline W&B run log was written"


def test_a_failing_wandb_never_stops_training(tmp_path, monkeypatch, capsys):
    import wandb

    def broken(*a, **k):
        raise RuntimeError("wandb is down")

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(wandb, "init", broken)
    rec = run(_cfg(tmp_path, "offline"))
    assert rec["status"] == "finished" and rec["metrics"]["last_top1"] is not None
    assert "W&B init failed" in capsys.readouterr().err
