"""The bad-input catalogue: every input below goes through the command line's entry point and must end
with exit status 2 and a kdsuite error naming the file or field, the value and what is allowed — never
a traceback, and nothing written. One case of each kind also runs as ``python -m kdsuite.cli`` in a
fresh process (each costs a torch import, so not all of them)."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _cli(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), WANDB_MODE="disabled")
    return subprocess.run([sys.executable, "-m", "kdsuite.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def _grid_file(tmp, text):
    p = tmp / "g.yaml"
    p.write_text(text)
    return ["grid", "plan", str(p)]


def _run_file(tmp, text):
    p = tmp / "run.yaml"
    p.write_text(text)
    return ["train", str(p), "--set", f"output.root={tmp / 'out'}"]


def _train(tmp, *sets):
    return ["train", "--set", f"output.root={tmp / 'out'}", "--set", "epochs=1", *(a for s in sets for a in ("--set", s))]


def _imagefolder_without_classes(tmp):
    for split in ("train", "val"):
        (tmp / "imgs" / split).mkdir(parents=True)
        (tmp / "imgs" / split / "readme.txt").write_text("no class folders here")
    return _train(tmp, "dataset.name=imagefolder", f"dataset.root={tmp / 'imgs'}")


def _imagefolder_without_images(tmp):
    for split in ("train", "val"):
        (tmp / "imgs" / split / "cat").mkdir(parents=True)
        (tmp / "imgs" / split / "cat" / "notes.txt").write_text("not an image")
    return _train(tmp, "dataset.name=imagefolder", f"dataset.root={tmp / 'imgs'}")


def _teacher(tmp, meta_text):
    (tmp / "t").mkdir()
    (tmp / "t" / "teacher.json").write_text(meta_text)
    (tmp / "t" / "teacher.safetensors").write_bytes(b"")
    return _train(tmp, "method.name=kd", f"teachers=[{tmp / 't'}]")


def _garbage_cifar(tmp):
    folder = tmp / "c" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / f).write_bytes(b"\x80\x04garbage, not a pickle" * 10)
    return _train(tmp, "dataset.name=cifar10", f"dataset.root={tmp / 'c'}", "dataset.download=false",
                  "dataset.verify_checksums=false")


def _wrong_shape_cifar(tmp):
    folder = tmp / "c" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / f, "wb") as fh:
            pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    return _train(tmp, "dataset.name=cifar10", f"dataset.root={tmp / 'c'}", "dataset.download=false",
                  "dataset.verify_checksums=false")


CASES = {
    # field values
    "lr-string": (lambda t: _train(t, "optim.lr=abc"), [r"optim\.lr = 'abc' is not a number > 0"]),
    "momentum-string": (lambda t: _train(t, "optim.momentum=fast"), [r"optim\.momentum = 'fast' is not a number"]),
    "gamma-string": (lambda t: _train(t, "schedule.gamma=x"), [r"schedule\.gamma = 'x' is not a number"]),
    "grad-clip-string": (lambda t: _train(t, "grad_clip=big"), [r"grad_clip = 'big' is not a number"]),
    "train-fraction-string": (lambda t: _train(t, "dataset.train_fraction=half"),
                              [r"dataset\.train_fraction = 'half' is not a number"]),
    "val-fraction-half": (lambda t: _train(t, "dataset.val_fraction=0.5"),
                          [r"dataset\.val_fraction = 0\.5 is out of range", r">= 0", r"< 0\.5"]),
    "lr-1000": (lambda t: _train(t, "optim.lr=1000"), [r"optim\.lr = 1000(\.0)? is out of range", r"<= 10"]),
    "lr-inf": (lambda t: _train(t, "optim.lr=.inf"), [r"optim\.lr = inf is not finite", r"> 0"]),
    "lr-nan": (lambda t: _train(t, "optim.lr=.nan"), [r"optim\.lr = nan"]),
    "per-group-lr-string": (lambda t: _train(t, "method.name=dml", "optimizers.peer1.lr=abc"),
                            [r"optimizers\.peer1\.lr = 'abc' is not a number"]),
    "student-kwargs": (lambda t: _train(t, "student.kwargs.foo=1"), [r"student\.kwargs = \{'foo': 1\}", "cifar_resnet8"]),
    # files
    "run-yaml-syntax": (lambda t: _run_file(t, "epochs: 1\noptim: {lr: 0.1\n"), [r"run\.yaml': not valid YAML \(line"]),
    "run-yaml-list": (lambda t: _run_file(t, "- epochs: 1\n"), [r"run\.yaml' must hold a mapping of fields, not a list"]),
    "grid-yaml-syntax": (lambda t: _grid_file(t, "name: g\nstages:\n  a: {runs: [\n"), [r"g\.yaml': not valid YAML"]),
    "grid-yaml-list": (lambda t: _grid_file(t, "- name: g\n"), [r"g\.yaml' must hold a mapping of fields, not a list"]),
    "grid-empty-axes": (lambda t: _grid_file(t, "name: g\nstages:\n  a: {axes: {}}\n"),
                        [r"stages\.a\.axes = \{\}: an empty axes mapping plans no runs"]),
    "grid-stage-without-runs": (lambda t: _grid_file(t, "name: g\nstages:\n  a: {needs: null}\n"),
                                [r"stages\.a: plans no runs"]),
    "grid-axes-list": (lambda t: _grid_file(t, "name: g\nstages:\n  a: {axes: [seed]}\n"),
                       [r"stages\.a\.axes = \['seed'\]: expected a mapping of config fields to lists"]),
    "imagefolder-no-classes": (_imagefolder_without_classes, [r"dataset\.root = '.*imgs'", "one sub-folder per class"]),
    "imagefolder-no-images": (_imagefolder_without_images, [r"dataset\.root = '.*imgs'", "image files"]),
    "teacher-json-corrupt": (lambda t: _teacher(t, '{"arch": "cifar_resnet8", "num_'),
                             [r"teachers\[0\]\.checkpoint = '.*t'", "teacher.json is damaged"]),
    "teacher-json-incomplete": (lambda t: _teacher(t, json.dumps({"arch": "cifar_resnet8"})),
                                [r"teachers\[0\]\.checkpoint", "teacher.json is incomplete", "sha256"]),
    "cifar-garbage-batch": (_garbage_cifar, [r"data_batch_1' is not a CIFAR batch file"]),
    "cifar-wrong-shape": (_wrong_shape_cifar, [r"data_batch_1': 'data' must be a uint8 array of shape \(N, 3072\)"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_a_named_error_not_a_traceback(case, tmp_path, capsys, monkeypatch):
    """The command line's own entry point in this process (any exception other than the kdsuite error
    would escape ``main`` and fail the test with its traceback)."""
    import re

    from kdsuite.cli import main

    make_args, patterns = CASES[case]
    args = make_args(tmp_path)
    monkeypatch.chdir(tmp_path)
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("kdsuite: error: "), err
    for p in patterns:
        assert re.search(p, err), (p, err)
    assert not list(tmp_path.rglob("record.json")) and not list(tmp_path.rglob("checkpoint*.pt"))


@pytest.mark.parametrize("case", ["lr-string", "grid-yaml-syntax", "cifar-garbage-batch"])
def test_bad_input_through_a_fresh_process_exits_2_without_traceback(case, tmp_path):
    """The same through ``python -m kdsuite.cli`` (exit status, stderr) for one case of each kind."""
    import re

    make_args, patterns = CASES[case]
    out = _cli(make_args(tmp_path), tmp_path)
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    for p in patterns:
        assert re.search(p, out.stderr), (p, out.stderr)
    assert not list(tmp_path.rglob("record.json"))
