"""Atomic file writes shared by checkpoints (trainer), teacher weights (zoo) and run records
(analysis): write to a temporary file in the same folder, fsync, then ``os.replace``. A reader
sees either the old file or the new one, never half of one; a crash never erases a finished file.
The file gets the permissions a plain ``open()`` would give it (0666 less the umask: 0644 under
umask 022), not the 0600 of a temporary file, so colleagues on shared storage can read it."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Union

from kdsuite.core.errors import WriteError


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``/proc/self/status``)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not atomic across threads, but brief)
    os.umask(mask)
    return mask


def _atomic(path: os.PathLike, write: Callable[[Any], None], mode: str = "wb", keep: Optional[Path] = None) -> Path:
    path = Path(path)
    if path.is_symlink():  # write where the link points; replacing the file would replace the user's link
        path = Path(os.path.realpath(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise WriteError(path, e) from e
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600 whatever the umask
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if keep is not None and path.exists():
            os.replace(path, keep)  # only once the new file is complete: `path` is missing for a moment at most
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        cause = _os_error(e)
        if cause is not None:  # torch.save reports a full disk as its own RuntimeError, the OSError beneath
            raise WriteError(path, cause) from e
        raise
    return path


def _os_error(e: Optional[BaseException]) -> Optional[OSError]:
    """The OSError ``e`` is or was raised while handling (its ``__cause__`` / ``__context__`` chain)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def file_digest(path: os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks (weights, data files, plugin sources)."""
    import hashlib

    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stat_stamp(paths) -> tuple:
    """``((path, size, mtime_ns), ...)`` of ``paths`` (None, None for one that can't be read): the key under
    which a digest of those files is cached — it changes when a file is rewritten, added or removed."""
    out: list = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((str(p), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(p), None, None))
    return tuple(out)


def atomic_write_bytes(path: os.PathLike, data: bytes) -> Path:
    return _atomic(path, lambda fh: fh.write(data))


def atomic_write_text(path: os.PathLike, text: str) -> Path:
    return _atomic(path, lambda fh: fh.write(text), mode="w")


def atomic_write_json(path: os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: os.PathLike) -> Path:
    import torch  # here, not at the top: reading records and configs needs no torch

    return _atomic(path, lambda fh: torch.save(obj, fh))


def load_checkpoint(path: os.PathLike) -> Any:
    """Checkpoints hold only tensors and plain containers, so the safe loader suffices."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


# ---- the two newest epoch checkpoints -----------------------------------------------------
def previous_path(path: os.PathLike) -> Path:
    """Where the checkpoint before the newest one is kept (``checkpoint.pt`` → ``checkpoint.prev.pt``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(obj: Any, path: os.PathLike) -> Path:
    """Write ``obj`` atomically to ``path``, keeping the checkpoint it replaces as :func:`previous_path`:
    a newest file damaged later (a full disk, a bad copy) still leaves one to resume from."""
    import torch

    path = Path(path)
    return _atomic(path, lambda fh: torch.save(obj, fh), keep=previous_path(path))


def load_latest_checkpoint(path: os.PathLike, log: Callable[[str], None] = print) -> Any:
    """The newest readable checkpoint of ``path`` and :func:`previous_path`, or None when there is none.
    A file that cannot be read is named, moved aside (``<name>.damaged-<time>``) and the older one used."""
    import time

    for cand in (Path(path), previous_path(path)):
        if not cand.exists():
            continue
        try:
            return load_checkpoint(cand)
        except Exception as e:  # noqa: BLE001 — torch raises many types for a truncated or foreign file
            aside = cand.with_name(f"{cand.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            try:
                os.replace(cand, aside)
            except FileNotFoundError:  # another process of the same run moved it first
                pass
            log(f"checkpoint {cand} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                f"moved aside to {aside.name}, trying the previous one")
    return None


# ---- files kdsuite reads, named by what is wrong with them -----------------------------------------
def file_problem(path: Union[str, os.PathLike]) -> Optional[str]:
    """Why ``path`` cannot be read as a file (missing, a broken link, a folder, below a file, not readable),
    in the words of an error message; None when it can."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return f"is a broken link (to '{os.readlink(path)}')"
    if path.is_dir():
        return "is a folder, not a file"
    if not path.exists():
        anc = _nearest_existing(path.parent)
        if os.path.lexists(anc) and not anc.is_dir():
            return f"does not exist ('{anc}' is a file, not a folder)"
        return "does not exist"
    if not path.is_file():  # a FIFO or a device: reading it could block or never end
        return "is not a regular file"
    if not os.access(path, os.R_OK):
        return "is not readable (permission denied)"
    return None


def folder_problem(path: Union[str, os.PathLike]) -> Optional[str]:
    """Why ``path`` cannot be read as a folder (missing, a broken link, a file, something else, not
    readable), in the words of an error message; None when it can."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return f"is a broken link (to '{os.readlink(path)}')"
    if not path.exists():
        anc = _nearest_existing(path.parent)
        if os.path.lexists(anc) and not anc.is_dir():
            return f"does not exist ('{anc}' is a file, not a folder)"
        return "does not exist"
    if not path.is_dir():
        return "is a file, not a folder" if path.is_file() else "is not a folder"
    if not os.access(path, os.R_OK | os.X_OK):
        return "is not readable (permission denied)"
    return None


def check_readable_file(path: Union[str, os.PathLike], what: str, hint: str = "") -> Path:
    """``path`` as a Path when it is a readable file; else a ConfigError naming ``what``, the path and why."""
    from kdsuite.core.errors import ConfigError

    problem = file_problem(path)
    if problem:
        raise ConfigError(f"{what} '{path}' {problem}" + (f"; {hint}" if hint else ""))
    return Path(path)


# ---- places kdsuite will write, checked before any work -------------------------------------------
def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _not_folder_kind(p: Path) -> str:
    """What an existing non-folder path is, in the words of an error message."""
    return "a broken link" if p.is_symlink() and not p.exists() else "a file"


def _check_ancestors(path: Path, what: str) -> None:
    from kdsuite.core.errors import ConfigError

    anc = _nearest_existing(path.parent if path.parent != path else path)
    if not anc.is_dir():
        raise ConfigError(f"{what} '{path}': '{anc}' is {_not_folder_kind(anc)}, not a folder; a folder is needed there")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} '{path}': folder '{anc}' is not writable (permission denied); choose another "
                          f"place or fix its permissions")


def check_writable_dir(path: os.PathLike, what: str = "output folder") -> Path:
    """``path`` is a folder kdsuite can create (or has) and write into; else a ConfigError naming it. Writes
    nothing: checked before work starts, so a wrong place fails in a second, not after training."""
    from kdsuite.core.errors import ConfigError

    path = Path(path)
    if os.path.lexists(path):
        if not path.is_dir():
            raise ConfigError(f"{what} '{path}' is {_not_folder_kind(path)}, not a folder; give a folder (or move the "
                              f"file away)")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{what} '{path}' is not writable (permission denied); choose another folder or "
                              f"fix its permissions")
        return path
    _check_ancestors(path, what)
    return path


def check_writable_file(path: os.PathLike, what: str = "output file") -> Path:
    """``path`` is a file kdsuite can write (atomically: its folder must be writable); a folder in its place,
    a file where its folder should be or missing permissions are a ConfigError naming it."""
    from kdsuite.core.errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} '{path}' is a folder; give a file name (e.g. '{path / 'table.md'}')")
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"{what} '{path}' is a broken link (to '{os.readlink(path)}'); remove it or give another "
                          f"file name")
    if os.path.lexists(path.parent):
        if not path.parent.is_dir():
            raise ConfigError(f"{what} '{path}': '{path.parent}' is a file, not a folder")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise ConfigError(f"{what} '{path}': folder '{path.parent}' is not writable (permission denied)")
        return path
    _check_ancestors(path, what)
    return path
