"""Damaged image folders are named before training (issue 25, item 4): a truncated JPEG, an empty PNG, a file
that is no image, a dangling link, a pipe with an image's name end ``kdsuite train`` with exit 2 and one line
naming the file; a symlink loop is not followed; a link to another class folder still is; a file that fails
only in training (past the header check) is named too, also from a DataLoader worker process."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kdsuite.cli import main
from kdsuite.core.errors import DamagedDataError

ROOT = Path(__file__).resolve().parent.parent


def _jpeg(seed: int, side: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _folder(root: Path, per_class: int = 4) -> Path:
    """``root/{train,val}/{a,b}/<i>.jpg``: real JPEG files."""
    for split in ("train", "val"):
        for ci, cls in enumerate(("a", "b")):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                (root / split / cls / f"{i}.jpg").write_bytes(_jpeg(100 * ci + i))
    return root


def _train(tmp: Path, data: Path, *sets: str):
    args = ["train", "--set", "dataset.name=imagefolder", "--set", f"dataset.root={data}", "--set",
            "dataset.image_size=16", "--set", "dataset.val_fraction=0", "--set", "dataset.batch_size=4", "--set",
            "epochs=1", "--set", "max_steps_per_epoch=1", "--set", "progress=none", "--set", "device=cpu",
            "--set", f"output.root={tmp / 'out'}"]
    return args + [a for s in sets for a in ("--set", s)]


def _truncated(f: Path) -> None:
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


DAMAGE = {
    "truncated-jpeg": (lambda d: _truncated(d / "train/a/1.jpg"), "train/a/1.jpg", "truncated"),
    "empty-png": (lambda d: (d / "train/b/x.png").write_bytes(b""), "train/b/x.png", "an empty file"),
    "not-an-image": (lambda d: (d / "val/a/notes.jpg").write_text("a text file named .jpg"), "val/a/notes.jpg",
                     "not an image file"),
    "dangling-link": (lambda d: os.symlink(d / "nowhere.jpg", d / "train/a/gone.jpg"), "train/a/gone.jpg",
                      "No such file or directory"),
    "pipe": (lambda d: os.mkfifo(d / "train/a/pipe.jpg"), "train/a/pipe.jpg", "not a regular file"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_file_is_named_before_training(case, tmp_path, capsys):
    data = _folder(tmp_path / "imgs")
    damage, rel, reason = DAMAGE[case]
    damage(data)
    assert main(_train(tmp_path, data)) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdsuite: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert str(data / rel) in err and reason in err, err
    assert not list(tmp_path.rglob("record.json")) and not list(tmp_path.rglob("checkpoint*.pt"))


def test_a_damaged_file_through_a_fresh_process(tmp_path):
    data = _folder(tmp_path / "imgs")
    _truncated(data / "train/b/0.jpg")
    env = dict(os.environ, PYTHONPATH=str(ROOT), WANDB_MODE="disabled")
    out = subprocess.run([sys.executable, "-m", "kdsuite.cli", *_train(tmp_path, data)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and str(data / "train/b/0.jpg") in out.stderr, out.stderr


def _record(tmp: Path) -> dict:
    (rec,) = list((tmp / "out").rglob("record.json"))
    return json.loads(rec.read_text())


def test_a_symlink_loop_is_not_followed_and_said_once(tmp_path, capsys):
    data = _folder(tmp_path / "imgs")
    os.symlink("..", data / "train/a/up")          # back to train/
    os.symlink(data, data / "train/b/top")         # back to the data set's root, above train/
    os.symlink(".", data / "train/here")           # a class-level link to train/ itself
    assert main(_train(tmp_path, data)) == 0
    err = capsys.readouterr().err
    for link in ("train/a/up", "train/b/top", "train/here"):
        assert err.count(f"not following the link '{data / link}'") == 1, err
    assert _record(tmp_path)["data"]["split"]["train"] == 8  # the 8 real files, nothing read twice


def test_a_linked_class_folder_is_read(tmp_path, capsys):
    data = _folder(tmp_path / "imgs")
    extra = tmp_path / "elsewhere" / "c"
    extra.mkdir(parents=True)
    for i in range(3):
        (extra / f"{i}.jpg").write_bytes(_jpeg(300 + i))
    (extra / "deeper").mkdir()
    (extra / "deeper" / "9.png").write_bytes(_jpeg(309))  # a JPEG named .png: Pillow reads it by content
    os.symlink(extra, data / "train/c")
    os.symlink(extra, data / "val/c")
    assert main(_train(tmp_path, data)) == 0, capsys.readouterr().err
    rec = _record(tmp_path)
    assert rec["data"]["split"]["train"] == 8 + 4 and rec["data"]["split"]["test"] == 8 + 4


def test_the_listing_is_torchvisions_on_a_folder_without_loops(tmp_path):
    import torchvision

    from kdsuite.experiments.data_images import ImageFiles

    data = _folder(tmp_path / "imgs")
    (data / "train/a/sub/deep").mkdir(parents=True)
    (data / "train/a/sub/deep/z.jpg").write_bytes(_jpeg(7))
    (data / "train/a/sub/y.JPG").write_bytes(_jpeg(8))
    (data / "train/a/readme.txt").write_text("not an image")
    os.symlink(data / "train/b", data / "train/c")
    ours, theirs = ImageFiles(str(data / "train")), torchvision.datasets.ImageFolder(str(data / "train"))
    assert ours.classes == theirs.classes == ["a", "b", "c"]
    assert ours.samples == theirs.samples and len(ours) == 4 + 2 + 4 + 4


def test_a_file_that_fails_only_in_a_loader_worker_is_one_named_line(tmp_path, capsys, monkeypatch):
    """Past the header check (as above FULL_CHECK_MAX files), the decode in a DataLoader worker fails: torch
    re-raises it with the worker's traceback, the CLI prints the original message only."""
    import kdsuite.experiments.data_images as di

    monkeypatch.setattr(di, "FULL_CHECK_MAX", 0)
    data = _folder(tmp_path / "imgs", per_class=2)
    f = data / "train/a/0.jpg"
    whole = _jpeg(5, side=64)
    f.write_bytes(whole[: int(len(whole) * 0.7)])  # the header intact, the scan cut
    assert main(_train(tmp_path, data, "dataset.num_workers=1", "dataset.batch_size=8")) == 2
    err = capsys.readouterr().err.splitlines()
    assert "headers read before training" in err[0]
    assert len(err) == 2 and err[1].startswith("kdsuite: error: dataset.root: image file ") and str(f) in err[1], err
    assert "Traceback" not in err[1] and "worker" not in err[1]
    rec = _record(tmp_path)
    assert rec["status"] == "failed" and str(f) in rec["error"] and "Traceback" not in rec["error"]


