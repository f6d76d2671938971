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

import base64
import hashlib
import io
import json
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gsomia import merkle
from gsomia.agreement.terms import Agreement
from gsomia.errors import GsomiaError
from gsomia.keys import PrivateKeys, PublicKeys, kem_suite
from gsomia.label import Label, LabelInvalid
from gsomia.label import validate as validate_label

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
_U32 = struct.Struct(">I")
_SEGMENT_HEAD = struct.Struct(">BI")
_WRAP_INFO = b"gsomia/envelope/v1/wrap\x00"
_AAD = b"gsomia/envelope/v1/segment\x00"
_SIGNED = b"gsomia/envelope/v1/batch-root\x00"
_MAX_BATCH = 1 << 32
_LEAF = b"gsomia/envelope/v1/leaf\x00"
_EPOCH_INFO = b"gsomia/envelope/v1/epoch\x00"
_MLDSA_CONTEXT = b"gsomia/envelope/v1"


class EnvelopeError(GsomiaError):
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


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _decode_canonical(raw: bytes, what: str) -> Any:
    try:
        obj = json.loads(raw.decode("utf-8"))
        canonical = _canonical(obj)
    except (ValueError, RecursionError):  # incl. UnicodeDecodeError, JSONDecodeError, over-long integers
        raise Tampered(f"{what} is not valid JSON") from None
    if canonical != raw:
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


def _wrap_info(header: bytes, label: bytes) -> bytes:
    return _WRAP_INFO + hashlib.sha256(header).digest() + hashlib.sha256(label).digest()


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
    """One sender-side epoch key for one recipient key: wrapped by HPKE once, used many times."""

    __slots__ = ("aead", "blob", "uses")

    def __init__(self, blob: bytes, key: bytes) -> None:
        self.blob = blob
        self.aead = AESGCM(key)
        self.uses = 0


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

    def rotate(self) -> None:
        """Forget every epoch key: the next envelope to each recipient starts a new one."""
        self._epochs.clear()

    def _epoch(self, recipient: PublicKeys) -> _Epoch:
        epoch = self._epochs.get(recipient.kid)
        if epoch is None or epoch.uses >= self.epoch_limit:
            key = AESGCM.generate_key(bit_length=256)
            info = _EPOCH_INFO + self.kid.encode() + recipient.kid.encode()
            epoch = _Epoch(self._hpke.encrypt(key, recipient.kem_key(), info), key)
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

    def _body(
        self, src: IO[bytes], dst: IO[bytes], label: Label, recipients: Sequence[PublicKeys], segment_size: int
    ) -> tuple[bytes, int]:
        """Write everything but the trailer; return (leaf hash, payload size)."""
        self._check(label, recipients, segment_size)
        header = Header(
            self.agreement.suite, self.agreement.id, label.item_id, label.originator, self.kid, segment_size
        )
        header_bytes = header.to_bytes()
        label_bytes = label.to_bytes()
        data_key = AESGCM.generate_key(bit_length=256)
        info = _wrap_info(header_bytes, label_bytes)
        wrapped = []
        for r in recipients:
            epoch = self._epoch(r)
            nonce = os.urandom(12)
            sealed_key = nonce + epoch.aead.encrypt(nonce, data_key, info)
            wrapped.append({"party": r.party, "kid": r.kid, "epoch": _b64(epoch.blob), "key": _b64(sealed_key)})
        wrapped.sort(key=lambda w: w["kid"])
        keyblock = _canonical(wrapped)
        dst.write(MAGIC + bytes([VERSION]) + _block(header_bytes) + _block(label_bytes) + _block(keyblock))

        aead = AESGCM(data_key)
        prefix = _aad_prefix(header_bytes, label_bytes)
        tags = hashlib.sha256()
        size = segment_size
        if isinstance(src, io.BytesIO):  # in memory: a small item needs no full-size (zeroed) buffers
            with src.getbuffer() as held:
                size = max(0, min(segment_size, len(held) - src.tell()))
        current, following = bytearray(size), bytearray(size)
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
        leaf = merkle.leaf_hash(_leaf_data(header_bytes, label_bytes, keyblock, index, tags.digest()))
        return leaf, total

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
        leaf, total = self._body(src, dst, label, recipients, segment_size)
        dst.write(_trailer(1, 0, [], self._signatures(1, leaf)))
        return total

    def seal(
        self, payload: bytes, label: Label, recipients: Sequence[PublicKeys], segment_size: int = DEFAULT_SEGMENT
    ) -> bytes:
        out = io.BytesIO()
        self.seal_stream(io.BytesIO(payload), out, label, recipients, segment_size)
        return out.getvalue()

    def seal_batch(
        self,
        items: Sequence[tuple[bytes, Label]],
        recipients: Sequence[PublicKeys],
        segment_size: int = DEFAULT_SEGMENT,
    ) -> list[bytes]:
        """Seal many items with one signature over the Merkle root of their envelopes."""
        bodies: list[bytes] = []
        leaves: list[bytes] = []
        for payload, label in items:
            out = io.BytesIO()
            leaf, _ = self._body(io.BytesIO(payload), out, label, recipients, segment_size)
            bodies.append(out.getvalue())
            leaves.append(leaf)
        if not leaves:
            return []
        size = len(leaves)
        sigs = self._signatures(size, merkle.root(leaves))
        paths = merkle.inclusion_paths(leaves)
        return [body + _trailer(size, i, paths[i], sigs) for i, body in enumerate(bodies)]


