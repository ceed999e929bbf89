"""Paths as users type them: ``~`` stands for the home folder, as in a shell."""

from __future__ import annotations

from pathlib import Path


def _expanduser(path) -> Path:
    """``path`` as a Path with a leading ``~`` or ``~user`` expanded to that home folder.

    A name that merely starts with ``~`` and names no known user (``~draft.tif``)
    is left as it is: it is a file name, not a home folder.
    """
    path = Path(path)
    try:
        return path.expanduser()
    except RuntimeError:  # pathlib's answer to "~nosuchuser"
        return path
