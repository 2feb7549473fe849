"""Atomic file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from genloom.errors import ConfigError

FILE_MODE = 0o644
"""Permissions of written artifact files: readable by the services that load them."""
DIRECTORY_MODE = 0o755
TEMP_FILE_PATTERN = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")
"""Names of :func:`atomic_path`'s temporary files: ``.TARGET.PID.RANDOM.tmp``, PID being the writer's."""


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success fsync it and rename it over ``target``.

    If the body raises, the temporary file is removed and ``target`` is untouched. The
    temporary name holds the writer's pid, so a file left by a killed process can be
    told apart and removed later (:func:`remove_stale_temp_files`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)  # mkstemp makes it private
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (temp file, fsync, rename)."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` left in ``directory`` when its writer was killed.

    Only files named like :data:`TEMP_FILE_PATTERN` whose writing process is gone are
    removed (a live writer's file is kept). Returns the removed paths.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in directory.iterdir():
        match = TEMP_FILE_PATTERN.match(path.name)
        if match and path.is_file() and not _process_alive(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    """Whether a process with ``pid`` runs now (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def check_output_file(path: Path, option: str) -> Path:
    """Check, before any work starts, that ``path`` can be written as a file; a ConfigError naming ``option`` if not.

    It may exist as a file (it is replaced); it must not be a directory, and its
    nearest existing parent must be a writable directory.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option}: '{path}' is a directory; give a file path, e.g. {option} {path / 'out'}")
    _check_writable_parent(path, option)
    return path


def check_output_directory(path: Path, option: str, *, empty: bool = True) -> Path:
    """Check, before any work starts, that ``path`` can become an output directory; a ConfigError naming ``option`` if
    not.

    It may be missing (it is created) or an existing directory, which must be empty
    when ``empty``; it must not be a file, and it (or its nearest existing parent) must be writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option}: '{path}' is a file, not a directory; give a new directory path")
    if path.is_dir():
        if empty and any(path.iterdir()):
            raise ConfigError(f"{option}: '{path}' is not empty; give a new or empty directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{option}: '{path}' is not writable; give a directory you can write to")
        return path
    _check_writable_parent(path, option)
    return path


def _check_writable_parent(path: Path, option: str) -> None:
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{option}: '{parent}' is a file, so '{path}' cannot be created; give another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{option}: cannot write into '{parent}' (permission denied); give a path you can write to")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable by syncing its directory (a no-op where the OS cannot)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
