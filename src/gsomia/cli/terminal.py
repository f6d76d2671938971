"""What every ``gsomia`` command shares with its user: the consoles, the common options,
the instants and JSON files it reads, and what a failure looks like (one line, exit 2)."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gsomia.core.agreement import terms
from gsomia.core.errors import GsomiaError, InvalidInput

# Tables fit the terminal, down to 80 columns, by wrapping their text columns. Piped output,
# where nothing says how wide the reader is, is 132 wide unless COLUMNS says otherwise.
out = Console(highlight=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 132)
err = Console(stderr=True, highlight=False)

AgreementFile = Annotated[Path, typer.Argument(help="Agreement file (TOML).", show_default=False)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ConfigOption = Annotated[Path, typer.Option("--config", help="The node's node.toml.")]


def now() -> datetime:
    """The instant a user's command runs at, in this machine's zone: the default of every
    command that takes an instant (``--at``), and the start of what the command writes."""
    return datetime.now().astimezone()


def parse_instant(text: str, option: str = "--at") -> datetime:
    """An ISO 8601 instant with an offset; a bare local time is refused, not guessed."""
    raw = text.strip()
    try:
        at = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise InvalidInput(f"{option}: {text!r} is not an ISO 8601 instant such as 2019-11-23T00:00:00+09:00") from None
    if at.tzinfo is None:
        raise InvalidInput(f"{option}: {text!r} has no UTC offset; write e.g. {raw}+09:00 or {raw}Z")
    if not 1 < at.year < 9999:  # shown in another zone, year 1 or 9999 can leave the calendar
        raise InvalidInput(f"{option}: {text!r} is out of range (years 0002 to 9998)")
    return at


def at_or_now(at: str | None, option: str = "--at") -> datetime:
    """The instant an option names, or now when the user gave none."""
    return parse_instant(at, option) if at else now()


def party_time(at: str | datetime, party: str) -> str:
    """An instant for ``party``'s operator, in that party's own zone: ``2019-11-22 18:00 KST``."""
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    return terms.short_time(when.astimezone(terms.party_zone(party)))


def read_json(path: Path, what: str) -> Any:
    """The JSON document a file option names (``what`` says which, in the error)."""
    from gsomia.store.files import read_bytes  # it loads the key code: not for --help

    try:
        return json.loads(read_bytes(path, what).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, over-long numbers, deep nesting
        raise InvalidInput(f"{path}: the {what} is not valid JSON ({str(exc)[:120]})") from None


def run(app: typer.Typer) -> None:
    """Run ``app``: Click handles usage errors (exit 2); every ``GsomiaError`` is one line and
    exit 2, and so is a database that does not answer (its server down, a wrong host or port)."""
    try:
        app()
    except GsomiaError as exc:
        err.print(f"gsomia: error: {exc}", markup=False, soft_wrap=True)
        sys.exit(2)
    except Exception as exc:
        from sqlalchemy.exc import OperationalError  # SQLAlchemy is loaded only by the commands that use it

        if not isinstance(exc, OperationalError):
            raise
        reason = str(exc.orig or exc).strip().splitlines()[0]  # the driver's words: host, port, why
        err.print(f"gsomia: error: database unavailable: {reason}", markup=False, soft_wrap=True)
        sys.exit(2)
