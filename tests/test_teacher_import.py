"""``kdsuite teacher import``: files written here in each format's real key names and nesting are turned
into teacher records, loaded through the real run path (``teachers: [{checkpoint: DIR}]``) and give the
source model's logits; files that do not fit, or that would run code when unpickled, are refused."""
import hashlib
import json

import pytest
import timm
import torch
import torch.nn.functional as F

from kdsuite.cli import main as cli_main
from kdsuite.experiments.run import build, prepare
from kdsuite.core.errors import ConfigError
from kdsuite.zoo import teacher_input
from kdsuite.zoo.teacher_import import import_teacher

from tests.test_zoo_reference import VGG_CFG, _vgg8_reference_forward, ref_resnet, ref_vgg


def _random_state(layout, seed=0):
    """Weights of a reference layout with non-trivial batch-norm statistics."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, s in layout:
        if not s:
            sd[k] = torch.tensor(240)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(s, generator=g) + 0.5
        elif k.endswith(("running_mean", "bias")) or len(s) == 1:
            sd[k] = torch.randn(s, generator=g) * 0.1 + (1.0 if k.endswith("weight") else 0.0)
        else:
            fan_in = torch.Size(s[1:]).numel()
            sd[k] = torch.randn(s, generator=g) * (2.0 / fan_in) ** 0.5
    return sd


def _bn(sd, p, x):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        False, 0.0, 1e-5)


def _resnet8_reference_forward(sd, x):
    """RepDistiller's models/resnet.py forward for resnet8 (one BasicBlock per layer), from its equations:
    relu(bn1(conv1 x)); per block relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut); avgpool(8); fc."""
    t = F.relu(_bn(sd, "bn1", F.conv2d(x, sd["conv1.weight"], padding=1)))
    for L, stride in ((1, 1), (2, 2), (3, 2)):
        p = f"layer{L}.0"
        out = F.relu(_bn(sd, f"{p}.bn1", F.conv2d(t, sd[f"{p}.conv1.weight"], stride=stride, padding=1)))
        out = _bn(sd, f"{p}.bn2", F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1))
        short = t
        if f"{p}.downsample.0.weight" in sd:
            short = _bn(sd, f"{p}.downsample.1", F.conv2d(t, sd[f"{p}.downsample.0.weight"], stride=stride))
        t = F.relu(out + short)
    return F.linear(F.avg_pool2d(t, 8).flatten(1), sd["fc.weight"], sd["fc.bias"])


def _teacher_via_run_path(folder, tmp_path, student="cifar_resnet8"):
    """The teacher a real student run builds from the record (digits at 32×32, 10 classes)."""
    raw = {"dataset": {"name": "digits", "image_size": 32}, "student": {"arch": student},
           "teachers": [{"checkpoint": str(folder)}], "method": {"name": "kd"}, "epochs": 1, "device": "cpu",
           "progress": "none", "output": {"root": str(tmp_path / "runs")}}
    cfg, h, run_dir = prepare(raw)
    parts = build(cfg, h, run_dir)
    return parts.method.teachers[0], parts.teacher_meta[0], cfg


def _perturb_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def test_repdistiller_checkpoint_imports_and_gives_the_reference_logits(tmp_path):
    sd = _random_state(ref_resnet(8, (16, 16, 32, 64), nc=10))
    f = tmp_path / "save/models/resnet8_vanilla/ckpt_epoch_240.pth"
    f.parent.mkdir(parents=True)
    # train_teacher.py's regular save: test_acc is a 0-d tensor (top1.avg of tensors)
    torch.save({"epoch": 240, "model": sd, "accuracy": torch.tensor(72.5),
                "optimizer": {"state": {0: {"momentum_buffer": torch.zeros(3)}},
                              "param_groups": [{"lr": 5e-4, "momentum": 0.9, "weight_decay": 5e-4, "params": [0]}]}}, f)
    folder, meta = import_teacher(f, "repdistiller", "resnet8", num_classes=10, dataset="digits",
                                  out=tmp_path / "t_resnet8")
    stored = json.loads((folder / "teacher.json").read_text())
    assert stored["imported"] is True and stored["arch"] == "cifar_resnet8" and stored["top1"] == pytest.approx(72.5)
    assert stored["top1_source"] == "accuracy" and stored["source"]["format"] == "repdistiller"
    assert stored["source"]["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert stored["sha256"] == hashlib.sha256((folder / "teacher.safetensors").read_bytes()).hexdigest()
    teacher, tmeta, cfg = _teacher_via_run_path(folder, tmp_path)
    assert cfg["teachers"][0]["sha256"] == stored["sha256"] and not teacher.training
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        want, got = _resnet8_reference_forward(sd, x), teacher(x)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()


def test_repdistiller_best_file_and_dataparallel_prefix(tmp_path):
    sd = _random_state(ref_resnet(8, (16, 16, 32, 64)))
    f = tmp_path / "resnet8_best.pth"
    torch.save({"epoch": 231, "model": {f"module.{k}": v for k, v in sd.items()}, "best_acc": torch.tensor(73.1),
                "optimizer": {"state": {}, "param_groups": []}}, f)
    _, meta = import_teacher(f, "repdistiller", "cifar_resnet8", out=tmp_path / "t")
    assert meta["top1"] == pytest.approx(73.1) and meta["top1_source"] == "best_acc"
    assert meta["num_classes"] == 100 and meta["dataset"] == "cifar100" and meta["source"]["epoch"] == 231


def test_mdistiller_files_import_and_give_the_reference_vgg_logits(tmp_path):
    sd = _random_state(ref_vgg(VGG_CFG["vgg8"], nc=10))
    f = tmp_path / "download_ckpts/cifar_teachers/vgg8_vanilla/ckpt_epoch_240.pth"
    f.parent.mkdir(parents=True)
    torch.save({"epoch": 240, "model": sd, "accuracy": 70.36, "optimizer": {"state": {}, "param_groups": []}}, f)
    student_best = tmp_path / "output/vgg8/student_best"  # mdistiller's own save: {"model": student.state_dict()}
    student_best.parent.mkdir(parents=True)
    torch.save({"model": sd}, student_best)
    a, meta_a = import_teacher(f, "mdistiller", "vgg8", num_classes=10, dataset="digits", out=tmp_path / "a")
    b, meta_b = import_teacher(student_best, "mdistiller", "cifar_vgg8", num_classes=10, dataset="digits",
                               accuracy=70.1, out=tmp_path / "b")
    assert meta_a["top1"] == pytest.approx(70.36) and meta_b["top1"] == 70.1 and meta_b["top1_source"] == "declared"
    assert meta_a["sha256"] == meta_b["sha256"]  # the same weights, whatever the wrapping
    teacher, _, _ = _teacher_via_run_path(a, tmp_path, student="cifar_resnet8")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want, got = _vgg8_reference_forward(sd, x), teacher(x)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()


def test_timm_safetensors_imports_and_gives_the_source_logits(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    src = timm.create_model("resnet18", num_classes=10)
    with torch.no_grad():
        _perturb_bn(src)
    f = tmp_path / "model.safetensors"  # the hub's file name
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(f))
    folder, meta = import_teacher(f, "timm", "resnet18", num_classes=10, dataset="digits", accuracy=95.0,
                                  out=tmp_path / "t")
    assert meta["source"]["key_mapping"] == "identity" and meta["top1"] == 95.0
    teacher, tmeta, _ = _teacher_via_run_path(folder, tmp_path)
    x = torch.randn(2, 3, 32, 32)
    # the run feeds the teacher its own input (timm's data_config: ImageNet mean / std, 224 px; tests/test_teacher_input.py)
    assert tmeta["input"]["size"] == [224, 224]
    with torch.no_grad():
        assert torch.allclose(teacher(x), src.eval()(teacher_input.adapt(teacher, x)), atol=1e-5)


def test_torchvision_state_dict_imports_and_gives_the_source_logits(tmp_path):
    import torchvision

    torch.manual_seed(0)
    src = torchvision.models.resnet18(num_classes=10)
    with torch.no_grad():
        _perturb_bn(src)
    # files written before PyTorch 0.4.1 have no num_batches_tracked counters
    state = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    f = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, f)
    folder, meta = import_teacher(f, "torchvision", "resnet18", num_classes=10, dataset="digits", out=tmp_path / "t")
    assert len(meta["source"]["filled_with_zero"]) == 20 and meta["top1"] is None
    teacher, tmeta, _ = _teacher_via_run_path(folder, tmp_path)
    x = torch.randn(2, 3, 32, 32)
    # the run feeds the teacher its own input (timm's data_config: ImageNet mean / std, 224 px; tests/test_teacher_input.py)
    assert tmeta["input"]["size"] == [224, 224]
    with torch.no_grad():
        assert torch.allclose(teacher(x), src.eval()(teacher_input.adapt(teacher, x)), atol=1e-5)


@pytest.fixture
def resnet8_file(tmp_path):
    def write(mutate=lambda sd: sd, name="ckpt_epoch_240.pth"):
        sd = mutate(_random_state(ref_resnet(8, (16, 16, 32, 64))))
        f = tmp_path / name
        torch.save({"epoch": 240, "model": sd, "accuracy": 70.0}, f)
        return f

    return write


def test_refuses_a_file_of_another_architecture(resnet8_file, tmp_path):
    f = resnet8_file()
    with pytest.raises(ConfigError, match=r"missing: layer1\.1\.conv1\.weight") as e:
        import_teacher(f, "repdistiller", "cifar_resnet20", out=tmp_path / "t")
    assert "--arch cifar_resnet20" in str(e.value)
    assert not (tmp_path / "t").exists()
    # the CLI turns it into exit status 2 and names the keys
    assert cli_main(["teacher", "import", "--format", "repdistiller", str(f), "--arch", "vgg8",
                     "--out", str(tmp_path / "t")]) == 2


def test_refuses_missing_extra_and_misshapen_keys(resnet8_file, tmp_path, capsys):
    missing = resnet8_file(lambda sd: {k: v for k, v in sd.items() if k != "fc.bias"}, "a.pth")
    with pytest.raises(ConfigError, match=r"1 missing: fc\.bias"):
        import_teacher(missing, "repdistiller", "cifar_resnet8", out=tmp_path / "t")
    extra = resnet8_file(lambda sd: dict(sd, **{"fc2.weight": torch.zeros(3)}), "b.pth")
    with pytest.raises(ConfigError, match=r"1 unexpected: fc2\.weight"):
        import_teacher(extra, "repdistiller", "cifar_resnet8", out=tmp_path / "t")
    ok = resnet8_file(name="c.pth")
    assert cli_main(["teacher", "import", "--format", "repdistiller", str(ok), "--arch", "resnet8",
                     "--num-classes", "10", "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "wrong shape: fc.weight (100, 64) (the model needs (10, 64))" in err and "fc.bias (100,)" in err
    no_model = tmp_path / "d.pth"
    torch.save({"state_dict": {}}, no_model)
    with pytest.raises(ConfigError, match="under 'model'"):
        import_teacher(no_model, "repdistiller", "cifar_resnet8", out=tmp_path / "t")
    assert not (tmp_path / "t").exists()


class _Payload:
    """Unpickling this calls open(marker, 'w'): the file appears if and only if the pickle is executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_never_unpickles_arbitrary_objects(resnet8_file, tmp_path):
    marker = tmp_path / "pwned"
    sd = _random_state(ref_resnet(8, (16, 16, 32, 64)))
    f = tmp_path / "ckpt_epoch_240.pth"
    torch.save({"epoch": 240, "model": sd, "accuracy": 70.0, "opt": _Payload(marker)}, f)
    with pytest.raises(ConfigError, match="refused"):
        import_teacher(f, "repdistiller", "cifar_resnet8", out=tmp_path / "t")
    assert not marker.exists() and not (tmp_path / "t").exists()
    # the payload is live: a full unpickling would have run it
    torch.load(f, weights_only=False)
    assert marker.exists()
