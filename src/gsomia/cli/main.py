"""The ``gsomia`` command line: thin, over the pure core.

Every ``GsomiaError`` becomes one line on stderr and exit code 2; a usage error is
Click's exit 2; anything else is a bug and says so.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from gsomia.core.agreement import lifecycle, schemes, terms
from gsomia.core.errors import GsomiaError, InvalidInput
from gsomia.core.words import count

app = typer.Typer(
    help="gsomia: classified military information shared under an agreement, sealed, labelled and provable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
agreement_app = typer.Typer(help="Agreement files: status, timeline, checks.", no_args_is_help=True)
app.add_typer(agreement_app, name="agreement")

# Tables fit the terminal, down to 80 columns, by wrapping their text columns. Piped output,
# where nothing says how wide the reader is, is 132 wide unless COLUMNS says otherwise.
out = Console(highlight=False, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 132)
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


@agreement_app.command("timeline")
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
    out.print(f"{count(len(files), 'agreement file')} valid")


keys_app = typer.Typer(
    help="Node keys: generate a party's key pair, rotate a node's key, show its chain.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
policy_app = typer.Typer(help="Access decisions: explain why an action is permitted or denied.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@keys_app.command("generate")
def keys_generate(
    party: Annotated[str, typer.Option(help="ISO 3166-1 alpha-3 code of the party, e.g. KOR.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for PARTY.key (mode 0600) and PARTY.pub.")],
    suite: Annotated[str, typer.Option(help="classic or pq-hybrid (the agreement file chooses).")] = "classic",
    host: Annotated[
        list[str] | None,
        typer.Option(help="Host name or IP address the peer API is reached at; repeat. Default: 127.0.0.1, localhost."),
    ] = None,
    tls_only: Annotated[
        bool, typer.Option("--tls-only", help="Only a new TLS certificate and key (PARTY.crt, PARTY.tls.key).")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace existing files.")] = False,
) -> None:
    """Generate a party's node keys (KEM + signature) and its TLS certificate for the user and peer APIs.

    A running node's key is replaced with `gsomia keys rotate`, never by generating over it."""
    from gsomia.node.init import key_files, write_node_keys, write_tls

    if len(party) != 3 or not party.isascii() or not party.isupper():
        raise InvalidInput(f"--party: {party!r} is not an ISO 3166-1 alpha-3 code such as KOR")
    if suite not in terms.SUITES:
        raise InvalidInput(f"--suite: {suite!r} is not one of {', '.join(terms.SUITES)}")
    hosts = tuple(host or ("127.0.0.1", "localhost"))
    for name in hosts:
        if not name or any(c.isspace() or c in "/:@" for c in name):
            raise InvalidInput(f"--host: {name!r} is not a host name or IP address")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = key_files(out_dir, party)  # the files `gsomia node init` writes, by the same code
    key_path, pub_path, crt_path, tls_key_path = files.key, files.public, files.tls_cert, files.tls_key
    targets = (crt_path, tls_key_path) if tls_only else (key_path, pub_path, crt_path, tls_key_path)
    if not force:
        for path in targets:
            if path.exists():
                raise InvalidInput(f"{path}: already exists (use --force to replace it)")
    if not tls_only:
        private = write_node_keys(files, party, suite)
        out.print(
            f"{party} {suite} keys: {key_path} (private, 0600), {pub_path} (public, key id {private.public().kid})"
        )
    write_tls(files, party, hosts, datetime.now().astimezone())
    out.print(
        f"{party} TLS for the user and peer APIs: {crt_path} (certificate for {', '.join(hosts)}), {tls_key_path} (private, 0600)"
    )


@keys_app.command("rotate")
def keys_rotate(config: Annotated[Path, typer.Option("--config", help="The node's node.toml.")]) -> None:
    """Replace a stopped node's key: the old key signs the new one in, the ledger records it.

    The old private key moves to retired/ beside the key file (items sealed to it stay
    readable); the partner learns the new key at the next message, from the statement.
    """
    from gsomia.node import config as node_config
    from gsomia.node import keychain
    from gsomia.store.db import open_node_database

    cfg = node_config.load(config)
    rotation = keychain.rotate(cfg, open_node_database(cfg))
    out.print(
        f"{rotation.party}: rotation {rotation.number} at {_party_time(rotation.at, cfg.party)}: key {rotation.old.kid} "
        f"retired to {keychain.retired_dir(cfg)}, key {rotation.new.kid} current from ledger entry {rotation.tree_size}"
    )
    out.print(f"give the partner's operator {keychain.public_path(cfg)} (or let its node learn it on contact)")


