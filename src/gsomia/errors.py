"""One exception hierarchy, with messages a security officer can act on.

The CLI turns any ``GsomiaError`` into exit code 2 and its one-line message; the
API turns it into RFC 9457 problem+json. Anything else is a bug.
"""

from __future__ import annotations


class GsomiaError(Exception):
    """Base of every error gsomia raises on purpose."""


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


class InvalidInput(GsomiaError):
    """A command-line or API argument that cannot be used as given."""
