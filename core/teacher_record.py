"""The schema of ``teacher.json``, the record beside a teacher's weights (``teacher.safetensors``).

Role in the flow: a teacher run's export and ``kdsuite teacher import`` write it (:mod:`kdsuite.zoo.teachers`);
``grid plan`` and a run starting read it (:mod:`kdsuite.experiments.teacher_checks`). Both go through
:class:`TeacherRecord`, so a value of the wrong type or range (``num_classes: "ten"``, ``top1: 1000``, a
``sha256`` that is not one) is named by field when the record is read, and cannot be written. Fields other
tools or later versions add are kept (``extra="allow"``). Importing this module imports no torch.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

from pydantic import ConfigDict, Field, field_validator

from kdsuite.core.schema import FileModel


class TeacherRecord(FileModel):
    model_config = ConfigDict(extra="allow", strict=True)

    arch: str = Field(min_length=1, description="a model name (kdsuite models)")
    num_classes: int = Field(ge=1, description="an integer >= 1")
    dataset: str = Field(min_length=1, description="the data set it was trained on (digits, cifar100, …)")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="the weights file's SHA-256, 64 hex digits")
    config_hash: Optional[str] = Field(None, description="the config hash of the run that trained it, or null")
    in_chans: Optional[int] = Field(None, ge=1, description="an integer >= 1 or null")
    image_size: Optional[int] = Field(None, ge=1, description="an integer >= 1 or null")
    model_kwargs: Optional[Dict[str, Any]] = Field(None, description="a mapping of model arguments or null")
    top1: Optional[float] = Field(None, ge=0, le=100, description="a percentage 0..100 or null")
    top5: Optional[float] = Field(None, ge=0, le=100, description="a percentage 0..100 or null")
    view: Optional[str] = Field(None, description="the view it was trained on, or null")

    @field_validator("top1", "top5")
    @classmethod
    def _finite(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and not math.isfinite(v):
            raise ValueError(f"{v!r} is not a finite percentage; expected 0..100 or null")
        return v