def _signed_message(size: int, root: bytes) -> bytes:
    # The batch size is signed with the root: an RFC 9162 path alone fits several
    # (index, size) pairs (index 1 of 2 and index 2 of 3 compute the same root), and
    # the trailer that carries them is not otherwise signed.
    return _SIGNED + size.to_bytes(8, "big") + root


def _leaf_data(header: bytes, label: bytes, keyblock: bytes, count: int, tag_digest: bytes) -> bytes:
    return (
        _LEAF
        + hashlib.sha256(header).digest()
        + hashlib.sha256(label).digest()
        + hashlib.sha256(keyblock).digest()
        + count.to_bytes(8, "big")
        + tag_digest
    )


def _trailer(size: int, index: int, path: Sequence[bytes], sigs: dict[str, str]) -> bytes:
    batch = {"size": size, "index": index, "path": [_b64(p) for p in path]}
    return _block(_canonical({"batch": batch, **sigs}))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


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


def _read_header(src: IO[bytes], agreement: Agreement) -> tuple[dict[str, Any], bytes]:
    start = _read_upto(src, 5)
    if not start or len(start) < 5 or start[:4] != MAGIC:
        raise UnsupportedVersion("not a gsomia envelope")
    if start[4] != VERSION:
        raise UnsupportedVersion(f"envelope format version {start[4]} is not supported (this build reads v{VERSION})")
    header_bytes = _read_block(src, "header")
    header = _decode_canonical(header_bytes, "header")
    expected = {"v", "suite", "agreement", "item_id", "originator", "signer", "segment_size"}
    if not isinstance(header, dict) or set(header) != expected or header["v"] != VERSION:
        raise Tampered("header fields are not those of format v1")
    if not all(isinstance(header[k], str) for k in ("suite", "agreement", "item_id", "originator", "signer")):
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
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise Tampered(f"{what} is not base64") from None
    # One spelling per value: the trailer is not signed, so unused bits must not vary.
    if _b64(raw) != value:
        raise Tampered(f"{what} is not canonical base64")
    return raw