@keys_app.command("history")
def keys_history(
    config: Annotated[Path, typer.Option("--config", help="The node's node.toml.")], as_json: JsonFlag = False
) -> None:
    """Every key of this node and of its partners, in order, with when each was retired."""
    from gsomia.node import config as node_config
    from gsomia.node import keychain
    from gsomia.store.db import open_node_database

    cfg = node_config.load(config)
    engine = open_node_database(cfg)
    cfg, _, own = keychain.resolve(cfg, engine)
    with engine.connect() as conn:
        chains = [own, *(keychain.history(conn, p.public_key) for p in cfg.peers.values())]
    rows = keychain.summary(chains)
    if as_json:
        print(json.dumps(rows))
        return
    # Fits 80 columns with every key id whole (what operators compare); the instants wrap.
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold underline")
    table.add_column("party", no_wrap=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("key id", no_wrap=True)
    table.add_column("since", min_width=len("2019-11-23"))
    table.add_column("retired", min_width=len("2019-11-23"))
    table.add_column("heads from size", justify="right", min_width=len("heads"))
    for r in rows:
        table.add_row(
            r["party"],
            str(r["number"]),
            r["kid"],
            _party_time(r["since"], cfg.party) if r["since"] else "(first key)",
            _party_time(r["retired_at"], cfg.party) if r["retired_at"] else "current",
            str(r["heads_from_size"]),
        )
    out.print(table)


def _party_time(at: str | datetime, party: str) -> str:
    """An instant for ``party``'s operator, in that party's own zone: ``2019-11-22 18:00 KST``."""
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    return terms.short_time(when.astimezone(terms.party_zone(party)))


def _progress(total: int | None) -> Any:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal or (total is not None and total < (8 << 20)),
    )


@app.command("seal")
def seal_command(
    src: Annotated[Path, typer.Argument(help="Payload file to seal.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Envelope file to write.")],
    agreement_file: Annotated[Path, typer.Option("--agreement", help="Agreement file the item is provided under.")],
    key: Annotated[Path, typer.Option(help="Originator's private key file (PARTY.key).")],
    to: Annotated[list[Path], typer.Option(help="Recipient public key file (PARTY.pub); repeat for several.")],
    classification: Annotated[str, typer.Option(help="The originator's national marking, e.g. 군사II급비밀.")],
    releasable_to: Annotated[
        str | None, typer.Option(help="Comma-separated parties (default: the recipients).")
    ] = None,
    purpose: Annotated[list[str] | None, typer.Option(help="Permitted purpose (caveat); repeat for several.")] = None,
    compartment: Annotated[list[str] | None, typer.Option(help="Need-to-know compartment; repeat.")] = None,
    segment_size: Annotated[int, typer.Option(help="Segment size in bytes.")] = 1 << 20,
    at: Annotated[
        str | None, typer.Option(help="Release instant (default: now), checked against the agreement.")
    ] = None,
) -> None:
    """Seal a payload: encrypt, label, bind, sign, and wrap its key for each recipient."""
    from gsomia.core import envelope, label
    from gsomia.store.files import atomic_output, load_private, load_public

    agreement = terms.load(agreement_file)
    originator = load_private(key)
    recipients = [load_public(p) for p in to]
    release = parse_instant(at) if at else datetime.now().astimezone()
    status = lifecycle.status(agreement, release)
    if not status.in_force:
        rule = status.refusing_rule
        raise InvalidInput(
            f"{agreement.id} is {status.state.value} at {agreement.shown(release, originator.party)}: "
            f"nothing may be provided under it ({rule})"
        )
    parties = (
        tuple(p.strip() for p in releasable_to.split(",") if p.strip())
        if releasable_to
        else tuple(sorted({r.party for r in recipients} - {originator.party}))
    )
    # Sealed in the agreement's own spelling of the marking (군사Ⅱ급비밀 is 군사II급비밀, R3);
    # one it does not know is refused below, naming the markings it covers.
    classification = schemes.spelling(agreement, originator.party, classification) or classification
    item = label.Label(
        item_id=label.new_item_id(),
        agreement=agreement.id,
        originator=originator.party,
        classification=classification,
        releasable_to=parties,
        created_at=release,
        purposes=tuple(purpose or ()),
        compartments=tuple(compartment or ()),
    )
    if src.is_dir() or not src.exists():
        raise InvalidInput(f"{src}: no such payload file")
    total = src.stat().st_size
    with src.open("rb") as raw, atomic_output(output, source=src) as sink, _progress(total) as bar:
        reader = bar.wrap_file(raw, total=total, description="sealing")
        envelope.seal_stream(reader, sink, item, originator, recipients, agreement, segment_size)
    out.print(
        f"sealed {total} bytes as item {item.item_id} ({classification}, releasable to {', '.join(parties)}) -> {output}"
    )


