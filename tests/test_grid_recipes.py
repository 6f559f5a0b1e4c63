"""Per-pair recipes: the grid's ``overrides`` rules (match → set), their validation, the settings each
planned run records, and the shipped reproduction grids carrying the references' per-pair settings
(mdistiller's DKD β per pair, RepDistiller's lr 0.01 for MobileNetV2/ShuffleNets, the FT paraphraser lr,
the ImageNet settings of mdistiller and DIST) — and ``grid plan`` printing them per run."""
import pytest

from kdsuite.cli import main
from kdsuite.experiments.config import ConfigError
from kdsuite.experiments.grid import expand, load_grid


def _spec(root, rules=None, method_overrides=None):
    st = {"needs": "teachers", "axes": {"method": ["kd", "dkd"],
                                        "pair": [{"teachers": ["t"], "student": "cifar_resnet8"},
                                                 {"teachers": ["t"], "student": "cifar_wrn_16_1"}],
                                        "seed": [0, 1]}}
    if rules is not None:
        st["overrides"] = rules
    if method_overrides is not None:
        st["method_overrides"] = method_overrides
    return {"name": "tiny", "output": str(root), "defaults": {"dataset": {"name": "digits"}, "epochs": 1},
            "stages": {"teachers": {"runs": [{"key": "t", "student": "cifar_resnet14"}]}, "students": st}}


def _by(runs):
    return {(r.cfg["method"]["name"], r.cfg["student"]["arch"], r.cfg["seed"]): r for r in runs}


def test_a_rule_sets_only_the_matching_runs_and_merges_with_method_overrides(tmp_path):
    rules = [{"match": {"method": "dkd", "pair": {"teachers": ["t"], "student": "cifar_resnet8"}},
              "set": {"method": {"hparams": {"beta": 2.0}}}},
             {"match": {"student": "cifar_wrn_16_1", "seed": 1}, "set": {"optim": {"lr": 0.01}}}]
    runs = _by(expand(_spec(tmp_path, rules, method_overrides={"dkd": {"method": {"hparams": {"T": 2.0}}}}))
               .stages["students"])
    assert len(runs) == 8
    for (m, arch, seed), r in runs.items():
        hp = r.cfg["method"]["hparams"]
        if m == "dkd":
            assert hp["T"] == 2.0  # the method override survives the rule's hparams
            assert hp["beta"] == (2.0 if arch == "cifar_resnet8" else 8.0)
        lr_rule = arch == "cifar_wrn_16_1" and seed == 1
        assert r.cfg["optim"]["lr"] == (0.01 if lr_rule else 0.05)
        expect = {}
        if m == "dkd":
            expect["method.hparams.T"] = 2.0
            if arch == "cifar_resnet8":
                expect["method.hparams.beta"] = 2.0
        if lr_rule:
            expect["optim.lr"] = 0.01
        assert r.settings == expect, (m, arch, seed)


def test_later_rules_win_and_a_rule_beats_the_method_override(tmp_path):
    rules = [{"match": {"method": "kd"}, "set": {"method": {"hparams": {"T": 3.0}}}},
             {"match": {"method": "kd", "seed": 0}, "set": {"method": {"hparams": {"T": 5.0}}}}]
    runs = _by(expand(_spec(tmp_path, rules, method_overrides={"kd": {"method": {"hparams": {"T": 1.0}}}}))
               .stages["students"])
    assert runs[("kd", "cifar_resnet8", 0)].cfg["method"]["hparams"]["T"] == 5.0
    assert runs[("kd", "cifar_resnet8", 1)].cfg["method"]["hparams"]["T"] == 3.0


@pytest.mark.parametrize("rule, words", [
    ({"match": {"method": "dkd"}}, ["overrides[0]", "exactly the keys", "set"]),
    ({"match": {"method": "dkd"}, "set": {}}, ["overrides[0].set", "non-empty mapping"]),
    ({"match": {"colour": "red"}, "set": {"epochs": 2}}, ["overrides[0].match.colour", "allowed", "pair"]),
    ({"match": {"method": "dkdd"}, "set": {"epochs": 2}}, ["overrides[0].match.method = 'dkdd'"]),
    ({"match": {"student": "cifar_resnet9000"}, "set": {"epochs": 2}}, ["match.student = 'cifar_resnet9000'"]),
    ({"match": {"method": "dkd", "teachers": ["nope"]}, "set": {"epochs": 2}}, ["overrides[0]", "matches no run"]),
    ({"match": {}, "set": {"epochs": 2}}, ["overrides[0].match = {}"]),
])
def test_bad_rules_are_named(tmp_path, rule, words):
    with pytest.raises(ConfigError) as e:
        expand(_spec(tmp_path, [rule]))
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_a_rule_setting_a_bad_value_is_reported_for_its_runs(tmp_path):
    rules = [{"match": {"method": "dkd"}, "set": {"method": {"hparams": {"beta": -1.0}}}}]
    with pytest.raises(ConfigError, match="beta"):
        expand(_spec(tmp_path, rules))


