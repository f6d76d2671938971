"""Sealed envelopes: protection that travels with the data (format v1).

``seal`` encrypts a payload in AES-256-GCM segments under a fresh data key, wraps
that key for each recipient with HPKE (RFC 9180), binds the label into every
segment's associated data and into the key wrap, and signs the exact stored
header, label and key-block bytes plus a digest of every segment tag with the
originator's key (Ed25519, and ML-DSA-65 as well in the pq-hybrid suite).

``open`` refuses anything it cannot fully verify with one specific error:
``UnsupportedVersion``, ``LabelInvalid``, ``UnknownSigner``, ``NotARecipient`` or
``Tampered``. The byte layout is in ``docs/envelope-format.md``. All primitives
are pyca/cryptography's; this module only frames and orders them.

Streaming: ``seal_stream``/``open_stream`` work segment by segment in constant
memory. ``open_stream`` writes each segment as soon as its GCM tag verifies, but
the originator's signature is only known at the end: the caller must discard the
output unless it returns (the CLI writes to a temporary file and renames it last).
"""

from __future__ import annotations

import binascii
import hashlib
import io
import json
import os
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gsomia.core import merkle
from gsomia.core.agreement.terms import Agreement
from gsomia.core.canonical import canonical, canonical_text, loads
from gsomia.core.errors import IntegrityFailure
from gsomia.core.keys import PrivateKeys, PublicKeys, kem_suite
from gsomia.core.label import Label, LabelInvalid
from gsomia.core.label import validate as validate_label

__all__ = [
    "EnvelopeError",
    "LabelInvalid",
    "NotARecipient",
    "Opener",
    "Sealer",
    "Tampered",
    "UnknownSigner",
    "UnsupportedVersion",
    "open",
    "open_stream",
    "seal",
    "seal_stream",
]

