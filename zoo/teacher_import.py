"""Import released teacher weights as kdsuite teacher records (``kdsuite teacher import``).

Role in the flow: the published students were distilled from specific teacher files; this turns such a
file into the same record ``kdsuite train-teacher`` writes (``teacher.safetensors`` + ``teacher.json``,
see :mod:`kdsuite.zoo.teachers`), so that a run or a grid names it with ``teachers: [{checkpoint: DIR}]``.

Formats (what the authors' code writes and reads):

- ``repdistiller``: ``torch.save({'epoch', 'model': state_dict, 'accuracy': top-1, 'optimizer'})`` — the
  released teachers ``save/models/<arch>_vanilla/ckpt_epoch_240.pth`` (``scripts/fetch_pretrained_teachers.sh``);
  ``<arch>_best.pth`` holds ``best_acc`` instead of ``accuracy``. ``train_student.py`` loads ``['model']``.
- ``mdistiller``: the same released files under ``download_ckpts/cifar_teachers/<arch>_vanilla/`` (its
  ``load_checkpoint(path)['model']``), and its own ``student_best`` files (``{'model': state_dict}``).
- ``timm``: a plain state dict, ``.safetensors`` (the hub's ``model.safetensors``) or ``.pth``/``.bin``.
- ``torchvision``: a plain state dict (``resnet34-b627a593.pth``); timm's ResNets use the same key names.

CIFAR files are in RepDistiller's module names and are renamed with :mod:`kdsuite.zoo.reference_keys`; timm and
torchvision files go through timm's own loading path: the checkpoint filter its model module registers for
pretrained weights (``pretrained_filter_fn`` of ``build_model_with_cfg``: VGG's classifier → ``pre_logits`` convs,
DenseNet's torchvision ``norm.1`` → ``norm1`` keys, ViT's patch-embedding / position-embedding adaptation),
then the same strict fit. The record keeps the teacher's own preprocessing, timm's
``resolve_model_data_config`` (input size, crop, interpolation, mean / std), as ``data_config``. Every key of the model must be in the file
and every key of the file must be used (only ``num_batches_tracked`` counters, which files written before
PyTorch 0.4.1 lack, are filled with 0); anything else is refused, naming the keys. Nothing is ever
unpickled beyond tensors and plain containers: ``torch.load(..., weights_only=True)`` or safetensors.
"""
from __future__ import annotations

import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from kdsuite.core.errors import ConfigError
from kdsuite.core.fileio import file_digest

FORMATS = ("repdistiller", "mdistiller", "timm", "torchvision")
# the data set a released file of each format was trained on (kdsuite's dataset names)
DEFAULT_DATASET = {"repdistiller": "cifar100", "mdistiller": "cifar100", "timm": "imagefolder",
                   "torchvision": "imagefolder"}
DEFAULT_CLASSES = {"cifar100": 100, "cifar10": 10, "digits": 10, "imagefolder": 1000}
IMAGE_SIZE = {"cifar100": 32, "cifar10": 32, "imagefolder": 224}
_SHOW = 12


def file_sha256(path: Path) -> str:
    return file_digest(path)


