"""Grids naming teacher records that exist already (``teachers: {KEY: {checkpoint: DIR}}``, e.g. released
weights brought in by ``kdsuite teacher import``): students are planned with no teacher stage, their
identity carries the record's weight hash, and they run."""
import pytest
import timm
import torch

from kdsuite.experiments.grid import expand, load_grid
from kdsuite.experiments.run import prepare
from kdsuite.core.errors import ConfigError
from kdsuite.zoo.reference_keys import reference_names
from kdsuite.zoo.teacher_import import import_teacher


@pytest.fixture
def imported_resnet8(tmp_path):
    """A RepDistiller-format resnet8 file (10 classes) imported for the digits."""
    torch.manual_seed(0)
    m = timm.create_model("cifar_resnet8", num_classes=10)
    names = reference_names("cifar_resnet8", m)
    f = tmp_path / "save/models/resnet8_vanilla/ckpt_epoch_240.pth"
    f.parent.mkdir(parents=True)
    torch.save({"epoch": 240, "model": {names[k]: v for k, v in m.state_dict().items()}, "accuracy": 90.0}, f)
    folder, meta = import_teacher(f, "repdistiller", "resnet8", num_classes=10, dataset="digits",
                                  out=tmp_path / "teachers/resnet8")
    return folder, meta


def _grid(folder, tmp_path, **extra):
    spec = {"name": "imported", "output": str(tmp_path / "runs"),
            "defaults": {"epochs": 1, "max_steps_per_epoch": 2, "device": "cpu", "progress": "none"},
            "teachers": {"r8": {"checkpoint": str(folder)}},
            "stages": {"students": {"axes": {"method": ["vanilla", "kd"],
                                             "pair": [{"teachers": ["r8"], "student": "cifar_resnet8"}],
                                             "seed": [0]}}}}
    spec.update(extra)
    return expand(spec)


def test_grid_with_an_imported_teacher_plans_students_without_a_teacher_stage(imported_resnet8, tmp_path):
    folder, meta = imported_resnet8
    grid = _grid(folder, tmp_path)
    assert list(grid.stages) == ["students"]
    runs = {r.cfg["method"]["name"]: r for r in grid.stages["students"]}
    assert set(runs) == {"vanilla", "kd"}
    kd = runs["kd"]
    assert kd.cfg["teachers"] == [{"checkpoint": str(folder), "arch": "cifar_resnet8", "sha256": meta["sha256"]}]
    assert kd.needs == [] and runs["vanilla"].cfg["teachers"] == []
    # the run gets exactly the identity (hash, folder) that was planned
    cfg, h, run_dir = prepare(kd.cfg)
    assert (h, run_dir) == (kd.hash, kd.run_dir)
    # other weights behind the same key make another run
    torch.manual_seed(1)
    other = timm.create_model("cifar_resnet8", num_classes=10)
    names = reference_names("cifar_resnet8", other)
    f2 = tmp_path / "other.pth"
    torch.save({"model": {names[k]: v for k, v in other.state_dict().items()}}, f2)
    folder2, _ = import_teacher(f2, "mdistiller", "cifar_resnet8", num_classes=10, dataset="digits", out=tmp_path / "t2")
    kd2 = next(r for r in _grid(folder2, tmp_path).stages["students"] if r.cfg["method"]["name"] == "kd")
    assert kd2.hash != kd.hash


def test_grid_with_an_imported_teacher_runs(imported_resnet8, tmp_path):
    from kdsuite.slurm.executors import run_in_process

    folder, meta = imported_resnet8
    grid = _grid(folder, tmp_path)
    counts = run_in_process(grid, stop_on_error=True, log=lambda *a: None)
    assert counts == {"finished": 2, "failed": 0, "skipped": 0}
    from kdsuite.core.records import read_record

    rec = read_record(next(r for r in grid.stages["students"] if r.cfg["method"]["name"] == "kd").run_dir)
    assert rec["status"] == "finished" and rec["metrics"]["teacher_record_top1"] == [90.0]


def test_grid_teacher_map_errors_are_named(imported_resnet8, tmp_path):
    folder, _ = imported_resnet8
    with pytest.raises(ConfigError, match=r"teachers\.r8\.checkpoint = .*kdsuite teacher import"):
        _grid(tmp_path / "nowhere", tmp_path)
    with pytest.raises(ConfigError, match=r"teachers\.r8 = .*expected \{checkpoint: PATH\}"):
        _grid(folder, tmp_path, teachers={"r8": {"path": str(folder)}})
    with pytest.raises(ConfigError, match=r"'x' is produced by no earlier stage and is not in the grid's teachers map "
                                          r"\(known: \['r8'\]\)"):
        _grid(folder, tmp_path, stages={"s": {"axes": {"method": ["kd"], "pair": [{"teachers": ["x"], "student": "cifar_resnet8"}]}}})
    with pytest.raises(ConfigError, match="trained on dataset 'digits' but this run uses 'cifar10'"):
        _grid(folder, tmp_path, defaults={"dataset": {"name": "cifar10"}, "epochs": 1})
    with pytest.raises(ConfigError, match="also in the grid's teachers map"):
        _grid(folder, tmp_path, stages={"t": {"runs": [{"key": "r8", "student": "cifar_resnet8"}]}})


def test_imagenet_grid_teacher_is_torchvisions_resnet34(tmp_path):
    """The published R34→R18 numbers used torchvision's ResNet-34 (73.31 %): timm's tag resnet34.tv_in1k,
    whose weights file is torchvision's own (timm's default resnet34 tag, a1_in1k, is a different model)."""
    from timm.models import get_pretrained_cfg

    grid = load_grid("imagenet_r34_r18", output=str(tmp_path))
    (teacher,) = grid.stages["teachers"]
    assert teacher.cfg["student"] == {"arch": "resnet34.tv_in1k", "kwargs": {"pretrained": True}}
    assert get_pretrained_cfg("resnet34.tv_in1k").url == "https://download.pytorch.org/models/resnet34-b627a593.pth"
    assert all(r.cfg["teachers"][0]["arch"] == "resnet34.tv_in1k" for r in grid.stages["students"] if r.cfg["teachers"])


def test_planning_checks_a_teacher_record_as_the_run_does(imported_resnet8, tmp_path):
    """One set of teacher checks for plan and run (experiments/teacher_checks.py): a record of another view, a
    damaged or list-valued teacher.json and a folder in place of it are refused at `grid plan` by name."""
    import json

    folder, meta = imported_resnet8
    rec = json.loads((folder / "teacher.json").read_text())
    (folder / "teacher.json").write_text(json.dumps(dict(rec, view="edges")))
    with pytest.raises(ConfigError, match=r"teacher record .* was trained on view 'edges' but this run shows its "
                                          r"teachers view 'image'"):
        _grid(folder, tmp_path)
    (folder / "teacher.json").write_text(json.dumps(rec)[:-5])
    with pytest.raises(ConfigError, match=r"teachers\.r8\.checkpoint = .*teacher\.json is damaged"):
        _grid(folder, tmp_path)
    (folder / "teacher.json").write_text(json.dumps([rec]))
    with pytest.raises(ConfigError, match=r"teachers\.r8\.checkpoint = .*teacher\.json is incomplete"):
        _grid(folder, tmp_path)
    (folder / "teacher.json").unlink()
    (folder / "teacher.json").mkdir()
    with pytest.raises(ConfigError, match=r"teachers\.r8\.checkpoint = .*teacher\.json there cannot be read"):
        _grid(folder, tmp_path)
