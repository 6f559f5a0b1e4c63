"""The configs whose hashes must never change (the identity guard of tests/test_config_hashes.py).

Every run of every shipped grid (``experiments/grids/*.yaml``, the demo's included), the defaults,
and the defaults with ``--set`` overrides written the ways users write them (integers for float
fields, YAML strings such as ``1e-3``, per-group optimizers and schedules, shorthand student /
method / teacher forms). ``python -m tests.hash_cases`` writes ``tests/data/config_hashes.json``
from the code at hand; it was run before the config became typed, and once more when the validation
split came (``dataset.val_fraction``, default 0.1: the demo's and the defaults' hashes changed, as their data
did; the reproduction grids, at ``val_fraction: 0``, kept theirs — docs/records.md, "Upgrading"). It must not be
rerun to make the test pass without such a reason and a migration note. The demo's three ``at`` cells
(``grid:demo:students:01[2-4]``) were then updated by hand when the demo set AT's β to 250 for its 16×16 maps
(issue 26; their configs changed, so did their hashes; docs/records.md, "Upgrading").
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "data" / "config_hashes.json"

# CLI-style overrides on top of the defaults (each list is one run config)
SET_CASES = {
    "defaults": [],
    "epochs-3": ["epochs=3"],
    "kd-T3": ["method.name=kd", "method.hparams.T=3", "teachers=[t]"],
    "kd-shorthand": ["method=kd", "teachers=[{checkpoint: t, arch: cifar_resnet8, sha256: abc}]"],
    "student-shorthand": ["student=cifar_wrn_16_1"],
    "lr-int": ["optim.lr=1"],
    "lr-yaml-string": ["optim.lr=1e-3", "optim.weight_decay=5e-4"],
    "adamw": ["optim.name=adamw", "optim.lr=0.001", "optim.weight_decay=0.05"],
    "cosine-warmup": ["schedule.name=cosine", "schedule.warmup_epochs=5", "schedule.min_lr_ratio=0.01",
                      "epochs=20"],
    "step-milestones": ["schedule.milestones=[150,180,210]", "schedule.gamma=0.1", "epochs=240"],
    "per-group": ["method.name=dml", "optimizers.peer1.lr=0.01",
                  "optimizers.peer1.schedule={name: cosine}"],
    "per-group-betas": ["method.name=dafl", "max_steps_per_epoch=5", "teachers=[t]",
                        "optimizers.generator={name: adam, lr: 0.001, betas: [0.5, 0.999]}"],
    "dataset": ["dataset.name=cifar100", "dataset.root=somewhere", "dataset.batch_size=128",
                "dataset.augment=cifar", "dataset.image_size=32", "dataset.train_fraction=0.5"],
    "fast-path": ["fast_path=true", "precision=bf16", "channels_last=false", "compile=true",
                  "teacher_cache=false", "dataset.pipeline=tensor"],
    "misc": ["grad_clip=5", "sync_bn=true", "max_steps_per_epoch=7", "seed=3", "eval_every=2",
             "deterministic=false", "export_teacher=true", "student.kwargs={}"],
    "watched": ["name=x", "device=cpu", "log_every=10", "progress=none", "output.root=elsewhere",
                "wandb.mode=offline", "wandb.tags=[a]"],
}


def compute() -> Dict[str, str]:
    from kdsuite.experiments.config import DEFAULTS, apply_overrides, config_hash, validate
    from kdsuite.experiments.grid import GRID_DIR, load_grid

    out: Dict[str, str] = {}
    for name, pairs in SET_CASES.items():
        out[f"set:{name}"] = config_hash(validate(apply_overrides({}, pairs)))
    for path in sorted(GRID_DIR.glob("*.yaml")):
        grid = load_grid(str(path))
        for stage, runs in grid.stages.items():
            for i, r in enumerate(runs):  # the label without its hash part, so a change shows as a value
                out[f"grid:{path.stem}:{stage}:{i:03d}:{r.label.rsplit('-', 1)[0]}"] = r.hash
    assert DEFAULTS  # imported so a removed DEFAULTS fails here too
    return out


if __name__ == "__main__":
    hashes = compute()
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    print(f"{len(hashes)} hashes -> {GOLDEN}", file=sys.stderr)