MAGIC: Final = b"GSOM"
VERSION: Final = 1
DEFAULT_SEGMENT: Final = 1 << 20
MAX_SEGMENT: Final = 64 << 20
MAX_BLOCK: Final = 1 << 20  # header, label, key block and trailer are small
TAG: Final = 16
MORE, FINAL = 0, 1
_FLAG_BYTE = (b"\x00", b"\x01")  # bytes([flag]) for MORE, FINAL
_U32 = struct.Struct(">I")
_SEGMENT_HEAD = struct.Struct(">BI")
_WRAP_INFO = b"gsomia/envelope/v1/wrap\x00"
_AAD = b"gsomia/envelope/v1/segment\x00"
_SIGNED = b"gsomia/envelope/v1/batch-root\x00"
_MAX_BATCH = 1 << 32
_HASH = 32  # SHA-256
_MAX_PATH = 64  # hashes in an audit path (a tree below 2**32 leaves needs at most 32)
_LEAF = b"gsomia/envelope/v1/leaf\x00"
_EPOCH_INFO = b"gsomia/envelope/v1/epoch\x00"
_MLDSA_CONTEXT = b"gsomia/envelope/v1"
_HEADER_KEYS: Final = frozenset({"v", "suite", "agreement", "item_id", "originator", "signer", "segment_size"})
_BATCH_KEYS: Final = frozenset({"size", "index", "path"})
_TRAILER_KEYS: Final = {
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


_canonical = canonical  # UTF-8 JSON, keys sorted, no whitespace, non-ASCII as itself
_text = json.encoder.encode_basestring  # one JSON string, as the canonical encoder writes it


def _decode_canonical(raw: bytes, what: str) -> Any:
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


def _read_upto(src: IO[bytes], n: int) -> bytes:
    """Read ``n`` bytes, fewer only at the end of the source (pipes return short reads)."""
    data = src.read(n) or b""
    while 0 < len(data) < n:
        more = src.read(n - len(data))
        if not more:
            break
        data += more
    return data


def _read_exact(src: IO[bytes], n: int, what: str) -> bytes:
    data = _read_upto(src, n)
    if len(data) != n:
        raise Tampered(f"truncated in the {what}")
    return data


def _read_block(src: IO[bytes], what: str) -> bytes:
    (n,) = _U32.unpack(_read_exact(src, 4, f"{what} length"))
    if n > MAX_BLOCK:
        raise Tampered(f"{what} length {n} exceeds {MAX_BLOCK}")
    return _read_exact(src, n, what)


def _block(raw: bytes) -> bytes:
    return _U32.pack(len(raw)) + raw


def _nonce(index: int) -> bytes:
    # A fresh data key per envelope: a counter nonce is unique under that key.
    return b"\x00\x00\x00\x00" + index.to_bytes(8, "big")


def _aad_prefix(header: bytes, label: bytes) -> bytes:
    return _AAD + _block(header) + _block(label)


def _fill(src: IO[bytes], buf: bytearray) -> int:
    """Read until ``buf`` is full or the source ends (pipes return short reads)."""
    return _fill_view(src, memoryview(buf))


def _fill_view(src: IO[bytes], view: memoryview) -> int:
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
        return _canonical(
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


# --- seal --------------------------------------------------------------------------


class _Epoch:
    """One sender-side epoch key for one recipient key: wrapped by HPKE once, used many times.

    Also holds that recipient's key-block entry around the one value that changes per
    envelope (the wrapped data key), already in canonical JSON: keys sorted, strings as
    ``_canonical`` writes them (base64 needs no escapes)."""

    __slots__ = ("aead", "blob", "entry_head", "entry_tail", "uses")

    def __init__(self, blob: bytes, key: bytes, recipient: PublicKeys) -> None:
        self.blob = blob
        self.aead = AESGCM(key)
        self.uses = 0
        self.entry_head = '{"epoch":"' + _b64(blob) + '","key":"'
        self.entry_tail = '","kid":' + _text(recipient.kid) + ',"party":' + _text(recipient.party) + "}"


class Sealer:
    """Seals items from one originator under one agreement.

    Public-key work dominates a small item, so a ``Sealer`` amortises it without
    weakening any envelope: (1) per recipient key it draws an *epoch key*, wraps it
    with HPKE once, and wraps each envelope's fresh data key under it with AES-GCM
    (every envelope still carries the HPKE-wrapped epoch key, so it opens on its
    own with the recipient's private key); (2) ``seal_batch`` signs the RFC 9162
    Merkle root of a batch once and gives each envelope its inclusion proof.
    An epoch key is replaced after ``epoch_limit`` envelopes.
    """

    def __init__(self, originator: PrivateKeys, agreement: Agreement, epoch_limit: int = 1 << 16) -> None:
        if originator.suite != agreement.suite:
            raise EnvelopeError(
                f"{agreement.id} requires the {agreement.suite} suite; the originator key is {originator.suite}"
            )
        self.originator = originator
        self.agreement = agreement
        self.kid = originator.public().kid
        self.epoch_limit = epoch_limit
        self._hpke = kem_suite(agreement.suite)
        self._epochs: dict[str, _Epoch] = {}
        self._headers: dict[int, tuple[str, str]] = {}

    def rotate(self) -> None:
        """Forget every epoch key: the next envelope to each recipient starts a new one."""
        self._epochs.clear()

    def _epoch(self, recipient: PublicKeys) -> _Epoch:
        epoch = self._epochs.get(recipient.kid)
        if epoch is None or epoch.uses >= self.epoch_limit:
            key = AESGCM.generate_key(bit_length=256)
            info = _EPOCH_INFO + self.kid.encode() + recipient.kid.encode()
            epoch = _Epoch(self._hpke.encrypt(key, recipient.kem_key(), info), key, recipient)
            self._epochs[recipient.kid] = epoch
        epoch.uses += 1
        return epoch

    def _check(self, label: Label, recipients: Sequence[PublicKeys], segment_size: int) -> None:
        validate_label(label, self.agreement)
        if self.originator.party != label.originator:
            raise EnvelopeError(
                f"the key is {self.originator.party}'s but the label names {label.originator} as originator"
            )
        if not recipients:
            raise EnvelopeError("an envelope needs at least one recipient key")
        allowed = {*label.releasable_to, label.originator}
        for r in recipients:
            if r.suite != self.agreement.suite:
                raise EnvelopeError(
                    f"{self.agreement.id} requires the {self.agreement.suite} suite; {r.party}'s key is {r.suite}"
                )
            if r.party not in allowed:
                raise EnvelopeError(f"the item is not releasable to {r.party} (R5)")
        if not 1 <= segment_size <= MAX_SEGMENT:
            raise EnvelopeError(f"segment size must be between 1 and {MAX_SEGMENT} bytes")

    def _header(self, item_id: str, segment_size: int) -> bytes:
        """``Header(...).to_bytes()``: per segment size only the item id changes, so the
        rest of the canonical JSON is made once (by ``Header.to_bytes`` itself)."""
        around = self._headers.get(segment_size)
        if around is None:
            a = self.agreement
            whole = Header(a.suite, a.id, "", self.originator.party, self.kid, segment_size).to_bytes().decode()
            at = whole.index('"item_id":""') + len('"item_id":')  # quotes inside strings are escaped
            around = self._headers[segment_size] = (whole[:at], whole[at + 2 :])
        return (around[0] + _text(item_id) + around[1]).encode("utf-8")

    def _start(
        self, label: Label, recipients: Sequence[PublicKeys], segment_size: int
    ) -> tuple[bytes, AESGCM, bytes, bytes]:
        """Check, draw the data key, wrap it for every recipient.

        Returns (magic to key block, framed; the data key's AEAD; segment AAD prefix;
        the first three parts of the leaf data: SHA-256 of header, label, key block)."""
        self._check(label, recipients, segment_size)
        header_bytes = self._header(label.item_id, segment_size)
        label_bytes = label.to_bytes()
        header_hash = hashlib.sha256(header_bytes).digest()
        label_hash = hashlib.sha256(label_bytes).digest()
        data_key = AESGCM.generate_key(bit_length=256)
        info = _WRAP_INFO + header_hash + label_hash
        entries = []
        for r in recipients:
            epoch = self._epoch(r)
            nonce = os.urandom(12)
            sealed_key = nonce + epoch.aead.encrypt(nonce, data_key, info)
            entries.append((r.kid, epoch.entry_head + _b64(sealed_key) + epoch.entry_tail))
        entries.sort(key=lambda e: e[0])  # stable: as sorting the entries by "kid"
        keyblock = ("[" + ",".join(e[1] for e in entries) + "]").encode("utf-8")
        head = MAGIC + bytes([VERSION]) + _block(header_bytes) + _block(label_bytes) + _block(keyblock)
        leaf_start = _LEAF + header_hash + label_hash + hashlib.sha256(keyblock).digest()
        return head, AESGCM(data_key), _aad_prefix(header_bytes, label_bytes), leaf_start

    def _body(
        self, src: IO[bytes], dst: IO[bytes], label: Label, recipients: Sequence[PublicKeys], segment_size: int
    ) -> tuple[bytes, int]:
        """Write everything but the trailer; return (leaf hash, payload size)."""
        head, aead, prefix, leaf_start = self._start(label, recipients, segment_size)
        dst.write(head)
        tags = hashlib.sha256()
        current, following = bytearray(segment_size), bytearray(segment_size)
        n = _fill(src, current)
        index = total = 0
        while True:
            m = _fill(src, following) if n == segment_size else 0
            flag = FINAL if m == 0 else MORE
            ct = aead.encrypt(_nonce(index), memoryview(current)[:n], prefix + index.to_bytes(8, "big") + bytes([flag]))
            dst.write(_SEGMENT_HEAD.pack(flag, len(ct)))
            dst.write(ct)
            tags.update(ct[-TAG:])
            total += n
            index += 1
            if flag == FINAL:
                break
            current, following, n = following, current, m
        return merkle.leaf_hash(leaf_start + index.to_bytes(8, "big") + tags.digest()), total

    def _body_bytes(
        self, payload: bytes | memoryview, label: Label, recipients: Sequence[PublicKeys], segment_size: int
    ) -> tuple[list[bytes], bytes]:
        """The same bytes as ``_body`` for a payload in memory: (parts to join, leaf hash)."""
        head, aead, prefix, leaf_start = self._start(label, recipients, segment_size)
        parts = [head]
        view = memoryview(payload)
        size = len(view)
        count = max(1, -(-size // segment_size))  # a last partial segment, or one empty one
        tags = hashlib.sha256()
        for index in range(count):
            flag = FINAL if index == count - 1 else MORE
            chunk = view[index * segment_size : (index + 1) * segment_size]
            ct = aead.encrypt(_nonce(index), chunk, prefix + index.to_bytes(8, "big") + bytes([flag]))
            parts.append(_SEGMENT_HEAD.pack(flag, len(ct)))
            parts.append(ct)
            tags.update(ct[-TAG:])
        return parts, merkle.leaf_hash(leaf_start + count.to_bytes(8, "big") + tags.digest())

    def _signatures(self, size: int, root: bytes) -> dict[str, str]:
        message = _signed_message(size, root)
        sigs = {"ed25519": _b64(self.originator.ed25519.sign(message))}
        if self.agreement.suite == "pq-hybrid":
            assert self.originator.mldsa is not None
            sigs["mldsa65"] = _b64(self.originator.mldsa.sign(message, _MLDSA_CONTEXT))
        return sigs

    def seal_stream(
        self,
        src: IO[bytes],
        dst: IO[bytes],
        label: Label,
        recipients: Sequence[PublicKeys],
        segment_size: int = DEFAULT_SEGMENT,
    ) -> int:
        """Seal ``src`` into ``dst`` in constant memory; returns the payload size."""
        if isinstance(src, io.BytesIO):  # in memory already: no segment-size buffers, no copy
            with src.getbuffer() as held, held[min(src.tell(), len(held)) :] as payload:
                parts, leaf = self._body_bytes(payload, label, recipients, segment_size)
                total = len(payload)
            src.seek(0, io.SEEK_END)  # consumed, as a read to the end would leave it
            dst.write(b"".join(parts))
            dst.write(_trailer(1, 0, [], self._signatures(1, leaf)))
            return total
        leaf, total = self._body(src, dst, label, recipients, segment_size)
        dst.write(_trailer(1, 0, [], self._signatures(1, leaf)))
        return total

    def seal(
        self, payload: bytes, label: Label, recipients: Sequence[PublicKeys], segment_size: int = DEFAULT_SEGMENT
    ) -> bytes:
        parts, leaf = self._body_bytes(payload, label, recipients, segment_size)
        parts.append(_trailer(1, 0, [], self._signatures(1, leaf)))
        return b"".join(parts)

    def seal_batch(
        self,
        items: Sequence[tuple[bytes, Label]],
        recipients: Sequence[PublicKeys],
        segment_size: int = DEFAULT_SEGMENT,
    ) -> list[bytes]:
        """Seal many items with one signature over the Merkle root of their envelopes."""
        bodies: list[list[bytes]] = []
        leaves: list[bytes] = []
        for payload, label in items:
            parts, leaf = self._body_bytes(payload, label, recipients, segment_size)
            bodies.append(parts)
            leaves.append(leaf)
        if not leaves:
            return []
        size = len(leaves)
        root, paths = merkle.root_and_paths(leaves)
        sigs = self._signatures(size, root)
        out = []
        for i, parts in enumerate(bodies):
            parts.append(_trailer(size, i, paths[i], sigs))
            out.append(b"".join(parts))
        return out


def _signed_message(size: int, root: bytes) -> bytes:
    # The batch size is signed with the root: an RFC 9162 path alone fits several
    # (index, size) pairs (index 1 of 2 and index 2 of 3 compute the same root), and
    # the trailer that carries them is not otherwise signed.
    return _SIGNED + size.to_bytes(8, "big") + root


def _trailer(size: int, index: int, path: Sequence[bytes], sigs: dict[str, str]) -> bytes:
    """``block(canonical({"batch": {"size", "index", "path": base64(path hashes)}, **sigs}))``,
    written out: keys in sorted order, integers and base64 text need no escaping."""
    signed = ",".join(f'"{name}":"{sig}"' for name, sig in sorted(sigs.items()))
    hashes = _b64(b"".join(path))
    return _block(f'{{"batch":{{"index":{index},"path":"{hashes}","size":{size}}},{signed}}}'.encode("ascii"))


def _b64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode("ascii")  # base64.b64encode


def seal_stream(
    src: IO[bytes],
    dst: IO[bytes],
    label: Label,
    originator: PrivateKeys,
    recipients: Sequence[PublicKeys],
    agreement: Agreement,
    segment_size: int = DEFAULT_SEGMENT,
) -> int:
    """Seal ``src`` into ``dst`` (one-shot; a ``Sealer`` amortises key work across items)."""
    return Sealer(originator, agreement).seal_stream(src, dst, label, recipients, segment_size)


def seal(
    payload: bytes,
    label: Label,
    originator: PrivateKeys,
    recipients: Sequence[PublicKeys],
    agreement: Agreement,
    segment_size: int = DEFAULT_SEGMENT,
) -> bytes:
    """Seal a payload held in memory (one-shot)."""
    return Sealer(originator, agreement).seal(payload, label, recipients, segment_size)


# --- open --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    """What ``open_stream`` verified: the label, who signed, how much was written."""

    label: Label
    signer: PublicKeys
    size: int


class _Source:
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


class _Stream(_Source):
    """A file or pipe, read block by block; segments into one reused buffer."""

    __slots__ = ("buffer", "src")

    def __init__(self, src: IO[bytes]) -> None:
        self.src = src
        self.buffer = memoryview(bytearray(0))  # sized by the first segment: small items need no full-size buffer

    def upto(self, n: int) -> bytes:
        return _read_upto(self.src, n)

    def block(self, what: str) -> bytes:
        return _read_block(self.src, what)

    def segment(self, index: int, length: int) -> memoryview:
        if len(self.buffer) < length:
            self.buffer = memoryview(bytearray(length))
        view = self.buffer[:length]
        if _fill_view(self.src, view) != length:
            raise Tampered(f"truncated in segment {index}")
        return view

    def head(self, index: int) -> tuple[int, int]:
        flag, length = _SEGMENT_HEAD.unpack(_read_exact(self.src, _SEGMENT_HEAD.size, f"segment {index} header"))
        return flag, length

    def more(self) -> bool:
        return bool(self.src.read(1))


class _Memory(_Source):
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
        (n,) = _U32.unpack_from(data, start - 4)
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
        if start + _SEGMENT_HEAD.size > len(self.data):
            raise Tampered(f"truncated in the segment {index} header")
        self.pos = start + _SEGMENT_HEAD.size
        flag, length = _SEGMENT_HEAD.unpack_from(self.data, start)
        return flag, length

    def more(self) -> bool:
        return self.pos < len(self.data)


def _read_header(src: _Source, agreement: Agreement) -> tuple[dict[str, Any], bytes]:
    start = src.upto(5)
    if not start or len(start) < 5 or start[:4] != MAGIC:
        raise UnsupportedVersion("not a gsomia envelope")
    if start[4] != VERSION:
        raise UnsupportedVersion(f"envelope format version {start[4]} is not supported (this build reads v{VERSION})")
    header_bytes = src.block("header")
    header = _decode_canonical(header_bytes, "header")
    if not isinstance(header, dict) or header.keys() != _HEADER_KEYS or header["v"] != VERSION:
        raise Tampered("header fields are not those of format v1")
    if not (
        isinstance(header["suite"], str)
        and isinstance(header["agreement"], str)
        and isinstance(header["item_id"], str)
        and isinstance(header["originator"], str)
        and isinstance(header["signer"], str)
    ):
        raise Tampered("header fields are not those of format v1")
    if header["suite"] not in ("classic", "pq-hybrid"):
        raise UnsupportedVersion(f"suite {header['suite']!r} is not supported")
    if header["suite"] != agreement.suite:
        raise UnsupportedVersion(
            f"{agreement.id} requires the {agreement.suite} suite; envelope uses {header['suite']}"
        )
    size = header["segment_size"]
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_SEGMENT:
        raise Tampered("header segment_size is out of range")
    return header, header_bytes


def _unb64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise Tampered(f"{what} is not base64 text")
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except ValueError:  # incl. binascii.Error; non-ASCII text
        raise Tampered(f"{what} is not base64") from None
    # One spelling per value: the trailer is not signed, so unused bits must not vary.
    if _b64(raw) != value:
        raise Tampered(f"{what} is not canonical base64")
    return raw


class Opener:
    """Opens envelopes for one recipient key, trusting a set of originator keys.

    Caches what it has verified, keyed on the exact bytes: unwrapped epoch keys
    (by the exact base64 text of their HPKE ciphertext and the signer's key id,
    which the HPKE info binds) and batch roots whose signatures verified (by root
    and signature text). A cache hit skips public-key work, never a check.
    """

    _CACHE_LIMIT = 4096

    def __init__(
        self,
        recipient: PrivateKeys | Sequence[PrivateKeys],
        trusted: Iterable[PublicKeys],
        agreement: Agreement,
        retired: Mapping[str, datetime | None] | None = None,
    ) -> None:
        """``recipient``: this node's key, or its current key first and then the keys it
        retired (items sealed before a rotation stay readable). ``retired``: kid of a
        trusted key -> the instant it was retired; such a key is trusted only for items
        released before that instant (``keyring.KeyHistory.windows``)."""
        own = [recipient] if isinstance(recipient, PrivateKeys) else list(recipient)
        if not own:
            raise EnvelopeError("an opener needs this node's key")
        for key in own:
            if key.suite != agreement.suite:
                raise EnvelopeError(
                    f"{agreement.id} requires the {agreement.suite} suite; the recipient key is {key.suite}"
                )
        self.recipient = own[0]
        self.agreement = agreement
        self.kid = self.recipient.public().kid
        self._own = {key.public().kid: key for key in reversed(own)}
        self.trusted = {k.kid: k for k in trusted}
        self.retired = dict(retired or {})
        self._hpke = kem_suite(agreement.suite)
        self._epochs: dict[tuple[str, str, str], AESGCM] = {}
        self._roots: set[tuple[str, bytes, str, str]] = set()
        self._trailer_keys = _TRAILER_KEYS[agreement.suite]

    def _epoch_key(self, text: object, signer_kid: str, own_kid: str) -> AESGCM:
        """The epoch key whose HPKE ciphertext ``text`` is (base64), unwrapped with this node's key ``own_kid``."""
        if isinstance(text, str):
            cached = self._epochs.get((text, signer_kid, own_kid))
            if cached is not None:
                return cached
        blob = _unb64(text, "epoch key")
        assert isinstance(text, str)
        info = _EPOCH_INFO + signer_kid.encode() + own_kid.encode()
        try:
            key = self._hpke.decrypt(blob, self._own[own_kid].kem_key(), info)
        except (ValueError, InvalidTag):
            raise Tampered("the epoch key does not open with this recipient key") from None
        if len(key) != 32:
            raise Tampered("the epoch key has the wrong length")
        if len(self._epochs) >= self._CACHE_LIMIT:
            self._epochs.pop(next(iter(self._epochs)))
        aead = self._epochs[text, signer_kid, own_kid] = AESGCM(key)
        return aead

    def _verify_root(self, signer: PublicKeys, size: int, root: bytes, trailer: dict[str, Any]) -> None:
        pq = self.agreement.suite == "pq-hybrid"
        ed = trailer.get("ed25519")
        ml = trailer.get("mldsa65", "")
        message = _signed_message(size, root)
        key = (signer.kid, message, str(ed), str(ml))
        if key in self._roots:
            return
        try:
            signer.ed25519.verify(_unb64(ed, "signature"), message)
            if pq:
                assert signer.mldsa is not None
                signer.mldsa.verify(_unb64(ml, "signature"), message, _MLDSA_CONTEXT)
        except InvalidSignature:
            raise Tampered("the originator's signature does not verify") from None
        if len(self._roots) >= self._CACHE_LIMIT:
            self._roots.clear()
        self._roots.add(key)

    def open_stream(self, src: IO[bytes], dst: IO[bytes]) -> Opened:
        """Verify and decrypt ``src`` into ``dst``. On any error ``dst`` must be discarded."""
        return Opened(*self._open(_Stream(src), dst.write))

    def open(self, data: bytes) -> tuple[Label, bytes]:
        out: list[bytes] = []
        label = self._open(_Memory(data if type(data) is bytes else bytes(data)), out.append)[0]
        return label, b"".join(out)

    def _open(self, src: _Source, write: Callable[[bytes], object]) -> tuple[Label, PublicKeys, int]:
        """Every check of ``docs/envelope-format.md``, in its order; (label, signer, size)."""
        agreement = self.agreement
        header, header_bytes = _read_header(src, agreement)
        label_bytes = src.block("label")
        try:
            label = Label.from_bytes(label_bytes)
        except LabelInvalid as exc:
            raise LabelInvalid(f"{exc} (envelope label)") from None
        except (ValueError, RecursionError, OverflowError):  # over-long integers, deep nesting, dates out of range
            raise LabelInvalid("label: not a valid label (envelope label)") from None
        validate_label(label, agreement)
        if (
            label.item_id != header["item_id"]
            or label.agreement != header["agreement"]
            or label.originator != header["originator"]
        ):
            raise Tampered("the label does not belong to this envelope's header")

        signer = self.trusted.get(header["signer"])
        if signer is None:
            raise UnknownSigner(f"signed by key {header['signer']}, which is not among the trusted keys")
        if signer.party != label.originator:
            raise UnknownSigner(f"signed by {signer.party}'s key but the originator is {label.originator}")
        if signer.suite != agreement.suite:
            raise UnknownSigner(f"the trusted key of {signer.party} is not a {agreement.suite} key")
        retired = self.retired.get(signer.kid)
        if retired is not None and label.created_at >= retired:
            raise UnknownSigner(
                f"signed by {signer.party}'s key {signer.kid}, retired at {retired.isoformat()}, "
                f"for an item released at {label.created_at.isoformat()}"
            )

        keyblock = src.block("key block")
        wrapped = _decode_canonical(keyblock, "key block")
        if not isinstance(wrapped, list):
            raise Tampered("key block is not a list")
        entry = None
        for w in wrapped:  # the first entry for one of this node's keys
            if isinstance(w, dict) and isinstance(w.get("kid"), str) and w["kid"] in self._own:
                entry = w
                break
        if entry is None:
            raise NotARecipient(f"the data key is not wrapped for {self.recipient.party}'s key {self.kid}")
        epoch = self._epoch_key(entry.get("epoch"), signer.kid, str(entry["kid"]))
        sealed_key = _unb64(entry.get("key"), "wrapped key")
        header_hash = hashlib.sha256(header_bytes).digest()
        label_hash = hashlib.sha256(label_bytes).digest()
        try:
            data_key = epoch.decrypt(sealed_key[:12], sealed_key[12:], _WRAP_INFO + header_hash + label_hash)
        except (InvalidTag, ValueError):
            raise Tampered("the wrapped data key does not open with this label and header") from None
        if len(data_key) != 32:
            raise Tampered("the wrapped data key has the wrong length")

        aead = AESGCM(data_key)
        prefix = _AAD + _U32.pack(len(header_bytes)) + header_bytes + _U32.pack(len(label_bytes)) + label_bytes
        tags = hashlib.sha256()
        segment_size = header["segment_size"]
        index = total = 0
        while True:
            flag, length = src.head(index)
            if flag not in (MORE, FINAL) or length < TAG or length > segment_size + TAG:
                raise Tampered(f"segment {index} has a malformed header")
            if flag == MORE and length != segment_size + TAG:
                raise Tampered(f"segment {index} is not a full segment but is not marked final")
            segment = src.segment(index, length)
            try:
                plain = aead.decrypt(_nonce(index), segment, prefix + index.to_bytes(8, "big") + _FLAG_BYTE[flag])
            except InvalidTag:
                raise Tampered(f"segment {index} fails authentication (altered, moved, dropped or repeated)") from None
            tags.update(segment[length - TAG :])
            write(plain)
            total += len(plain)
            index += 1
            if flag == FINAL:
                break

        trailer = _decode_canonical(src.block("trailer"), "trailer")
        if src.more():
            raise Tampered("bytes follow the trailer")
        if not isinstance(trailer, dict) or trailer.keys() != self._trailer_keys:
            raise Tampered("the trailer's fields are not those of format v1")
        batch = trailer["batch"]
        if not isinstance(batch, dict) or batch.keys() != _BATCH_KEYS:
            raise Tampered("the trailer's batch proof is malformed")
        size, position = batch["size"], batch["index"]
        if type(size) is not int or type(position) is not int:  # not bool, not float
            raise Tampered("the trailer's batch proof is malformed")
        if not 1 <= size < _MAX_BATCH:
            raise Tampered("the trailer's batch size is out of range")
        hashes = _unb64(batch["path"], "proof")
        if len(hashes) % _HASH or len(hashes) > _MAX_PATH * _HASH:
            raise Tampered("the trailer's batch proof is malformed")
        leaf_data = _LEAF + header_hash + label_hash + hashlib.sha256(keyblock).digest() + index.to_bytes(8, "big")
        leaf = merkle.leaf_hash(leaf_data + tags.digest())
        path = [hashes[i : i + _HASH] for i in range(0, len(hashes), _HASH)]
        root = merkle.root_from_path(leaf, position, size, path)
        if root is None:
            raise Tampered("the batch inclusion proof does not fit its size and index")
        self._verify_root(signer, size, root, trailer)
        return label, signer, total


def open_stream(
    src: IO[bytes],
    dst: IO[bytes],
    recipient: PrivateKeys,
    trusted: Iterable[PublicKeys],
    agreement: Agreement,
) -> Opened:
    """Verify and decrypt ``src`` into ``dst`` (one-shot). On any error ``dst`` must be discarded."""
    return Opener(recipient, trusted, agreement).open_stream(src, dst)


def open(
    data: bytes,
    recipient: PrivateKeys,
    trusted: Iterable[PublicKeys],
    agreement: Agreement,
) -> tuple[Label, bytes]:
    """Verify and decrypt an envelope held in memory: (label, payload) or a specific error."""
    return Opener(recipient, trusted, agreement).open(data)


def peek_label(data: IO[bytes]) -> Label:
    """The label of an envelope, unverified: for routing and display before ``open``."""
    return Label.from_bytes(peek_label_bytes(data))


def peek_label_bytes(data: IO[bytes]) -> bytes:
    """The label block of an envelope as stored, unverified and not parsed."""
    start = data.read(5)
    if not start or start[:4] != MAGIC:
        raise UnsupportedVersion("not a gsomia envelope")
    _read_block(data, "header")
    return _read_block(data, "label")
