"""Write-then-rename helpers, so that readers never see a half-written file.

A crash, a full disk or a bad argument halfway through a write must leave the
destination as it was: either the previous complete file or nothing. Each helper
writes to a hidden sibling in the same folder (so the final rename stays on one
file system, where ``os.replace`` is atomic) and removes it on any error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:12]}")


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextlib.contextmanager
def atomic_file(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it onto ``path`` on success.

    ``suffix`` is appended to the temporary name for writers that insist on an
    extension. The temporary file is removed if the block raises.
    """
    tmp = _sibling(path, "tmp")
    if suffix:
        tmp = tmp.with_name(tmp.name + suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def check_not_working_folder(path) -> Path:
    """``path`` made absolute; a ``ValueError`` if it is the current folder or holds it.

    A folder written whole is put in place of the old one, which is then
    deleted: the folder a process works in, or one above it, must never be.
    """
    path = Path(os.path.abspath(path))
    cwd = Path.cwd()
    if cwd == path or path in cwd.parents:
        raise ValueError(f"'{path}' is the current folder or contains it; a new folder is "
                         "written in its place, which would delete it: give a new folder, "
                         "e.g. 'cells' or 'model'.")
    return path


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield a new empty sibling folder; put it in place of ``path`` on success.

    An existing ``path`` is moved aside first and deleted only once the new folder
    is in place, so at every moment ``path`` is either the old or the new
    complete folder (or, for an instant between two renames, absent). The
    current folder, or one above it, is refused.
    """
    path = check_not_working_folder(path)
    tmp = _sibling(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists():
            old = _sibling(path, "old")
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
        if old is not None:
            _remove(old)
    except BaseException:
        _remove(tmp)
        raise
