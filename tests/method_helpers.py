"""Building a plugin around tiny zoo models for the per-method tests."""
import zoo
from methods.base import BuildContext
from methods.hparams import resolve_hparams
from methods.registry import get_method


def make(name, teachers=("cifar_resnet20",), student="cifar_resnet8", num_classes=10, **hp):
    cls = get_method(name)
    s = zoo.create_model(student, num_classes=num_classes)
    ts = [zoo.create_model(t, num_classes=num_classes).eval().requires_grad_(False) for t in teachers]
    ctx = BuildContext(num_classes=num_classes, input_shape=(3, 16, 16), epochs=2, steps_per_epoch=5, batch_size=8,
                       num_train=100, build_model=lambda a, num_classes=num_classes, in_chans=3, **k:
                       zoo.create_model(a, num_classes=num_classes, in_chans=in_chans, **k))
    return cls(s, ts, resolve_hparams(cls.name, cls.hparams, hp), ctx)
