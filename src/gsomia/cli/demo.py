"""The main job: two national nodes on loopback replay the 2019 story.

KOR and JPN run as two processes (state under ``.demo/<PARTY>/``), on a simulated
clock that only the demo moves. Routine items flow both ways; a JPN duty officer's
flash report of a missile launch reaches KOR live over SSE; KOR gives its
termination notice on 2019-08-23; it suspends the notice at 2019-11-22 18:00 KST
with its conditions; midnight passes and the pact holds. With ``--no-suspension``
the pact ends at midnight: later provisions are refused (R13/R14) while what was
provided before stays readable by cleared recipients (R14).

The nodes record the notes live, so they load the agreement's *terms* only: the
demo writes a copy of the agreement file without its recorded ``[[notes]]``.
"""

from __future__ import annotations

import json
import queue
import shutil
import signal
import ssl
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from gsomia.core.agreement import lifecycle, terms
from gsomia.core.agreement.terms import NoteType
from gsomia.core.words import count
from gsomia.node.process import NodeProcess, start_all, stop_all
from gsomia.node.setup.provision import Provisioned, provision_pair
from gsomia.store.files import private_dir

KST = timezone(timedelta(hours=9))


def kst(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=KST)


@dataclass(frozen=True)
class Script:
    """When the story's notes are given: the instants the agreement file records for them, so the
    demo, ``agreement replay`` and ``timeline`` tell one story; 2019's where the file has none."""

    notice: datetime
    suspension: datetime
    midnight: datetime  # when the notice would take effect

    @classmethod
    def of(cls, agreement: terms.Agreement) -> Script:
        notes = sorted(agreement.notes, key=lambda n: (n.at, n.index))
        notice = next((n.at for n in notes if n.type is NoteType.TERMINATION and n.by == "KOR"), None)
        suspension = next((n.at for n in notes if n.type is NoteType.SUSPEND and notice and n.at > notice), None)
        if notice is None or suspension is None:
            return cls(kst("2019-08-23T00:00"), kst("2019-11-22T18:00"), kst("2019-11-23T00:00"))
        pending = lifecycle.status(agreement, suspension - timedelta(seconds=1)).termination
        midnight = pending.effective_at if pending is not None else kst("2019-11-23T00:00")
        return cls(notice, suspension, midnight)


def terms_only(agreement_file: Path, out: Path) -> Path:
    """The agreement file up to its first recorded note: the terms the nodes start from."""
    text = agreement_file.read_text(encoding="utf-8")
    head = text.split("\n[[notes]]", 1)[0]
    out.write_text(head.rstrip() + "\n", encoding="utf-8")
    terms.load(out)  # still a valid agreement file
    return out


@dataclass
class Client:
    """One demo user talking to one node's user API."""

    base: str
    token: str
    trust: ssl.SSLContext  # the node's certificate: its user API serves HTTPS
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=30, verify=self.trust
        )

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(path, json=body)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)


class FlashWatcher(threading.Thread):
    """A KOR duty officer's console: subscribed to flash reports over SSE."""

    def __init__(self, base: str, token: str, trust: ssl.SSLContext) -> None:
        super().__init__(daemon=True)
        self.base, self.token, self.trust = base, token, trust
        self.events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        last = "0"
        while not self.stop.is_set():
            try:
                with httpx.stream(
                    "GET",
                    f"{self.base}/alerts/stream",
                    headers={**headers, "Last-Event-ID": last},
                    timeout=httpx.Timeout(None, connect=5),
                    verify=self.trust,
                ) as response:
                    self.ready.set()
                    data = ""
                    for line in response.iter_lines():
                        if self.stop.is_set():
                            return
                        if line.startswith("id:"):
                            last = line[3:].strip()
                        elif line.startswith("data:"):
                            data += line[5:].strip()
                        elif not line and data:
                            self.events.put((time.perf_counter(), json.loads(data)))
                            data = ""
            except httpx.HTTPError:
                time.sleep(0.2)


