"""One run at a time in an output folder.

Two runs writing one folder would corrupt each other: each would take the other's
running trials for a killed run's and mark them failed. A run holds an exclusive
lock (``flock``) on the folder's LOCK_FILE while it runs; the operating system
releases it when the process ends, however it ends, so a killed run never leaves
the folder locked. The file keeps the holder's pid, for the refusal to name.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from automl.errors import InputError

LOCK_FILE = ".automl.lock"


@contextmanager
def locked_folder(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock (creating the folder if need be) until the block ends;
    InputError at once if another process holds it. A folder this call created is
    removed again if the block fails while the folder holds nothing but the lock."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output {folder} is a file, not a folder")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise InputError(f"{folder} is in use by another run (pid {holder}); wait for it to end, "
                         "or give this one another --output") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    try:
        yield
    except BaseException:
        if created and [p.name for p in folder.iterdir()] == [LOCK_FILE]:
            (folder / LOCK_FILE).unlink()
            folder.rmdir()
        raise
    finally:
        handle.close()
