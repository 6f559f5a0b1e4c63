"""Build-time checks of a method plugin's hyper-parameters against the models and the data of its run.

Role in the flow: the config schema (``kdsuite.experiments.settings``, so ``grid plan`` too) checks the counts
of training rows a plugin declares in ``below_num_train`` against the data set's whole training split
(:func:`plan_below_num_train`); :class:`kdsuite.methods.base.Distiller` checks the hyper-parameters it declares
in ``stage_hparams`` (each names a feature stage ``feat<i>``) before it resolves its feature taps; and the run
entry point (``kdsuite.experiments.run.build``) calls the plugin's ``check_build`` hook once the plugin is
built, before the first training step (by default :func:`check_below_num_train`, against the run's exact
``num_train``). Each refuses with a ConfigError naming ``method.hparams.<name>``, the value and what these
models and this data allow — a value that cannot work is refused before training instead of failing (or
crawling) at step 1.
"""
from __future__ import annotations

from typing import Any, List, Tuple

from kdsuite.core.errors import ConfigError
from kdsuite.zoo import taps as ztaps

PREFIX = "method.hparams"


def _stage_models(method) -> List[Tuple[str, Any, int]]:
    """(who, model, feature count) of the student and of each teacher of its family (a single-stage hint
    takes the same stage number there; across families the teacher stage nearest in depth, always there)."""
    fam = ztaps.family(method.student)
    models = [("the student", method.student)] + [(f"teacher {i}", t) for i, t in enumerate(method.teachers)
                                                  if ztaps.family(t) == fam]
    out = []
    for who, model in models:
        if getattr(model, "feature_info", None) is not None:  # none: tap resolution names the model
            out.append((who, model, ztaps.feature_count(model)))
    return out


def check_stage_hparams(method) -> None:
    """Each of ``method.stage_hparams`` is a stage index: at least the HParam's ``low`` (no ``low``: 0, and
    negative indices count from the student's last stage) and within every model that takes that stage."""
    models = _stage_models(method)
    if not models or models[0][0] != "the student":
        return
    n_student = models[0][2]
    for name in method.stage_hparams:
        value = getattr(method.hp, name)
        declared_low = method.hparams[name].low
        low = 0 if declared_low is None else int(declared_low)
        high = min(n for _, _, n in models) - 1
        index = value + n_student if value < 0 and declared_low is None else value
        if low <= index <= high:
            continue
        have = "; ".join(f"{who} ({type(m).__name__}) has feat0..feat{n - 1}" for who, m, n in models)
        allowed = f"{low}..{high}" if low <= high else "none"
        if declared_low is None and low <= high:
            allowed += f", or {-n_student}..{high - n_student} counted from the student's last stage"
        raise ConfigError(f"{PREFIX}.{name} = {value!r} is out of range for method '{method.name}' on these models "
                          f"({have}); allowed: {allowed}")


def resolve_taps(method) -> None:
    """``method.s_taps`` / ``t_taps`` from the declared taps, after the stage hyper-parameters are checked; a tap
    a model does not have is a ConfigError naming the method and the families."""
    check_stage_hparams(method)
    try:
        method.s_taps = ztaps.resolve(method.student, method.student_taps)
        method.t_taps = [ztaps.resolve(t, method.teacher_taps) for t in method.teachers]
    except ConfigError:
        raise
    except ValueError as e:  # a tap this model does not have: the user's choice of method and model
        raise ConfigError(f"method '{method.name}' on a {ztaps.family(method.student)} student"
                          + "".join(f" and a {ztaps.family(t)} teacher" for t in method.teachers[:1])
                          + f": {e}") from None


def require_at_most(method, name: str, high: int, high_text: str, why: str) -> None:
    """``method.hparams.<name>`` must be at most ``high``, a bound of this run's data (``high_text`` says which)."""
    value = getattr(method.hp, name)
    if value > high:
        low = int(method.hparams[name].low or 0)
        allowed = f"{low}..{high}" if low <= high else "none"
        raise ConfigError(f"{PREFIX}.{name} = {value!r} is too large for method '{method.name}' on this data: {why}; "
                          f"allowed: {allowed} ({high_text})")


def check_below_num_train(method) -> None:
    """Each of ``method.below_num_train`` below the run's training set size (``ctx.num_train``)."""
    m = method.ctx.num_train
    for name, why in method.below_num_train.items():
        require_at_most(method, name, m - 1, f"below the training set's {m} samples", why)


def plan_below_num_train(cls, hp, dataset: str, train_split_images) -> None:
    """Before any data is read: each of ``cls.below_num_train`` below the whole training split of ``dataset``
    (``train_split_images``, None when unknown), which bounds every run's training set from above."""
    if not train_split_images:
        return
    for name, why in cls.below_num_train.items():
        value = getattr(hp, name)
        if value >= train_split_images:
            raise ConfigError(f"{PREFIX}.{name} = {value!r} is too large for method '{cls.name}' on dataset "
                              f"'{dataset}': {why}; its whole training split holds {train_split_images} images, "
                              f"so allowed: below {train_split_images} (fewer with dataset.val_fraction / "
                              f"train_fraction; the run names the exact bound when it starts)")