@dataclass
class Story:
    console: Console
    headless: bool
    suspension: bool
    nodes: dict[str, Provisioned]
    agreement: terms.Agreement
    sent: int = 0
    refused_after_termination: int = 0
    flash_ms: list[float] = field(default_factory=list)
    provided_before_end: list[str] = field(default_factory=list)
    clients: dict[tuple[str, str], Client] = field(default_factory=dict)

    def say(self, text: str) -> None:
        if not self.headless:
            self.console.print(text)

    def client(self, party: str, role: str) -> Client:
        """One client (and its keep-alive connection) per user, for the whole story."""
        found = self.clients.get((party, role))
        if found is None:
            p = self.nodes[party]
            found = self.clients[party, role] = Client(p.user_url, p.tokens[role], p.trust())
        return found

    def close(self) -> None:
        """Close the users' connections before the nodes stop: an idle TLS connection whose client
        never reads the node's close_notify would hold the node's shutdown until its timeout."""
        for client in self.clients.values():
            client.http.close()
        self.clients.clear()

    def set_clock(self, at: datetime) -> None:
        for party in self.nodes:
            r = self.client(party, "security_authority").post("/demo/clock", {"at": at.isoformat()})
            r.raise_for_status()
        self.say(f"\n[bold]— {self.agreement.shown(at)} —[/bold]")  # the agreement's zone: KST

    def status(self, party: str, partner: str) -> dict[str, Any]:
        """The status of ``party``'s agreement with ``partner``, as ``party``'s node has it now."""
        found: dict[str, Any] = self.client(party, "analyst").get("/status").json()[partner]
        return found

    def state(self, party: str, partner: str) -> str:
        return str(self.status(party, partner)["state"])

    def share(self, frm: str, to: str, classification: str, n: int, topic: str, batch: int = 50) -> tuple[int, int]:
        """Provide ``n`` routine items; returns (accepted, refused)."""
        analyst = self.client(frm, "analyst")
        accepted = refused = 0
        for start in range(0, n, batch):
            items = [
                {
                    "to": to,
                    "classification": classification,
                    "text": f"{topic} #{start + i + 1}",
                    "purposes": ["nk-missile"],
                }
                for i in range(min(batch, n - start))
            ]
            r = analyst.post("/items", {"items": items})
            if r.status_code == 201:
                accepted += len(items)
                self.provided_before_end.extend(i["item_id"] for i in r.json()["items"])
            elif r.status_code == 403:
                refused += len(items)
                reason = r.json()["reasons"][0]
                if refused == len(items):
                    self.say(f"  [red]refused[/red] {frm}→{to}: {reason['rule']}: {reason['text']}")
            else:
                raise RuntimeError(f"POST /items: {r.status_code} {r.text}")
        self.sent += accepted
        return accepted, refused

    def note(
        self, party: str, to: str, note_type: str, conditions: list[str] | None = None, ref: str | None = None
    ) -> None:
        """``party``'s security authority records a note on its agreement with ``to``."""
        r = self.client(party, "security_authority").post(
            "/notes", {"to": to, "type": note_type, "conditions": conditions or [], "ref": ref}
        )
        if r.status_code != 201:
            raise RuntimeError(f"POST /notes: {r.status_code} {r.text}")
        self.wait_until(lambda: self.state(to, party) == self.state(party, to), "the note to reach the peer")
        self.say(
            f"  {party} records [bold]{note_type}[/bold]; {to} applies it: "
            f"{party} {self.state(party, to)}, {to} {self.state(to, party)}"
        )
        for condition in conditions or []:
            self.say(f"    condition (R16, recorded, not judged): {condition}")

    def flash(self, watcher: FlashWatcher, count: int) -> None:
        duty = self.client("JPN", "duty_officer")
        for k in range(count):
            marker = str(uuid.uuid4())
            sent_at = time.perf_counter()
            r = duty.post(
                "/alerts",
                {
                    "to": "KOR",
                    "classification": "極秘",
                    "compartments": [],
                    "purposes": ["nk-missile"],
                    "text": f"FLASH: ballistic missile launch detected, Sea of Japan (ref {marker})",
                },
            )
            if r.status_code != 201:
                raise RuntimeError(f"POST /alerts: {r.status_code} {r.text}")
            self.sent += 1
            while True:
                got_at, event = watcher.events.get(timeout=10)
                if marker in event.get("text", ""):
                    self.flash_ms.append((got_at - sent_at) * 1000)
                    if k == 0:
                        self.say(
                            f"  KOR duty officer sees: [bold red]{event['text'].split(' (ref')[0]}[/bold red] "
                            f"marked {event['display']} after {self.flash_ms[-1]:.1f} ms"
                        )
                    break

    def wait_until(self, check: Any, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")

    def drained(self) -> bool:
        return all(self.client(p, "analyst").get("/outbox").json()["pending"] == 0 for p in self.nodes)

    def delivered(self) -> int:
        total = 0
        for party in self.nodes:
            auditor = self.client(party, "auditor")  # the inventory (R8): every item, no content
            after = 0
            while True:
                page = auditor.get("/items", after=after, limit=1000).json()
                total += sum(1 for i in page["items"] if i["direction"] == "in")
                if page["next"] == after:
                    break
                after = page["next"]
        return total


def run(
    root: Path,
    agreement_file: Path,
    console: Console,
    headless: bool = False,
    suspension: bool = True,
    items_per_side: int = 200,
    flash_count: int = 20,
    keep_running: bool = True,
) -> dict[str, Any]:
    # A terminated demo must not leave its node processes behind: turn SIGTERM/SIGHUP
    # into an exit, so the clean-up below runs.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    if root.exists():
        shutil.rmtree(root)
    private_dir(root)  # the nodes' state: their operator's alone (0700)
    recorded = terms.load(agreement_file)
    script = Script.of(recorded)
    agreement = terms_only(agreement_file, root / "agreement-terms.toml")
    nodes = provision_pair(root, agreement, demo=True, user_tls=True)  # HTTPS, as a deployed node serves
    procs = [NodeProcess(p.config, p.user_url, p.root / "node.log", trust=p.trust()) for p in nodes.values()]
    story = Story(console, headless, suspension, nodes, recorded)
    watcher = FlashWatcher(nodes["KOR"].user_url, nodes["KOR"].tokens["duty_officer"], nodes["KOR"].trust())
    try:
        start_all(procs)
        story.say(
            f"[bold]gsomia demo[/bold]: KOR and JPN nodes on loopback, mutual TLS between them, HTTPS for their "
            f"users, state under {root}/"
        )
        _routine_sharing(story, items_per_side)
        flash_ms = _flash_reports(story, watcher, flash_count)
        _notes(story, script)
        _after_midnight(story, script)
        result = _outcome(story, flash_ms)
        if keep_running and not headless:
            _stay_up(story, procs)
        return result
    finally:
        watcher.stop.set()
        story.close()
        stop_all(procs)


def _routine_sharing(story: Story, items_per_side: int) -> None:
    """August 2019, the pact in force: routine items both ways, each in the other's marking."""
    story.set_clock(kst("2019-08-01T09:00"))
    story.say(f"  agreement in force: KOR {story.state('KOR', 'JPN')}, JPN {story.state('JPN', 'KOR')}")
    a, _ = story.share("KOR", "JPN", "군사II급비밀", items_per_side, "KOR report: KN-23 launch preparations")
    b, _ = story.share("JPN", "KOR", "秘", items_per_side, "JPN report: radar track summary")
    story.say(
        f"  routine sharing: KOR→JPN {count(a, 'item')} (군사II급비밀, shown at JPN as 極秘), "
        f"JPN→KOR {count(b, 'item')} (秘 → 군사III급비밀)"
    )


def _flash_reports(story: Story, watcher: FlashWatcher, flash_count: int) -> tuple[float, float]:
    """JPN's duty officer reports launches; KOR's sees them live. Returns (p50, p99) in ms."""
    watcher.start()
    watcher.ready.wait(10)
    story.flash(watcher, flash_count)
    p50, p99 = _percentiles(story.flash_ms)
    story.say(f"  {count(flash_count, 'flash report')} JPN→KOR over SSE: p50 {p50:.1f} ms, p99 {p99:.1f} ms (R17)")
    return p50, p99


def _notes(story: Story, script: Script) -> None:
    """KOR's termination notice, then (unless the counterfactual is told) its suspension."""
    story.set_clock(script.notice)
    story.note("KOR", "JPN", "termination_notice", ref="note verbale: KOR will not extend GSOMIA")
    story.set_clock(script.suspension)
    if story.suspension:
        story.note(
            "KOR",
            "JPN",
            "suspend_notice",
            conditions=[
                "KOR–JPN export-control talks resume",
                "KOR's WTO complaint against JPN's export controls is withdrawn",
            ],
            ref="conditional suspension, six hours before expiry",
        )
    else:
        story.say("  (counterfactual: no suspension)")


def _after_midnight(story: Story, script: Script) -> None:
    """Both sides share again once the notice's deadline has passed: held, or refused (R14)."""
    story.set_clock(script.midnight + timedelta(seconds=5))
    story.say(f"  midnight has passed: KOR {story.state('KOR', 'JPN')}, JPN {story.state('JPN', 'KOR')}")
    before = len(story.provided_before_end)
    a, ra = story.share("KOR", "JPN", "군사II급비밀", 20, "KOR report after midnight")
    b, rb = story.share("JPN", "KOR", "極秘", 20, "JPN report after midnight")
    story.refused_after_termination = ra + rb
    if story.suspension:
        story.say(f"  the pact holds: {count(a + b, 'more item')} shared after midnight")
        return
    story.say(f"  the pact has ended: {count(ra + rb, 'provision')} refused (R14)")
    old = story.provided_before_end[:before][0]
    r = story.client("JPN", "analyst").get(f"/items/{old}")
    verdict = r.json()["decision"]["reasons"][-1]["text"] if r.status_code == 200 else r.text
    story.say(f"  an item provided before still reads at JPN for a cleared analyst: {r.status_code} ({verdict})")


def _outcome(story: Story, flash_ms: tuple[float, float]) -> dict[str, Any]:
    """Once every item has arrived: the figures and the agreement's state, as KOR's node has it."""
    story.wait_until(story.drained, "the outboxes to drain", timeout=60)
    # A flash report the recipient has acknowledged may take a moment more to reach its inventory.
    story.wait_until(lambda: story.delivered() >= story.sent, "the recipients' inventories", timeout=30)
    p50, p99 = flash_ms
    status = story.status("KOR", "JPN")
    termination = status["termination"] or {}
    result = {
        "sent": story.sent,
        "delivered": story.delivered(),
        "flash": {"count": len(story.flash_ms), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2)},
        "agreement": status["agreement"],
        "state_at_end": status["state"],
        "in_force": status["in_force"],
        # As the node says them: ISO 8601 at the agreement's offset (+09:00).
        "notice_at": termination.get("notified_at"),
        "suspended_at": termination.get("suspended_at"),
        "deadline": termination.get("effective_at"),
        "terminated_at": status["terminated_at"],
        "refused_after_termination": story.refused_after_termination,
    }
    story.say(
        f"\n  sent {result['sent']}, delivered {result['delivered']}, agreement {result['state_at_end']} "
        f"({'in force' if result['in_force'] else 'not in force'})"
    )
    return result


