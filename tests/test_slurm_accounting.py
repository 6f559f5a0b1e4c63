"""``job_states`` where accounting exists: jobs that ``squeue -t all`` no longer lists are looked up with
``sacct`` (this machine has no slurmdbd, so the two commands are stand-ins on PATH that print exactly
what Slurm's print for these flags: ``-h -r -t all -o %i|%T|%r`` and ``-n -X -P -o JobID,State,Reason``).
squeue's answer wins, sacct fills in the rest (``CANCELLED by <uid>`` shortened to the state), a failing
sacct leaves squeue's answer standing, and a failing squeue is an error, never an empty answer."""
import os
import stat

import pytest

from kdsuite.slurm.executors import SlurmUnavailable, job_states


def _tool(bin_dir, name, body):
    p = bin_dir / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "sacct.args").touch()
    _tool(bin_dir, "squeue", "printf '101_0|RUNNING|None\\n101_1|PENDING|Dependency\\n999|RUNNING|None\\n'\n")
    _tool(bin_dir, "sacct", f"echo \"$@\" > {tmp_path}/sacct.args\n"
                            "printf '101_2|CANCELLED by 1000|None\\n101_3|FAILED|NonZeroExitCode\\n"
                            "102_0|TIMEOUT|TimeLimit\\n101_0|COMPLETED|None\\n'\n")
    return bin_dir, tmp_path


def test_sacct_fills_in_what_squeue_no_longer_lists(fake_slurm):
    bin_dir, tmp = fake_slurm
    got = job_states(["101_0", "101_1", "101_2", "101_3", "102_0", "103_0"])
    assert got["101_0"] == {"state": "RUNNING", "reason": "None", "source": "squeue"}  # squeue wins
    assert got["101_1"]["state"] == "PENDING" and got["101_1"]["reason"] == "Dependency"
    assert got["101_2"] == {"state": "CANCELLED", "reason": "None", "source": "sacct"}
    assert got["101_3"] == {"state": "FAILED", "reason": "NonZeroExitCode", "source": "sacct"}
    assert got["102_0"]["state"] == "TIMEOUT" and got["102_0"]["source"] == "sacct"
    assert "103_0" not in got and "999" not in got  # unknown to both: absent; not asked for: ignored
    args = (tmp / "sacct.args").read_text().split()
    assert args[args.index("-j") + 1] == "101,102,103"  # asked once, for the arrays of the missing tasks


def test_a_failing_sacct_leaves_squeues_answer_and_a_failing_squeue_is_an_error(fake_slurm):
    bin_dir, _ = fake_slurm
    _tool(bin_dir, "sacct", "echo 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n")
    got = job_states(["101_0", "101_2"])
    assert set(got) == {"101_0"} and got["101_0"]["source"] == "squeue"
    _tool(bin_dir, "squeue", "echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2\nexit 1\n")
    with pytest.raises(SlurmUnavailable, match="Unable to contact slurm controller"):
        job_states(["101_0"])


def test_a_hanging_squeue_says_so_while_it_is_waited_for_then_gives_up(fake_slurm, monkeypatch, capsys):
    """A controller that does not answer is never silence: a line on stderr names what is waited for while it
    hangs, then a kdsuite error names the command and that nothing was submitted; the hung client is killed
    (the limits are shortened here; 10 s and 60 s in use)."""
    from kdsuite.slurm import cluster

    bin_dir, tmp = fake_slurm
    _tool(bin_dir, "squeue", f"echo $$ > {tmp}/squeue.pid\nexec sleep 300\n")
    monkeypatch.setattr(cluster, "ASK_TIMEOUT_S", 3.0)
    monkeypatch.setattr(cluster, "ASK_PROGRESS_S", 1.0)
    with pytest.raises(SlurmUnavailable, match=r"`squeue -h -r .*` did not answer in 3 s .*Nothing was submitted"):
        job_states(["101_0"])
    assert capsys.readouterr().err.splitlines() == [
        f"kdsuite: still waiting for `squeue` to ask Slurm for job states ({n} s; giving up at 3 s)" for n in (1, 2)]
    pid = int((tmp / "squeue.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