def read_file(path: Path) -> Any:
    """The file's content, loading tensors and plain containers only."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for a bad header
            raise ConfigError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"it names {found[1]}" if found else str(e).strip().splitlines()[0]
        raise ConfigError(f"{path}: refused — the file holds Python objects other than tensors and plain "
                          f"containers ({what}), and kdsuite never unpickles those. RepDistiller's "
                          f"ckpt_epoch_<N>.pth and <arch>_best.pth hold none (its <arch>_last.pth keeps the "
                          f"argparse options); otherwise re-save the state dict alone where you trust the file"
                          ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise ConfigError(f"{path}: not a readable PyTorch file ({type(e).__name__}: {e})") from None


def _as_float(v: Any) -> Optional[float]:
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return float(v.item())
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


def extract_state(obj: Any, fmt: str, path: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """``(state_dict, info)`` from a loaded file; ``info`` holds what the file says about itself
    (``accuracy`` and the key it came from, ``epoch``)."""
    info: Dict[str, Any] = {}
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{path}: expected a dict, found a {type(obj).__name__}")
    if fmt in ("repdistiller", "mdistiller"):
        if "model" not in obj:
            raise ConfigError(f"{path}: a {fmt} checkpoint keeps its weights under 'model' "
                              f"(RepDistiller's torch.save({{'epoch', 'model', 'accuracy', 'optimizer'}})); this "
                              f"file has keys {sorted(map(str, obj))[:_SHOW]}")
        state = obj["model"]
        for key in ("accuracy", "best_acc"):  # ckpt_epoch_<N>.pth / <arch>_best.pth
            acc = _as_float(obj.get(key))
            if acc is not None:
                info.update(accuracy=acc, accuracy_key=key)
                break
        if _as_float(obj.get("epoch")) is not None:
            info["epoch"] = int(_as_float(obj["epoch"]))
    else:
        state = obj.get("state_dict", obj) if isinstance(obj.get("state_dict"), Mapping) else obj
    if not isinstance(state, Mapping):
        raise ConfigError(f"{path}: the weights are a {type(state).__name__}, not a state dict")
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConfigError(f"{path}: entries that are not tensors: {bad[:_SHOW]}")
    state = {str(k): v for k, v in state.items()}
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith(("student.", "teacher.")) for k in state):
        raise ConfigError(f"{path}: this is a whole distiller's checkpoint (student.* / teacher.* keys); import the "
                          f"model's own file instead (mdistiller: student_best / student_latest)")
    return state, info


def timm_filter(model: torch.nn.Module):
    """``(name, fn)`` of the checkpoint filter timm applies when it loads pretrained weights into ``model``'s
    architecture (the ``pretrained_filter_fn`` its module passes to ``build_model_with_cfg``), or ``None``."""
    import inspect
    import sys

    module = sys.modules.get(type(model).__module__)
    if module is None or not type(model).__module__.startswith("timm."):
        return None
    try:
        src = inspect.getsource(module)
    except (OSError, TypeError):
        return None
    names = re.findall(r"pretrained_filter_fn\s*=\s*([A-Za-z_]\w*)", src)
    fns = [(n, getattr(module, n)) for n in dict.fromkeys(names) if callable(getattr(module, n, None))]
    if not fns and names and callable(getattr(module, "checkpoint_filter_fn", None)):
        # a local alias (ViT's ``_filter_fn = checkpoint_filter_fn``, or a partial of it for some variants)
        fns = [("checkpoint_filter_fn", module.checkpoint_filter_fn)]
    return fns[0] if len(fns) == 1 else None


def apply_timm_filter(model: torch.nn.Module, state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """``state`` through timm's checkpoint filter for ``model`` (as timm's ``load_pretrained`` calls it:
    ``fn(state_dict, model)`` or ``fn(state_dict)``); the filter's name, or None where there is none."""
    import inspect

    found = timm_filter(model)
    if found is None:
        return state, None
    name, fn = found
    try:
        takes_model = len(inspect.signature(fn).parameters) >= 2
    except (TypeError, ValueError):
        takes_model = False
    state = dict(state)
    out = fn(state, model) if takes_model else fn(state)
    return {str(k): v for k, v in out.items()}, f"{fn.__module__}.{name}"


def data_config(model: torch.nn.Module) -> Dict[str, Any]:
    """The teacher's own preprocessing as timm resolves it (``timm.data.resolve_model_data_config``)."""
    from timm.data import resolve_model_data_config

    cfg = resolve_model_data_config(model)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}


def map_keys(arch: str, fmt: str, model: torch.nn.Module) -> Tuple[Dict[str, str], str]:
    """``({kdsuite key: key in the file}, mapping name)``."""
    if arch.startswith("cifar_") and fmt in ("repdistiller", "mdistiller"):
        from kdsuite.zoo.reference_keys import reference_names

        return reference_names(arch, model), "repdistiller-module-names"
    return {k: k for k in model.state_dict()}, "identity"


