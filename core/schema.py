"""Typed file kinds: a pydantic model per file (grid files, Slurm profiles, ...), checked strictly, every
problem a :class:`~kdsuite.core.errors.ConfigError` naming the file, the field, the value and what is
allowed (the field's ``description``).

A model derives from :class:`FileModel` (unknown fields refused, no type coercion: ``"5"`` is not an
integer, ``true`` is not a number) and gives each field ``Field(description="what is allowed")``;
:func:`check_file` validates a mapping read from a file against it.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Type, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from kdsuite.core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


_TAGS = {"int", "float", "str", "bool", "list", "dict", "none", "constrained-int", "constrained-float",
         "constrained-str"}


def _is_tag(part) -> bool:
    """A union member's or validator's tag in an error location (not a field name)."""
    p = str(part)
    return p in _TAGS or "[" in p or p.startswith(("function-", "union", "tagged-union", "lax-", "strict-"))


def _dotted(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_tag(part):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _allowed(model: Type[BaseModel], loc) -> Optional[str]:
    """The description of the deepest declared field on ``loc``."""
    found: Optional[str] = None
    cur: Optional[Type[BaseModel]] = model
    for part in loc:
        if isinstance(part, int) or cur is None:
            continue
        f = getattr(cur, "model_fields", {}).get(part) if isinstance(cur, type) else None
        if f is None:
            continue
        found = f.description or found
        ann = f.annotation
        nxt = None
        for cand in getattr(ann, "__args__", ()) + (ann,):
            for c in (cand, *getattr(cand, "__args__", ())):
                if isinstance(c, type) and issubclass(c, BaseModel):
                    nxt = c
        cur = nxt
    return found


def problems(model: Type[BaseModel], e: ValidationError, limit: int = 10) -> List[str]:
    out, seen = [], set()
    for err in e.errors():
        loc = [p for p in err["loc"] if not _is_tag(p)]
        where = _dotted(loc) or "(top level)"
        if where in seen:  # a union reports each branch: one line per field
            continue
        seen.add(where)
        allowed = _allowed(model, loc)
        if err["type"] == "extra_forbidden":
            parent = _allowed_fields(model, loc[:-1])
            out.append(f"{where}: unknown field" + (f"; allowed: {', '.join(parent)}" if parent else ""))
        elif err["type"] == "missing":
            out.append(f"{where}: missing (required" + (f": {allowed}" if allowed else "") + ")")
        else:
            msg = err.get("ctx", {}).get("error") if err["type"] == "value_error" else None
            out.append(f"{where} = {err['input']!r}: " + (str(msg) if msg else
                       (f"expected {allowed}" if allowed else err["msg"])))
        if len(out) >= limit:
            break
    return out


def _allowed_fields(model: Type[BaseModel], loc) -> List[str]:
    cur: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        f = getattr(cur, "model_fields", {}).get(part) if isinstance(cur, type) else None
        if f is None:
            continue
        nxt = None
        ann = f.annotation
        for cand in getattr(ann, "__args__", ()) + (ann,):
            for c in (cand, *getattr(cand, "__args__", ())):
                if isinstance(c, type) and issubclass(c, BaseModel):
                    nxt = c
        cur = nxt
    return sorted(getattr(cur, "model_fields", {})) if isinstance(cur, type) else []


def check_file(model: Type[M], data: Mapping[str, Any], source: str) -> M:
    """``data`` (read from ``source``, e.g. "grid file 'g.yaml'") as a ``model``; every problem named."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        lines = problems(model, e)
        raise ConfigError(f"{source}: " + (lines[0] if len(lines) == 1 else
                                           f"{len(lines)} problems: " + "; ".join(lines))) from None
