"""The envelope's byte format (v1): constants, errors, framing and the canonical blocks.

Shared by sealing and opening, so that both write and read one layout
(``docs/envelope-format.md``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

from gsomia.core.canonical import b64, canonical, canonical_text, loads
from gsomia.core.canonical import unb64 as canonical_unb64
from gsomia.core.errors import IntegrityFailure

MAGIC: Final = b"GSOM"
VERSION: Final = 1
DEFAULT_SEGMENT: Final = 1 << 20
MAX_SEGMENT: Final = 64 << 20
MAX_BLOCK: Final = 1 << 20  # header, label, key block and trailer are small
TAG: Final = 16
MORE, FINAL = 0, 1
FLAG_BYTE = (b"\x00", b"\x01")  # bytes([flag]) for MORE, FINAL
U32 = struct.Struct(">I")
SEGMENT_HEAD = struct.Struct(">BI")
WRAP_INFO = b"gsomia/envelope/v1/wrap\x00"
AAD = b"gsomia/envelope/v1/segment\x00"
SIGNED = b"gsomia/envelope/v1/batch-root\x00"
MAX_BATCH = 1 << 32
HASH = 32  # SHA-256
MAX_PATH = 64  # hashes in an audit path (a tree below 2**32 leaves needs at most 32)
LEAF = b"gsomia/envelope/v1/leaf\x00"
EPOCH_INFO = b"gsomia/envelope/v1/epoch\x00"
MLDSA_CONTEXT = b"gsomia/envelope/v1"
HEADER_KEYS: Final = frozenset({"v", "suite", "agreement", "item_id", "originator", "signer", "segment_size"})
BATCH_KEYS: Final = frozenset({"size", "index", "path"})
TRAILER_KEYS: Final = {
    "classic": frozenset({"batch", "ed25519"}),
    "pq-hybrid": frozenset({"batch", "ed25519", "mldsa65"}),
}


class EnvelopeError(IntegrityFailure):
    """An envelope that cannot be sealed or opened. Never comes with plaintext."""


class Tampered(EnvelopeError):
    """Some byte of the envelope is not what the originator sealed."""


class UnknownSigner(EnvelopeError):
    """The envelope is signed by a key this node does not trust for its originator."""


class NotARecipient(EnvelopeError):
    """The data key is not wrapped for this node's key."""


class UnsupportedVersion(EnvelopeError):
    """Not a gsomia envelope, or a version or suite this build does not accept."""


# --- framing helpers ---------------------------------------------------------------


json_string = json.encoder.encode_basestring  # one JSON string, as the canonical encoder writes it


def decode_canonical(raw: bytes, what: str) -> Any:
    """Decode, re-encode, compare: only the canonical spelling is accepted."""
    try:
        text = raw.decode("utf-8")
        obj = loads(text)
        again = canonical_text(obj)  # compared as text: UTF-8 maps text to bytes one to one
    except (ValueError, RecursionError):  # incl. UnicodeDecodeError, JSONDecodeError, over-long integers
        raise Tampered(f"{what} is not valid JSON") from None
    if again != text:
        raise Tampered(f"{what} is not in canonical form")
    return obj


def read_upto(src: IO[bytes], n: int) -> bytes:
    """Read ``n`` bytes, fewer only at the end of the source (pipes return short reads)."""
    data = src.read(n) or b""
    while 0 < len(data) < n:
        more = src.read(n - len(data))
        if not more:
            break
        data += more
    return data


def read_exact(src: IO[bytes], n: int, what: str) -> bytes:
    data = read_upto(src, n)
    if len(data) != n:
        raise Tampered(f"truncated in the {what}")
    return data


def read_block(src: IO[bytes], what: str) -> bytes:
    (n,) = U32.unpack(read_exact(src, 4, f"{what} length"))
    if n > MAX_BLOCK:
        raise Tampered(f"{what} length {n} exceeds {MAX_BLOCK}")
    return read_exact(src, n, what)


def block(raw: bytes) -> bytes:
    return U32.pack(len(raw)) + raw


def segment_nonce(index: int) -> bytes:
    # A fresh data key per envelope: a counter nonce is unique under that key.
    return b"\x00\x00\x00\x00" + index.to_bytes(8, "big")


def aad_prefix(header: bytes, label: bytes) -> bytes:
    return AAD + block(header) + block(label)


def fill(src: IO[bytes], buf: bytearray) -> int:
    """Read until ``buf`` is full or the source ends (pipes return short reads)."""
    return fill_view(src, memoryview(buf))


def fill_view(src: IO[bytes], view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = src.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


@dataclass(frozen=True, slots=True)
class Header:
    suite: str
    agreement: str
    item_id: str
    originator: str
    signer: str
    segment_size: int

    def to_bytes(self) -> bytes:
        return canonical(
            {
                "v": VERSION,
                "suite": self.suite,
                "agreement": self.agreement,
                "item_id": self.item_id,
                "originator": self.originator,
                "signer": self.signer,
                "segment_size": self.segment_size,
            }
        )


def signed_message(size: int, root: bytes) -> bytes:
    # The batch size is signed with the root: an RFC 9162 path alone fits several
    # (index, size) pairs (index 1 of 2 and index 2 of 3 compute the same root), and
    # the trailer that carries them is not otherwise signed.
    return SIGNED + size.to_bytes(8, "big") + root


def trailer_block(size: int, index: int, path: Sequence[bytes], sigs: dict[str, str]) -> bytes:
    """``block(canonical({"batch": {"size", "index", "path": base64(path hashes)}, **sigs}))``,
    written out: keys in sorted order, integers and base64 text need no escaping."""
    signed = ",".join(f'"{name}":"{sig}"' for name, sig in sorted(sigs.items()))
    hashes = b64(b"".join(path))
    return block(f'{{"batch":{{"index":{index},"path":"{hashes}","size":{size}}},{signed}}}'.encode("ascii"))


def unb64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise Tampered(f"{what} is not base64 text")
    try:
        # One spelling per value: the trailer is not signed, so unused bits must not vary.
        return canonical_unb64(value)
    except ValueError:  # incl. binascii.Error; non-ASCII text
        raise Tampered(f"{what} is not canonical base64") from None