def fit_state(model: torch.nn.Module, names: Dict[str, str], state: Mapping[str, torch.Tensor], path: Path,
              arch: str, fmt: str) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """The model's state dict filled from ``state``; refuses any key or shape that does not fit."""
    own = model.state_dict()
    wanted = {src: k for k, src in names.items()}
    missing = [src for src in wanted if src not in state]
    filled = [src for src in missing if src.endswith("num_batches_tracked")]
    missing = [src for src in missing if src not in filled]
    unexpected = sorted(set(state) - set(wanted))
    shapes = [f"{src} {tuple(state[src].shape)} (the model needs {tuple(own[k].shape)})"
              for src, k in wanted.items() if src in state and state[src].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        for what, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if items:
                more = f" … and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
                parts.append(f"{len(items)} {what}: {', '.join(items[:_SHOW])}{more}")
        raise ConfigError(f"{path} does not fit --arch {arch} (--format {fmt}): " + "; ".join(parts)
                          + ". Check --arch (the file's architecture), --num-classes and --format")
    out = {}
    for k, src in names.items():
        out[k] = state[src].to(own[k].dtype) if src in state else torch.zeros_like(own[k])
    return out, filled


def canonical_arch(arch: str) -> str:
    """Accept the literature's names too (``resnet32x4`` → ``cifar_resnet32x4``)."""
    from kdsuite import zoo
    from kdsuite.zoo.cifar import LITERATURE_NAMES

    if zoo.known_arch(arch):
        return arch
    by_lit = {lit: name for name, lit in LITERATURE_NAMES.items()}
    if arch in by_lit:
        return by_lit[arch]
    zoo.create_model(arch, num_classes=10)  # raises the listing error
    return arch


RECORD_FILES = ("teacher.json", "teacher.safetensors")


def _make_room(folder: Path, force: bool, check_only: bool = False) -> None:
    """An existing teacher record in ``folder`` is kept: refused without ``force``; with it, moved to
    ``<parent>/.superseded/<name>-<time>`` (never overwritten in place)."""
    import shutil
    import time

    present = [f for f in RECORD_FILES if os.path.lexists(folder / f)]
    if not present:
        return
    if not force:
        raise ConfigError(f"--out '{folder}' holds a teacher record already ({', '.join(present)}); nothing was "
                          f"replaced. Choose another --out, or pass --force to keep the old record under "
                          f"'{folder.parent / '.superseded'}' and write the new one")
    if check_only:
        return
    dest = folder.parent / ".superseded" / f"{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while dest.exists():
        dest, n = dest.with_name(f"{dest.name.rsplit('~', 1)[0]}~{n}"), n + 1
    shutil.move(str(folder), str(dest))
    print(f"kdsuite: the teacher record in {folder} was moved to {dest} (--force)", file=sys.stderr)


def import_teacher(path: str | Path, fmt: str, arch: str, num_classes: Optional[int] = None,
                   accuracy: Optional[float] = None, out: Optional[str | Path] = None,
                   dataset: Optional[str] = None, in_chans: int = 3, force: bool = False) -> Tuple[Path, Dict[str, Any]]:
    """Convert ``path`` into a teacher record folder; returns ``(folder, metadata)``. An existing record at
    the destination is refused, unless ``force``: then it is moved to ``<parent>/.superseded/`` first."""
    from kdsuite import zoo
    from kdsuite.core.fileio import check_writable_dir
    from kdsuite.zoo.teachers import save_teacher

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    from kdsuite.core.fileio import check_readable_file

    path = check_readable_file(path, "checkpoint", f"expected a {fmt} checkpoint file")
    arch = canonical_arch(arch)
    dataset = dataset or DEFAULT_DATASET[fmt]
    if dataset not in DEFAULT_CLASSES:
        raise ConfigError(f"--dataset = {dataset!r}: not a data set kdsuite reads; allowed: "
                          f"{', '.join(DEFAULT_CLASSES)}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise ConfigError(f"--num-classes = {num_classes!r}: expected an integer >= 1")
    if accuracy is not None and not (isinstance(accuracy, (int, float)) and 0 <= accuracy <= 100):
        raise ConfigError(f"--accuracy = {accuracy!r}: expected a top-1 accuracy in percent, a number from 0 to 100")
    num_classes = num_classes or DEFAULT_CLASSES.get(dataset)
    if not num_classes:
        raise ConfigError(f"--num-classes is needed for dataset {dataset!r}")
    if out:
        check_writable_dir(out, "--out")
        _make_room(Path(out), force, check_only=True)
    state, info = extract_state(read_file(path), fmt, path)
    model = zoo.create_model(arch, num_classes=num_classes, in_chans=in_chans)
    names, mapping = map_keys(arch, fmt, model)
    if fmt in ("timm", "torchvision") and mapping == "identity":
        state, filt = apply_timm_filter(model, state)
        if filt:
            mapping = f"timm checkpoint filter {filt}"
    weights, filled = fit_state(model, names, state, path, arch, fmt)
    model.load_state_dict(weights, strict=True)
    sha = file_sha256(path)
    top1, top1_from = (accuracy, "declared") if accuracy is not None else (info.get("accuracy"), info.get("accuracy_key"))
    folder = Path(out) if out else Path("runs/teachers") / f"imported-{zoo.display_name(arch)}-{sha[:10]}"
    check_writable_dir(folder, "--out")
    _make_room(folder, force)
    meta = save_teacher(model, folder, {
        "arch": arch, "num_classes": num_classes, "in_chans": in_chans, "model_kwargs": {}, "dataset": dataset,
        "image_size": IMAGE_SIZE.get(dataset), "top1": top1, "top5": None, "top1_source": top1_from,
        "imported": True, "data_config": data_config(model),
        "source": {"format": fmt, "file": path.name, "path": str(path.resolve()), "sha256": sha,
                   "epoch": info.get("epoch"), "key_mapping": mapping, "filled_with_zero": filled},
    })
    return folder, meta
