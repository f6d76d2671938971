"""Key rotation: a party's chain of node keys, each introduced by the one before.

A node key signs envelopes, tree heads, records, requests and receipts, and receives
data keys. It is replaced by a **rotation statement**: canonical JSON naming the
party, the rotation's number, the instant, the ledger size at which it takes
effect, the old and the new public key, signed by *both* keys (Ed25519, and ML-DSA-65
too in the pq-hybrid suite). The old key's signature authorises the change; the new
key's signature proves its holder has it, and lets anyone who trusts only the *new*
key walk the chain back (as TUF's root rotation, here both ways).

What each key is trusted for afterwards, in one place (``KeyHistory``):

- **Envelopes and records**: a retired key is trusted only for what was released
  before its retirement instant (``retired_at``). The current key is trusted for
  everything. Release instants come from the node's clock (simulated in the demo),
  so only the upper bound is checked: a new key may sign an item dated before it
  existed (its holder is the party itself), a retired key may not sign anything
  dated after.
- **Tree heads**: by size, not time. Rotation number ``n`` is the ledger entry at
  index ``tree_size``; heads of ``tree_size`` entries or fewer are the old key's,
  larger heads the new key's. A stolen retired key cannot sign a head that covers
  the rotation.
- **Requests and receipts** between nodes: the current key only.

Pure: keys and instants are parameters; nothing here reads a file or a clock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature

from gsomia.core.canonical import b64, canonical, canonical_text, unb64
from gsomia.core.errors import GsomiaError
from gsomia.core.keys import KeyFileInvalid, PrivateKeys, PublicKeys

FORMAT: Final = "gsomia-key-rotation"
_SIGNED: Final = b"gsomia/keys/v1/rotation\x00"
_MLDSA_CONTEXT: Final = b"gsomia/keys/v1"
_FIELDS: Final = frozenset({"kind", "v", "party", "number", "at", "tree_size", "old", "new"})
_SIG_FIELDS: Final = {
    "classic": frozenset({"old_ed25519", "new_ed25519"}),
    "pq-hybrid": frozenset({"old_ed25519", "new_ed25519", "old_mldsa65", "new_mldsa65"}),
}


class KeyRotationInvalid(GsomiaError):
    """A rotation statement or key chain that does not check out."""


@dataclass(frozen=True, slots=True)
class Rotation:
    """One signed rotation statement: ``old`` hands over to ``new``."""

    party: str
    number: int
    at: datetime
    tree_size: int
    old: PublicKeys
    new: PublicKeys
    signatures: dict[str, str]

    def body(self) -> dict[str, Any]:
        return {
            "kind": FORMAT,
            "v": 1,
            "party": self.party,
            "number": self.number,
            "at": self.at.astimezone(UTC).isoformat(),
            "tree_size": self.tree_size,
            "old": json.loads(self.old.to_bytes()),
            "new": json.loads(self.new.to_bytes()),
        }

    def message(self) -> bytes:
        return _SIGNED + canonical(self.body())  # ASCII only: party codes, instants, key files

    def as_dict(self) -> dict[str, Any]:
        return {"statement": self.body(), "signatures": dict(sorted(self.signatures.items()))}

    def to_bytes(self) -> bytes:
        return canonical(self.as_dict())  # and base64 signatures: ASCII only

    def verify(self) -> None:
        """Both keys signed exactly this statement; raises ``KeyRotationInvalid``."""
        message = self.message()
        what = f"rotation {self.number} of {self.party}"
        for side, key in (("old", self.old), ("new", self.new)):
            try:
                key.ed25519.verify(_unb64(self.signatures.get(f"{side}_ed25519"), what), message)
                if key.suite == "pq-hybrid":
                    assert key.mldsa is not None
                    key.mldsa.verify(_unb64(self.signatures.get(f"{side}_mldsa65"), what), message, _MLDSA_CONTEXT)
            except InvalidSignature:
                raise KeyRotationInvalid(f"{what}: the {side} key's signature does not verify") from None

    @classmethod
    def from_dict(cls, data: Any) -> Rotation:
        """Parse and check a statement's form and both signatures (not its place in a chain)."""
        if not isinstance(data, dict) or set(data) != {"statement", "signatures"}:
            raise KeyRotationInvalid("a rotation is {statement, signatures}")
        body, sigs = data["statement"], data["signatures"]
        if not isinstance(body, dict) or set(body) != _FIELDS or body.get("kind") != FORMAT or body.get("v") != 1:
            raise KeyRotationInvalid(f"not a {FORMAT} v1 statement")
        try:
            old = PublicKeys.from_dict(body["old"], "rotation: old key")
            new = PublicKeys.from_dict(body["new"], "rotation: new key")
            at = datetime.fromisoformat(str(body["at"]))
        except (KeyFileInvalid, ValueError) as exc:
            raise KeyRotationInvalid(f"rotation: {exc}") from None
        number, size, party = body["number"], body["tree_size"], body["party"]
        if type(number) is not int or number < 1 or type(size) is not int or size < 0:
            raise KeyRotationInvalid("rotation: number must be a positive integer and tree_size a count")
        if at.tzinfo is None:
            raise KeyRotationInvalid("rotation: at must carry a UTC offset")
        if not isinstance(party, str) or old.party != party or new.party != party:
            raise KeyRotationInvalid("rotation: both keys must be the rotating party's")
        if old.suite != new.suite:
            raise KeyRotationInvalid(f"rotation: the suite cannot change ({old.suite} to {new.suite})")
        if old.kid == new.kid:
            raise KeyRotationInvalid("rotation: the new key is the old key")
        if not isinstance(sigs, dict) or set(sigs) != _SIG_FIELDS[old.suite]:
            raise KeyRotationInvalid(f"rotation: the signatures of a {old.suite} rotation are missing or extra")
        rotation = cls(party, number, at.astimezone(UTC), size, old, new, dict(sigs))
        # One spelling per statement. Compared as text: the received one may hold any string.
        if canonical_text(rotation.body()) != canonical_text(body):
            raise KeyRotationInvalid("rotation: the statement is not in canonical form")
        rotation.verify()
        return rotation

    @classmethod
    def from_bytes(cls, raw: bytes) -> Rotation:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            raise KeyRotationInvalid("rotation: not JSON") from None
        return cls.from_dict(data)


