"""The Slurm profile, typed (``slurm/profiles/*.yaml``, described in docs/cluster.md): every field's type and
range checked by pydantic when the profile is read, so ``timeout_min: forever`` or ``timeout_min: -5`` is a
ConfigError naming the profile, the field, the value and what is allowed — not submitit's AssertionError,
nor ``#SBATCH --time=-5``."""
from __future__ import annotations

from typing import Dict, List, Optional, Union

from pydantic import Field, field_validator
from typing_extensions import Annotated

from kdsuite.core.schema import FileModel, check_file

PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Text = Annotated[str, Field(min_length=1)]


class Profile(FileModel):
    partition: Text = Field(description="a partition name (string)")
    timeout_min: PosInt = Field(description="an integer number of minutes >= 1")
    account: Optional[Text] = Field(None, description="a string")
    qos: Optional[Text] = Field(None, description="a string")
    gres: Optional[Text] = Field(None, description="a string, e.g. gpu:a100:1")
    constraint: Optional[Text] = Field(None, description="a string")
    exclusive: Optional[Union[bool, Text]] = Field(None, description="true/false or a string (user, mcs)")
    mail_user: Optional[Text] = Field(None, description="a string")
    mail_type: Optional[Text] = Field(None, description="a string, e.g. END,FAIL")
    nodes: Optional[PosInt] = Field(None, description="an integer >= 1")
    gpus_per_node: Optional[NonNegInt] = Field(None, description="an integer >= 0")
    tasks_per_node: Optional[PosInt] = Field(None, description="an integer >= 1")
    cpus_per_task: Optional[PosInt] = Field(None, description="an integer >= 1")
    mem_gb: Optional[Annotated[Union[int, float], Field(gt=0, allow_inf_nan=False)]] = Field(
        None, description="a number of GB > 0")
    array_parallelism: Optional[PosInt] = Field(None, description="an integer >= 1")
    slurm_setup: Optional[List[str]] = Field(None, description="a list of shell lines")
    folder: Optional[Text] = Field(None, description="a folder path (string)")
    pack: Optional[PosInt] = Field(None, description="an integer >= 1 (runs per job)")
    max_array_size: Optional[PosInt] = Field(None, description="an integer >= 1")
    max_num_timeout: Optional[NonNegInt] = Field(None, description="an integer >= 0 (requeues after a timeout)")
    sbatch: Optional[Dict[str, Union[str, int, float, bool]]] = Field(
        None, description="a mapping of sbatch option names (without --) to values")

    @field_validator("sbatch")
    @classmethod
    def _options(cls, v):
        for k in v or {}:
            if not k or k.startswith("-"):
                raise ValueError(f"option {k!r}: give the name without leading dashes")
        return v


def check_profile(prof: Dict, source: str) -> Profile:
    return check_file(Profile, prof, source)
