"""The cifar100_hetero grid: OFA-KD's 12 CIFAR-100 pairs across CNN, ViT and MLP families, each student at its
family's recipe from the authors' configs/cifar/{cnn,vit_mlp}.yaml, the baselines at their train.py settings, and
`kdsuite grid plan` listing every pair with its recipe."""
import pytest

from kdsuite import zoo
from kdsuite.cli import main
from kdsuite.experiments.grid import load_grid
from kdsuite.zoo import taps as ztaps

PAIRS = {("swin_t", "resnet18"), ("vit_s", "resnet18"), ("mixer_b16", "resnet18"),
         ("swin_t", "mobilenetv2_100"), ("vit_s", "mobilenetv2_100"), ("mixer_b16", "mobilenetv2_100"),
         ("convnext_t", "deit_tiny_patch16_224"), ("mixer_b16", "deit_tiny_patch16_224"),
         ("convnext_t", "swin_tiny_patch4_window7_224"), ("mixer_b16", "swin_tiny_patch4_window7_224"),
         ("convnext_t", "resmlp_12_224"), ("swin_t", "resmlp_12_224")}
CNN_STUDENTS = {"resnet18", "mobilenetv2_100"}


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    return load_grid("cifar100_hetero", output=str(tmp_path_factory.mktemp("hetero")))


def _runs(grid, method):
    return {(r.teacher_keys[0], r.cfg["student"]["arch"]): r.cfg for r in grid.stages["students"]
            if r.cfg["method"]["name"] == method}


def test_every_method_runs_on_the_twelve_pairs(grid):
    for method in ("kd", "dkd", "dist", "ofa"):
        assert set(_runs(grid, method)) == PAIRS, method
    assert {r.cfg["student"]["arch"] for r in grid.stages["students"] if r.cfg["method"]["name"] == "vanilla"} == \
        {s for _, s in PAIRS}


def test_pairs_cross_families(grid):
    teachers = {r.cfg["student"]["arch"]: r for r in grid.stages["teachers"]}
    fam = {}
    for cfg in _runs(grid, "ofa").values():
        arch, kw = cfg["student"]["arch"], cfg["student"]["kwargs"]
        t_arch = cfg["teachers"][0]["arch"]
        assert t_arch in teachers
        fam[(t_arch, arch)] = (ztaps.family(zoo.create_model(t_arch, num_classes=100)),
                               ztaps.family(zoo.create_model(arch, num_classes=100, **kw)))
    assert all(t != s for t, s in fam.values())  # no same-family pair
    assert {s for _, s in fam.values()} == {"CNN", "ViT", "Swin", "MLP"}
    assert {t for t, _ in fam.values()} == {"CNN", "ViT", "Swin", "MLP"}


def test_each_family_has_the_authors_recipe(grid):
    for r in grid.stages["students"]:
        c = r.cfg
        assert (c["epochs"], c["dataset"]["batch_size"], c["dataset"]["image_size"]) == (300, 1024, 224)
        if c["student"]["arch"] in CNN_STUDENTS:  # cnn.yaml
            assert (c["optim"]["name"], c["optim"]["lr"], c["optim"]["weight_decay"]) == ("sgd", 0.05, 0.002)
            assert (c["schedule"]["warmup_epochs"], c["grad_clip"]) == (3, None)
        else:  # vit_mlp.yaml
            assert (c["optim"]["name"], c["optim"]["lr"], c["optim"]["weight_decay"]) == ("adamw", 0.0005, 0.05)
            assert (c["schedule"]["warmup_epochs"], c["grad_clip"]) == (20, 5.0)
        assert c["schedule"]["name"] == "cosine" and c["schedule"]["min_lr_ratio"] == pytest.approx(0.02)


def test_swin_pico_and_the_baselines_settings(grid):
    from kdsuite.methods.registry import get_method

    for (t, s), c in _runs(grid, "kd").items():
        hp = c["method"]["hparams"]
        assert (hp["T"], hp["ce_weight"], hp["kd_weight"]) == (1.0, 1.0, 1.0)
        if s.startswith("swin"):
            assert c["student"]["kwargs"] == {"embed_dim": 48, "depths": [2, 2, 2, 2], "num_heads": [2, 4, 8, 16]}
    for method, want in (("dkd", {"alpha": 1.0, "beta": 2.0, "T": 1.0, "warmup": 0.0}),
                         ("dist", {"beta": 1.0, "gamma": 1.0, "tau": 1.0})):
        for c in _runs(grid, method).values():
            assert {k: c["method"]["hparams"][k] for k in want} == want, method
    defaults = {k: h.default for k, h in get_method("ofa").hparams.items()}  # the authors', tests/test_ofa_parity.py
    assert all(c["method"]["hparams"] == defaults for c in _runs(grid, "ofa").values())


def test_grid_plan_lists_the_pairs_with_their_recipes(tmp_path, capsys):
    assert main(["grid", "plan", "cifar100_hetero", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("ofa ")]
    assert len(lines) == 12
    for t, s in PAIRS:
        (ln,) = [ln for ln in lines if f"{t} → {s} " in ln]
        assert ("optim.name=adamw" in ln) == (s not in CNN_STUDENTS), ln
