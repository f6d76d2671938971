"""Where an envelope is opened from: a stream read block by block, or bytes in memory.

Both give ``Opener`` the same reads and raise the same ``Tampered`` when an envelope
falls short; the in-memory one skips a file object's calls on every read.
"""

from __future__ import annotations

from typing import IO

from gsomia.core.envelope.format import (
    MAX_BLOCK,
    SEGMENT_HEAD,
    U32,
    Tampered,
    fill_view,
    read_block,
    read_exact,
    read_upto,
)


class Source:
    """Where ``Opener`` reads an envelope from; every read raises ``Tampered`` if it falls short."""

    __slots__ = ()

    def upto(self, n: int) -> bytes:
        """Up to ``n`` bytes: fewer only at the end."""
        raise NotImplementedError

    def block(self, what: str) -> bytes:
        """A ``u32``-length-prefixed block of at most ``MAX_BLOCK`` bytes."""
        raise NotImplementedError

    def head(self, index: int) -> tuple[int, int]:
        """A segment's (flag, length)."""
        raise NotImplementedError

    def segment(self, index: int, length: int) -> memoryview:
        """The next ``length`` bytes (valid until the next call)."""
        raise NotImplementedError

    def more(self) -> bool:
        """Whether anything follows."""
        raise NotImplementedError


class Stream(Source):
    """A file or pipe, read block by block; segments into one reused buffer."""

    __slots__ = ("buffer", "src")

    def __init__(self, src: IO[bytes]) -> None:
        self.src = src
        self.buffer = memoryview(bytearray(0))  # sized by the first segment: small items need no full-size buffer

    def upto(self, n: int) -> bytes:
        return read_upto(self.src, n)

    def block(self, what: str) -> bytes:
        return read_block(self.src, what)

    def segment(self, index: int, length: int) -> memoryview:
        if len(self.buffer) < length:
            self.buffer = memoryview(bytearray(length))
        view = self.buffer[:length]
        if fill_view(self.src, view) != length:
            raise Tampered(f"truncated in segment {index}")
        return view

    def head(self, index: int) -> tuple[int, int]:
        flag, length = SEGMENT_HEAD.unpack(read_exact(self.src, SEGMENT_HEAD.size, f"segment {index} header"))
        return flag, length

    def more(self) -> bool:
        return bool(self.src.read(1))


class Memory(Source):
    """An envelope held in memory: the same reads and errors, without a file object's calls."""

    __slots__ = ("data", "pos", "view")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.view = memoryview(data)
        self.pos = 0

    def upto(self, n: int) -> bytes:
        start = self.pos
        self.pos = min(start + n, len(self.data))
        return self.data[start : self.pos]

    def block(self, what: str) -> bytes:
        data, start = self.data, self.pos + 4
        if start > len(data):
            raise Tampered(f"truncated in the {what} length")
        (n,) = U32.unpack_from(data, start - 4)
        if n > MAX_BLOCK:
            raise Tampered(f"{what} length {n} exceeds {MAX_BLOCK}")
        end = self.pos = start + n
        if end > len(data):
            raise Tampered(f"truncated in the {what}")
        return data[start:end]

    def segment(self, index: int, length: int) -> memoryview:
        start = self.pos
        if start + length > len(self.data):
            raise Tampered(f"truncated in segment {index}")
        self.pos = start + length
        return self.view[start : start + length]

    def head(self, index: int) -> tuple[int, int]:
        start = self.pos
        if start + SEGMENT_HEAD.size > len(self.data):
            raise Tampered(f"truncated in the segment {index} header")
        self.pos = start + SEGMENT_HEAD.size
        flag, length = SEGMENT_HEAD.unpack_from(self.data, start)
        return flag, length

    def more(self) -> bool:
        return self.pos < len(self.data)
