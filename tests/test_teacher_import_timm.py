"""``kdsuite teacher import`` of torchvision and timm files through timm's own loading path (issue 28):
torchvision's VGG16 and DenseNet-121 state dicts (their real key names, DenseNet's pre-0.4 ``norm.1`` keys as
in the released ``densenet121-a639ec97.pth``) are mapped by timm's checkpoint filters, a timm ViT's
safetensors file loads as it is, and each record holds the teacher's data config (timm's
``resolve_model_data_config``)."""
import re

import pytest
import torch

from kdsuite.core.errors import ConfigError
from kdsuite.zoo.teacher_import import import_teacher, timm_filter
from kdsuite.zoo.teachers import load_teacher
from kdsuite import zoo


def _load(folder, in_shape=(3, 32, 32)):
    model, meta = load_teacher(str(folder), lambda a, num_classes, in_chans=3, **kw: zoo.create_model(
        a, num_classes=num_classes, in_chans=in_chans, **kw), field="teachers[0].checkpoint", num_classes=10,
        dataset="digits", in_chans=3)
    return model.eval(), meta


def _bn_stats(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.mark.extended  # VGG16's 4096×25088 classifier: ~0.5 GB written and read
def test_torchvision_vgg16_imports_through_timms_filter(tmp_path):
    import torchvision

    torch.manual_seed(0)
    src = torchvision.models.vgg16(num_classes=10).eval()
    f = tmp_path / "vgg16-397923af.pth"
    torch.save(src.state_dict(), f)
    folder, meta = import_teacher(f, "torchvision", "vgg16", num_classes=10, dataset="digits", out=tmp_path / "t")
    assert meta["source"]["key_mapping"] == "timm checkpoint filter timm.models.vgg._filter_fn"
    assert meta["data_config"]["input_size"] == [3, 224, 224] and meta["data_config"]["interpolation"]
    teacher, _ = _load(folder)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(teacher(x), src(x), atol=1e-4)


def test_vgg16_without_the_filter_would_miss_six_keys():
    # what the identity mapping met: torchvision's classifier.{0,3,6} vs timm's pre_logits.fc{1,2} and head.fc
    import torchvision

    tv = set(torchvision.models.vgg11(num_classes=10).state_dict())
    tm = set(zoo.create_model("vgg11", num_classes=10).state_dict())
    assert len(tv - tm) == 6 and len(tm - tv) == 6
    assert timm_filter(zoo.create_model("vgg11", num_classes=10))[0] == "_filter_fn"


def test_torchvision_densenet121_imports_through_timms_filter(tmp_path):
    import torchvision

    torch.manual_seed(0)
    src = torchvision.models.densenet121(num_classes=10).eval()
    _bn_stats(src)
    # the released file's key names: denselayerN.norm.1.weight, not norm1.weight (torchvision renames on load)
    pat = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    state = {pat.sub(r"\1.\2", k): v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert any(".norm.1.weight" in k for k in state)
    f = tmp_path / "densenet121-a639ec97.pth"
    torch.save(state, f)
    folder, meta = import_teacher(f, "torchvision", "densenet121", num_classes=10, dataset="digits",
                                  out=tmp_path / "t")
    assert "densenet._filter_torchvision_pretrained" in meta["source"]["key_mapping"]
    assert set(meta["data_config"]) >= {"input_size", "interpolation", "mean", "std", "crop_pct"}
    teacher, _ = _load(folder)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(teacher(x), src(x), atol=1e-4)


def test_timm_vit_safetensors_imports_with_its_data_config(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    src = zoo.create_model("vit_tiny_patch16_224", num_classes=10).eval()  # the hub's architecture, 5.7 M
    f = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(f))
    # timm's ViT filter (position-embedding resampling …) runs with the model at hand: keys map as they are
    folder, meta = import_teacher(f, "timm", "vit_tiny_patch16_224", num_classes=10, dataset="digits",
                                  out=tmp_path / "t")
    assert "vision_transformer.checkpoint_filter_fn" in meta["source"]["key_mapping"]
    assert meta["data_config"]["mean"] == [0.5, 0.5, 0.5] and meta["data_config"]["input_size"] == [3, 224, 224]
    teacher, _ = _load(folder)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(teacher(x), src(x), atol=1e-5)


def test_a_file_of_another_architecture_still_fails_by_name(tmp_path):
    import torchvision

    f = tmp_path / "densenet121.pth"
    torch.save(torchvision.models.densenet121(num_classes=10).state_dict(), f)
    with pytest.raises(ConfigError, match="does not fit --arch resnet18"):
        import_teacher(f, "torchvision", "resnet18", num_classes=10, dataset="digits", out=tmp_path / "t")
