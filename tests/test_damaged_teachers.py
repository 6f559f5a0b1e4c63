"""Damaged teacher records are named at plan time (issue 25, item 4): a record whose weights file is garbage,
truncated, or of another architecture than the one it declares is refused by ``kdsuite grid plan`` and by
``kdsuite train`` before any data is read — the folder, the file and the first tensor that differs named, exit 2,
no traceback."""
import hashlib
import json
from pathlib import Path

import pytest
import timm
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kdsuite.zoo  # noqa: F401  (registers cifar_*)
from kdsuite.cli import main
from kdsuite.core.errors import ConfigError
from kdsuite.zoo.teacher_weights import safetensors_header
from kdsuite.zoo.teachers import META, WEIGHTS, load_teacher, save_teacher


def _record(folder: Path, **changes) -> Path:
    """A cifar_resnet8 teacher record for the digits (10 classes), then ``changes``: ``weights`` bytes replace
    the weights file (the record's sha256 follows, so only the file's content is wrong), other keys the record's."""
    torch.manual_seed(0)
    save_teacher(timm.create_model("cifar_resnet8", num_classes=10), folder,
                 {"arch": "cifar_resnet8", "num_classes": 10, "in_chans": 3, "dataset": "digits"})
    meta = json.loads((folder / META).read_text())
    data = changes.pop("weights", None)
    if data is not None:
        (folder / WEIGHTS).write_bytes(data)
        meta["sha256"] = hashlib.sha256(data).hexdigest()
    meta.update(changes)
    (folder / META).write_text(json.dumps(meta))
    return folder


def _half(folder: Path) -> bytes:
    data = (folder / WEIGHTS).read_bytes()
    return data[: len(data) // 2]


CASES = {
    "other-architecture": (lambda f: _record(f, arch="cifar_resnet20"),
                           ["declared architecture 'cifar_resnet20'", "the model's tensor 'stages.0.1.conv1.weight' "
                            "[16, 16, 3, 3] is not in the file"]),
    "other-class-count": (lambda f: _record(f, num_classes=100),
                          ["declared architecture 'cifar_resnet8' (num_classes 100", "tensor 'fc.weight' has "
                           "shape [10, 64] in the file but [100, 64] in the model"]),
    "garbage-bytes": (lambda f: _record(f, weights=b"\x93NUMPY garbage, not safetensors" * 40),
                      ["is not a complete safetensors file", "header length"]),
    "json-garbage": (lambda f: _record(f, weights=(12).to_bytes(8, "little") + b"{not json!!}"),
                     ["is not a complete safetensors file", "header is not JSON"]),
    "truncated": (lambda f: _record(f, weights=_half(_record(f))), ["is not a complete safetensors file", "truncated"]),
    "empty": (lambda f: _record(f, weights=b""), ["is not a complete safetensors file", "0 bytes"]),
}


def _grid(tmp: Path, folder: Path) -> list:
    g = tmp / "g.yaml"
    g.write_text(f"name: g\noutput: {tmp / 'runs'}\ndefaults: {{epochs: 1, device: cpu, progress: none}}\n"
                 f"teachers: {{t: {{checkpoint: {folder}}}}}\n"
                 f"stages:\n  s: {{axes: {{method: [kd], pair: [{{teachers: [t], student: cifar_resnet8}}]}}}}\n")
    return ["grid", "plan", str(g)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_grid_plan_names_a_damaged_teacher_record(case, tmp_path, capsys):
    make, expected = CASES[case]
    folder = make(tmp_path / "teacher")
    assert main(_grid(tmp_path, folder)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"teachers.t.checkpoint = '{folder}'" in err and str(folder / WEIGHTS) in err
    for e in expected:
        assert e in err, (e, err)
    assert "produced by no earlier stage" not in err  # the refused key is not reported again as unknown
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("case", ["other-architecture", "truncated"])
def test_train_names_a_damaged_teacher_record_before_reading_data(case, tmp_path, capsys, monkeypatch):
    import kdsuite.experiments.run as run_module

    make, expected = CASES[case]
    folder = make(tmp_path / "teacher")
    monkeypatch.setattr(run_module, "build_data", lambda *a, **k: pytest.fail("data read before the teacher check"))
    args = ["train", "--set", "method.name=kd", "--set", f"teachers=[{folder}]", "--set", "epochs=1",
            "--set", f"output.root={tmp_path / 'out'}", "--set", "progress=none"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kdsuite: error: teachers[0].checkpoint = '{folder}'") and err.count("\n") == 1, err
    assert "Traceback" not in err and all(e in err for e in expected), err
    assert not list(tmp_path.rglob("record.json"))


def test_a_good_record_still_plans_and_loads(tmp_path, capsys):
    folder = _record(tmp_path / "teacher")
    assert main(_grid(tmp_path, folder)) == 0, capsys.readouterr().err
    model, meta = load_teacher(folder, lambda a, n, c, **kw: timm.create_model(a, num_classes=n, in_chans=c, **kw))
    torch.manual_seed(0)
    ref = timm.create_model("cifar_resnet8", num_classes=10)
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in model.state_dict().items())


def test_load_teacher_names_a_shape_mismatch_instead_of_torchs_error(tmp_path):
    folder = _record(tmp_path / "teacher", num_classes=100)
    with pytest.raises(ConfigError, match=r"'fc\.weight' has shape \[10, 64\] in the file but \[100, 64\]"):
        load_teacher(folder, lambda a, n, c, **kw: timm.create_model(a, num_classes=n, in_chans=c, **kw))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 1.0, exclude_max=True))
def test_every_truncation_of_a_weights_file_is_named(cut, tmp_path):
    """Any proper prefix of a safetensors file is refused from its header alone: the last tensor's data ends at
    the file's end, so no cut goes unnoticed."""
    folder = tmp_path / f"t{cut}"
    _record(folder)
    whole = (folder / WEIGHTS).read_bytes()
    assert set(safetensors_header(str(folder / WEIGHTS), "f")) == set(timm.create_model("cifar_resnet8").state_dict())
    (folder / WEIGHTS).write_bytes(whole[: int(len(whole) * cut)])
    with pytest.raises(ConfigError, match=r"is not a complete safetensors file"):
        safetensors_header(str(folder / WEIGHTS), "f")