def test_a_worker_exception_keeps_its_original_message():
    from torch._utils import ExceptionWrapper

    try:
        raise DamagedDataError("dataset.root: image file '/d/x.jpg' cannot be decoded (an empty file)")
    except DamagedDataError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(DamagedDataError) as e:
        wrapped.reraise()
    assert str(e.value) == "dataset.root: image file '/d/x.jpg' cannot be decoded (an empty file)"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 1.0))
def test_every_truncation_of_a_jpeg_is_named_or_loads(cut, tmp_path):
    """Any prefix of a JPEG: the check before training names it, or the image decodes; never another error."""
    from kdsuite.experiments.data_images import check_images, open_image

    whole = _jpeg(11, side=48)
    f = tmp_path / f"cut-{cut}.jpg"
    f.write_bytes(whole[: int(len(whole) * cut)])
    try:
        check_images([str(f)], "dataset.root")
    except DamagedDataError as e:
        assert str(f) in str(e)
        with pytest.raises(DamagedDataError, match="cannot be decoded"):
            open_image(str(f))
        return
    assert open_image(str(f)).size == (48, 48)


def test_a_damaged_file_of_the_teachers_view_is_named(tmp_path):
    """Paired views: the teachers' view files are checked too (each view folder in the image-folder layout)."""
    from kdsuite.experiments.config import validate
    from kdsuite.experiments.data import build_data

    root = tmp_path / "imgs"
    _folder(root / "rgb")
    _folder(root / "depth")
    (root / "depth/val/b/2.jpg").write_bytes(b"")
    cfg = validate({"dataset": {"name": "imagefolder", "root": str(root), "val_fraction": 0, "image_size": 8,
                                "views": {"teacher": "depth", "student": "rgb"}}, "method": "cm_kd", "teachers": ["x"]})
    with pytest.raises(DamagedDataError, match=r"1 damaged image file\(s\).*depth/val/b/2\.jpg' \(an empty file\)"):
        build_data(cfg["dataset"], fields=("x", "y", "teacher_x"))
