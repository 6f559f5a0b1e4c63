"""A cluster profile, and the submitit parameters it gives a stage.

Role in the flow: ``kdsuite grid launch --cluster slurm --profile PATH`` reads the profile once with
:func:`load_profile` (types and ranges by :mod:`kdsuite.slurm.profile_schema`, required, unknown and
combined fields here) before anything is asked of Slurm; each stage's resources are the profile with the
grid's ``resources`` on top (:func:`stage_resources`), turned into submitit ``update_parameters``
keywords (one sbatch option each) by :func:`slurm_parameters`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from kdsuite.core.errors import ConfigError
from kdsuite.experiments.grid import Grid, timeout_problem

PROFILE_REQUIRED = ("partition", "timeout_min")
# profile field -> submitit keyword (each becomes one sbatch option); the rest are handled below
SBATCH_FIELDS = {"account": "slurm_account", "qos": "slurm_qos", "gres": "slurm_gres", "constraint": "slurm_constraint",
                 "exclusive": "slurm_exclusive", "mail_user": "slurm_mail_user", "mail_type": "slurm_mail_type"}
PROFILE_FIELDS = PROFILE_REQUIRED + tuple(SBATCH_FIELDS) + (
    "nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "mem_gb", "array_parallelism", "slurm_setup",
    "folder", "pack", "max_array_size", "max_num_timeout", "sbatch")

REPO = Path(__file__).resolve().parent.parent
PROFILE_DIR = REPO / "slurm" / "profiles"


def load_profile(path) -> Dict[str, Any]:
    from kdsuite.experiments.config import read_yaml_mapping

    if path is None:
        shipped = sorted(str(p) for p in PROFILE_DIR.glob("*.yaml"))
        raise ConfigError(f"--cluster slurm needs --profile PATH naming your cluster's partition, time limit and "
                          f"resources (see slurm/README.md); shipped examples: {', '.join(shipped)}")
    p = Path(path)
    if not p.is_file() and not p.is_absolute() and (REPO / p).is_file():
        p = REPO / p  # a shipped profile named relative to the repository, from another folder
    if not p.is_file():
        from kdsuite.core.fileio import check_readable_file

        check_readable_file(path, "--profile", f"profiles live in {PROFILE_DIR} (see slurm/README.md)")
    prof = read_yaml_mapping(p, "profile")
    from kdsuite.slurm.profile_schema import check_profile

    check_profile(prof, f"profile '{p}'")  # types and ranges of every field (the checks below name the rest)
    problems = [f"missing required field '{k}'" for k in PROFILE_REQUIRED if k not in prof]
    problems += [f"unknown field '{k}' (allowed: {', '.join(PROFILE_FIELDS)}; any other sbatch option goes "
                 f"under `sbatch:`)" for k in prof if k not in PROFILE_FIELDS]
    if "slurm_setup" in prof and not (isinstance(prof["slurm_setup"], list)
                                      and all(isinstance(x, str) for x in prof["slurm_setup"])):
        problems.append(f"slurm_setup = {prof['slurm_setup']!r}: expected a list of shell lines")
    for k in ("account", "qos", "gres", "constraint", "mail_user", "mail_type", "partition"):
        if k in prof and not isinstance(prof[k], str):
            problems.append(f"{k} = {prof[k]!r}: expected a string")
    if "exclusive" in prof and not isinstance(prof["exclusive"], (bool, str)):
        problems.append(f"exclusive = {prof['exclusive']!r}: expected true/false or a string (user, mcs)")
    if "timeout_min" in prof and timeout_problem(prof["timeout_min"], "timeout_min"):
        problems.append(timeout_problem(prof["timeout_min"], "timeout_min"))
    v = prof.get("max_num_timeout")
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
        problems.append(f"max_num_timeout = {v!r}: expected an integer >= 0 (requeues after a timeout)")
    sb = prof.get("sbatch")
    if sb is not None and not (isinstance(sb, dict) and all(isinstance(k, str) and isinstance(x, (str, int, float, bool))
                                                            for k, x in sb.items())):
        problems.append(f"sbatch = {sb!r}: expected a mapping of sbatch option names (without --) to values")
    if problems:
        raise ConfigError(f"profile '{p}': " + "; ".join(problems))
    return prof

def stage_resources(grid: Grid, stage: str, prof: Dict[str, Any]) -> Dict[str, Any]:
    """The profile with the grid's (grid-wide, then per-stage) ``resources`` on top."""
    return {**prof, **grid.resources(stage)}


def slurm_parameters(res: Dict[str, Any], name: str) -> Dict[str, Any]:
    """submitit ``update_parameters`` keywords for one stage's resources."""
    params = dict(slurm_partition=res["partition"], timeout_min=res["timeout_min"],
                  cpus_per_task=res.get("cpus_per_task", 1), slurm_array_parallelism=res.get("array_parallelism", 16),
                  slurm_setup=list(res.get("slurm_setup") or []), name=name, nodes=res.get("nodes", 1))
    gpus = res.get("gpus_per_node") or 0
    # one process per GPU: submitit exports the rendezvous (MASTER_ADDR/PORT, RANK, WORLD_SIZE) per task
    params["tasks_per_node"] = res.get("tasks_per_node") or (gpus if gpus > 1 else 1)
    if res.get("mem_gb"):
        params["mem_gb"] = res["mem_gb"]
    if gpus:
        params["gpus_per_node"] = gpus
    for field, key in SBATCH_FIELDS.items():
        if res.get(field) not in (None, False, ""):
            params[key] = res[field]
    if res.get("sbatch"):
        params["slurm_additional_parameters"] = dict(res["sbatch"])
    return params
