"""The analysts' and duty officers' commands: login, share, inbox, items, read, flash, watch.

They speak to the user's own node over its user API (``client.NodeClient``), as the profile
``gsomia login`` wrote says. Each failure is one line on stderr and exit code 2: a refusal
cites the rule the node's decision names (``gsomia: refused: R7: …``); a token the node no
longer accepts says to log in again. Times are shown in the node's party's own zone, and in
ISO 8601 with that offset in JSON.
"""

from __future__ import annotations

import functools
import json
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gsomia.core.agreement.terms import party_zone as zone_of  # each party's own civil time, one map for all
from gsomia.core.errors import GsomiaError
from gsomia.core.words import count

# The client (and with it the HTTP stack) is imported inside the commands that use it, so that
# `gsomia --help` and the other commands start without loading it.
if TYPE_CHECKING:
    from gsomia.cli.client import NodeClient

PANEL = "Analysts and duty officers (over the node's user API)"
BIG = 1 << 20  # files and payloads above this get a progress bar


# Lines are never wrapped: a marking or a path cut in two is harder to copy than a long line.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

ProfileOption = Annotated[
    str,
    typer.Option(
        "--profile",
        metavar="NAME",
        envvar="GSOMIA_PROFILE",
        help="Which login to use (several nodes: one profile each).",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON (times in ISO 8601 with offset).")]
JsonAnswer = Annotated[bool, typer.Option("--json", help="Print the node's answer as JSON.")]


def one_line(fn: F) -> F:
    """Run a command so that every failure is one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        from gsomia.cli.client import NodeError

        try:
            return fn(*args, **kwargs)
        except NodeError as exc:
            _fail(exc.line())
        except GsomiaError as exc:
            _fail(f"gsomia: error: {exc}")

    return run  # type: ignore[return-value]


def _fail(line: str) -> None:
    err.print(line.replace("\n", " "), markup=False, soft_wrap=True)
    raise typer.Exit(2)


def _client(profile: str) -> tuple[NodeClient, str | None]:
    from gsomia.cli.client import NodeClient, load_profile

    found = load_profile(profile)
    return NodeClient.from_profile(found), found.party


def local(at: str, zone: ZoneInfo) -> datetime:
    return datetime.fromisoformat(at).astimezone(zone)


def short_time(at: str, zone: ZoneInfo) -> str:
    """``2019-11-22 18:00 KST``: minutes, the zone's abbreviation."""
    when = local(at, zone)
    return f"{when:%Y-%m-%d %H:%M} {when.tzname()}"


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= BIG else f"{n:,} bytes"


@contextmanager
def _bar(what: str, total: int | None, show: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (for large files only); yields ``advance(bytes)``."""
    if not show or not err.is_terminal:  # a bar is for a person watching a terminal, not for a log
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(what, total=total)
        yield lambda n: progress.advance(task, n)


def register(app: typer.Typer) -> None:
    """Add the people's commands to the ``gsomia`` app."""
    for name, fn in (
        ("login", login),
        ("logout", logout),
        ("share", share),
        ("inbox", inbox),
        ("items", items),
        ("read", read),
        ("flash", flash),
        ("watch", watch),
    ):
        app.command(name, rich_help_panel=PANEL)(one_line(fn))


# login / logout ---------------------------------------------------------------------------


def login(
    node: Annotated[str, typer.Option(metavar="URL", help="The node's user API, e.g. https://kor-node.example:8701.")],
    cacert: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="The node's certificate (keys/PARTY.crt from its operator): trusted alone."),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="The token's file (mode 0600). Default: read from stdin, or asked for."),
    ] = None,
    profile: ProfileOption = "default",
) -> None:
    """Check a token with the node, then keep node, token and certificate in a private profile.

    The token (from `gsomia user add`) is never taken on the command line: a file, stdin or
    a hidden prompt."""
    from gsomia.cli.client import NodeClient, NodeError, Profile, check_url, save_profile

    url = check_url(node)
    if url.startswith("https://") and cacert is None:
        raise NodeError("--cacert: give the node's certificate (keys/PARTY.crt): it is self-signed")
    if token_file is not None:
        try:
            with token_file.open(encoding="utf-8") as f:
                # Like ssh with a private key: a token others could read is a token given away,
                # and saying nothing would teach that it is fine.
                mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
                if mode & 0o077:
                    raise NodeError(f"--token-file: {token_file}: others may read it (mode {mode:04o}); chmod 600 it")
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not text"
            raise NodeError(f"--token-file: {token_file}: {reason}") from None
    elif not sys.stdin.isatty():
        token = sys.stdin.readline().strip()
    else:
        token = typer.prompt("token", hide_input=True).strip()
    if not token or any(c.isspace() for c in token) or len(token) > 256:
        raise NodeError("the token is empty or not one word; give the token `gsomia user add` printed")
    ca = str(cacert.resolve()) if cacert is not None else None
    with NodeClient(url, token, ca) as client:
        party = str(client.health().get("party", "")) or None
        status = client.status()  # the token's test: 401 if the node does not know it
    saved = save_profile(Profile(profile, url, token, ca, party))
    out.print(f"logged in to the {party or '?'} node at {url} (profile {profile}, kept in {saved})", markup=False)
    for partner, s in sorted(status.items()):
        out.print(f"  agreement {s.get('agreement')} with {partner}: {s.get('state')}", markup=False)


