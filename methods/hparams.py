"""Hyper-parameter declarations of method plugins and their validation.

A plugin declares ``hparams = {"T": HParam(4.0, low=0, low_open=True, doc=...)}``; a run's config
overrides any of them. :func:`resolve_hparams` checks names, types and ranges before anything is
built, and raises :class:`ConfigError` naming the field, the value and what is allowed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Dict, Mapping, Optional, Sequence

from kdsuite.core.errors import ConfigError


@dataclass(frozen=True)
class HParam:
    default: Any
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False     # True: value must be > low (else >= low)
    high_open: bool = False    # True: value must be < high
    choices: Optional[Sequence[Any]] = None
    doc: str = ""
    kind: Optional[type] = field(default=None)  # inferred from default when None
    # added after run records of the method existed: left out of the config hash while at its default, so
    # those runs keep their identities (``kdsuite.experiments.config.identity``)
    hash_neutral: bool = False

    def allowed(self) -> str:
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high}")
        kind = self._kind()
        base = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
                list: "a list", tuple: "a list"}.get(kind, kind.__name__ if kind else "any value")
        return base + (" " + " and ".join(parts) if parts else "")

    def _kind(self):
        if self.kind is not None:
            return self.kind
        return None if self.default is None else type(self.default)

    def check(self, field_name: str, value: Any) -> Any:
        kind = self._kind()
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is tuple and isinstance(value, list):
            value = tuple(value)
        if kind is list and isinstance(value, tuple):
            value = list(value)
        ok_type = kind is None or isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if value is None and self.default is None:
            ok_type = True
        if not ok_type:
            raise ConfigError(f"{field_name} = {value!r} is not {self.allowed()}")
        # a choice is matched with its type: 1 is not True, 0 is not False
        if self.choices is not None and not any(value == c and isinstance(value, bool) == isinstance(c, bool)
                                                for c in self.choices):
            raise ConfigError(f"{field_name} = {value!r} is not allowed; expected {self.allowed()}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and math.isnan(value):
                raise ConfigError(f"{field_name} = nan is not {self.allowed()}")
            if isinstance(value, float) and math.isinf(value):
                raise ConfigError(f"{field_name} = {value!r} is not finite; expected {self.allowed()}")
            bad_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
            bad_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
            if bad_low or bad_high:
                raise ConfigError(f"{field_name} = {value!r} is out of range; expected {self.allowed()}")
        return value


class HParams(SimpleNamespace):
    """A method's hyper-parameters, every one checked and typed (``hp.T``); what the plugin gets."""

    def as_dict(self) -> Dict[str, Any]:
        return dict(vars(self))


def resolve_hparams(method_name: str, declared: Mapping[str, HParam], overrides: Mapping[str, Any] | None,
                    prefix: str = "method.hparams") -> HParams:
    """Defaults updated by ``overrides``, every value checked; unknown names list the valid ones."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        valid = ", ".join(sorted(declared)) or "(none)"
        raise ConfigError(f"{prefix}: unknown hyper-parameter(s) {unknown} for method '{method_name}'; "
                          f"valid: {valid}")
    values: Dict[str, Any] = {}
    for name, spec in declared.items():
        values[name] = spec.check(f"{prefix}.{name}", overrides.get(name, spec.default))
    return HParams(**values)
