"""A session-wide one-node Slurm cluster on localhost (``slurm/local_cluster.sh``) for the tests of
the Slurm path. Under CI (``CI=true``) a cluster that does not start fails the tests; elsewhere
they are skipped with the script's output as the reason."""
import os
import subprocess
from pathlib import Path

import pytest

MAX_ARRAY = 4
SCRIPT = Path(__file__).resolve().parent.parent / "slurm" / "local_cluster.sh"


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm-state")
    out = subprocess.run(["bash", str(SCRIPT), "install"], capture_output=True, text=True)
    if out.returncode == 0:
        # a small MaxArraySize, so that the tests see a stage split into several arrays
        out = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True,
                             env={**os.environ, "KDSUITE_SLURM_MAX_ARRAY": str(MAX_ARRAY)})
    if out.returncode != 0:
        msg = f"local Slurm cluster unavailable:\n{out.stdout}\n{out.stderr}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    yield state
    subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, text=True)
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old
