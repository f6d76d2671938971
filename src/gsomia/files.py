"""File handling for the shell: whole writes or none, and one-line errors.

A security officer must never find half an output file: every write goes to a
temporary file in the destination's directory and is renamed into place only
when complete (rename is atomic on POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from gsomia.errors import InvalidInput
from gsomia.keys import PrivateKeys, PublicKeys


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


@contextlib.contextmanager
def atomic_output(path: Path, mode: int = 0o644, overwrite: bool = True) -> Iterator[IO[bytes]]:
    """Yield a file that becomes ``path`` only if the block completes."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InvalidInput(f"{path}: directory {directory} does not exist")
    if not overwrite and path.exists():
        raise InvalidInput(f"{path}: already exists (use --force to replace it)")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
