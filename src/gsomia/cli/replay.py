"""Replay an agreement's recorded history (`gsomia agreement replay`).

Shows the status just before and after every note, the 2019 night when the pact
held, and the counterfactual where it did not. Everything comes from the pure
lifecycle engine; this module only tells the story.
"""

from __future__ import annotations

from datetime import timedelta

from rich.console import Console
from rich.panel import Panel

from gsomia.cli.timeline import STATE_STYLE, timeline_table
from gsomia.core.agreement import lifecycle
from gsomia.core.agreement.terms import Agreement, NoteType


def _line(agreement: Agreement, label: str, status: lifecycle.Status) -> str:
    style = STATE_STYLE[status.state.value]
    return f"  {label:<22} [{style}]{status.state.value}[/{style}]"


def replay(agreement: Agreement, console: Console) -> None:
    console.print(Panel.fit(f"[bold]{agreement.title}[/bold]\n{agreement.id} · parties {', '.join(agreement.parties)}"))
    console.print(timeline_table(agreement, lifecycle.timeline(agreement), console.width))
    second = timedelta(seconds=1)
    for note in sorted(agreement.notes, key=lambda n: (n.at, n.index)):
        # The agreement's zone: the story is told to both parties at once.
        console.print(f"\n[bold]{note.type.value}[/bold] by {note.by} at {agreement.shown(note.at)}")
        if note.ref:
            console.print(f"  [dim]{note.ref}[/dim]")
        console.print(_line(agreement, "just before", lifecycle.status(agreement, note.at - second)))
        console.print(_line(agreement, "just after", lifecycle.status(agreement, note.at)))
        if note.type is NoteType.SUSPEND:
            pending = lifecycle.status(agreement, note.at - second).termination
            if pending is not None:
                end = pending.effective_at
                console.print(f"  midnight ({agreement.shown(end)}) passes:")
                console.print(_line(agreement, "  with the suspension", lifecycle.status(agreement, end)))
                without = agreement.with_notes(tuple(n for n in agreement.notes if n is not note and n.at < note.at))
                console.print(_line(without, "  without it", lifecycle.status(without, end)))
    suspended = [n for n in agreement.notes if n.type is NoteType.SUSPEND]
    if suspended and agreement.readings:
        console.print("\n[bold]R15[/bold]: the parties read a resumed notice differently:")
        for party, effect in sorted(agreement.readings.items()):
            console.print(f"  {party}: {effect}")
