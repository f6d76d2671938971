"""File handling for the shell: whole writes or none, private files, and one-line errors.

A security officer must never find half an output file: every write goes to a
temporary file in the destination's directory and is renamed into place only
when complete (rename is atomic on POSIX within one file system). The temporary
file is readable by its owner alone from the moment it exists, whatever the final
mode: a half-written payload is as classified as a whole one. A process killed
mid-write (``kill -9``) cannot delete its temporary file, so the name says whose it
was (``.<name>.<pid>-<random>.gsomia.partial``) and the next write into the same
directory removes those whose process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from gsomia.core.errors import InvalidInput
from gsomia.core.keys import PrivateKeys, PublicKeys

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
PARTIAL = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.gsomia\.partial$")
STALE_AFTER = 24 * 3600.0  # seconds untouched: a partial file nobody is writing (its pid reused)


def read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the {what} ({exc.strerror})") from None


def load_private(path: Path) -> PrivateKeys:
    return PrivateKeys.from_bytes(read_bytes(path, "private key file"), str(path))


def load_public(path: Path) -> PublicKeys:
    return PublicKeys.from_bytes(read_bytes(path, "public key file"), str(path))


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) a directory only its owner may enter (0700).

    An existing directory is narrowed too: a node's state (its database, keys, tokens and
    log) lives there, and a file's own mode is no help where the directory lets others
    replace it."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode != PRIVATE_DIR:
        os.chmod(path, PRIVATE_DIR)
    return path


def private_file(path: Path, append: bool = True) -> int:
    """Open ``path`` for writing (appending by default), created 0600 if missing and narrowed
    to 0600 if it exists; returns the descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_partials(directory: Path, now: float | None = None) -> list[Path]:
    """Delete the partial files earlier writes left in ``directory`` (their process died
    before renaming or removing them); returns what was removed. Only the caller's own
    files are touched, and a partial file whose process still runs is left unless nobody
    has written to it for ``STALE_AFTER`` seconds (its pid was reused)."""
    removed: list[Path] = []
    # The file system's clock, not a node's: it is compared with the times the kernel wrote.
    now = time.time() if now is None else now
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = PARTIAL.match(name)
        if match is None:
            continue
        path = directory / name
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            continue
        if _alive(int(match["pid"])) and now - info.st_mtime < STALE_AFTER:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (also through a symbolic or hard link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(
    path: Path, mode: int = 0o644, overwrite: bool = True, source: Path | None = None
) -> Iterator[IO[bytes]]:
    """Yield a file that becomes ``path`` (with ``mode``) only if the block completes.

    ``source``: the file the block reads from; writing over it is refused (the rename
    would put the output where the input was, and the input would be lost)."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InvalidInput(f"{path}: directory {directory} does not exist")
    if path.is_dir():
        raise InvalidInput(f"{path}: is a directory; name the file to write")
    if source is not None and same_file(source, path):
        raise InvalidInput(f"{path}: is the input file {source}; write the output to another file")
    if not overwrite and path.exists():
        raise InvalidInput(f"{path}: already exists (use --force to replace it)")
    remove_stale_partials(directory)
    while True:  # the name's own part shortened: the whole must fit a directory entry (255 bytes)
        tmp = directory / f".{path.name[:64]}.{os.getpid()}-{secrets.token_hex(4)}.gsomia.partial"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE)
        except FileExistsError:
            continue
        except OSError as exc:
            raise InvalidInput(f"{path}: cannot write in {directory} ({exc.strerror})") from None
        break
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), mode)  # widened (a public key) only once whole, as it takes the name
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
