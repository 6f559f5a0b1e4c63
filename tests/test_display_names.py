"""Display names: one mapping per kind (architectures in kdsuite.zoo.names, methods in the registry), used by
tables and figures, with the registry key as fallback."""
import re

from kdsuite import zoo
from kdsuite.methods.registry import list_methods, method_display_name
from kdsuite.zoo.names import pair_name, paper_name


def test_every_cifar_arch_of_the_zoo_has_a_paper_name():
    cifar = zoo.list_models("cifar_*")
    assert len(cifar) >= 20
    missing = [a for a in cifar if a not in zoo.PAPER_NAMES]
    assert not missing, missing
    for a in cifar:  # the paper name keeps the depth/width numbers of the key (no copy-paste slip)
        digits = re.findall(r"\d+", a.replace("cifar_", ""))
        assert re.findall(r"\d+", paper_name(a)) == digits, (a, paper_name(a))


def test_paper_names_of_the_benchmark_pairs_and_the_fallback():
    assert paper_name("cifar_resnet32x4") == "ResNet32×4" and paper_name("cifar_wrn_40_2") == "WRN-40-2"
    assert paper_name("resnet34.tv_in1k") == "ResNet34"  # the timm weight tag is dropped
    assert paper_name("some_timm_model") == "some_timm_model"
    assert pair_name("cifar_resnet32x4", "cifar_resnet8x4") == "ResNet32×4→ResNet8×4"
    assert pair_name("cifar_resnet20+cifar_wrn_16_2", "cifar_resnet8") == "ResNet20+WRN-16-2→ResNet8"
    assert pair_name("", "cifar_resnet8") == "ResNet8"


def test_every_registered_method_has_a_display_name():
    # the display name lives on the plugin class (one file per method, no central list)
    built_in = [c for c in list_methods() if c.__module__.startswith("kdsuite.methods.plugins.")]
    missing = [c.name for c in built_in if not c.display_name]
    assert not missing, missing
    assert method_display_name("kd") == "KD" and method_display_name("fitnet") == "FitNet"
    assert method_display_name("not_a_method") == "not_a_method"
    shown = [method_display_name(c.name) for c in list_methods()]
    assert len(set(shown)) == len(shown)  # no two methods print alike
