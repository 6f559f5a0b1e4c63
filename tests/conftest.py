"""Shared fixtures: tiny teachers trained on the digits through the real run path (and exported as
teacher records), so method tests distil from teachers that actually know something."""
import os

import pytest

# defined here, not imported into each test module: a session fixture imported into N modules is N fixtures,
# and the second would start a second cluster on the ports of the first
from tests.slurm_fixture import slurm_cluster  # noqa: F401 E402

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def digits_teachers(tmp_path_factory):
    """Folders of two exported teachers (different architectures) trained 4 epochs on digits, cached per user
    as ``kdsuite check-method`` caches them (``$KDSUITE_CACHE/teachers`` or ``~/.cache/kdsuite/teachers``; a run
    is reused by its config hash, so a change to the teachers' recipe trains new ones).
    ``KDSUITE_TEST_FRESH_TEACHERS=1`` trains them into the session's temporary folder instead."""
    from kdsuite.testing import digits_teachers as build

    if os.environ.get("KDSUITE_TEST_FRESH_TEACHERS"):
        return build(tmp_path_factory.mktemp("teachers"))
    return build()