def _stay_up(story: Story, procs: list[NodeProcess]) -> None:
    """Leave the nodes serving for the user to try, until Ctrl-C or one of them stops."""
    for party, p in story.nodes.items():
        story.say(f"  {party}: {p.user_url} (certificate {p.tls_cert}, tokens in {p.root / 'tokens.json'})")
    story.say("  the nodes stay up; Ctrl-C to stop")
    try:
        while all(proc.proc and proc.proc.poll() is None for proc in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


def _percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    ordered = sorted(values)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]
    return p50, p99


def summary(result: dict[str, Any], agreement: terms.Agreement) -> list[str]:
    """What ``demo --headless`` prints: the figures and the outcome, instants in the agreement's zone."""

    def when(key: str) -> str | None:
        at = result.get(key)
        return agreement.shown(datetime.fromisoformat(at)) if at else None

    flash = result["flash"]
    notes = [f"termination notice {when('notice_at') or 'none'}"]
    notes.append(f"suspended {when('suspended_at')}" if result.get("suspended_at") else "not suspended")
    if result.get("deadline"):
        notes.append(f"deadline {when('deadline')}")
    end = f"{result['state_at_end']}, {'in force' if result['in_force'] else 'not in force'}"
    if result.get("terminated_at"):
        end += f" since {when('terminated_at')}"
    lines = [
        f"gsomia demo ({result['agreement']}): KOR and JPN nodes on loopback",
        f"  items: {result['sent']} sent, {result['delivered']} delivered",
        f"  flash reports JPN→KOR: {flash['count']}, p50 {flash['p50_ms']:.1f} ms, p99 {flash['p99_ms']:.1f} ms (R17)",
        f"  {'; '.join(notes)}",
        f"  at the end: {end}",
    ]
    if result["refused_after_termination"]:
        lines.append(f"  {count(result['refused_after_termination'], 'provision')} refused after termination (R14)")
    return lines
