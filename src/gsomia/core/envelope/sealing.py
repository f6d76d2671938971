"""Sealing: a ``Sealer`` encrypts, wraps and signs items from one originator under one agreement."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from typing import IO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gsomia.core import merkle
from gsomia.core.agreement.terms import Agreement
from gsomia.core.canonical import b64
from gsomia.core.envelope.format import (
    DEFAULT_SEGMENT,
    EPOCH_INFO,
    FINAL,
    LEAF,
    MAGIC,
    MAX_SEGMENT,
    MLDSA_CONTEXT,
    MORE,
    SEGMENT_HEAD,
    TAG,
    VERSION,
    WRAP_INFO,
    EnvelopeError,
    Header,
    aad_prefix,
    block,
    fill,
    json_string,
    segment_nonce,
    signed_message,
    trailer_block,
)
from gsomia.core.keys import PrivateKeys, PublicKeys, kem_suite
from gsomia.core.label import Label
from gsomia.core.label import validate as validate_label


class _Epoch:
    """One sender-side epoch key for one recipient key: wrapped by HPKE once, used many times.

    Also holds that recipient's key-block entry around the one value that changes per
    envelope (the wrapped data key), already in canonical JSON: keys sorted, strings as
    ``canonical`` writes them (base64 needs no escapes)."""

    __slots__ = ("aead", "blob", "entry_head", "entry_tail", "uses")

    def __init__(self, blob: bytes, key: bytes, recipient: PublicKeys) -> None:
        self.blob = blob
        self.aead = AESGCM(key)
        self.uses = 0
        self.entry_head = '{"epoch":"' + b64(blob) + '","key":"'
        self.entry_tail = '","kid":' + json_string(recipient.kid) + ',"party":' + json_string(recipient.party) + "}"


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
            info = EPOCH_INFO + self.kid.encode() + recipient.kid.encode()
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
        return (around[0] + json_string(item_id) + around[1]).encode("utf-8")

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
        info = WRAP_INFO + header_hash + label_hash
        entries = []
        for r in recipients:
            epoch = self._epoch(r)
            nonce = os.urandom(12)
            sealed_key = nonce + epoch.aead.encrypt(nonce, data_key, info)
            entries.append((r.kid, epoch.entry_head + b64(sealed_key) + epoch.entry_tail))
        entries.sort(key=lambda e: e[0])  # stable: as sorting the entries by "kid"
        keyblock = ("[" + ",".join(e[1] for e in entries) + "]").encode("utf-8")
        head = MAGIC + bytes([VERSION]) + block(header_bytes) + block(label_bytes) + block(keyblock)
        leaf_start = LEAF + header_hash + label_hash + hashlib.sha256(keyblock).digest()
        return head, AESGCM(data_key), aad_prefix(header_bytes, label_bytes), leaf_start

    def _body(
        self, src: IO[bytes], dst: IO[bytes], label: Label, recipients: Sequence[PublicKeys], segment_size: int
    ) -> tuple[bytes, int]:
        """Write everything but the trailer; return (leaf hash, payload size)."""
        head, aead, prefix, leaf_start = self._start(label, recipients, segment_size)
        dst.write(head)
        tags = hashlib.sha256()
        current, following = bytearray(segment_size), bytearray(segment_size)
        n = fill(src, current)
        index = total = 0
        while True:
            m = fill(src, following) if n == segment_size else 0
            flag = FINAL if m == 0 else MORE
            ct = aead.encrypt(
                segment_nonce(index), memoryview(current)[:n], prefix + index.to_bytes(8, "big") + bytes([flag])
            )
            dst.write(SEGMENT_HEAD.pack(flag, len(ct)))
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
            ct = aead.encrypt(segment_nonce(index), chunk, prefix + index.to_bytes(8, "big") + bytes([flag]))
            parts.append(SEGMENT_HEAD.pack(flag, len(ct)))
            parts.append(ct)
            tags.update(ct[-TAG:])
        return parts, merkle.leaf_hash(leaf_start + count.to_bytes(8, "big") + tags.digest())

    def _signatures(self, size: int, root: bytes) -> dict[str, str]:
        message = signed_message(size, root)
        sigs = {"ed25519": b64(self.originator.ed25519.sign(message))}
        if self.agreement.suite == "pq-hybrid":
            assert self.originator.mldsa is not None
            sigs["mldsa65"] = b64(self.originator.mldsa.sign(message, MLDSA_CONTEXT))
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
            dst.write(trailer_block(1, 0, [], self._signatures(1, leaf)))
            return total
        leaf, total = self._body(src, dst, label, recipients, segment_size)
        dst.write(trailer_block(1, 0, [], self._signatures(1, leaf)))
        return total

    def seal(
        self, payload: bytes, label: Label, recipients: Sequence[PublicKeys], segment_size: int = DEFAULT_SEGMENT
    ) -> bytes:
        parts, leaf = self._body_bytes(payload, label, recipients, segment_size)
        parts.append(trailer_block(1, 0, [], self._signatures(1, leaf)))
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
            parts.append(trailer_block(size, i, paths[i], sigs))
            out.append(b"".join(parts))
        return out


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