@app.command("open")
def open_command(
    src: Annotated[Path, typer.Argument(help="Envelope file.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Payload file to write (only if all checks pass).")],
    agreement_file: Annotated[Path, typer.Option("--agreement", help="Agreement file.")],
    key: Annotated[Path, typer.Option(help="Recipient's private key file (PARTY.key).")],
    trust: Annotated[list[Path], typer.Option(help="Trusted originator public key (PARTY.pub); repeat.")],
    as_json: JsonFlag = False,
) -> None:
    """Verify and open an envelope; print its label in the recipient's marking (R4).

    The payload is written to a temporary file only its owner can read and takes the
    output's name (mode 0600) only once every check has passed."""
    from gsomia.core import envelope, label
    from gsomia.store.files import PRIVATE_FILE, atomic_output, load_private, load_public

    agreement = terms.load(agreement_file)
    recipient = load_private(key)
    trusted = [load_public(p) for p in trust]
    if src.is_dir() or not src.exists():
        raise InvalidInput(f"{src}: no such envelope file")
    total = src.stat().st_size
    with (
        src.open("rb") as raw,
        atomic_output(output, mode=PRIVATE_FILE, source=src) as sink,
        _progress(total) as bar,
    ):
        reader = bar.wrap_file(raw, total=total, description="opening")
        try:
            opened = envelope.open_stream(reader, sink, recipient, trusted, agreement)
        except (envelope.EnvelopeError, label.LabelInvalid) as exc:
            raise envelope.EnvelopeError(f"{src}: refused ({type(exc).__name__}): {exc}") from None
    item = opened.label
    data = {
        **item.as_dict(),
        "marking": label.marking_for(item, agreement, recipient.party),
        "display": label.display(item, agreement, recipient.party),
        "signed_by": opened.signer.kid,
        "size": opened.size,
    }
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    out.print(f"[bold]{data['display']}[/bold]")
    out.print(f"item {item.item_id} from {item.originator}, releasable to {', '.join(item.releasable_to)}")
    if item.purposes:
        out.print(f"permitted purposes: {', '.join(item.purposes)}")
    out.print(f"verified signature of {item.originator} (key {opened.signer.kid}); {opened.size} bytes -> {output}")


