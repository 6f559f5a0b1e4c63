"""An imported teacher sees its own input (issue 28): the ``data_config`` that ``kdsuite teacher import`` records
from timm (size, interpolation, mean / std) is applied when that teacher is distilled and evaluated — the
run's batches un-normalised, resized and normalised again — while the student keeps the data's input. Files
written here in timm's real format (safetensors of timm's ``test_vit``, built for 160-px images)."""
import json

import pytest
import torch
import torch.nn.functional as F

from kdsuite import zoo
from kdsuite.core.errors import ConfigError
from kdsuite.experiments.data import build_data
from kdsuite.experiments.run import run
from kdsuite.zoo import taps as ztaps
from kdsuite.zoo import teacher_input
from kdsuite.zoo.teacher_import import import_teacher
from kdsuite.zoo.teachers import load_teacher

DIGITS = {"name": "digits", "batch_size": 16}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("timm")
    torch.manual_seed(0)
    src = zoo.create_model("test_vit", num_classes=10).eval()
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(d / "model.safetensors"))
    folder, meta = import_teacher(d / "model.safetensors", "timm", "test_vit", num_classes=10, dataset="digits",
                                  out=d / "teacher")
    assert meta["data_config"]["input_size"] == [3, 160, 160] and meta["data_config"]["mean"] == [0.5, 0.5, 0.5]
    return folder, src


def digits_data():
    from kdsuite.experiments.config import validate

    return build_data(validate({"dataset": DIGITS})["dataset"], "cpu")


def own_input(x, mean, std):
    """The teacher's input written out: undo the data's normalisation, bicubic to 160², normalise by 0.5 / 0.5."""
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    x = F.interpolate(x * s + m, size=(160, 160), mode="bicubic", align_corners=False, antialias=True)
    return (x - 0.5) / 0.5


def test_every_path_of_the_teacher_sees_its_own_input(imported):
    folder, src = imported
    data = digits_data()
    model, meta = load_teacher(str(folder), lambda a, n, c=3, **kw: zoo.create_model(a, num_classes=n, in_chans=c),
                               num_classes=10, dataset="digits", in_chans=3)
    step = teacher_input.for_record(meta, data.mean, data.std, data.input_shape, "teachers[0].checkpoint")
    teacher_input.attach(model.eval(), step)
    x = torch.randn(3, *data.input_shape)
    with torch.no_grad():
        want = src(own_input(x, data.mean, data.std))
        assert torch.allclose(model(x), want, atol=1e-5)  # plain calls: evaluation, cached logits
        logits, feats = ztaps.extract(model, x, ["feat1", "pool"])  # feature taps: forward_intermediates
        assert torch.allclose(logits, want, atol=1e-5) and feats["feat1"].shape[1] == 1 + (160 // 16) ** 2
        assert not torch.allclose(src(F.interpolate(x, size=(160, 160), mode="bicubic")), want, atol=1e-3)
    info = ztaps.tap_info(model, ["feat1"], data.input_shape)["feat1"]
    assert info.grid == (10, 10)  # the teacher's own 160-px grid, not the data's 16 px


def test_a_run_distils_and_evaluates_through_it_and_records_it(imported, tmp_path):
    folder, src = imported
    rec = run({"student": "cifar_resnet8", "teachers": [{"checkpoint": str(folder)}], "method": "at",
               "epochs": 1, "max_steps_per_epoch": 2, "dataset": DIGITS, "teacher_cache": False,
               "progress": "none", "output": {"root": str(tmp_path)}})
    assert rec["status"] == "finished"
    data = digits_data()
    (ti,) = rec["teacher_inputs"]
    assert (ti["mean"], ti["std"], ti["size"], ti["interpolation"]) == ([0.5] * 3, [0.5] * 3, [160, 160], "bicubic")
    assert ti["from_data"]["mean"] == pytest.approx(list(data.mean))
    assert rec["features"]["teachers"][0]["family"] == "ViT" and rec["data"]  # the student: the data's 16 px
    assert rec["effective"]["world_size"] == 1
    correct = n = 0
    with torch.no_grad():
        for x, y in data.val:
            correct += int((src(own_input(x, data.mean, data.std)).argmax(1) == y).sum())
            n += len(y)
    assert rec["metrics"]["teacher_top1"][0] == pytest.approx(100.0 * correct / n)


def test_a_record_without_data_config_keeps_the_datas_input(imported, tmp_path):
    import shutil

    folder, _ = imported
    copy = tmp_path / "nodc"
    shutil.copytree(folder, copy)
    meta = json.loads((copy / "teacher.json").read_text())
    del meta["data_config"]  # as teachers kdsuite trained: their records state no preprocessing of their own
    (copy / "teacher.json").write_text(json.dumps(meta))
    rec = run({"student": "cifar_resnet8", "teachers": [{"checkpoint": str(copy)}], "method": "kd", "epochs": 1,
               "max_steps_per_epoch": 1, "dataset": DIGITS, "progress": "none", "output": {"root": str(tmp_path)}})
    assert rec["status"] == "finished" and rec["teacher_inputs"] == [None]


def test_what_cannot_be_bridged_is_refused_and_what_needs_nothing_is_left_alone():
    meta = {"source": {"format": "timm"}, "data_config": {"input_size": [1, 160, 160], "mean": [0.5], "std": [0.5],
                                                          "interpolation": "bilinear"}}
    with pytest.raises(ConfigError, match=r"teachers\[0\]\.checkpoint: .*1-channel images; the data has 3 channels"):
        teacher_input.for_record(meta, (0.1,) * 3, (0.2,) * 3, (3, 16, 16), "teachers[0].checkpoint")
    meta["data_config"] = {"input_size": [3, 160, 160], "mean": [0.5] * 3, "std": [0.5] * 3}
    with pytest.raises(ConfigError, match=r"states no per-channel mean / std"):
        teacher_input.for_record(meta, (), (), (3, 16, 16), "teachers[0].checkpoint")
    assert teacher_input.for_record(meta, (0.5,) * 3, (0.5,) * 3, (3, 160, 160), "t") is None  # nothing to do
    cifar = dict(meta, source={"format": "repdistiller"})  # timm's default config for a model it does not know
    assert teacher_input.for_record(cifar, (0.1,) * 3, (0.2,) * 3, (3, 32, 32), "t") is None
