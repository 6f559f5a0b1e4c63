"""Identity guard: the config hash of every shipped grid's runs and of the defaults with typical
``--set`` overrides is what it was when the hashes were recorded (tests/data/config_hashes.json, written
by ``python -m tests.hash_cases`` before the config became typed). A changed hash orphans existing run
folders and records, so this must only change together with a migration note."""
import json

from tests.hash_cases import GOLDEN, compute


def test_config_hashes_are_unchanged():
    golden = json.loads(GOLDEN.read_text())
    now = compute()
    gone = sorted(set(golden) - set(now))
    assert not gone, f"runs no longer planned by the shipped grids or cases: {gone[:5]}"  # new runs may be added
    changed = {k: (golden[k][:12], now[k][:12]) for k in golden if now[k] != golden[k]}
    assert not changed, f"{len(changed)} of {len(golden)} hashes changed, e.g. {list(changed.items())[:5]}"
    assert len(golden) > 700  # every shipped grid was expanded when they were recorded