def logout(profile: ProfileOption = "default") -> None:
    """Forget a profile's node and token."""
    from gsomia.cli.client import remove_profile

    if remove_profile(profile):
        out.print(f"logged out (profile {profile})", markup=False)
    else:
        out.print(f"not logged in (profile {profile})", markup=False)


# share / flash ------------------------------------------------------------------------------


def share(
    file: Annotated[Path, typer.Argument(help="The file to share (up to 12 MiB).", show_default=False)],
    to: Annotated[str, typer.Option(metavar="PARTY", help="Recipient party, e.g. JPN.")],
    classification: Annotated[str, typer.Option(metavar="MARKING", help="Your national marking, e.g. 군사II급비밀.")],
    purpose: Annotated[
        list[str], typer.Option(metavar="PURPOSE", help="A purpose the recipient may use it for (R5); repeat.")
    ],
    compartment: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="A compartment: readers need it in their need-to-know (R7); repeat."),
    ] = None,
    releasable_to: Annotated[
        list[str] | None,
        typer.Option(metavar="PARTY", help="Parties it may be released to; repeat. Default: the recipient."),
    ] = None,
    as_json: JsonAnswer = False,
    profile: ProfileOption = "default",
) -> None:
    """Share a file with the partner: sealed and labelled by your node, delivered to theirs."""
    from gsomia.cli.client import MAX_PAYLOAD, NodeError

    try:
        size = file.stat().st_size
        if not file.is_file():
            raise NodeError(f"{file}: not a regular file")
    except FileNotFoundError:
        raise NodeError(f"{file}: no such file") from None
    except OSError as exc:
        raise NodeError(f"{file}: {exc.strerror}") from None
    if size > MAX_PAYLOAD:
        raise NodeError(f"{file}: {_size(size)} is over the node's limit of {_size(MAX_PAYLOAD)} for one item")
    client, _ = _client(profile)
    with client:
        big = size > BIG
        with _bar(f"reading {file.name}", size, big) as advance:
            payload = bytearray()
            try:
                with file.open("rb") as f:
                    while piece := f.read(1 << 20):
                        payload += piece
                        advance(len(piece))
            except OSError as exc:
                raise NodeError(f"{file}: {exc.strerror}") from None
        with _bar("sending", (len(payload) + 2) // 3 * 4 + 512, big) as advance:
            result = client.share(
                bytes(payload),
                to.upper(),
                classification,
                purpose,
                compartment or [],
                [p.upper() for p in releasable_to or []],
                progress=advance if big else None,
            )
    if as_json:
        print(json.dumps({**result, "bytes": len(payload)}, ensure_ascii=False))
        return
    out.print(result["item_id"], markup=False)
    err.print(
        f"shared {file.name} ({_size(len(payload))}) with {result['to']} as {result['classification']}", markup=False
    )


def flash(
    text: Annotated[str, typer.Argument(help="The report's text.", show_default=False)],
    to: Annotated[str, typer.Option(metavar="PARTY", help="Recipient party, e.g. JPN.")],
    classification: Annotated[str, typer.Option(metavar="MARKING", help="Your national marking, e.g. 군사II급비밀.")],
    purpose: Annotated[
        list[str] | None, typer.Option(metavar="PURPOSE", help="A purpose the recipient may use it for (R5); repeat.")
    ] = None,
    compartment: Annotated[list[str] | None, typer.Option(metavar="NAME", help="A compartment (R7); repeat.")] = None,
    as_json: JsonAnswer = False,
    profile: ProfileOption = "default",
) -> None:
    """Send a flash report (R17): ahead of any routine traffic."""
    client, _ = _client(profile)
    with client:
        started = time.perf_counter()
        result = client.flash(text, to.upper(), classification, purpose or [], compartment or [])
        took = time.perf_counter() - started
    if as_json:
        print(json.dumps({**result, "seconds": round(took, 4)}, ensure_ascii=False))
        return
    out.print(result["item_id"], markup=False)
    err.print(
        f"flash report to {result['to']} as {result['classification']}: accepted in {took * 1000:.0f} ms", markup=False
    )


# inbox / items / read -----------------------------------------------------------------------


def _provided_as(display: str, marking: str) -> str:
    """``極秘 (KOR 군사II급비밀)`` from the node's long ``display`` of an item received (R4)."""
    marker = " (provided by "
    if marker not in display:
        return marking
    party, _, rest = display.split(marker, 1)[1].partition(" as ")
    return f"{marking} ({party} {rest.split(' under ', 1)[0]})"


def _cut(text: str, width: int) -> Text:
    """``text`` in at most ``width`` cells, an ellipsis where it was cut (wide characters count two)."""
    shown = Text(text)
    shown.truncate(max(width, 1), overflow="ellipsis")
    return shown


def _print_rows(rows: list[dict[str, Any]], zone: ZoneInfo) -> None:
    """Item rows as JSON, each ``created_at`` in ISO 8601 with the reader's offset."""
    shown = [{**row, "created_at": local(row["created_at"], zone).isoformat()} for row in rows]
    print(json.dumps(shown, ensure_ascii=False, indent=2))


def inbox(
    wide: Annotated[bool, typer.Option("--wide", help="Full ids and markings (wider than 80 columns).")] = False,
    as_json: JsonFlag = False,
    profile: ProfileOption = "default",
) -> None:
    """Items received from the partner that you may read, oldest first."""
    client, party = _client(profile)
    zone = zone_of(party)
    with client:
        rows = [r for r in client.items() if r.get("direction") == "in"]
    if as_json:
        _print_rows(rows, zone)
        return
    if not rows:
        out.print("no items received", markup=False)
        return
    # Wide: every column whole, however long the line; else at most 80 columns, the marking cut first.
    width = min(out.width, 80)
    Console(highlight=False, width=1000 if wide else width).print(inbox_table(rows, zone, wide, width))
    if not wide:
        out.print(f"{count(len(rows), 'item')}; full ids: --wide or --json", markup=False)


INBOX_FIXED = 8 + 20 + 4 + 5 + 4 * 2  # id, time, party, lane and the two-cell gaps between the five columns


def inbox_table(rows: list[dict[str, Any]], zone: ZoneInfo, wide: bool, width: int = 80) -> Table:
    """The inbox: short ids and markings cut to ``width`` (``--wide``: whole), times in the reader's zone."""
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    # Only the marking gives way to the width: an id, a time or a party cut short is no use.
    table.add_column("id", no_wrap=True, min_width=36 if wide else 8)
    table.add_column(f"created ({zone.key})" if wide else "created", no_wrap=True, min_width=20)
    table.add_column("from", no_wrap=True, min_width=4)
    table.add_column("lane", no_wrap=True, min_width=5)
    table.add_column("marking", no_wrap=True)
    for r in rows:
        table.add_row(
            escape(r["item_id"] if wide else r["item_id"][:8]),
            short_time(r["created_at"], zone),
            escape(r["originator"]),
            escape(r["lane"]),
            Text(r["display"]) if wide else _cut(_provided_as(r["display"], r["marking"]), width - INBOX_FIXED),
        )
    return table


def items(
    as_json: JsonFlag = False,
    profile: ProfileOption = "default",
) -> None:
    """Every item id you may see, one a line (for `gsomia audit prove`); --json for the rows."""
    client, party = _client(profile)
    zone = zone_of(party)
    with client:
        if as_json:
            _print_rows(list(client.items()), zone)
            return
        for r in client.items():  # page by page, as they come
            print(r["item_id"])


ITEM_ID = re.compile(r"[0-9A-Za-z-]{1,64}")


def read(
    item_id: Annotated[str, typer.Argument(help="The item's id (from inbox or items).", show_default=False)],
    output: Annotated[
        str, typer.Option("-o", "--output", metavar="FILE", help="File to write the payload to (0600); - for stdout.")
    ],
    purpose: Annotated[str | None, typer.Option(metavar="PURPOSE", help="The purpose you read it for (R5).")] = None,
    force: Annotated[bool, typer.Option(help="Replace FILE if it exists.")] = False,
    profile: ProfileOption = "default",
) -> None:
    """Read an item: its payload to FILE, its marking in your own scheme on the terminal."""
    from gsomia.cli.client import NodeError

    if not ITEM_ID.fullmatch(item_id):
        raise NodeError(f"{item_id!r} is not an item id (as `gsomia items` lists them)")
    target = None if output == "-" else Path(output)
    if target is not None:
        if target.is_dir():
            raise NodeError(f"{target}: is a directory; name the file to write")
        if target.exists() and not force:
            raise NodeError(f"{target}: already exists (use --force to replace it)")
        if not (target.parent if str(target.parent) else Path(".")).is_dir():
            raise NodeError(f"{target}: directory {target.parent} does not exist")
    client, party = _client(profile)
    zone = zone_of(party)
    with client, _Download(f"reading {item_id[:8]}") as bar:
        found = client.read(item_id, purpose, progress=bar.update)
    payload: bytes = found["payload"]
    label = found.get("label", {})
    info = out if target is not None else err  # the payload alone on stdout with -o -
    info.print(f"{found['item_id']}: {found['display']}", markup=False)
    details = [
        f"originator {label.get('originator', '?')}",
        f"created {short_time(label['created_at'], zone)}" if label.get("created_at") else "",
        f"releasable to {', '.join(label.get('releasable_to') or []) or '-'}",
        f"purposes {', '.join(label.get('purposes') or []) or '-'}",
        f"compartments {', '.join(label.get('compartments') or []) or '-'}",
    ]
    info.print("  " + "; ".join(d for d in details if d), markup=False)
    if target is None:
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
        return
    from gsomia.store.files import atomic_output

    with atomic_output(target, mode=0o600, overwrite=force) as f:
        f.write(payload)
    info.print(f"  wrote {_size(len(payload))} to {target} (mode 0600)", markup=False)


class _Download:
    """A progress bar that appears once an answer turns out to be large."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> _Download:
        return self

    def update(self, done: int, total: int | None) -> None:
        if self.progress is None:
            if (total or done) <= BIG or not err.is_terminal:
                return
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                console=err,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.what, total=total)
        self.progress.update(self.task, completed=done)

    def __exit__(self, *_: object) -> None:
        if self.progress is not None:
            self.progress.stop()


# watch --------------------------------------------------------------------------------------

BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)  # seconds before each reconnection in a row


def watch(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line per report.")] = False,
    profile: ProfileOption = "default",
) -> None:
    """Flash reports as they arrive, until Ctrl-C; resumes after a dropped connection."""
    from gsomia.cli.client import NodeError

    client, party = _client(profile)
    zone = zone_of(party)
    last: str | None = None
    failures = 0

    def opened() -> None:
        nonlocal failures
        failures = 0
        err.print(f"watching flash reports at {client.node} (Ctrl-C to stop)", markup=False)

    try:
        with client:
            while True:
                try:
                    for event_id, report in client.stream(last, opened):
                        last = event_id or last
                        _show_report(report, zone, as_json)
                    why = "the node closed the stream"
                except NodeError as exc:
                    # The node said no (a token, a limit): retrying will not help. A proxy's 5xx may pass.
                    if exc.answered is not None and exc.answered < 500:
                        raise
                    why = str(exc)
                pause = BACKOFF[min(failures, len(BACKOFF) - 1)]
                failures += 1
                err.print(f"{why}; reconnecting in {pause:g} s", markup=False, soft_wrap=True)
                time.sleep(pause)
    except KeyboardInterrupt:
        err.print("stopped", markup=False)
        raise typer.Exit(0) from None


def _show_report(report: dict[str, Any], zone: ZoneInfo, as_json: bool) -> None:
    if as_json:
        shown = {**report, "created_at": local(report["created_at"], zone).isoformat()}
        print(json.dumps(shown, ensure_ascii=False), flush=True)
        return
    when = "?"
    if report.get("created_at"):
        at = local(report["created_at"], zone)
        when = f"{at:%Y-%m-%d %H:%M:%S} {at.tzname()}"
    origin = report.get("origin") or "?"
    marking = escape(str(report.get("display") or report.get("marking") or ""))
    out.print(f"[bold]FLASH[/bold] {when}  from {escape(str(origin))}  {marking}")
    out.print(f"  {report.get('text', '')}", markup=False)
    sys.stdout.flush()
