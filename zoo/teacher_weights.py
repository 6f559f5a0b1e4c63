"""Whether a teacher record's weights file is a whole safetensors file whose tensors fit the declared architecture,
found without loading the weights.

Role in the flow: :func:`kdsuite.zoo.teachers.load_teacher` checks the weights with :func:`check_weights` before
it loads them; ``kdsuite grid plan`` (:mod:`kdsuite.experiments.grid_teachers`) and a run before it reads any
data (:func:`kdsuite.experiments.run.resolve_teachers`) make the same check, so a teacher folder whose weights are
damaged or of another network is refused by name before anything trains.

A safetensors file is an 8-byte little-endian header length, a JSON header (tensor name → dtype, shape, byte
range of its data) and the data; :func:`safetensors_header` reads only the header and checks that every byte
range lies inside the file and holds exactly its tensor. The model's tensor names and shapes come from the
architecture built on torch's meta device (no memory, no initialisation); where a model cannot be built there
it is built on the CPU.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from kdsuite.core.errors import ConfigError

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
               "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
MAX_HEADER = 100 * 2 ** 20  # the safetensors library refuses longer headers too


def safetensors_header(path: str, field: str) -> Dict[str, Tuple[int, ...]]:
    """Tensor name → shape of the safetensors file ``path``; a file that is not one, or is truncated, is a
    :class:`ConfigError` naming ``field``, the file and what is wrong."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{field}: '{path}' is not a complete safetensors file ({why}); re-export or "
                           f"re-import the teacher")

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 0:
                raise bad(f"{size} bytes, shorter than the 8-byte header length")
            if n > min(MAX_HEADER, size - 8):
                raise bad(f"its header length field says {n} bytes but the file holds {size - 8} after it")
            raw = fh.read(n)
    except OSError as e:
        raise ConfigError(f"{field}: '{path}' cannot be read ({e.strerror or e})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"its header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    return {name: _tensor_shape(name, info, size - 8 - n, bad) for name, info in header.items()
            if name != "__metadata__"}


def _tensor_shape(name: str, info: Any, data_bytes: int, bad: Callable[[str], ConfigError]) -> Tuple[int, ...]:
    try:
        dtype, shape, (start, end) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
        width = DTYPE_BYTES[dtype]
    except (TypeError, KeyError, ValueError):
        raise bad(f"tensor {name!r} has no dtype, shape and data_offsets safetensors knows: {info!r}") from None
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end):
        raise bad(f"tensor {name!r} has the byte range {info['data_offsets']!r}")
    if end > data_bytes:
        raise bad(f"tensor {name!r} ends at data byte {end} but the file holds {data_bytes} bytes of data: it is "
                  f"truncated")
    if end - start != math.prod(shape) * width:
        raise bad(f"tensor {name!r} of shape {list(shape)} ({dtype}) needs {math.prod(shape) * width} bytes but "
                  f"has {end - start}")
    return shape


def model_shapes(build: Callable[..., Any], meta: Mapping[str, Any], field: str) -> Dict[str, Tuple[int, ...]]:
    """Tensor name → shape of the state dict of the architecture ``meta`` declares, built by ``build(arch,
    num_classes, in_chans, **model_kwargs)`` on the meta device (on the CPU where that fails)."""
    import torch

    args = (meta["arch"], meta["num_classes"], meta.get("in_chans", 3))
    kwargs = dict(meta.get("model_kwargs") or {})
    try:
        with torch.device("meta"):
            model = build(*args, **kwargs)
    except Exception:  # noqa: BLE001 — some models compute with tensors while built (e.g. .item())
        try:
            model = build(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 — an unknown name, a keyword the model does not take
            raise ConfigError(f"{field}: the record's architecture {meta['arch']!r} (num_classes {args[1]}, "
                              f"in_chans {args[2]}, model_kwargs {kwargs}) cannot be built: {e}") from None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def fit_problem(file_shapes: Mapping[str, Tuple[int, ...]], model: Mapping[str, Tuple[int, ...]]) -> Optional[str]:
    """The first tensor (in the model's order) whose name or shape differs between the file and the model."""
    counts = f" (the model has {len(model)} tensors, the file {len(file_shapes)})"
    for name, shape in model.items():
        if name not in file_shapes:
            return f"the model's tensor {name!r} {list(shape)} is not in the file{counts}"
        if tuple(file_shapes[name]) != tuple(shape):
            return f"tensor {name!r} has shape {list(file_shapes[name])} in the file but {list(shape)} in the model"
    extra = [k for k in file_shapes if k not in model]
    return f"the file's tensor {extra[0]!r} {list(file_shapes[extra[0]])} is not in the model{counts}" if extra else None


def check_weights(path: str, meta: Mapping[str, Any], field: str,
                  shapes: Optional[Mapping[str, Tuple[int, ...]]] = None) -> None:
    """Refuse (:class:`ConfigError`) the weights file ``path`` of the record ``meta`` unless it is a whole safetensors
    file whose tensors are those of the declared architecture (``shapes``: of the model built already; by
    default built here with :func:`kdsuite.zoo.create_model`)."""
    if shapes is None:
        from kdsuite.zoo import create_model

        def build(arch, num_classes, in_chans, **kw):
            return create_model(arch, num_classes=num_classes, in_chans=in_chans, **kw)
        shapes = model_shapes(build, meta, field)
    problem = fit_problem(safetensors_header(path, field), shapes)
    if problem:
        kw = meta.get("model_kwargs") or {}
        raise ConfigError(f"{field}: the weights '{path}' do not fit the declared architecture {meta['arch']!r} "
                          f"(num_classes {meta['num_classes']}, in_chans {meta.get('in_chans', 3)}"
                          f"{', model_kwargs ' + repr(kw) if kw else ''}): {problem}")
