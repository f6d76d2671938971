"""``gsomia seal`` and ``gsomia open``: an item's payload sealed into an envelope under an
agreement, and opened again by a recipient once every check has passed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gsomia.cli.terminal import JsonFlag, at_or_now, err, out
from gsomia.core.agreement import lifecycle, schemes, terms
from gsomia.core.errors import InvalidInput

# The envelope code and the key files are imported inside the commands that use them, so that
# `gsomia --help` and the other commands start without loading the cryptography stack.


def register(app: typer.Typer) -> None:
    """Add ``seal`` and ``open`` to the ``gsomia`` app."""
    app.command("seal")(seal_command)
    app.command("open")(open_command)


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
    release = at_or_now(at)
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
