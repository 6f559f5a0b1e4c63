"""The one rule for names that become file or folder names (grids, runs, teacher records, teacher keys):
letters, digits and ``_ - . +``, starting with a letter or digit, at most :data:`MAX_LEN` characters, never
``..``. A name checked here stays one path component, so nothing it names leaves the output root."""
from __future__ import annotations

import re
from typing import Any

from kdsuite.core.errors import ConfigError

MAX_LEN = 100
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
RULE = (f"letters, digits and _ - . +, starting with a letter or digit, at most {MAX_LEN} characters, "
        f"no '..' and no '/'")


def name_problem(value: Any) -> str | None:
    """Why ``value`` is not a valid name (None when it is)."""
    if not isinstance(value, str):
        return f"not a name; expected a string of {RULE}"
    if not value:
        return f"empty; expected {RULE}"
    if len(value) > MAX_LEN:
        return f"{len(value)} characters long; expected at most {MAX_LEN}"
    if "/" in value or "\\" in value:
        return f"holds a path separator; a name is one folder name ({RULE})"
    if ".." in value:
        return f"holds '..'; expected {RULE}"
    if not _NAME.fullmatch(value):
        return f"not allowed; expected {RULE}"
    return None


def check_name(value: Any, field: str) -> str:
    """``value`` if it is a valid name, else a ConfigError naming ``field``."""
    problem = name_problem(value)
    if problem:
        shown = value if not isinstance(value, str) or len(value) <= 60 else value[:60] + "…"
        raise ConfigError(f"{field} = {shown!r}: {problem}")
    return value
