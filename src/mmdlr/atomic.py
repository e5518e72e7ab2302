"""Atomic writes: a file or folder appears complete or not at all, with the user's umask (0644/0755 by
default), as a plain ``open``/``mkdir`` would give it."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _new_sibling(path, directory)
    try:
        yield temp
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True) if directory else temp.unlink(missing_ok=True)
        raise


def _new_sibling(path: Path, directory: bool) -> Path:
    """Create a uniquely named hidden sibling of ``path``: modes 0o666/0o777 less the umask (tempfile's
    mkstemp/mkdtemp would make it private, 0600/0700, and so the file that replaces ``path``)."""
    while True:
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            if directory:
                temp.mkdir()
            else:
                os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return temp
        except FileExistsError:
            continue


def remove_temporaries(folder: str | os.PathLike) -> None:
    """Remove the temporary siblings that writers killed mid-write (joblib kills its workers when it is
    interrupted) left in ``folder``; an :func:`atomic_path` still open in ``folder`` would lose its own."""
    for temp in Path(folder).glob(".*.????????.tmp"):
        shutil.rmtree(temp, ignore_errors=True) if temp.is_dir() else temp.unlink(missing_ok=True)


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table as CSV atomically (no index)."""
    with atomic_path(path) as temp:
        table.to_csv(temp, index=False)
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write text atomically."""
    with atomic_path(path) as temp:
        temp.write_text(text)
    return Path(path)


def write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write bytes atomically."""
    with atomic_path(path) as temp:
        temp.write_bytes(data)
    return Path(path)
