"""Heterogeneous pairs through the real entry point (issue 28): the record keeps each tap's description, the
token → map step and the stage pairs with their rule; refusals (a patch model built for other images, a
method that does not transfer between families) come at build time and leave no run folder."""
import pytest

from kdsuite.core.errors import ConfigError
from kdsuite.experiments.run import run

VIT = {"arch": "vit_tiny_patch16_224",
       "kwargs": {"img_size": 16, "patch_size": 4, "depth": 3, "embed_dim": 32, "num_heads": 2}}


def cfg(method, student, root, teacher=None, **kw):
    return {"student": student, "method": {"name": method, "hparams": kw},
            "teachers": [{"checkpoint": teacher}] if teacher else [], "epochs": 1, "max_steps_per_epoch": 2,
            "dataset": {"name": "digits", "batch_size": 16}, "progress": "none", "output": {"root": str(root)}}


@pytest.fixture(scope="module")
def cnn_teacher(tmp_path_factory):
    rec = run({"student": "cifar_resnet8", "epochs": 1, "max_steps_per_epoch": 6, "export_teacher": True,
               "progress": "none", "dataset": {"name": "digits", "batch_size": 32},
               "output": {"root": str(tmp_path_factory.mktemp("teacher"))}})
    return rec["run_dir"]


def test_a_vit_built_for_224_pixels_is_refused_on_digits_and_leaves_no_folder(tmp_path):
    root = tmp_path / "runs"
    with pytest.raises(ConfigError, match=r"student.arch = 'vit_tiny_patch16_224'.*224×224.*16×16.*img_size"):
        run(cfg("vanilla", "vit_tiny_patch16_224", root))
    assert not root.exists() or not any(root.iterdir())


def test_cross_family_refusal_names_families_and_leaves_no_folder(cnn_teacher, tmp_path):
    root = tmp_path / "runs"
    with pytest.raises(ConfigError, match=r"'ab' does not transfer between families: teacher 0 is a CNN .* a ViT"):
        run(cfg("ab", VIT, root, cnn_teacher, init_epochs=1))
    assert not root.exists() or not any(root.iterdir())


def test_the_record_states_taps_token_to_map_and_pairs(cnn_teacher, tmp_path):
    rec = run(cfg("at", VIT, tmp_path / "runs", cnn_teacher))
    assert rec["status"] == "finished"
    f = rec["features"]
    assert f["student"]["family"] == "ViT" and f["teachers"][0]["family"] == "CNN"
    s_taps = {t["name"]: t for t in f["student"]["taps"]}
    for t in s_taps.values():
        assert t["kind"] == "tokens" and t["prefix_tokens"] == 1 and t["grid"] == [4, 4]
        assert t["as"].startswith("tokens_to_map")
    assert all(t["kind"] == "map" and t["as"] == "map" for t in f["teachers"][0]["taps"])
    # 3 blocks and 3 stages sit at the same depths: block i meets stage i + 1
    assert [(p["student"], p["teacher"]) for p in f["pairs"]] == [("feat0", "feat1"), ("feat1", "feat2"),
                                                                  ("feat2", "feat3")]
    assert "relative depth" in f["pairing_rule"]
