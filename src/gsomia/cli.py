"""The ``gsomia`` command line: thin, over the pure core.

Every ``GsomiaError`` becomes one line on stderr and exit code 2; a usage error is
Click's exit 2; anything else is a bug and says so.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gsomia.agreement import lifecycle, terms
from gsomia.errors import GsomiaError, InvalidInput

app = typer.Typer(
    help="gsomia: classified military information shared under an agreement, sealed, labelled and provable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
agreement_app = typer.Typer(help="Agreement files: status, timeline, checks.", no_args_is_help=True)
app.add_typer(agreement_app, name="agreement")

# Piped output keeps its tables whole instead of cropping at 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 132)
err = Console(stderr=True, highlight=False)

STATE_STYLE = {
    "not_in_force_yet": "dim",
    "in_force": "green",
    "termination_pending": "yellow",
    "termination_suspended": "cyan",
    "terminated": "red",
}


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


AgreementFile = Annotated[Path, typer.Argument(help="Agreement file (TOML).", show_default=False)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@agreement_app.command("status")
def agreement_status(
    file: AgreementFile,
    at: Annotated[str | None, typer.Option(help="Instant (ISO 8601 with offset). Default: now.")] = None,
    reading: Annotated[
        str | None, typer.Option(help="Apply PARTY's reading of a resumed notice (R15), or immediate/renotice.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """The agreement's status at an instant."""
    agreement = terms.load(file)
    instant = parse_instant(at) if at else datetime.now().astimezone()
    status = lifecycle.status(agreement, instant, reading)
    data = lifecycle.as_json(agreement, status)
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    show_status(agreement, instant, data)


def show_status(agreement: terms.Agreement, instant: datetime, data: dict[str, Any]) -> None:
    style = STATE_STYLE[data["state"]]
    out.print(f"[bold]{agreement.title}[/bold] ({agreement.id})")
    out.print(f"at {agreement.local(instant).isoformat()}: [{style}]{data['state']}[/{style}]")
    table = Table(show_header=False, box=None, padding=(0, 2))
    for key in ("in_force", "term_start", "term_end", "notice_deadline", "terminated_at", "reading"):
        table.add_row(key, str(data[key]))
    t = data["termination"]
    if t:
        table.add_row("termination", f"by {t['by']}, notified {t['notified_at']}, effective {t['effective_at']}")
        if t["suspended_at"]:
            table.add_row("suspended_at", t["suspended_at"])
        for c in t["conditions"]:
            table.add_row("condition", c)
    if data["dispute"]:
        views = ", ".join(f"{party} reads a resumed notice as {effect}" for party, effect in data["dispute"].items())
        table.add_row("dispute (R15)", views)
    out.print(table)


@agreement_app.command("timeline")
def agreement_timeline(
    file: AgreementFile,
    reading: Annotated[str | None, typer.Option(help="PARTY's reading of a resumed notice, or an effect.")] = None,
    until: Annotated[str | None, typer.Option(help="Last instant to show (ISO 8601 with offset).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Terms, deadlines, notes and each change of state, in order."""
    agreement = terms.load(file)
    events = lifecycle.timeline(agreement, reading, parse_instant(until, "--until") if until else None)
    if as_json:
        rows = [
            {
                "at": agreement.local(e.at).isoformat(),
                "event": e.kind,
                "by": e.note.by if e.note else None,
                "state": e.state.value,
                "detail": e.detail,
            }
            for e in events
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    out.print(timeline_table(agreement, events))


def timeline_table(agreement: terms.Agreement, events: list[lifecycle.Event]) -> Table:
    table = Table(title=f"{agreement.id}: timeline ({agreement.timezone})", title_justify="left")
    table.add_column("instant", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("by", no_wrap=True, min_width=3)
    table.add_column("state after", no_wrap=True)
    table.add_column("detail", min_width=24)
    for e in events:
        style = STATE_STYLE[e.state.value]
        table.add_row(
            agreement.local(e.at).strftime("%Y-%m-%d %H:%M"),
            e.kind,
            e.note.by if e.note else "",
            f"[{style}]{e.state.value}[/{style}]",
            e.detail,
        )
    return table


@agreement_app.command("check")
def agreement_check(files: Annotated[list[Path], typer.Argument(help="Agreement files to check.")]) -> None:
    """Validate agreement files: exit 0, or exit 2 with one line per problem."""
    problems: list[str] = []
    for file in files:
        try:
            agreement = terms.load(file)
        except GsomiaError as exc:
            problems.append(str(exc))
            continue
        problems.extend(lifecycle.validate(agreement))
    for line in problems:
        err.print(line, markup=False, soft_wrap=True)
    if problems:
        raise typer.Exit(2)
    out.print(f"{len(files)} agreement file(s) valid")


@app.command("demo")
def demo(
    agreement_file: Annotated[Path, typer.Option("--agreement", help="Agreement to replay.")] = Path(
        "agreements/jp-kr-gsomia-2016.toml"
    ),
) -> None:
    """Replay the 2016 agreement's history: its status at each step, and the 2019 night it held."""
    from gsomia.demo import replay

    replay(terms.load(agreement_file), out)


def main() -> None:
    """Entry point: Click handles usage errors (exit 2); every ``GsomiaError`` is one line and exit 2."""
    try:
        app()
    except GsomiaError as exc:
        err.print(f"gsomia: error: {exc}", markup=False, soft_wrap=True)
        sys.exit(2)
