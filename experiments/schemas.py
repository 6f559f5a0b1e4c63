"""The grid file, typed: its shape (which fields, of which type) checked by pydantic before the grid is
expanded, so that ``stages`` written as a list, ``runs: [1, 2]`` or ``output: 5`` are a ConfigError naming the
file, the field, the value and what is allowed (never an AttributeError deep in the expansion).

What a field's value *means* (a method name, a model, a resource, a rule matching runs) is still checked by
:mod:`kdsuite.experiments.grid`, which collects every such problem; this module only guarantees the shape
it walks. The format is described in grid.py's module text.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from pydantic import Field, field_validator
from typing_extensions import Annotated

from kdsuite.core.names import name_problem
from kdsuite.core.schema import FileModel, check_file

Number = Union[int, float]
Mapping_ = Dict[str, Any]


class StageSpec(FileModel):
    runs: Optional[List[Mapping_]] = Field(None, description="a list of run configs, each a mapping, e.g. "
                                           "[{key: wrn_16_2, student: cifar_wrn_16_2}]")
    axes: Optional[Dict[str, List[Any]]] = Field(None, description="a mapping of config fields to lists of values")
    needs: Optional[str] = Field(None, description="the name of an earlier stage")
    resources: Optional[Mapping_] = Field(None, description="a mapping of resource fields (partition, "
                                          "timeout_min, gpus_per_node, ...)")
    method_overrides: Optional[Dict[str, Mapping_]] = Field(None, description="a mapping of method names to "
                                                            "config overrides")
    method_pairs: Optional[Dict[str, List[Any]]] = Field(None, description="a mapping of method names to lists "
                                                         "of pairs {teachers: [KEY...], student: ARCH}")
    exclude: Optional[List[Mapping_]] = Field(None, description="a list of axis points, each a mapping, e.g. "
                                              "[{method: kd, seed: 1}]")
    parallel: Optional[Any] = Field(None, description="unused; kept for older grid files")
    student_overrides: Optional[Dict[str, Mapping_]] = Field(None, description="a mapping of model names to "
                                                             "config overrides")
    gpu_hours_per_run: Optional[Annotated[Number, Field(ge=0, allow_inf_nan=False)]] = Field(
        None, description="a number of GPU-hours >= 0")
    overrides: Optional[List[Any]] = Field(None, description="a list of {match: {...}, set: {...}} rules")


class GridFile(FileModel):
    name: Optional[str] = Field(None, description="a grid name (letters, digits, _ - . +)")
    description: Optional[str] = Field(None, description="one line of text")
    output: Optional[str] = Field(None, description="a folder path (string) for the run folders")
    gpu_hours_per_run: Optional[Annotated[Number, Field(ge=0, allow_inf_nan=False)]] = Field(
        None, description="a number of GPU-hours >= 0")
    resources: Optional[Mapping_] = Field(None, description="a mapping of resource fields (partition, "
                                          "timeout_min, gpus_per_node, ...)")
    defaults: Optional[Mapping_] = Field(None, description="a mapping of run-config fields merged into every run")
    teachers: Optional[Dict[str, Union[str, Mapping_]]] = Field(
        None, description="a mapping of teacher keys to record folders ({checkpoint: PATH} or PATH)")
    stages: Dict[str, StageSpec] = Field(description="a mapping of stage names to stages ({runs: [...]} or "
                                         "{axes: {...}})")

    @field_validator("name")
    @classmethod
    def _name(cls, v: Optional[str]) -> Optional[str]:
        problem = None if v is None else name_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("output")
    @classmethod
    def _output(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and (not v.strip() or "\x00" in v):
            raise ValueError(f"{v!r} is not a folder path")
        return v

    @field_validator("stages")
    @classmethod
    def _stage_names(cls, v: Dict[str, StageSpec]) -> Dict[str, StageSpec]:
        for s in v:
            problem = name_problem(s)
            if problem:
                raise ValueError(f"stage name {problem}")
        return v

    @field_validator("teachers")
    @classmethod
    def _teacher_keys(cls, v):
        for k in v or {}:
            problem = name_problem(k)
            if problem:
                raise ValueError(f"teacher key {problem}")
        return v


def check_grid_file(spec: Dict[str, Any], source: str) -> GridFile:
    """The shape of a grid file; a ConfigError naming ``source``, the field, the value and what is allowed."""
    return check_file(GridFile, spec, source)
