"""A party's node keys: one KEM key to receive data keys, one or two signature keys.

Two suites, chosen by the agreement file (``[protection].suite``):

- ``classic``: HPKE with X25519 for key wrapping, Ed25519 signatures.
- ``pq-hybrid``: HPKE with the ML-KEM-768 + X25519 hybrid KEM, and both Ed25519
  and ML-DSA-65 signatures (both must verify). Classified material must stay
  secret for decades; a quantum computer that breaks X25519 later would open
  anything recorded today ("harvest now, decrypt later"). The hybrid stays secure
  while either component does.

Everything here is pyca/cryptography; this module only names, bundles and
serialises keys. Key files are JSON (base64 of raw key bytes or seeds).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final, TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from gsomia.core.agreement.terms import SUITES, Suite
from gsomia.core.canonical import b64, canonical, unb64
from gsomia.core.errors import GsomiaError


class KeyFileInvalid(GsomiaError):
    """A key file that is malformed, of the wrong kind, or for the wrong suite."""


def _unb64(data: dict[str, Any], key: str, what: str) -> bytes:
    value = data.get(key)
    if not isinstance(value, str):
        raise KeyFileInvalid(f"{what}: missing {key}")
    try:
        return unb64(value)
    except ValueError:
        raise KeyFileInvalid(f"{what}: {key} is not canonical base64") from None


ED25519_SIGNATURE: Final = 64
MLDSA65_SIGNATURE: Final = 3309


def kem_suite(suite: Suite) -> hpke.Suite:
    """The HPKE suite (RFC 9180) each protection suite wraps data keys with."""
    kem = hpke.KEM.X25519 if suite == "classic" else hpke.KEM.MLKEM768_X25519
    return hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


@dataclass(frozen=True, eq=False)
class PublicKeys:
    party: str
    suite: Suite
    x25519: X25519PublicKey
    ed25519: Ed25519PublicKey
    mlkem: MLKEM768PublicKey | None = None
    mldsa: MLDSA65PublicKey | None = None

    def to_bytes(self) -> bytes:
        data: dict[str, Any] = {
            "kind": "gsomia-public-key",
            "v": 1,
            "party": self.party,
            "suite": self.suite,
            "x25519": b64(self.x25519.public_bytes_raw()),
            "ed25519": b64(self.ed25519.public_bytes_raw()),
        }
        if self.mlkem is not None and self.mldsa is not None:
            data["mlkem768"] = b64(self.mlkem.public_bytes_raw())
            data["mldsa65"] = b64(self.mldsa.public_bytes_raw())
        return canonical(data)  # ASCII only (see ``_party_suite``): kids never change

    @cached_property
    def kid(self) -> str:
        """Key id: SHA-256 of the canonical public key file, first 128 bits in hex.

        Computed once per object (the keys are immutable): sealing and opening look it
        up for every envelope."""
        return hashlib.sha256(self.to_bytes()).hexdigest()[:32]

    def verify(self, signature: bytes, message: bytes, context: bytes) -> bool:
        """Check a ``PrivateKeys.sign`` signature: Ed25519, and in pq-hybrid ML-DSA-65 too; both must hold."""
        pq = self.suite == "pq-hybrid"
        if len(signature) != ED25519_SIGNATURE + (MLDSA65_SIGNATURE if pq else 0):
            return False
        try:
            self.ed25519.verify(signature[:ED25519_SIGNATURE], message)
            if pq:
                assert self.mldsa is not None
                self.mldsa.verify(signature[ED25519_SIGNATURE:], message, context)
        except InvalidSignature:
            return False
        return True

    def kem_key(self) -> X25519PublicKey | hpke.MLKEM768X25519PublicKey:
        if self.suite == "classic":
            return self.x25519
        assert self.mlkem is not None
        return hpke.MLKEM768X25519PublicKey(self.mlkem, self.x25519)

    @classmethod
    def from_bytes(cls, raw: bytes, what: str = "public key") -> PublicKeys:
        return cls.from_dict(_load_json(raw, what), what)

    @classmethod
    def from_dict(cls, data: Any, what: str = "public key") -> PublicKeys:
        """A public key file already decoded (as a rotation statement carries one)."""
        data = _key_file(data, what, "gsomia-public-key")
        party, suite = _party_suite(data, what)
        try:
            pq = suite == "pq-hybrid"
            return cls(
                party=party,
                suite=suite,
                x25519=X25519PublicKey.from_public_bytes(_unb64(data, "x25519", what)),
                ed25519=Ed25519PublicKey.from_public_bytes(_unb64(data, "ed25519", what)),
                mlkem=MLKEM768PublicKey.from_public_bytes(_unb64(data, "mlkem768", what)) if pq else None,
                mldsa=MLDSA65PublicKey.from_public_bytes(_unb64(data, "mldsa65", what)) if pq else None,
            )
        except ValueError as exc:
            raise KeyFileInvalid(f"{what}: a key has the wrong length or form ({exc})") from None


@dataclass(frozen=True, eq=False)
class PrivateKeys:
    party: str
    suite: Suite
    x25519: X25519PrivateKey
    ed25519: Ed25519PrivateKey
    mlkem: MLKEM768PrivateKey | None = None
    mldsa: MLDSA65PrivateKey | None = None

    def public(self) -> PublicKeys:
        return PublicKeys(
            party=self.party,
            suite=self.suite,
            x25519=self.x25519.public_key(),
            ed25519=self.ed25519.public_key(),
            mlkem=None if self.mlkem is None else self.mlkem.public_key(),
            mldsa=None if self.mldsa is None else self.mldsa.public_key(),
        )

    def sign(self, message: bytes, context: bytes) -> bytes:
        """The node's signature on a statement (tree heads, records, requests, receipts).

        Classic: the 64-byte Ed25519 signature. pq-hybrid: Ed25519 ‖ ML-DSA-65 (64 + 3,309
        bytes, both fixed-length, so the split is unambiguous), under ``context`` for
        ML-DSA; a forger must break both. Envelopes and key rotations sign with their own
        fields (``envelope``, ``keyring``)."""
        signature = self.ed25519.sign(message)
        if self.suite == "pq-hybrid":
            assert self.mldsa is not None
            signature += self.mldsa.sign(message, context)
        return signature

    def kem_key(self) -> X25519PrivateKey | hpke.MLKEM768X25519PrivateKey:
        if self.suite == "classic":
            return self.x25519
        assert self.mlkem is not None
        return hpke.MLKEM768X25519PrivateKey(self.mlkem, self.x25519)

    def to_bytes(self) -> bytes:
        data: dict[str, Any] = {
            "kind": "gsomia-private-key",
            "v": 1,
            "party": self.party,
            "suite": self.suite,
            "x25519": b64(self.x25519.private_bytes_raw()),
            "ed25519": b64(self.ed25519.private_bytes_raw()),
        }
        if self.mlkem is not None and self.mldsa is not None:
            data["mlkem768"] = b64(self.mlkem.private_bytes_raw())  # the 64-byte seed
            data["mldsa65"] = b64(self.mldsa.private_bytes_raw())  # the 32-byte seed
        return canonical(data)  # ASCII only (see ``_party_suite``): kids never change

    @classmethod
    def from_bytes(cls, raw: bytes, what: str = "private key") -> PrivateKeys:
        data = _key_file(_load_json(raw, what), what, "gsomia-private-key")
        party, suite = _party_suite(data, what)
        try:
            pq = suite == "pq-hybrid"
            return cls(
                party=party,
                suite=suite,
                x25519=X25519PrivateKey.from_private_bytes(_unb64(data, "x25519", what)),
                ed25519=Ed25519PrivateKey.from_private_bytes(_unb64(data, "ed25519", what)),
                mlkem=MLKEM768PrivateKey.from_seed_bytes(_unb64(data, "mlkem768", what)) if pq else None,
                mldsa=MLDSA65PrivateKey.from_seed_bytes(_unb64(data, "mldsa65", what)) if pq else None,
            )
        except ValueError as exc:
            raise KeyFileInvalid(f"{what}: a key has the wrong length or form ({exc})") from None


def _is_alpha3(party: object) -> TypeGuard[str]:
    """Three letters A to Z (ISO 3166-1 alpha-3). ASCII, so a key file is ASCII throughout
    and its canonical bytes, hence its kid, are those it has always had."""
    return isinstance(party, str) and len(party) == 3 and party.isascii() and party.isalpha() and party.isupper()


def generate(party: str, suite: Suite) -> PrivateKeys:
    if not _is_alpha3(party):
        raise KeyFileInvalid(f"party {party!r} is not an alpha-3 code")
    if suite not in SUITES:
        raise KeyFileInvalid(f"unknown suite {suite!r} (one of: {', '.join(SUITES)})")
    pq = suite == "pq-hybrid"
    return PrivateKeys(
        party=party,
        suite=suite,
        x25519=X25519PrivateKey.generate(),
        ed25519=Ed25519PrivateKey.generate(),
        mlkem=MLKEM768PrivateKey.generate() if pq else None,
        mldsa=MLDSA65PrivateKey.generate() if pq else None,
    )


def _load_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # incl. UnicodeDecodeError, JSONDecodeError, over-long integers
        raise KeyFileInvalid(f"{what}: not a gsomia key file (not JSON)") from None


def _key_file(data: Any, what: str, kind: str) -> dict[str, Any]:
    """``data`` if it is a key file of ``kind``, version 1."""
    if not isinstance(data, dict) or data.get("kind") != kind:
        found = data.get("kind") if isinstance(data, dict) else None
        if found == "gsomia-public-key":
            raise KeyFileInvalid(f"{what}: is a public key file; a private key file (PARTY.key) is needed here")
        if found == "gsomia-private-key":
            raise KeyFileInvalid(f"{what}: is a private key file; give the public key file (PARTY.pub)")
        raise KeyFileInvalid(f"{what}: not a gsomia {kind.split('-')[1]} key file")
    if data.get("v") != 1:
        raise KeyFileInvalid(f"{what}: key file version {data.get('v')!r} is not supported")
    return data


def _party_suite(data: dict[str, Any], what: str) -> tuple[str, Suite]:
    party = data.get("party")
    suite = data.get("suite")
    if not _is_alpha3(party):
        raise KeyFileInvalid(f"{what}: party {party!r} is not an alpha-3 code")
    if suite == "classic":
        return party, "classic"
    if suite == "pq-hybrid":
        return party, "pq-hybrid"
    raise KeyFileInvalid(f"{what}: unknown suite {suite!r}")