def _read_json(path: Path, what: str) -> Any:
    from gsomia.store.files import read_bytes

    try:
        return json.loads(read_bytes(path, what).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, over-long numbers, deep nesting
        raise InvalidInput(f"{path}: the {what} is not valid JSON ({str(exc)[:120]})") from None


@policy_app.command("explain")
def policy_explain(
    agreement_file: Annotated[Path, typer.Option("--agreement", help="Agreement file.")],
    subject_file: Annotated[
        Path, typer.Option("--subject", help="Subject JSON (above; e.g. examples/kor-analyst.json).")
    ],
    label_file: Annotated[
        Path, typer.Option("--label", help="Label JSON (above; e.g. examples/jpn-secret-label.json).")
    ],
    action: Annotated[
        str, typer.Option(help="provide, read, reproduce, translate, reclassify, release_to_third_party, destroy.")
    ],
    at: Annotated[str | None, typer.Option(help="Instant of the action (default: now).")] = None,
    recipient: Annotated[str | None, typer.Option(help="Recipient party (provide, release_to_third_party).")] = None,
    purpose: Annotated[str | None, typer.Option(help="Declared purpose of the use.")] = None,
    consent: Annotated[list[Path] | None, typer.Option(help="Consent JSON by the originator; repeat.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Decide one action and say why: exit 0 permit, 1 deny, 2 bad input.

    \b
    --subject: who acts, a JSON object (examples/kor-analyst.json):
      {"id": "kim.analyst", "party": "KOR", "role": "analyst",
       "clearance": "군사II급비밀", "need_to_know": ["nk-missile"]}
    role: analyst, duty_officer, security_authority or auditor;
    clearance: a marking of the subject's own party (null: none);
    optional: "contractor": {"facility": ..., "facility_cleared": true,
    "responsible_official": ...}.

    \b
    --label: the item's security label, a JSON object
    (examples/jpn-secret-label.json):
      {"item_id": "6f1c2a4e-8b3d-4c5e-9a7f-0d1e2f3a4b5c",
       "agreement": "jp-kr-gsomia-2016", "originator": "JPN",
       "classification": "極秘", "releasable_to": ["KOR"],
       "created_at": "2019-12-02T09:00:00+09:00",
       "purposes": ["nk-missile"]}
    classification: the originator's marking; instants: ISO 8601 with
    an offset; optional: compartments, originator_control (true),
    route (direct or trilateral), review_at.

    \b
    --consent: {"item_id", "recipient", "purpose", "granted_by",
    "granted_at"}, the originator's prior approval (R5).

    \b
    Example:
      gsomia policy explain --agreement agreements/jp-kr-gsomia-2016.toml \\
        --subject examples/kor-analyst.json \\
        --label examples/jpn-secret-label.json \\
        --action read --at 2019-12-02T10:00:00+09:00 --purpose nk-missile
    """
    from gsomia.core import label, policy

    agreement = terms.load(agreement_file)
    subject = policy.subject_from_dict(_read_json(subject_file, "subject"))
    try:
        item = label.Label.from_dict(_read_json(label_file, "label"))
    except (ValueError, OverflowError, RecursionError) as exc:  # dates out of range and the like
        raise InvalidInput(f"{label_file}: not a valid label ({exc})") from None
    consents = [policy.consent_from_dict(_read_json(p, "consent")) for p in consent or ()]
    if action not in {a.value for a in policy.Action}:
        raise InvalidInput(f"--action: {action!r} is not one of {', '.join(a.value for a in policy.Action)}")
    instant = parse_instant(at) if at else datetime.now().astimezone()
    status = lifecycle.status(agreement, instant)
    decision = policy.decide(
        agreement, subject, action, item, status, consents, instant, recipient=recipient, purpose=purpose
    )
    if as_json:
        print(json.dumps({**decision.as_dict(), "state": status.state.value}, ensure_ascii=False, indent=2))
    else:
        style = "green" if decision.permit else "red"
        out.print(
            f"[{style}]{decision.effect}[/{style}] {action} by {subject.id} ({subject.party}, {subject.role}) "
            f"on item {item.item_id} at {agreement.shown(instant, subject.party)} [{status.state.value}]"
        )
        for reason in decision.reasons:
            out.print(f"  {reason}")
        for obligation in decision.obligations:
            out.print(f"  then: {obligation}")
    raise typer.Exit(0 if decision.permit else 1)


node_app = typer.Typer(help="Run a national node.", no_args_is_help=True)
app.add_typer(node_app, name="node")
user_app = typer.Typer(help="Local users of a node: tokens, roles, clearances.", no_args_is_help=True)
app.add_typer(user_app, name="user")
ConfigOption = Annotated[Path, typer.Option("--config", help="The node's node.toml.")]


@node_app.command("serve")
def node_serve(
    config: ConfigOption,
    flash_link: Annotated[int | None, typer.Option(hidden=True, help="Run as the node's flash process.")] = None,
) -> None:
    """Serve the user API and the mutual-TLS peer API, and deliver the outbox.

    With flash_listen in the configuration, flash work (R17) runs in a second process on
    ports of its own, which this one starts, watches and stops."""
    from gsomia.node import config as node_config
    from gsomia.node.serve import run

    cfg = node_config.load(config)
    if flash_link is not None and cfg.flash_listen is None:
        raise typer.BadParameter("this configuration has no flash_listen", param_hint="--flash-link")
    scheme = "https" if cfg.user_tls else "http"
    if flash_link is None:
        out.print(
            f"gsomia node {cfg.party}: user API {scheme}://{cfg.listen[0]}:{cfg.listen[1]}, "
            f"peer API https://{cfg.peer_listen[0]}:{cfg.peer_listen[1]} (mutual TLS)"
        )
    if flash_link is None and cfg.flash_listen and cfg.flash_peer_listen:
        out.print(
            f"gsomia node {cfg.party}: flash process: user API {scheme}://{cfg.flash_listen[0]}:{cfg.flash_listen[1]}, "
            f"peer API https://{cfg.flash_peer_listen[0]}:{cfg.flash_peer_listen[1]}"
        )
    run(cfg, flash_link)


# node init, export-partner-file, import-partner-file: standing a node up (docs/deploy.md)
from gsomia.cli.node import register as _register_node_setup  # noqa: E402

_register_node_setup(node_app)


def _node(config: Path) -> Any:
    from gsomia.node import config as node_config
    from gsomia.node.clock import SystemClock
    from gsomia.node.service import Node
    from gsomia.store.db import open_node_database

    cfg = node_config.load(config)
    return Node(cfg, open_node_database(cfg), SystemClock())


@user_app.command("add")
def user_add(
    config: ConfigOption,
    user_id: Annotated[str, typer.Argument(help="User id, e.g. kim.analyst.")],
    role: Annotated[str, typer.Option(help="analyst, duty_officer, security_authority or auditor.")],
    clearance: Annotated[str | None, typer.Option(help="National marking the user is cleared to.")] = None,
    need_to_know: Annotated[list[str] | None, typer.Option(help="Compartment or purpose; repeat.")] = None,
) -> None:
    """Add a user; prints its API token once (only a hash is stored).

    USER_ID: 1 to 64 of a-z, 0-9, '.', '_' and '-'. --clearance: a marking of the node's
    own party's national scheme (R7)."""
    from gsomia.core import users
    from gsomia.node import config as node_config
    from gsomia.node.clock import SystemClock
    from gsomia.node.service import Node
    from gsomia.store.db import open_node_database

    cfg = node_config.load(config)
    users.check_user_id(user_id)  # refused before the database is opened (or made)
    users.check_clearance(cfg.agreements, cfg.party, clearance)
    users.check_need_to_know(need_to_know or [])
    node = Node(cfg, open_node_database(cfg), SystemClock())
    token = node.add_user(user_id, role, clearance, need_to_know or [])
    out.print(f"user {user_id} ({role}) added; token (shown once):")
    print(token)


@user_app.command("list")
def user_list(config: ConfigOption, as_json: JsonFlag = False) -> None:
    """List users with role, clearance and state."""
    node = _node(config)
    users = node.list_users()
    if as_json:
        print(json.dumps(users, ensure_ascii=False, indent=2))
        return
    # Fits 80 columns whole: an id folds rather than lose characters, a role is never cut, the rest wraps.
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
    table.add_column("user", overflow="fold")
    table.add_column("role", no_wrap=True)
    table.add_column("clearance")
    table.add_column("need-to-know")
    table.add_column("state")
    for u in users:
        table.add_row(
            u["user_id"],
            u["role"],
            u["clearance"] or "",
            ", ".join(u["need_to_know"]),
            "revoked " + _party_time(u["revoked_at"], node.party) if u["revoked_at"] else "active",
        )
    out.print(table)


@user_app.command("revoke")
def user_revoke(config: ConfigOption, user_id: Annotated[str, typer.Argument(help="User id.")]) -> None:
    """Revoke a user's token at once."""
    _node(config).revoke_user(user_id)
    out.print(f"user {user_id} revoked")


audit_app = typer.Typer(help="The ledger: verify it, prove an item, check a proof.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(config: ConfigOption, as_json: JsonFlag = False) -> None:
    """Recompute every entry, tree node and stored tree head; exit 2 naming the first bad one."""
    from gsomia.node import audit, keychain
    from gsomia.node import config as node_config
    from gsomia.store.db import open_node_database

    cfg = node_config.load(config)
    engine = open_node_database(cfg)
    peers = {p: peer.public_key for p, peer in cfg.peers.items()}
    try:
        cfg = keychain.resolve(cfg, engine)[0]
    except GsomiaError:  # the recorded key chain does not load: name the entry at fault where the ledger can
        audit.verify_node(engine, cfg.key.public(), peers)
        raise
    result = audit.verify_node(engine, cfg.key.public(), peers)
    if as_json:
        print(json.dumps(result))
        return
    out.print(
        f"ledger of {result['party']}: {count(result['size'], 'entry', 'entries')}, root {result['root']}, "
        f"{count(result['tree_heads_checked'], 'signed tree head')} checked: all consistent"
        + (
            f"; {count(result['queued'], 'entry', 'entries')} of flash reports queued for the log"
            if result["queued"]
            else ""
        )
    )


@audit_app.command("prove")
def audit_prove(
    item_id: Annotated[str, typer.Argument(help="The item whose ledger entries to prove.")],
    config: ConfigOption,
) -> None:
    """Print an inclusion proof (JSON) of every ledger entry about ITEM_ID under a freshly signed head."""
    from gsomia.node import audit, keychain
    from gsomia.node import config as node_config
    from gsomia.store.db import open_node_database

    cfg = node_config.load(config)
    engine = open_node_database(cfg)
    cfg = keychain.resolve(cfg, engine)[0]
    print(json.dumps(audit.prove(engine, cfg.key, item_id), ensure_ascii=False, indent=2))


@audit_app.command("check-proof")
def audit_check_proof(
    proof_file: Annotated[Path, typer.Argument(help="A proof from `gsomia audit prove`.")],
    trust: Annotated[Path, typer.Option(help="The node's public key file (PARTY.pub).")],
    as_json: JsonFlag = False,
) -> None:
    """Check a proof with the node's public key only."""
    from gsomia.node import audit
    from gsomia.store.files import load_public

    result = audit.check_proof(_read_json(proof_file, "proof"), load_public(trust))
    if as_json:
        print(json.dumps(result))
        return
    out.print(
        f"proof checks: {count(len(result['entries']), 'entry', 'entries')} ({', '.join(result['entries'])}) in "
        f"{result['party']}'s log of {count(result['size'], 'entry', 'entries')}, root {result['root'][:16]}…, signed at {result['signed_at']}"
    )


@app.command("demo")
def demo(
    agreement_file: Annotated[
        Path, typer.Option("--agreement", help="Agreement whose terms the nodes run under.")
    ] = Path("agreements/jp-kr-gsomia-2016.toml"),
    headless: Annotated[bool, typer.Option(help="No narrative; exit when the story ends.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with the figures.")] = False,
    suspension: Annotated[bool, typer.Option(help="--no-suspension: the pact ends at 2019-11-23 00:00 KST.")] = True,
    root: Annotated[Path, typer.Option(help="Where the nodes keep their state.")] = Path(".demo"),
    items: Annotated[int, typer.Option(min=1, max=100000, help="Routine items each side shares.")] = 200,
    flash: Annotated[int, typer.Option(min=1, max=10000, help="Flash reports JPN sends.")] = 20,
) -> None:
    """KOR and JPN nodes on loopback replay the 2019 story on a simulated clock.

    --headless prints a short summary (items, flash reports, the notes' instants in the
    agreement's zone, whether the pact is in force); --json prints the same as one JSON
    object, instants in ISO 8601 with their offset."""
    from gsomia.cli.demo import run, summary

    if not headless:
        replay_command(agreement_file)
    result = run(
        root,
        agreement_file,
        out,
        headless=headless or as_json,
        suspension=suspension,
        items_per_side=items,
        flash_count=flash,
        keep_running=not headless,
    )
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    elif headless:
        for line in summary(result, terms.load(agreement_file)):
            out.print(line, markup=False, soft_wrap=True)


@agreement_app.command("replay")
def replay_command(file: AgreementFile) -> None:
    """Replay the recorded history: status before and after each note, and the counterfactuals."""
    from gsomia.cli.replay import replay

    replay(terms.load(file), out)


# The analysts' and duty officers' client of the user API: login, share, inbox, items, read, flash, watch.
from gsomia.cli.people import register as _register_people  # noqa: E402

_register_people(app)


def main() -> None:
    """Entry point: Click handles usage errors (exit 2); every ``GsomiaError`` is one line and
    exit 2, and so is a database that does not answer (its server down, a wrong host or port)."""
    try:
        app()
    except GsomiaError as exc:
        err.print(f"gsomia: error: {exc}", markup=False, soft_wrap=True)
        sys.exit(2)
    except Exception as exc:
        from sqlalchemy.exc import OperationalError

        if not isinstance(exc, OperationalError):
            raise
        reason = str(exc.orig or exc).strip().splitlines()[0]  # the driver's words: host, port, why
        err.print(f"gsomia: error: database unavailable: {reason}", markup=False, soft_wrap=True)
        sys.exit(2)
