"""Atomic writes: a reader (or a resumed run) sees either the old file/directory or the new one, never half."""

import errno
import json
import os
import re
import shutil
import socket
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


# Temporaries beside a path are named `.<name>.tmp-<pid>-<random>@<host>` (`old-` for a replaced copy), so that a
# later writer of the same path can tell those of a writer that was killed (SIGKILL leaves no chance to clean up).
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)-[^@]*@(?P<host>.+)")
_HOST = socket.gethostname()


def _temporary_affixes(path: Path, kind: str = "tmp") -> tuple[str, str]:
    return f".{path.name}.{kind}-{os.getpid()}-", f"@{_HOST}"


def writer_is_alive(pid: int, host: str) -> bool | None:
    """Whether the writing process `pid` of `host` still runs; None for another host's (this one cannot tell)."""
    if host != _HOST:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike, name: str | None = None) -> int:
    """Remove the temporaries in `directory` (of `name` only, when given) whose writer is gone; returns how many."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = 0
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        # One writer per output: another host's temporary of it is a dead writer's too.
        if not writer_is_alive(int(match["pid"]), match["host"]):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed


def remove_stale_temporaries_of(path: str | os.PathLike) -> int:
    """What killed writers of `path` left beside it (a stage calls this as it starts)."""
    path = Path(path)
    return remove_stale_temporaries(path.parent, path.name)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries_of(path)
    prefix, suffix = _temporary_affixes(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
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
        prefix, suffix = _temporary_affixes(dst, "old")
        old = dst.with_name(f"{prefix}0{suffix}")
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
    remove_stale_temporaries_of(path)
    prefix, suffix = _temporary_affixes(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=suffix))
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
