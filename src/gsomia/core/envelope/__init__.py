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

The package: ``format`` (constants, errors, framing), ``sealing`` (``Sealer``),
``opening`` (``Opener``) and ``sources`` (what an opener reads from). Everything a
caller uses is named here.
"""

from __future__ import annotations

from gsomia.core.envelope.format import (
    DEFAULT_SEGMENT,
    FINAL,
    MAGIC,
    MAX_BLOCK,
    MAX_SEGMENT,
    MORE,
    TAG,
    VERSION,
    EnvelopeError,
    Header,
    NotARecipient,
    Tampered,
    UnknownSigner,
    UnsupportedVersion,
)
from gsomia.core.envelope.opening import Opened, Opener, open, open_stream, peek_label, peek_label_bytes
from gsomia.core.envelope.sealing import Sealer, seal, seal_stream
from gsomia.core.label import LabelInvalid

__all__ = [
    "DEFAULT_SEGMENT",
    "FINAL",
    "MAGIC",
    "MAX_BLOCK",
    "MAX_SEGMENT",
    "MORE",
    "TAG",
    "VERSION",
    "EnvelopeError",
    "Header",
    "LabelInvalid",
    "NotARecipient",
    "Opened",
    "Opener",
    "Sealer",
    "Tampered",
    "UnknownSigner",
    "UnsupportedVersion",
    "open",
    "open_stream",
    "peek_label",
    "peek_label_bytes",
    "seal",
    "seal_stream",
]
