"""``gsomia demo --trilateral``: KOR, JPN and USA nodes on loopback, and both routes of R18.

First the pact in force (August 2019): KOR shares with JPN directly, and the USA never sees those items.
Then the counterfactual of 2019-11-23: KOR's termination notice is never suspended, the
agreement ends, and what KOR shares with JPN within the trilateral arrangement's scope goes
through the USA, which holds each item until KOR's security authority approves passing it on
to JPN. An item outside the scope is refused (R18), and one KOR never approves stays with the
USA. The figures are counted from what each node lists, not from what the demo sent.
"""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from gsomia.cli.demo import Script, Story, kst, terms_only
from gsomia.core.agreement import terms
from gsomia.node.process import NodeProcess, start_all, stop_all
from gsomia.node.setup.provision import provision
from gsomia.store.files import private_dir

# Beside the KOR–JPN agreement: the USA's two bilateral agreements and the arrangement.
ARRANGEMENT_FILES = ("kr-us-gsomia-1987.toml", "jp-us-gsomia-2007.toml", "us-kr-jp-tisa-2014.toml")
PARTIES = ("KOR", "JPN", "USA")


def run(root: Path, agreement_file: Path, console: Console, headless: bool = False, items: int = 5) -> dict[str, Any]:
    """Three nodes tell both routes; returns the figures (``--json``)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):  # a terminated demo leaves no node behind
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    if root.exists():
        shutil.rmtree(root)
    private_dir(root)
    recorded = terms.load(agreement_file)
    files = [terms_only(agreement_file, root / "agreement-terms.toml")]
    files += [agreement_file.parent / name for name in ARRANGEMENT_FILES]
    nodes = provision(root, files, PARTIES, demo=True, user_tls=True)
    procs = [NodeProcess(p.config, p.user_url, p.root / "node.log", trust=p.trust()) for p in nodes.values()]
    story = Story(console, headless, False, nodes, recorded)
    try:
        start_all(procs)
        story.say(f"[bold]gsomia demo --trilateral[/bold]: KOR, JPN and USA nodes on loopback, state under {root}/")
        direct, usa_saw_direct = _pact_in_force(story, items)
        _termination(story, Script.of(recorded))
        return {
            "direct": direct,
            "usa_saw_direct": usa_saw_direct,
            **_through_the_usa(story, items),
            "state_at_end": story.state("KOR", "JPN"),
        }
    finally:
        story.close()
        stop_all(procs)


def _listed(story: Story, party: str) -> list[dict[str, Any]]:
    """Every item on ``party``'s node, as its auditor's inventory lists it (R8)."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = story.client(party, "auditor").get("/items", after=after, limit=1000).json()
        found.extend(page["items"])
        if page["next"] == after:
            return found
        after = page["next"]


def _received(story: Story, party: str, route: str) -> dict[str, dict[str, Any]]:
    return {i["item_id"]: i for i in _listed(story, party) if i["direction"] == "in" and i["route"] == route}


def _pact_in_force(story: Story, items: int) -> tuple[int, int]:
    """August 2019: KOR shares with JPN directly (R1); the USA is not on the route."""
    story.set_clock(kst("2019-08-01T09:00"))
    story.share("KOR", "JPN", "군사II급비밀", items, "routine report")
    story.wait_until(lambda: len(_received(story, "JPN", "direct")) >= items, "JPN to receive the direct items")
    direct = len(_received(story, "JPN", "direct"))
    usa_saw = sum(1 for i in _listed(story, "USA") if i["item_id"] in _received(story, "JPN", "direct"))
    story.say(f"  pact in force: {direct} items KOR→JPN directly; the USA holds none of them")
    return direct, usa_saw


def _termination(story: Story, script: Script) -> None:
    """KOR's notice, never suspended: at midnight on 2019-11-23 the agreement ends (R13, R14)."""
    story.set_clock(script.notice)
    story.note("KOR", "JPN", "termination_notice", ref="note verbale: KOR will not extend GSOMIA")
    story.set_clock(kst("2019-12-02T09:00"))
    story.say(f"  the counterfactual: no suspension; the agreement is {story.state('KOR', 'JPN')}")


def _through_the_usa(story: Story, items: int) -> dict[str, int]:
    """KOR shares within the arrangement's scope; the USA passes on what KOR approves (R18)."""
    held_before = {i["item_id"] for i in _listed(story, "USA")}
    story.share("KOR", "JPN", "군사II급비밀", items + 1, "missile launch assessment")
    story.wait_until(lambda: len(_held(story, held_before)) >= items + 1, "the USA to hold the items")
    held = sorted(_held(story, held_before))
    approved, kept_back = held[:items], held[items:]
    authority = story.client("KOR", "security_authority")
    for item in approved:
        r = authority.post("/records", {"kind": "forward_approval", "item_id": item, "recipient": "JPN"})
        if r.status_code != 201:
            raise RuntimeError(f"POST /records: {r.status_code} {r.text}")
    story.wait_until(lambda: len(_received(story, "JPN", "trilateral")) >= items, "JPN to receive the approved items")
    story.wait_until(story.drained, "the outboxes to drain")
    via = _received(story, "JPN", "trilateral")
    markings = ", ".join(sorted({i["marking"] for i in via.values()}))
    story.say(f"  through the USA: {len(via)} items, each passed on after KOR's approval, marked {markings} at JPN")
    story.say(f"  not approved: {len(kept_back)} item stays with the USA")
    refused = _out_of_scope(story, items)
    return {
        "via_USA": len(via),
        "forwarded_without_consent": sum(1 for item in via if item not in approved),
        "held_at_USA_without_approval": sum(1 for item in kept_back if item not in via),
        "out_of_scope_refused": refused,
    }


def _held(story: Story, before: set[str]) -> set[str]:
    return {i["item_id"] for i in _listed(story, "USA") if i["route"] == "trilateral" and i["item_id"] not in before}


def _out_of_scope(story: Story, items: int) -> int:
    """Items outside North Korea's nuclear and missile threats: refused, naming R18."""
    analyst = story.client("KOR", "analyst")
    refused = 0
    for n in range(items):
        body = {"to": "JPN", "classification": "군사II급비밀", "text": f"trade talks #{n + 1}", "purposes": ["trade"]}
        r = analyst.post("/items", {"items": [body]})
        if r.status_code == 403 and any(reason["rule"] == "R18" for reason in r.json()["reasons"]):
            refused += 1
    story.say(f"  outside the arrangement's scope: {refused} refused (R18)")
    return refused


def summary(result: dict[str, Any]) -> list[str]:
    """What ``demo --trilateral --headless`` prints."""
    return [
        "gsomia demo --trilateral: KOR, JPN and USA nodes on loopback",
        f"  pact in force: {result['direct']} items KOR→JPN directly, {result['usa_saw_direct']} seen by the USA",
        f"  after termination (no suspension): {result['via_USA']} through the USA with KOR's approval, "
        f"{result['forwarded_without_consent']} without it, {result['held_at_USA_without_approval']} held unapproved",
        f"  outside the arrangement's scope: {result['out_of_scope_refused']} refused (R18)",
        f"  KOR–JPN agreement at the end: {result['state_at_end']}",
    ]
