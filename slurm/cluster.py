"""Questions to the Slurm cluster: its configuration (``scontrol show config``) and the states of a
launch's jobs (``squeue``, then ``sacct`` where accounting exists).

Role in the flow: a launch asks these before it decides anything (:mod:`kdsuite.slurm.executors`), and
``kdsuite grid status`` asks :func:`job_states` for the jobs the manifest names; a question Slurm cannot
answer is :class:`SlurmUnavailable` (never an empty answer), so nothing is submitted on a guess.
"""
from __future__ import annotations

from typing import Dict, List

from kdsuite.core.errors import ConfigError


class SlurmUnavailable(ConfigError):
    """Slurm could not be asked (no controller, no client, a failing query): nothing is submitted."""


ASK_TIMEOUT_S = 60   # a Slurm client that has not answered by then is not going to
ASK_PROGRESS_S = 10  # a line on stderr every this many seconds while it is waited for


def _ask(cmd: List[str], what: str) -> str:
    """stdout of a Slurm client command; any failure is :class:`SlurmUnavailable` (never an empty answer).
    While the command has not answered, a line on stderr says what is being waited for, every
    :data:`ASK_PROGRESS_S` seconds, so a hanging controller is never silence."""
    import subprocess
    import sys

    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise SlurmUnavailable(f"cannot {what}: `{cmd[0]}` is not installed here (run on a Slurm login node, or "
                               f"`bash slurm/local_cluster.sh install`)") from None
    except OSError as e:
        raise SlurmUnavailable(f"cannot {what}: `{' '.join(cmd)}` failed ({e})") from None
    waited = 0.0
    while True:
        step = min(ASK_PROGRESS_S, ASK_TIMEOUT_S - waited)
        try:
            stdout, stderr = proc.communicate(timeout=step)
            break
        except subprocess.TimeoutExpired:
            waited += step
            if waited >= ASK_TIMEOUT_S:
                proc.kill()
                proc.communicate()
                raise SlurmUnavailable(f"cannot {what}: `{' '.join(cmd)}` did not answer in {ASK_TIMEOUT_S:.0f} s "
                                       f"— is the Slurm controller reachable (`sinfo`)? Nothing was submitted.") from None
            print(f"kdsuite: still waiting for `{cmd[0]}` to {what} ({waited:.0f} s; giving up at "
                  f"{ASK_TIMEOUT_S:.0f} s)", file=sys.stderr, flush=True)
    if proc.returncode != 0:
        msg = (stderr or stdout).strip().splitlines()
        raise SlurmUnavailable(f"cannot {what}: `{' '.join(cmd)}` exited {proc.returncode}: "
                               f"{' / '.join(msg[-3:]) or 'no message'} — is the Slurm controller reachable "
                               f"(SLURM_CONF, `sinfo`)? Nothing was submitted.")
    return stdout


def cluster_config() -> Dict[str, str]:
    """``scontrol show config`` as a mapping (raises :class:`SlurmUnavailable` when the controller can't be asked)."""
    out = _ask(["scontrol", "show", "config"], "read the Slurm configuration")
    conf = {}
    for line in out.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            conf[k.strip()] = v.strip()
    return conf


def max_array_size(default: int = 1001) -> int:
    """The cluster's MaxArraySize (array indices run from 0 to MaxArraySize − 1)."""
    try:
        return int(cluster_config().get("MaxArraySize", default))
    except ValueError:
        return default


def job_states(job_ids: List[str]) -> Dict[str, Dict[str, str]]:
    """``{job id: {"state", "reason", "source"}}`` for every job / array task Slurm can still report:
    ``squeue -t all`` (pending, running and recently ended jobs), then ``sacct`` for the rest where
    accounting exists. A failing ``squeue`` raises :class:`SlurmUnavailable`; a job neither knows has ended
    long ago and is absent from the answer."""
    import getpass

    if not job_ids:
        return {}
    wanted = set(job_ids)
    out = _ask(["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T|%r"], "ask Slurm for job states")
    states: Dict[str, Dict[str, str]] = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0] in wanted:
            states[parts[0]] = {"state": parts[1], "reason": parts[2], "source": "squeue"}
    rest = sorted(wanted - set(states))
    if rest:
        try:  # accounting is optional: without slurmdbd sacct fails, and what squeue said stands
            acct = _ask(["sacct", "-n", "-X", "-P", "-o", "JobID,State,Reason", "-j",
                         ",".join(sorted({j.split("_")[0] for j in rest}))], "ask Slurm accounting")
        except SlurmUnavailable:
            acct = ""
        for line in acct.splitlines():
            parts = line.strip().split("|")
            if len(parts) >= 2 and parts[0] in rest:
                states[parts[0]] = {"state": parts[1].split()[0] if parts[1] else "", "reason":
                                    parts[2] if len(parts) > 2 else "", "source": "sacct"}
    return states
