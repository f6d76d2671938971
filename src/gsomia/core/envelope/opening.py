"""Opening: an ``Opener`` verifies and decrypts envelopes for one recipient, in the order of
``docs/envelope-format.md``, and refuses with one specific error."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gsomia.core import merkle
from gsomia.core.agreement.terms import Agreement
from gsomia.core.envelope.format import (
    AAD,
    BATCH_KEYS,
    EPOCH_INFO,
    FINAL,
    FLAG_BYTE,
    HASH,
    HEADER_KEYS,
    LEAF,
    MAGIC,
    MAX_BATCH,
    MAX_PATH,
    MAX_SEGMENT,
    MLDSA_CONTEXT,
    MORE,
    TAG,
    TRAILER_KEYS,
    U32,
    VERSION,
    WRAP_INFO,
    EnvelopeError,
    NotARecipient,
    Tampered,
    UnknownSigner,
    UnsupportedVersion,
    decode_canonical,
    read_block,
    segment_nonce,
    signed_message,
    unb64,
)
from gsomia.core.envelope.sources import Memory, Source, Stream
from gsomia.core.keys import PrivateKeys, PublicKeys, kem_suite
from gsomia.core.label import Label, LabelInvalid
from gsomia.core.label import validate as validate_label


@dataclass(frozen=True, slots=True)
class Opened:
    """What ``open_stream`` verified: the label, who signed, how much was written."""

    label: Label
    signer: PublicKeys
    size: int


def read_header(src: Source, agreement: Agreement) -> tuple[dict[str, Any], bytes]:
    start = src.upto(5)
    if not start or len(start) < 5 or start[:4] != MAGIC:
        raise UnsupportedVersion("not a gsomia envelope")
    if start[4] != VERSION:
        raise UnsupportedVersion(f"envelope format version {start[4]} is not supported (this build reads v{VERSION})")
    header_bytes = src.block("header")
    header = decode_canonical(header_bytes, "header")
    if not isinstance(header, dict) or header.keys() != HEADER_KEYS or header["v"] != VERSION:
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
        self._trailer_keys = TRAILER_KEYS[agreement.suite]

    def _epoch_key(self, text: object, signer_kid: str, own_kid: str) -> AESGCM:
        """The epoch key whose HPKE ciphertext ``text`` is (base64), unwrapped with this node's key ``own_kid``."""
        if isinstance(text, str):
            cached = self._epochs.get((text, signer_kid, own_kid))
            if cached is not None:
                return cached
        blob = unb64(text, "epoch key")
        assert isinstance(text, str)
        info = EPOCH_INFO + signer_kid.encode() + own_kid.encode()
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
        message = signed_message(size, root)
        key = (signer.kid, message, str(ed), str(ml))
        if key in self._roots:
            return
        try:
            signer.ed25519.verify(unb64(ed, "signature"), message)
            if pq:
                assert signer.mldsa is not None
                signer.mldsa.verify(unb64(ml, "signature"), message, MLDSA_CONTEXT)
        except InvalidSignature:
            raise Tampered("the originator's signature does not verify") from None
        if len(self._roots) >= self._CACHE_LIMIT:
            self._roots.clear()
        self._roots.add(key)

    def open_stream(self, src: IO[bytes], dst: IO[bytes]) -> Opened:
        """Verify and decrypt ``src`` into ``dst``. On any error ``dst`` must be discarded."""
        return Opened(*self._open(Stream(src), dst.write))

    def open(self, data: bytes) -> tuple[Label, bytes]:
        out: list[bytes] = []
        label = self._open(Memory(data if type(data) is bytes else bytes(data)), out.append)[0]
        return label, b"".join(out)

    def _open(self, src: Source, write: Callable[[bytes], object]) -> tuple[Label, PublicKeys, int]:
        """Every check of ``docs/envelope-format.md``, in its order; (label, signer, size)."""
        header, header_bytes = read_header(src, self.agreement)
        label_bytes = src.block("label")
        label = self._label(label_bytes, header)
        signer = self._signer(header, label)
        keyblock = src.block("key block")
        header_hash = hashlib.sha256(header_bytes).digest()
        label_hash = hashlib.sha256(label_bytes).digest()
        aead = self._data_key(keyblock, signer, header_hash + label_hash)
        prefix = AAD + U32.pack(len(header_bytes)) + header_bytes + U32.pack(len(label_bytes)) + label_bytes
        count, total, tags = _segments(src, aead, prefix, header["segment_size"], write)
        leaf_data = LEAF + header_hash + label_hash + hashlib.sha256(keyblock).digest() + count.to_bytes(8, "big")
        self._check_trailer(src, signer, merkle.leaf_hash(leaf_data + tags))
        return label, signer, total

    def _label(self, label_bytes: bytes, header: dict[str, Any]) -> Label:
        """The label block: a valid label under the agreement, of the item the header names."""
        try:
            label = Label.from_bytes(label_bytes)
        except LabelInvalid as exc:
            raise LabelInvalid(f"{exc} (envelope label)") from None
        except (ValueError, RecursionError, OverflowError):  # over-long integers, deep nesting, dates out of range
            raise LabelInvalid("label: not a valid label (envelope label)") from None
        validate_label(label, self.agreement)
        if (
            label.item_id != header["item_id"]
            or label.agreement != header["agreement"]
            or label.originator != header["originator"]
        ):
            raise Tampered("the label does not belong to this envelope's header")
        return label

    def _signer(self, header: dict[str, Any], label: Label) -> PublicKeys:
        """The trusted key the header names: the originator's, in the agreement's suite, not
        retired before the item was released."""
        signer = self.trusted.get(header["signer"])
        if signer is None:
            raise UnknownSigner(f"signed by key {header['signer']}, which is not among the trusted keys")
        if signer.party != label.originator:
            raise UnknownSigner(f"signed by {signer.party}'s key but the originator is {label.originator}")
        if signer.suite != self.agreement.suite:
            raise UnknownSigner(f"the trusted key of {signer.party} is not a {self.agreement.suite} key")
        retired = self.retired.get(signer.kid)
        if retired is not None and label.created_at >= retired:
            raise UnknownSigner(
                f"signed by {signer.party}'s key {signer.kid}, retired at {retired.isoformat()}, "
                f"for an item released at {label.created_at.isoformat()}"
            )
        return signer

    def _data_key(self, keyblock: bytes, signer: PublicKeys, hashes: bytes) -> AESGCM:
        """The envelope's data key, unwrapped from the key block's entry for one of this node's
        keys; ``hashes`` (of the header and the label) bind the wrap to them."""
        wrapped = decode_canonical(keyblock, "key block")
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
        sealed_key = unb64(entry.get("key"), "wrapped key")
        try:
            data_key = epoch.decrypt(sealed_key[:12], sealed_key[12:], WRAP_INFO + hashes)
        except (InvalidTag, ValueError):
            raise Tampered("the wrapped data key does not open with this label and header") from None
        if len(data_key) != 32:
            raise Tampered("the wrapped data key has the wrong length")
        return AESGCM(data_key)

    def _check_trailer(self, src: Source, signer: PublicKeys, leaf: bytes) -> None:
        """The trailer, last: the batch proof of ``leaf`` and the signature over the batch root."""
        trailer = decode_canonical(src.block("trailer"), "trailer")
        if src.more():
            raise Tampered("bytes follow the trailer")
        if not isinstance(trailer, dict) or trailer.keys() != self._trailer_keys:
            raise Tampered("the trailer's fields are not those of format v1")
        batch = trailer["batch"]
        if not isinstance(batch, dict) or batch.keys() != BATCH_KEYS:
            raise Tampered("the trailer's batch proof is malformed")
        size, position = batch["size"], batch["index"]
        if type(size) is not int or type(position) is not int:  # not bool, not float
            raise Tampered("the trailer's batch proof is malformed")
        if not 1 <= size < MAX_BATCH:
            raise Tampered("the trailer's batch size is out of range")
        hashes = unb64(batch["path"], "proof")
        if len(hashes) % HASH or len(hashes) > MAX_PATH * HASH:
            raise Tampered("the trailer's batch proof is malformed")
        path = [hashes[i : i + HASH] for i in range(0, len(hashes), HASH)]
        root = merkle.root_from_path(leaf, position, size, path)
        if root is None:
            raise Tampered("the batch inclusion proof does not fit its size and index")
        self._verify_root(signer, size, root, trailer)


def _segments(
    src: Source, aead: AESGCM, prefix: bytes, segment_size: int, write: Callable[[bytes], object]
) -> tuple[int, int, bytes]:
    """Decrypt and write each segment as its tag verifies; (segments, payload size, digest of the tags)."""
    tags = hashlib.sha256()
    index = total = 0
    while True:
        flag, length = src.head(index)
        if flag not in (MORE, FINAL) or length < TAG or length > segment_size + TAG:
            raise Tampered(f"segment {index} has a malformed header")
        if flag == MORE and length != segment_size + TAG:
            raise Tampered(f"segment {index} is not a full segment but is not marked final")
        segment = src.segment(index, length)
        try:
            plain = aead.decrypt(segment_nonce(index), segment, prefix + index.to_bytes(8, "big") + FLAG_BYTE[flag])
        except InvalidTag:
            raise Tampered(f"segment {index} fails authentication (altered, moved, dropped or repeated)") from None
        tags.update(segment[length - TAG :])
        write(plain)
        total += len(plain)
        index += 1
        if flag == FINAL:
            return index, total, tags.digest()


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
    read_block(data, "header")
    return read_block(data, "label")
