"""Shared fixtures: tiny teachers trained on the digits through the real run path (and exported as
teacher records), so method tests distil from teachers that actually know something."""
import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def digits_teachers(tmp_path_factory):
    """Folders of two exported teachers (different architectures) trained 4 epochs on digits."""
    from kdsuite.testing import digits_teachers as build

    return build(tmp_path_factory.mktemp("teachers"))
