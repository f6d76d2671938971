"""``gsomia agreement``: an agreement file's status, timeline, checks and recorded history.

These read the agreement file alone, through the pure lifecycle engine; no node is involved."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gsomia.cli.replay import replay
from gsomia.cli.terminal import AgreementFile, JsonFlag, at_or_now, err, out, parse_instant
from gsomia.cli.timeline import STATE_STYLE, timeline_table
from gsomia.core.agreement import lifecycle, route, terms
from gsomia.core.errors import GsomiaError, InvalidInput
from gsomia.core.words import count

app = typer.Typer(help="Agreement files: status, timeline, checks.", no_args_is_help=True)


@app.command("status")
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
    instant = at_or_now(at)
    _reading(agreement, reading)
    status = lifecycle.status(agreement, instant, reading)
    data = lifecycle.as_json(agreement, status)
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    # Shown in the reading party's own zone with --reading PARTY, else in the agreement's.
    show_status(agreement, instant, status, reading if reading in agreement.parties else None)


def _reading(agreement: terms.Agreement, reading: str | None) -> None:
    try:
        lifecycle.resolve_reading(agreement, reading)
    except InvalidInput as exc:
        if str(exc).startswith("unknown reading"):
            raise InvalidInput(f"--reading: {exc}") from None
        raise


def show_status(
    agreement: terms.Agreement, instant: datetime, status: lifecycle.Status, party: str | None = None
) -> None:
    """The status for people: every instant in ``party``'s zone (the agreement's without one)."""

    def when(at: datetime | None) -> str:
        return "-" if at is None else agreement.shown(at, party)

    state = status.state.value
    style = STATE_STYLE[state]
    out.print(f"[bold]{agreement.title}[/bold] ({agreement.id})")
    out.print(f"at {agreement.shown(instant, party)}: [{style}]{state}[/{style}]")
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column()
    table.add_row("in force", "yes" if status.in_force else "no")
    if status.term_start is not None:
        end = f"to {when(status.term_end)}" if status.term_end else "with no fixed end"
        table.add_row("term", f"{when(status.term_start)} {end}")
    if status.notice_deadline is not None:
        table.add_row("notice deadline", when(status.notice_deadline))
    if status.terminated_at is not None:
        table.add_row("terminated at", when(status.terminated_at))
    table.add_row("reading (R15)", status.reading)
    t = status.termination
    if t:
        table.add_row("termination", f"by {t.by}, notified {when(t.notified_at)}, effective {when(t.effective_at)}")
        if t.suspended_at:
            table.add_row("suspended at", when(t.suspended_at))
        for c in t.conditions:
            table.add_row("condition", c)
    if status.dispute:
        readings = dict(status.dispute.readings).items()
        views = ", ".join(f"{p} reads a resumed notice as {effect}" for p, effect in readings)
        table.add_row("dispute (R15)", views)
    out.print(table)


@app.command("timeline")
def agreement_timeline(
    file: AgreementFile,
    reading: Annotated[str | None, typer.Option(help="PARTY's reading of a resumed notice, or an effect.")] = None,
    until: Annotated[str | None, typer.Option(help="Last instant to show (ISO 8601 with offset).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Terms, deadlines, notes and each change of state, in order."""
    agreement = terms.load(file)
    _reading(agreement, reading)
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
    out.print(timeline_table(agreement, events, out.width))


@app.command("check")
def agreement_check(files: Annotated[list[Path], typer.Argument(help="Agreement files to check.")]) -> None:
    """Validate agreement files: exit 0, or exit 2 with one line per problem."""
    problems: list[str] = []
    loaded: dict[str, tuple[Path, terms.Agreement]] = {}
    for file in files:
        try:
            agreement = terms.load(file)
        except GsomiaError as exc:
            problems.append(str(exc))
            continue
        problems.extend(lifecycle.validate(agreement))
        loaded[agreement.id] = (file, agreement)
    # An arrangement's carriers are other files: checked against those given with it.
    by_id = {i: a for i, (_, a) in loaded.items()}
    for file, agreement in loaded.values():
        problems.extend(f"{file}: {p}" for p in route.carrier_problems(agreement, by_id))
    for line in problems:
        err.print(line, markup=False, soft_wrap=True)
    if problems:
        raise typer.Exit(2)
    out.print(f"{count(len(files), 'agreement file')} valid")


@app.command("replay")
def replay_command(file: AgreementFile) -> None:
    """Replay the recorded history: status before and after each note, and the counterfactuals."""
    replay(terms.load(file), out)