def _unb64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise KeyRotationInvalid(f"{what}: a signature is missing")
    try:
        return unb64(value)
    except ValueError:
        raise KeyRotationInvalid(f"{what}: a signature is not canonical base64") from None


def rotate(old: PrivateKeys, new: PrivateKeys, number: int, at: datetime, tree_size: int) -> Rotation:
    """The statement by which ``old`` hands over to ``new``, signed by both."""
    if old.party != new.party or old.suite != new.suite:
        raise KeyRotationInvalid("the new key must be the same party's, in the same suite")
    if at.tzinfo is None:
        raise KeyRotationInvalid("a rotation instant must carry a UTC offset")
    unsigned = Rotation(old.party, number, at.astimezone(UTC), tree_size, old.public(), new.public(), {})
    message = unsigned.message()
    sigs: dict[str, str] = {}
    for side, key in (("old", old), ("new", new)):
        sigs[f"{side}_ed25519"] = b64(key.ed25519.sign(message))
        if key.mldsa is not None:
            sigs[f"{side}_mldsa65"] = b64(key.mldsa.sign(message, _MLDSA_CONTEXT))
    rotation = Rotation(unsigned.party, number, unsigned.at, tree_size, unsigned.old, unsigned.new, sigs)
    rotation.verify()
    return rotation


@dataclass(frozen=True)
class KeyHistory:
    """A party's keys in order, each after the first introduced by a verified rotation."""

    party: str
    keys: tuple[PublicKeys, ...]
    rotations: tuple[Rotation, ...]

    @classmethod
    def start(cls, key: PublicKeys) -> KeyHistory:
        return cls(key.party, (key,), ())

    @classmethod
    def build(cls, anchor: PublicKeys, rotations: Sequence[Rotation]) -> KeyHistory:
        """The chain the rotations make, which must contain ``anchor`` (the key trusted out of band).

        Each statement is signed by both of its keys, so trust in any one key of the
        chain extends to all of them, forwards and backwards.
        """
        if not rotations:
            return cls.start(anchor)
        history = cls.start(rotations[0].old)
        for r in rotations:
            history = history.extend(r)
        if history.by_kid(anchor.kid) is None:
            raise KeyRotationInvalid(f"the key chain of {anchor.party} does not contain the trusted key {anchor.kid}")
        return history

    @property
    def current(self) -> PublicKeys:
        return self.keys[-1]

    def extend(self, rotation: Rotation) -> KeyHistory:
        """This history with one more rotation, which must follow on from it."""
        what = f"rotation {rotation.number} of {rotation.party}"
        if rotation.party != self.party:
            raise KeyRotationInvalid(f"{what}: not a rotation of {self.party}'s key")
        if rotation.number != len(self.rotations) + 1:
            raise KeyRotationInvalid(f"{what}: expected rotation {len(self.rotations) + 1}")
        if rotation.old.kid != self.current.kid:
            raise KeyRotationInvalid(f"{what}: hands over from {rotation.old.kid}, not the current {self.current.kid}")
        if self.by_kid(rotation.new.kid) is not None:
            raise KeyRotationInvalid(f"{what}: key {rotation.new.kid} was used before")
        if self.rotations:
            last = self.rotations[-1]
            if rotation.at <= last.at or rotation.tree_size <= last.tree_size:
                raise KeyRotationInvalid(f"{what}: must come after rotation {last.number} in time and in the log")
        rotation.verify()
        return KeyHistory(self.party, (*self.keys, rotation.new), (*self.rotations, rotation))

    def by_kid(self, kid: str) -> PublicKeys | None:
        for key in self.keys:
            if key.kid == kid:
                return key
        return None

    def retired_at(self, kid: str) -> datetime | None:
        """When key ``kid`` was replaced; None for the current key (and for an unknown one)."""
        for i, key in enumerate(self.keys[:-1]):
            if key.kid == kid:
                return self.rotations[i].at
        return None

    def trusted_for(self, at: datetime) -> list[PublicKeys]:
        """The keys that may have signed something released at ``at``: not retired before it."""
        found = []
        for i, key in enumerate(self.keys):
            if i == len(self.rotations) or at < self.rotations[i].at:
                found.append(key)
        return found

    def key_for_head(self, size: int) -> PublicKeys:
        """The key that signs heads of ``size`` entries: rotation n takes effect above its tree_size."""
        key = self.keys[0]
        for i, r in enumerate(self.rotations):
            if size > r.tree_size:
                key = self.keys[i + 1]
        return key

    def windows(self) -> dict[str, datetime | None]:
        """kid → retirement instant (None: current), what ``envelope.Opener`` checks signers against."""
        return {key.kid: self.retired_at(key.kid) for key in self.keys}
