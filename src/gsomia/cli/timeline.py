"""How an agreement's states look on a terminal: their colours and the timeline table
(``agreement timeline`` and ``agreement replay``)."""

from __future__ import annotations

from rich import box
from rich.table import Table

from gsomia.core.agreement import lifecycle, terms

STATE_STYLE = {
    "not_in_force_yet": "dim",
    "in_force": "green",
    "termination_pending": "yellow",
    "termination_suspended": "cyan",
    "terminated": "red",
}


def timeline_table(agreement: terms.Agreement, events: list[lifecycle.Event], width: int) -> Table:
    """The timeline, whole in ``width`` columns (80 and up): the instant is never cut, and where
    the columns do not fit side by side the event (with the party that gave the note) and the
    state wrap between words, down to their longest word, leaving the rest to the detail."""
    table = Table(
        title=f"{agreement.id}: timeline ({agreement.timezone})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        show_edge=False,
    )
    kinds = [e.kind + (f" by {e.note.by}" if e.note else "") for e in events]
    states = [e.state.value.replace("_", " ") for e in events]

    def longest(texts: list[str], words: bool) -> int:
        return max((len(w) for t in texts for w in (t.split() if words else [t])), default=1)

    # 16 for the instant, 3 between columns; below this the detail would get less than 40.
    narrow = width < 16 + 3 * 3 + longest(kinds, False) + longest(states, False) + 40
    zone = agreement.local(events[0].at).tzname() if events else None
    table.add_column(f"instant ({zone})" if zone else "instant", no_wrap=True)
    table.add_column("event", width=longest(kinds, True) if narrow else None)
    table.add_column("state after", width=longest(states, True) if narrow else None)
    table.add_column("detail", ratio=1 if narrow else None)
    for e, kind, state in zip(events, kinds, states, strict=True):
        style = STATE_STYLE[e.state.value]
        table.add_row(agreement.local(e.at).strftime("%Y-%m-%d %H:%M"), kind, f"[{style}]{state}[/{style}]", e.detail)
    return table
