"""Shared fixtures: tiny teachers trained on the digits through the real run path (and exported as
teacher records), so method tests distil from teachers that actually know something."""
import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

TEACHER_ARCHS = ("cifar_resnet20", "cifar_wrn_16_1")


@pytest.fixture(scope="session")
def digits_teachers(tmp_path_factory):
    """Folders of two exported teachers (different architectures) trained 4 epochs on digits."""
    from experiments.run import run

    root = tmp_path_factory.mktemp("teachers")
    dirs = []
    for arch in TEACHER_ARCHS:
        rec = run({"student": arch, "epochs": 4, "export_teacher": True, "progress": "none",
                   "dataset": {"name": "digits", "batch_size": 32}, "optim": {"lr": 0.05},
                   "output": {"root": str(root)}})
        assert rec["status"] == "finished" and rec["metrics"]["last_top1"] > 50.0, rec["metrics"]
        dirs.append(rec["run_dir"])
    return dirs
