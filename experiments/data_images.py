"""The files of an image folder: listed without following symlink loops, checked before training, decoded with
a named error.

Role in the flow: :mod:`kdsuite.experiments.data_folders` and the paired views of
:mod:`kdsuite.experiments.views` read every ``<split>/<class>/…`` tree through :class:`ImageFiles` (a
torchvision ``ImageFolder`` whose file list is built here), run :func:`check_images` over all the files a run
will read before the first step, and decode each file with :func:`open_image` during training.

The listing keeps torchvision's order (classes by name; in each class the folders by path, their files by
name) and its rules (a class is a folder directly under the split, a sample a file with an image extension),
with three differences: a link to a directory that leads back to a directory on the way down (a symlink
loop) is not followed, and said so once, naming the link; a link that leads nowhere (or into a loop of
links), or a file that cannot be opened, is a :class:`ConfigError` naming it and why; a non-regular file
with an image name (a pipe, a device) is refused instead of opened.

Cost policy of :func:`check_images`: up to :data:`FULL_CHECK_MAX` files every file is fully decoded before
training; above that (ImageNet's 1.28 million files would take about half an hour on one core) only each
file's header is read (empty files, files that are no image, unreadable files are still found), and a file
that fails to decode later, in training, ends the run with the same named error — also when it is decoded in a
DataLoader worker process (:class:`kdsuite.core.errors.DamagedDataError`).
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

import torchvision
from PIL import Image

from kdsuite.core.errors import ConfigError, DamagedDataError

IMG_EXTENSIONS = torchvision.datasets.folder.IMG_EXTENSIONS
FULL_CHECK_MAX = 10_000  # files fully decoded before training; above, headers only
_REPORTED_LOOPS: Set[str] = set()  # each loop link is reported once per process


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _loops(target: str, chain: Iterable[str]) -> bool:
    """Whether ``target`` is, or is above, one of the directories of ``chain`` (real paths on the way down)."""
    return any(real == target or real.startswith(target.rstrip(os.sep) + os.sep) for real in chain)


def _broken(path: str, field: str, what: str) -> ConfigError:
    try:
        os.stat(path)
        reason = "it cannot be read"
    except OSError as e:
        reason = e.strerror or str(e)
    if os.path.islink(path):
        return ConfigError(f"{field}: '{path}' is a symbolic link to '{os.readlink(path)}', which cannot be "
                           f"followed ({reason}); remove the link or restore its target")
    return ConfigError(f"{field}: {what} '{path}' cannot be read ({reason})")


def _scan(path: str, field: str) -> List[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError as e:
        raise ConfigError(f"{field}: folder '{path}' cannot be listed ({e.strerror or e})") from None


def _subdir(entry: os.DirEntry, real: str, chain: List[str], field: str) -> Optional[str]:
    """The real path of directory ``entry`` (a folder of ``real``), or None when it is a link that loops back."""
    if not entry.is_symlink():
        return os.path.join(real, entry.name)
    target = os.path.realpath(entry.path)
    if not _loops(target, chain):
        return target
    if entry.path not in _REPORTED_LOOPS:
        _REPORTED_LOOPS.add(entry.path)
        print(f"kdsuite: {field}: not following the link '{entry.path}' -> '{os.readlink(entry.path)}': it leads "
              f"to '{target}', which holds it (a symlink loop)", file=sys.stderr, flush=True)
    return None


def _is_dir(entry: os.DirEntry) -> bool:
    """Whether ``entry`` is (or links to) a directory (a link that leads nowhere is not)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def walk_images(top: str, field: str) -> List[str]:
    """Every image file under ``top`` (links to directories followed, symlink loops not), in torchvision's order."""
    found: List[Tuple[str, List[str]]] = []

    def visit(path: str, real: str, chain: List[str]) -> None:
        names = []
        for entry in _scan(path, field):
            if _is_dir(entry):
                sub = _subdir(entry, real, chain, field)
                if sub is not None:
                    visit(entry.path, sub, chain + [sub])
            elif entry.is_symlink() and not os.path.exists(entry.path):
                if _is_image_name(entry.name) or "." not in entry.name:  # an image, or perhaps a folder
                    raise _broken(entry.path, field, "file")
            elif _is_image_name(entry.name):
                _check_regular(entry, field)
                names.append(entry.name)
        found.append((path, sorted(names)))

    real = os.path.realpath(top)
    visit(top, real, [real])
    return [os.path.join(d, n) for d, names in sorted(found) for n in names]


