"""One exception hierarchy, with messages a security officer can act on.

The CLI turns any ``GsomiaError`` into exit code 2 and its one-line message; the
API turns it into RFC 9457 problem+json with the ``status`` and ``title`` the class
carries (a subclass inherits its parent's). Anything else is a bug.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from gsomia.core import policy


class GsomiaError(Exception):
    """Base of every error gsomia raises on purpose: input that cannot be used as given."""

    status: ClassVar[int] = 400
    title: ClassVar[str] = "Refused"


class AgreementFileError(GsomiaError):
    """An agreement file is missing, malformed, or says something impossible.

    The message names the file, the key (a dotted path such as ``notes[2].by``)
    and the problem, so the author can fix it without reading code.
    """

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class InvalidHistory(AgreementFileError):
    """The recorded diplomatic notes cannot all be true (R13, R15)."""

    status = 409  # the request conflicts with the notes already on record


class NoteInvalid(GsomiaError):
    """A diplomatic note that cannot be recorded as given (its sender, type or instant)."""


class AlarmInvalid(GsomiaError):
    """An integrity alarm from the partner that is not one."""

    status = 409


class IntegrityFailure(GsomiaError):
    """Something stored or received no longer verifies: a broken seal, an edited ledger."""

    status = 409
    title = "Integrity failure"


class InvalidInput(GsomiaError):
    """A command-line or API argument that cannot be used as given."""


class Refused(GsomiaError):
    """An access decision said no; carries the decision for the problem document.

    Its message and ``shown`` are what the subject may be shown (``Decision.shown``); the
    ledger entry written beside the refusal keeps the full ``decision``."""

    status = 403
    title = "Denied"

    def __init__(self, decision: policy.Decision, what: str) -> None:
        self.decision = decision
        self.shown = decision.shown()
        super().__init__(f"{what} denied: " + "; ".join(str(r) for r in self.shown.reasons))


class NotFound(GsomiaError):
    """No such item, case or entry, or none the asker may know of (a forbidden id answers alike)."""

    status = 404
    title = "Not found"
