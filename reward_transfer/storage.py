"""Atomic writes: a reader (or a resumed run) sees either the old file/directory or the new one, never half."""

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reward_transfer.errors import UserError


def looks_like_local_path(name_or_path: str) -> bool:
    """True for paths (existing, explicit, or nested deeper than a Hub `org/name` id), False for Hub ids."""
    path = Path(name_or_path).expanduser()
    if path.exists() or name_or_path.startswith((".", "/", "~")) or len(path.parts) > 2:
        return True
    return len(path.parts) == 2 and Path(path.parts[0]).is_dir()


def ensure_writable(path: str | os.PathLike, key: str, parent: bool = False) -> None:
    """Fail at the start, in one line naming the config key, when the output `path` (or, `parent=True`, the folder
    it is made in) cannot be created or written (read-only mount, no permission), instead of with a traceback
    after the work is done."""
    directory = Path(path).parent if parent else Path(path)
    existing = next((p for p in (directory, *directory.parents) if p.exists()), Path("."))
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        raise UserError(f"{key}={path}: cannot write to {existing} ({err.strerror or err})") from err


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move directory `src` to `dst`, replacing any existing `dst` (a rename each; the old copy is removed last)."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `path`; on success it replaces `path`, on error it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o755)  # mkdtemp creates 0700
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_dataset_atomically(dataset: Any, path: str | os.PathLike) -> None:
    """`dataset.save_to_disk(path)` (a Dataset or DatasetDict) without ever exposing a half-written directory."""
    with atomic_directory(path) as tmp:
        dataset.save_to_disk(str(tmp))
