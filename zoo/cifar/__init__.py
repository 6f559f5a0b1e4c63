"""The CIFAR-style model family of the KD benchmark literature, registered into timm's registry
under a ``cifar_`` prefix (timm already owns names such as ``vgg13`` and ``resnet50``).

``import zoo`` (or ``kdsuite.zoo.cifar``) registers them; ``timm.list_models("cifar_*")`` lists them and
``timm.create_model("cifar_resnet8x4", num_classes=100)`` builds one. :data:`LITERATURE_NAMES`
maps each to the name tables use (resnet8x4, wrn_40_2, MobileNetV2 …)."""
from kdsuite.zoo.cifar import mobilenetv2, resnet, shufflenet, vgg, wrn  # noqa: F401  (registration)
from kdsuite.zoo.cifar._register import LITERATURE_NAMES

CIFAR_MODELS = sorted(LITERATURE_NAMES)
