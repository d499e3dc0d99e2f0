"""Atomic outputs: a file or folder is written under a temporary name beside its
final place, then renamed over it, so a reader (or a run killed halfway) never
sees half of one. Renames within one folder are atomic on POSIX file systems.

Temporary names start with a dot and hold ``STAGING_MARK``, so leftovers of a
killed writer are easy to recognise and remove (``remove_leftovers``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STAGING_MARK = ".staging-"


def staging_path(path: Path) -> Path:
    """A temporary sibling of ``path``, unique to this process."""
    return path.with_name(f".{path.name}{STAGING_MARK}{os.getpid()}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path to write ``path``'s content to; on success it replaces
    ``path`` in one rename, on failure it is removed and ``path`` is untouched."""
    path = Path(path)
    staged = staging_path(path)
    try:
        yield staged
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as staged:
        staged.write_text(text)
    return Path(path)


@contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yields an empty temporary folder to fill; on success it takes ``folder``'s place
    (an older ``folder`` is moved aside first, then removed)."""
    folder = Path(folder)
    staged = staging_path(folder)
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    try:
        yield staged
        if folder.exists():
            retired = folder.with_name(f".{folder.name}.retired-{os.getpid()}")
            shutil.rmtree(retired, ignore_errors=True)
            os.rename(folder, retired)
            os.rename(staged, folder)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staged, folder)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Remove what killed writers left in ``folder``: staged files and folders, and
    folders moved aside; returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = [p for p in folder.iterdir()
               if p.name.startswith(".") and (STAGING_MARK in p.name or ".retired-" in p.name)]
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return removed
