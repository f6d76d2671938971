"""``gsomia policy explain``: one access decision, and the rules behind it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gsomia.cli.terminal import JsonFlag, at_or_now, out, read_json
from gsomia.core.agreement import lifecycle, terms
from gsomia.core.errors import InvalidInput

if TYPE_CHECKING:
    from gsomia.core.label import Label
    from gsomia.core.policy import Consent, Subject

app = typer.Typer(help="Access decisions: explain why an action is permitted or denied.", no_args_is_help=True)


@app.command("explain")
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
    from gsomia.core import policy  # see _read_inputs

    agreement = terms.load(agreement_file)
    subject, item, consents = _read_inputs(subject_file, label_file, consent or [])
    if action not in {a.value for a in policy.Action}:
        raise InvalidInput(f"--action: {action!r} is not one of {', '.join(a.value for a in policy.Action)}")
    instant = at_or_now(at)
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


def _read_inputs(
    subject_file: Path, label_file: Path, consent_files: list[Path]
) -> tuple[Subject, Label, list[Consent]]:
    """The subject, the item's label and the originator's consents, from their JSON files."""
    # Imported here, not at the top: `gsomia --help` need not load the rules and labels.
    from gsomia.core import label, policy

    subject = policy.subject_from_dict(read_json(subject_file, "subject"))
    try:
        item = label.Label.from_dict(read_json(label_file, "label"))
    except (ValueError, OverflowError, RecursionError) as exc:  # dates out of range and the like
        raise InvalidInput(f"{label_file}: not a valid label ({exc})") from None
    consents = [policy.consent_from_dict(read_json(p, "consent")) for p in consent_files]
    return subject, item, consents