def _check_regular(entry: os.DirEntry, field: str) -> None:
    if not entry.is_file():  # the directory entry's type: no system call for a regular file
        raise ConfigError(f"{field}: '{entry.path}' has an image file's name but is not a regular file (a pipe, "
                          f"socket or device); remove it")


def find_classes(root: str, field: str) -> List[str]:
    """The class folders directly under ``root`` (links to folders count; a loop back to ``root`` does not)."""
    real = os.path.realpath(root)
    out = []
    for entry in _scan(root, field):
        if _is_dir(entry):
            if _subdir(entry, real, [real], field) is not None:
                out.append(entry.name)
        elif entry.is_symlink() and not os.path.exists(entry.path) and "." not in entry.name:
            raise _broken(entry.path, field, "class folder")
    if not out:
        raise FileNotFoundError(f"Couldn't find any class folder in {root}.")
    return sorted(out)


class ImageFiles(torchvision.datasets.ImageFolder):
    """A torchvision ``ImageFolder`` whose classes and files come from :func:`find_classes` /
    :func:`walk_images` and whose files are decoded by :func:`open_image`; ``field`` names the config field
    in every error (``dataset.root``, ``dataset.views``)."""

    def __init__(self, root: str, transform: Optional[Callable] = None, field: str = "dataset.root"):
        self.field = field
        super().__init__(root, transform=transform, loader=ImageLoader(field))

    def find_classes(self, directory) -> Tuple[List[str], Dict[str, int]]:
        classes = find_classes(str(directory), self.field)
        return classes, {c: i for i, c in enumerate(classes)}

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None,  # type: ignore[override]
                     allow_empty=False) -> List[Tuple[str, int]]:
        samples, empty = [], []
        for cls in sorted(class_to_idx, key=class_to_idx.get):
            files = walk_images(os.path.join(str(directory), cls), self.field)
            empty += [] if files else [cls]
            samples += [(f, class_to_idx[cls]) for f in files]
        if empty:
            raise FileNotFoundError(f"Found no valid file for the classes {', '.join(empty)}. Supported "
                                    f"extensions are: {', '.join(IMG_EXTENSIONS)}")
        return samples


class ImageLoader:
    """``open_image`` bound to a field (a class, not a closure: DataLoader workers may get it pickled)."""

    def __init__(self, field: str):
        self.field = field

    def __call__(self, path: str) -> Image.Image:
        return open_image(path, self.field)


def _reason(path: str, e: BaseException) -> str:
    if isinstance(e, Image.UnidentifiedImageError):
        try:
            empty = os.path.getsize(path) == 0
        except OSError:
            empty = False
        return "an empty file" if empty else "not an image file Pillow can read"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    if isinstance(e, OSError) and "truncated" in str(e).lower():
        return str(e) if "file is truncated" in str(e) else f"the file is truncated ({e})"
    return f"{type(e).__name__}: {e}" if not isinstance(e, OSError) else str(e)


def open_image(path: str, field: str = "dataset.root") -> Image.Image:
    """The image at ``path`` as RGB; a file that cannot be read or decoded is a
    :class:`~kdsuite.core.errors.DamagedDataError` naming it."""
    try:
        with open(path, "rb") as fh:
            return Image.open(fh).convert("RGB")
    except Exception as e:  # noqa: BLE001 — Pillow's decoders raise OSError, ValueError, SyntaxError, zlib.error…
        raise DamagedDataError(f"{field}: image file '{path}' cannot be decoded ({_reason(path, e)}); replace or "
                               f"remove it") from None


def _problem(path: str, full: bool) -> Optional[str]:
    try:
        with open(path, "rb") as fh, Image.open(fh) as im:
            if full:
                im.load()
    except Exception as e:  # noqa: BLE001 — as in open_image
        return f"'{path}' ({_reason(path, e)})"
    return None


def check_images(paths: List[str], field: str) -> str:
    """Every file of ``paths`` decoded (up to :data:`FULL_CHECK_MAX` files) or its header read (above); the
    damaged ones are one :class:`ConfigError` naming the first five and their count. Returns what was done."""
    full = len(paths) <= FULL_CHECK_MAX
    # one thread: a pool of threads was slower here (Pillow keeps the GIL for most of a small file's work)
    problems = [p for p in (_problem(f, full) for f in paths) if p]
    if problems:
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise DamagedDataError(f"{field}: {len(problems)} damaged image file(s), found before training: "
                               f"{'; '.join(problems[:5])}{more}; replace or remove them")
    return "decoded" if full else "headers read"