# ---- the shipped reproduction grids ----------------------------------------------------------------
# mdistiller configs/cifar100/dkd/<pair>.yaml, DKD.BETA (default 8.0 in mdistiller/engine/cfg.py); the two
# pairs DKD does not report take their teacher's β from mdistiller's other pair of that teacher
DKD_BETA = {("wrn_40_2", "cifar_wrn_16_2"): 6.0, ("wrn_40_2", "cifar_wrn_40_1"): 6.0,
            ("resnet56", "cifar_resnet20"): 2.0, ("resnet110", "cifar_resnet32"): 2.0,
            ("resnet110", "cifar_resnet20"): 2.0, ("resnet32x4", "cifar_resnet8x4"): 8.0,
            ("vgg13", "cifar_vgg8"): 6.0, ("vgg13", "cifar_mobilenetv2"): 6.0,
            ("resnet50", "cifar_mobilenetv2"): 8.0, ("resnet50", "cifar_vgg8"): 8.0,
            ("resnet32x4", "cifar_shufflenetv1"): 8.0, ("resnet32x4", "cifar_shufflenetv2"): 8.0,
            ("wrn_40_2", "cifar_shufflenetv1"): 8.0}
LOW_LR = {"cifar_mobilenetv2", "cifar_shufflenetv1", "cifar_shufflenetv2"}  # RepDistiller train_student.py
FT_PARA_LR = {"cifar_wrn_16_2", "cifar_wrn_40_1", "cifar_resnet20", "cifar_resnet32", "cifar_resnet8x4"}


@pytest.fixture(scope="module")
def repdistiller(tmp_path_factory):
    return load_grid("cifar100_repdistiller", output=str(tmp_path_factory.mktemp("rd")))


def test_repdistiller_dkd_beta_per_pair(repdistiller):
    seen = {}
    for r in repdistiller.stages["students"]:
        if r.cfg["method"]["name"] == "dkd":
            pair = (r.teacher_keys[0], r.cfg["student"]["arch"])
            seen[pair] = r.cfg["method"]["hparams"]["beta"]
            assert (r.settings.get("method.hparams.beta") is None) == (DKD_BETA[pair] == 8.0)
    assert seen == DKD_BETA


def test_repdistiller_learning_rates_per_student(repdistiller):
    n_low = 0
    for r in repdistiller.stages["students"]:
        arch, cfg = r.cfg["student"]["arch"], r.cfg
        assert cfg["optim"]["lr"] == (0.01 if arch in LOW_LR else 0.05), (cfg["method"]["name"], arch)
        n_low += arch in LOW_LR
        para = cfg["optimizers"].get("paraphraser", {}).get("lr")
        assert para == (0.01 if cfg["method"]["name"] == "ft" and arch in FT_PARA_LR else None)
        if cfg["method"]["name"] not in ("dkd", "ft"):
            assert set(r.settings) <= {"optim.lr"}  # every other method: the same weights on every pair
    # 5 such pairs × 3 seeds × the 14 distilling methods that run there (FSP does not) + 3 vanilla students
    assert n_low == 5 * 3 * 14 + 3 * 3
    assert n_low == sum(r.settings.get("optim.lr") == 0.01 for r in repdistiller.stages["students"])


def test_imagenet_settings_follow_mdistiller_and_dist(tmp_path):
    runs = {r.cfg["method"]["name"]: r.cfg for r in load_grid("imagenet_r34_r18", output=str(tmp_path)).stages["students"]}
    kd, dkd, dist, at = (runs[m] for m in ("kd", "dkd", "dist", "at"))
    assert (kd["method"]["hparams"]["T"], kd["method"]["hparams"]["alpha"]) == (1.0, 0.5)
    assert {k: dkd["method"]["hparams"][k] for k in ("T", "alpha", "beta", "ce_weight", "warmup")} == \
        {"T": 1.0, "alpha": 1.0, "beta": 0.5, "ce_weight": 1.0, "warmup": 1}
    for cfg in (kd, dkd, at):  # mdistiller: batch 512 at lr 0.2
        assert (cfg["dataset"]["batch_size"], cfg["optim"]["lr"]) == (512, 0.2)
    # DIST's `kd: dist` = DIST(β 1, γ 1, τ 1) × kd_loss_weight 2, batch 256 at lr 0.1
    assert {k: dist["method"]["hparams"][k] for k in ("beta", "gamma", "tau", "ce_weight")} == \
        {"beta": 2.0, "gamma": 2.0, "tau": 1.0, "ce_weight": 1.0}
    assert (dist["dataset"]["batch_size"], dist["optim"]["lr"]) == (256, 0.1)


def test_taxonomy_dkd_uses_the_resnet32x4_beta(tmp_path):
    runs = [r for r in load_grid("cifar100_taxonomy", output=str(tmp_path)).stages["students"]
            if r.cfg["method"]["name"] == "dkd"]
    assert runs and all(r.cfg["method"]["hparams"]["beta"] == DKD_BETA[("resnet32x4", "cifar_resnet8x4")] for r in runs)


def test_plan_prints_each_runs_settings(tmp_path, capsys):
    assert main(["grid", "plan", "cifar100_repdistiller", "--output", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()

    def line(method, pair):
        hits = [x for x in lines if x.split()[:1] == [method] and pair in x]
        assert len(hits) == 1, (method, pair, hits)
        return hits[0]

    assert line("dkd", "resnet56 → cifar_resnet20 ").rstrip().endswith("beta=2.0")
    assert "beta=6.0, optim.lr=0.01" in line("dkd", "vgg13 → cifar_mobilenetv2")
    assert line("dkd", "resnet32x4 → cifar_resnet8x4").rstrip().endswith("-")
    assert line("kd", "resnet50 → cifar_mobilenetv2").rstrip().endswith("optim.lr=0.01")
    assert "seeds 0,1,2" in line("kd", "resnet50 → cifar_mobilenetv2")
    assert "optimizers.paraphraser.lr=0.01" in line("ft", "resnet32x4 → cifar_resnet8x4")
    assert main(["grid", "plan", "cifar100_repdistiller", "--output", str(tmp_path), "--summary"]) == 0
    assert "beta=" not in capsys.readouterr().out