class Opener:
    """Opens envelopes for one recipient key, trusting a set of originator keys.

    Caches what it has verified, keyed on the exact bytes: unwrapped epoch keys
    (by their HPKE ciphertext) and batch roots whose signatures verified (by root
    and signature bytes). A cache hit skips public-key work, never a check.
    """

    _CACHE_LIMIT = 4096

    def __init__(self, recipient: PrivateKeys, trusted: Iterable[PublicKeys], agreement: Agreement) -> None:
        if recipient.suite != agreement.suite:
            raise EnvelopeError(
                f"{agreement.id} requires the {agreement.suite} suite; the recipient key is {recipient.suite}"
            )
        self.recipient = recipient
        self.agreement = agreement
        self.kid = recipient.public().kid
        self.trusted = {k.kid: k for k in trusted}
        self._hpke = kem_suite(agreement.suite)
        self._epochs: dict[bytes, AESGCM] = {}
        self._roots: set[tuple[str, bytes, str, str]] = set()

    def _epoch_key(self, blob: bytes, signer_kid: str) -> AESGCM:
        cached = self._epochs.get(blob)
        if cached is not None:
            return cached
        info = _EPOCH_INFO + signer_kid.encode() + self.kid.encode()
        try:
            key = self._hpke.decrypt(blob, self.recipient.kem_key(), info)
        except (ValueError, InvalidTag):
            raise Tampered("the epoch key does not open with this recipient key") from None
        if len(key) != 32:
            raise Tampered("the epoch key has the wrong length")
        if len(self._epochs) >= self._CACHE_LIMIT:
            self._epochs.pop(next(iter(self._epochs)))
        aead = self._epochs[blob] = AESGCM(key)
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
        agreement = self.agreement
        header, header_bytes = _read_header(src, agreement)
        label_bytes = _read_block(src, "label")
        try:
            label = Label.from_bytes(label_bytes)
        except LabelInvalid as exc:
            raise LabelInvalid(f"{exc} (envelope label)") from None
        except (ValueError, RecursionError, OverflowError):  # over-long integers, deep nesting, dates out of range
            raise LabelInvalid("label: not a valid label (envelope label)") from None
        validate_label(label, agreement)
        if (label.item_id, label.agreement, label.originator) != (
            header["item_id"],
            header["agreement"],
            header["originator"],
        ):
            raise Tampered("the label does not belong to this envelope's header")

        signer = self.trusted.get(header["signer"])
        if signer is None:
            raise UnknownSigner(f"signed by key {header['signer']}, which is not among the trusted keys")
        if signer.party != label.originator:
            raise UnknownSigner(f"signed by {signer.party}'s key but the originator is {label.originator}")
        if signer.suite != agreement.suite:
            raise UnknownSigner(f"the trusted key of {signer.party} is not a {agreement.suite} key")

        keyblock = _read_block(src, "key block")
        wrapped = _decode_canonical(keyblock, "key block")
        if not isinstance(wrapped, list):
            raise Tampered("key block is not a list")
        entry = next((w for w in wrapped if isinstance(w, dict) and w.get("kid") == self.kid), None)
        if entry is None:
            raise NotARecipient(f"the data key is not wrapped for {self.recipient.party}'s key {self.kid}")
        epoch = self._epoch_key(_unb64(entry.get("epoch"), "epoch key"), signer.kid)
        sealed_key = _unb64(entry.get("key"), "wrapped key")
        try:
            data_key = epoch.decrypt(sealed_key[:12], sealed_key[12:], _wrap_info(header_bytes, label_bytes))
        except (InvalidTag, ValueError):
            raise Tampered("the wrapped data key does not open with this label and header") from None
        if len(data_key) != 32:
            raise Tampered("the wrapped data key has the wrong length")

        aead = AESGCM(data_key)
        prefix = _aad_prefix(header_bytes, label_bytes)
        tags = hashlib.sha256()
        segment_size = header["segment_size"]
        view = memoryview(bytearray(0))  # sized by the first segment: small items need no full-size buffer
        index = total = 0
        while True:
            flag, length = _SEGMENT_HEAD.unpack(_read_exact(src, _SEGMENT_HEAD.size, f"segment {index} header"))
            if flag not in (MORE, FINAL) or length < TAG or length > segment_size + TAG:
                raise Tampered(f"segment {index} has a malformed header")
            if flag == MORE and length != segment_size + TAG:
                raise Tampered(f"segment {index} is not a full segment but is not marked final")
            if len(view) < length:
                view = memoryview(bytearray(length))
            if _fill_view(src, view[:length]) != length:
                raise Tampered(f"truncated in segment {index}")
            try:
                plain = aead.decrypt(_nonce(index), view[:length], prefix + index.to_bytes(8, "big") + bytes([flag]))
            except InvalidTag:
                raise Tampered(f"segment {index} fails authentication (altered, moved, dropped or repeated)") from None
            tags.update(view[length - TAG : length])
            dst.write(plain)
            total += len(plain)
            index += 1
            if flag == FINAL:
                break

        trailer = _decode_canonical(_read_block(src, "trailer"), "trailer")
        if src.read(1):
            raise Tampered("bytes follow the trailer")
        sig_keys = {"ed25519", "mldsa65"} if agreement.suite == "pq-hybrid" else {"ed25519"}
        if not isinstance(trailer, dict) or set(trailer) != {"batch", *sig_keys}:
            raise Tampered("the trailer's fields are not those of format v1")
        batch = trailer["batch"]
        if (
            not isinstance(batch, dict)
            or set(batch) != {"size", "index", "path"}
            or not isinstance(batch["path"], list)
        ):
            raise Tampered("the trailer's batch proof is malformed")
        size, position = batch["size"], batch["index"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (size, position)) or len(batch["path"]) > 64:
            raise Tampered("the trailer's batch proof is malformed")
        if not 1 <= size < _MAX_BATCH:
            raise Tampered("the trailer's batch size is out of range")
        leaf = merkle.leaf_hash(_leaf_data(header_bytes, label_bytes, keyblock, index, tags.digest()))
        root = merkle.root_from_path(leaf, position, size, [_unb64(p, "proof") for p in batch["path"]])
        if root is None:
            raise Tampered("the batch inclusion proof does not fit its size and index")
        self._verify_root(signer, size, root, trailer)
        return Opened(label, signer, total)

    def open(self, data: bytes) -> tuple[Label, bytes]:
        out = io.BytesIO()
        opened = self.open_stream(io.BytesIO(data), out)
        return opened.label, out.getvalue()


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
    start = data.read(5)
    if not start or start[:4] != MAGIC:
        raise UnsupportedVersion("not a gsomia envelope")
    _read_block(data, "header")
    return Label.from_bytes(_read_block(data, "label"))
