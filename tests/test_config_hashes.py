"""Identity guard: the config hash of every shipped grid's runs and of the defaults with typical
``--set`` overrides is what it was when the hashes were recorded (tests/data/config_hashes.json, written
by ``python -m tests.hash_cases`` before the config became typed). A changed hash orphans existing run
folders and records, so this must only change together with a migration note.

One rule changed on purpose (issue 25): a number YAML 1.1 left as a string (``lr: 1e-3``) is now read, and
hashed, as the number, so ``1e-3`` and ``0.001`` are one run. Only configs that wrote such a string
(``set:lr-yaml-string``) get a new hash; for them the old rule (:func:`legacy_config_hash` of the config as
YAML 1.1 read it) must still give the recorded hash, and run.run_dir_for finds their folders
(tests/test_yaml_identity.py)."""
import json

import yaml

from tests.hash_cases import GOLDEN, compute

RESPELLED = {"set:lr-yaml-string"}  # the configs that write a number as a string


def _compute_legacy(monkeypatch):
    from kdsuite.experiments import config

    monkeypatch.setattr(config, "parse_yaml_value", lambda text, key=None: yaml.safe_load(text))
    monkeypatch.setattr(config, "config_hash", config.legacy_config_hash)
    return compute()


def test_config_hashes_are_unchanged(monkeypatch):
    golden = json.loads(GOLDEN.read_text())
    now = compute()
    gone = sorted(set(golden) - set(now))
    assert not gone, f"runs no longer planned by the shipped grids or cases: {gone[:5]}"  # new runs may be added
    changed = {k: (golden[k][:12], now[k][:12]) for k in golden if now[k] != golden[k]}
    assert set(changed) <= RESPELLED, (f"{len(changed)} of {len(golden)} hashes changed, "
                                       f"e.g. {list(changed.items())[:5]}")
    assert len(golden) > 700  # every shipped grid was expanded when they were recorded
    legacy = _compute_legacy(monkeypatch)
    assert {k: legacy[k] for k in RESPELLED} == {k: golden[k] for k in RESPELLED}
    assert all(legacy[k] == golden[k] for k in golden)  # the old rule still gives every recorded hash
