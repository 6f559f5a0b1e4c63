"""The one YAML reader of kdsuite: run configs, ``--set`` values, grid files and Slurm profiles all go
through :func:`read_yaml_mapping` / :func:`parse_yaml_value`.

It is PyYAML's safe loader with three differences, each a way a file could mean something else than
it says:

- **numbers are numbers**: ``1e-3``, ``5E-4`` and ``1e3`` are floats (YAML 1.1, PyYAML's resolver, wants
  a dot and a signed exponent and reads ``1e-3`` as the *string* ``'1e-3'``);
- **booleans are only** ``true`` / ``false`` (YAML 1.2): ``yes``, ``no``, ``on``, ``off``, ``y``, ``n``
  stay strings, so ``dataset.root: no`` is the folder ``no`` and a boolean field refuses ``no`` by name;
- **a key given twice in one mapping is an error** naming the key and both lines (the second ``optim:``
  block silently replacing the first is how a learning rate gets lost).

A file must hold one mapping: an empty document or another top-level type is refused, naming the file.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Optional

import yaml
from yaml.constructor import ConstructorError

from kdsuite.core.errors import ConfigError

# YAML 1.2 core schema floats (and YAML 1.1's forms, which it includes), plus .inf / .nan
_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, second: int):
        super().__init__(f"key {key!r} is given twice (lines {first} and {second}); give it once")
        self.key, self.first, self.second = key, first, second


class StrictLoader(yaml.SafeLoader):
    """Safe loading with YAML 1.2 numbers and booleans and no duplicate keys (see the module text)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: Dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    raise ConstructorError("while constructing a mapping", node.start_mark,
                                           "found an unhashable key", key_node.start_mark) from None
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise DuplicateKey(key, seen[key], line)
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


# the implicit resolvers, with bool and float replaced by the stricter / wider YAML 1.2 forms
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _bool(loader, node):
    return loader.construct_scalar(node).lower() == "true"


StrictLoader.add_constructor("tag:yaml.org,2002:bool", _bool)


def _problem(e: yaml.YAMLError) -> str:
    if isinstance(e, DuplicateKey):
        return str(e)
    mark = getattr(e, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"not valid YAML{where}: {problem}"


def load_yaml_text(text: str, source: str) -> Any:
    """``text`` parsed by :class:`StrictLoader`; a syntax error or duplicate key is a ConfigError naming
    ``source`` (a file, or ``--set KEY``) and the line."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 — StrictLoader is a SafeLoader
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: {_problem(e)}") from None


def parse_yaml_value(text: str, key: Optional[str] = None) -> Any:
    """A ``--set KEY=VALUE`` value: a YAML scalar, list or mapping; one that does not parse names the key
    and the text."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}={text}: the value {text!r} is not valid YAML ({_problem(e)}); quote "
                          f"a string, close every [ ] and {{ }}") from None


def read_yaml_mapping(path: str | Path, what: str = "config file") -> Dict[str, Any]:
    """A YAML file that must hold a (non-empty) mapping; a missing file, a syntax error or duplicate key
    (with its line), an empty document or another top-level type is a ConfigError naming the file."""
    from kdsuite.core.fileio import check_readable_file

    path = check_readable_file(path, what, "expected a YAML file")
    try:
        text = path.read_text()
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} '{path}': not a text file ({e.reason})") from None
    except OSError as e:
        raise ConfigError(f"{what} '{path}' cannot be read ({e.strerror})") from None
    data = load_yaml_text(text, f"{what} '{path}'")
    if data is None:
        raise ConfigError(f"{what} '{path}' is empty; it must hold a mapping of fields (e.g. `epochs: 10`)")
    if not isinstance(data, dict):
        raise ConfigError(f"{what} '{path}' must hold a mapping of fields, not a {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{what} '{path}': field name {bad[0]!r} is not a string; field names are words")
    return data
