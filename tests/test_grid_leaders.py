"""The cifar100_leaders grid: the five standard pairs, each leader at its authors' recipe, KD+LS / DKD+LS with the
logit-standardisation repository's per-pair settings (its logs/ names), fp32 as the references trained."""
import pytest

from kdsuite.experiments.grid import load_grid

PAIRS = {("resnet32x4", "cifar_resnet8x4"), ("wrn_40_2", "cifar_wrn_16_2"), ("resnet56", "cifar_resnet20"),
         ("vgg13", "cifar_vgg8"), ("resnet32x4", "cifar_shufflenetv2")}


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    return load_grid("cifar100_leaders", output=str(tmp_path_factory.mktemp("leaders")))


def _runs(grid, stage, method):
    return {(r.teacher_keys[0], r.cfg["student"]["arch"]): r.cfg for r in grid.stages[stage]
            if r.cfg["method"]["name"] == method and r.cfg["seed"] == 0}


def test_every_leader_runs_on_the_five_pairs_with_three_seeds(grid):
    for method in ("ctkd", "simkd", "reviewkd", "wkd"):
        assert set(_runs(grid, "leaders", method)) == PAIRS, method
        assert len([r for r in grid.stages["leaders"] if r.cfg["method"]["name"] == method]) == 15
    for method in ("kd", "dkd"):
        assert set(_runs(grid, "logit_standardisation", method)) == PAIRS


def test_reviewkd_weights_per_pair_are_the_authors_script(grid):
    w = {p: c["method"]["hparams"]["weight"] for p, c in _runs(grid, "leaders", "reviewkd").items()}
    assert w == {("resnet32x4", "cifar_resnet8x4"): 5.0, ("wrn_40_2", "cifar_wrn_16_2"): 5.0,
                 ("resnet56", "cifar_resnet20"): 0.6, ("vgg13", "cifar_vgg8"): 5.0,
                 ("resnet32x4", "cifar_shufflenetv2"): 8.0}


def test_ls_settings_per_pair_follow_the_ls_logs(grid):
    kd = {p: c["method"]["hparams"] for p, c in _runs(grid, "logit_standardisation", "kd").items()}
    for p, hp in kd.items():
        assert (hp["standardize"], hp["ce_weight"], hp["kd_weight"]) == (True, 0.1, 9.0)
        assert hp["T"] == (3.0 if p == ("vgg13", "cifar_vgg8") else 2.0)
    dkd = {p: tuple(c["method"]["hparams"][k] for k in ("T", "alpha", "beta"))
           for p, c in _runs(grid, "logit_standardisation", "dkd").items()}
    # --base-temp T --kd-weight w scale mdistiller's α 1 and the β of the log name by w
    assert dkd == {("resnet32x4", "cifar_resnet8x4"): (2.0, 9.0, 72.0), ("wrn_40_2", "cifar_wrn_16_2"): (2.0, 12.0, 24.0),
                   ("resnet56", "cifar_resnet20"): (3.0, 18.0, 36.0), ("vgg13", "cifar_vgg8"): (2.0, 15.0, 30.0),
                   ("resnet32x4", "cifar_shufflenetv2"): (2.0, 9.0, 72.0)}


def test_the_recipe_is_the_references_fp32_and_shufflenet_lr(grid):
    for stage in ("leaders", "logit_standardisation"):
        for r in grid.stages[stage]:
            assert r.cfg["precision"] == "fp32"
            assert r.cfg["optim"]["lr"] == (0.01 if r.cfg["student"]["arch"] == "cifar_shufflenetv2" else 0.05)
            assert (r.cfg["epochs"], r.cfg["dataset"]["batch_size"]) == (240, 64)


def test_mlkd_runs_at_its_authors_recipes_on_two_views(grid):
    """MLKD: the authors' current configs (240 epochs, lr 0.025; ShuffleV2 960 at 0.01); MLKD+LS: the LS fork's
    (480 epochs; ShuffleV2 960; vgg8 and ShuffleV2 lr 0.01 and kd weight 6), both on a weak and a strong view."""
    plain, ls = _runs(grid, "multi_level", "mlkd"), _runs(grid, "multi_level_ls", "mlkd")
    assert set(plain) == set(ls) == PAIRS
    assert len([r for r in grid.stages["multi_level"]]) == len([r for r in grid.stages["multi_level_ls"]]) == 15
    shuffle, vgg = ("resnet32x4", "cifar_shufflenetv2"), ("vgg13", "cifar_vgg8")
    for p, c in plain.items():
        assert c["dataset"]["aug_views"] == ["weak", "strong"] and c["precision"] == "fp32"
        assert (c["epochs"], c["optim"]["lr"]) == ((960, 0.01) if p == shuffle else (240, 0.025)), p
        assert not c["method"]["hparams"].get("standardize")
    for p, c in ls.items():
        hp = c["method"]["hparams"]
        assert c["dataset"]["aug_views"] == ["weak", "strong"]
        assert c["epochs"] == (960 if p == shuffle else 480), p
        assert c["optim"]["lr"] == (0.01 if p in (shuffle, vgg) else 0.025), p
        assert (hp["standardize"], hp["T"], hp["kd_weight"]) == (True, 2.0, 6.0 if p in (shuffle, vgg) else 9.0), p
