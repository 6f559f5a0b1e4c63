"""The typed config: one declaration of every default, values typed once for the trainer and the plugin
while the written form (what is hashed and recorded) keeps them as given; errors name the nested path."""
import pytest

from kdsuite.engine.settings import GroupOptim, ScheduleSettings, TrainSettings
from kdsuite.experiments.config import DEFAULTS, ConfigError, validate
from kdsuite.methods.hparams import HParams


def test_defaults_are_the_models_defaults():
    trainer = TrainSettings()
    for name in ("epochs", "seed", "eval_every", "log_every", "grad_clip", "max_steps_per_epoch", "progress"):
        assert DEFAULTS[name] == getattr(trainer, name), name
    assert DEFAULTS["optim"] == trainer.optim.model_dump()
    assert DEFAULTS["schedule"] == trainer.schedule.model_dump()
    typed = validate({}).settings
    assert typed.dataset.model_dump() == DEFAULTS["dataset"] and typed.epochs == DEFAULTS["epochs"] == 10


def test_typed_values_and_the_written_form():
    cfg = validate({"optim": {"lr": "1e-3"}, "schedule": {"warmup_epochs": 5}, "method": "kd", "teachers": ["t"],
                    "optimizers": {"student": {"lr": 0.2, "schedule": {"name": "cosine"}}}})
    assert cfg["optim"]["lr"] == "1e-3" and cfg.settings.optim.lr == 1e-3  # the hash keeps what was written
    assert cfg["schedule"]["warmup_epochs"] == 5 and isinstance(cfg["schedule"]["warmup_epochs"], int)
    assert cfg["teachers"] == [{"checkpoint": "t"}] and cfg.settings.teachers[0].checkpoint == "t"
    hp = cfg.settings.method.hp
    assert isinstance(hp, HParams) and hp.T == 4.0 and cfg["method"]["hparams"] == vars(hp)
    over = cfg.settings.optimizers["student"]
    assert isinstance(over, GroupOptim) and over.optim_fields() == {"lr": 0.2}
    assert over.schedule_fields() == {"name": "cosine"}  # only what the override sets
    ts = cfg.settings.train_settings(precision="bf16", channels_last=True)
    assert type(ts) is TrainSettings and ts.precision == "bf16" and ts.optim is cfg.settings.optim


@pytest.mark.parametrize("raw,pattern", [
    ({"optimizers": {"peer1": {"schedule": {"gamma": 2}}}, "method": "dml"},
     r"^optimizers\.peer1\.schedule\.gamma = 2\.0 is out of range; expected a number > 0 and <= 1$"),
    ({"optimizers": {"peer1": {"betas": [0.5]}}, "method": "dml"}, r"^optimizers\.peer1\.betas = \[0\.5\]: expected two"),
    ({"teachers": [{"checkpoint": "a", "path": "b"}], "method": "kd"}, r"^teachers\[0\]: unknown field\(s\) \['path'\]"),
    ({"dataset": 3}, r"^dataset must be a mapping, got 3$"),
    ({"dataset": {"batch_size": 0}}, r"^dataset\.batch_size = 0 is out of range; expected an integer >= 1$"),
    ({"schedule": {"warmup_epochs": "x"}}, r"^schedule\.warmup_epochs = 'x' is not a number >= 0"),
])
def test_nested_errors_name_the_path(raw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        validate(raw)


def test_lr_factor_reads_typed_schedules():
    from kdsuite.engine.trainer import lr_factor

    s = ScheduleSettings(name="step", milestones=[2, 4], gamma=0.5)
    assert [lr_factor(s, e, 6) for e in (0, 2, 4.5)] == [1.0, 0.5, 0.25]
