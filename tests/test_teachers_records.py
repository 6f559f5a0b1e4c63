"""Teacher records (safetensors + metadata, refusal of mismatches) and run records (content, atomicity,
finished records never overwritten)."""
import json

import pytest
import torch

from kdsuite import zoo
from kdsuite.core.records import read_record, write_record
from kdsuite.experiments.config import ConfigError
from kdsuite.experiments.run import run
from kdsuite.zoo.teachers import META, WEIGHTS, load_teacher, save_teacher


def _build(arch, num_classes, in_chans=3, **kw):
    return zoo.create_model(arch, num_classes=num_classes, in_chans=in_chans, **kw)


def test_teacher_round_trip_and_hash(tmp_path):
    m = _build("cifar_resnet8", 10)
    meta = save_teacher(m, tmp_path, {"arch": "cifar_resnet8", "num_classes": 10, "dataset": "digits", "top1": 50.0})
    assert (tmp_path / WEIGHTS).exists() and json.loads((tmp_path / META).read_text())["sha256"] == meta["sha256"]
    m2, meta2 = load_teacher(tmp_path, _build, arch="cifar_resnet8", num_classes=10, dataset="digits")
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert meta2["top1"] == 50.0


@pytest.mark.parametrize("expect,msg", [({"arch": "cifar_resnet20"}, "arch"), ({"num_classes": 100}, "num_classes"),
                                        ({"dataset": "cifar100"}, "dataset")])
def test_teacher_mismatch_is_refused(tmp_path, expect, msg):
    save_teacher(_build("cifar_resnet8", 10), tmp_path, {"arch": "cifar_resnet8", "num_classes": 10, "dataset": "digits"})
    with pytest.raises(ConfigError, match=msg):
        load_teacher(tmp_path, _build, **expect)


def test_tampered_teacher_weights_are_refused(tmp_path):
    save_teacher(_build("cifar_resnet8", 10), tmp_path, {"arch": "cifar_resnet8", "num_classes": 10, "dataset": "digits"})
    data = bytearray((tmp_path / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="sha256"):
        load_teacher(tmp_path, _build)


def test_student_run_refuses_a_teacher_of_the_wrong_arch(tmp_path, digits_teachers):
    with pytest.raises(ConfigError, match=r"teachers\[0\]\.arch"):
        run({"student": "cifar_resnet8", "method": "kd", "teachers": [{"checkpoint": digits_teachers[0],
             "arch": "cifar_resnet56"}], "output": {"root": str(tmp_path)}})
    assert not list(tmp_path.iterdir())  # nothing written


def test_student_run_refuses_a_teacher_of_another_class_count(tmp_path):
    save_teacher(_build("cifar_resnet8", 100), tmp_path / "t", {"arch": "cifar_resnet8", "num_classes": 100,
                                                               "dataset": "digits"})
    with pytest.raises(ConfigError, match="num_classes"):
        run({"student": "cifar_resnet8", "method": "kd", "teachers": [str(tmp_path / "t")], "epochs": 1,
             "output": {"root": str(tmp_path / "runs")}})


def test_record_has_identity_provenance_and_metrics(tmp_path, digits_teachers):
    rec = run({"student": "cifar_resnet8", "method": "kd", "teachers": [digits_teachers[0]], "epochs": 1,
               "max_steps_per_epoch": 5, "progress": "none", "output": {"root": str(tmp_path)}})
    on_disk = read_record(rec["run_dir"])
    assert on_disk["status"] == "finished" and on_disk["config_hash"] == rec["config_hash"]
    assert len(on_disk["config_hash"]) == 64 and on_disk["seed"] == 0
    assert on_disk["config"]["method"]["hparams"] == {"T": 4.0, "alpha": 0.1, "standardize": False,
                                                     "ce_weight": None, "kd_weight": None}
    prov = on_disk["provenance"]
    assert prov["versions"]["torch"] == torch.__version__.split("+")[0] or prov["versions"]["torch"].startswith(
        torch.__version__.split("+")[0])
    assert "commit" in prov["git"]
    m = on_disk["metrics"]
    for key in ("best_top1", "last_top1", "best_top5", "last_top5", "teacher_top1", "student_params",
                "wall_time_s", "images_per_s"):
        assert m[key] is not None, key
    assert m["images_per_s"] > 0 and len(m["teacher_top1"]) == 1
    assert on_disk["pair"] == "resnet20→resnet8" and on_disk["category"] == "response"


def test_finished_record_is_never_replaced_by_a_failed_one(tmp_path):
    write_record(tmp_path, {"status": "finished", "metrics": {"last_top1": 1.0}})
    with pytest.raises(RuntimeError, match="finished"):
        write_record(tmp_path, {"status": "failed"})
    assert read_record(tmp_path)["metrics"]["last_top1"] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temp files left behind


def test_failed_run_writes_a_failed_record(tmp_path, monkeypatch):
    from kdsuite.engine.trainer import Trainer

    def boom(self, stop_after_epochs=None):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Trainer, "fit", boom)
    with pytest.raises(RuntimeError):
        run({"student": "cifar_resnet8", "epochs": 1, "output": {"root": str(tmp_path)}})
    (rd,) = list(tmp_path.iterdir())
    rec = read_record(rd)
    assert rec["status"] == "failed" and "disk on fire" in rec["error"]
