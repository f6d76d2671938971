"""What a new user meets first: a clean stop, tables that fit, one time zone, plain words."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from rich.cells import cell_len

from gsomia.core import label, policy, users
from gsomia.core.agreement import lifecycle, schemes, terms
from gsomia.core.words import count
from inprocess import in_process_apps
from nodes import AGREEMENT, ROOT, FlashListener, node_pair

LOG_TROUBLE = ("Exception", "Traceback", "CancelledError", "ERROR")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("flash_process", [False, True], ids=["one-process", "flash-process"])
def test_a_node_stops_cleanly_with_alert_streams_open(tmp_path: Path, sig: signal.Signals, flash_process: bool) -> None:
    with node_pair(tmp_path, "sqlite", flash_process=flash_process, user_tls=True) as pair:
        kor = pair.nodes["KOR"]
        streams = [
            FlashListener(url, kor.tokens[role], trust=kor.trust())
            for url in {kor.user_url, kor.alerts_url}
            for role in ("duty_officer", "security_authority")
        ]
        for stream in streams:
            stream.start()
        assert all(stream.ready.wait(10) for stream in streams)
        proc = pair.procs["KOR"].proc
        assert proc is not None
        proc.send_signal(sig)
        assert proc.wait(30) == 0  # a stop that was asked for is a clean exit
        for stream in streams:
            stream.done.set()
            stream.join(10)
            assert not stream.is_alive()  # the node ended the stream rather than leaving it hanging
    for party in ("KOR", "JPN"):  # JPN stopped by SIGINT as the pair closed
        log = (pair.nodes[party].root / "node.log").read_text(encoding="utf-8")
        assert not [word for word in LOG_TROUBLE if word in log], log


def test_the_api_docs_page_needs_no_host_but_the_node(tmp_path: Path) -> None:
    with in_process_apps(tmp_path) as apps:
        user = apps["user"]
        page = user.get("/docs")  # no token: a browser opens it before it has one
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert not re.findall(r"(?:https?:)?//[\w.-]+", page.text)  # no CDN, no host at all: same origin only
        loaded = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert len(loaded) == 3
        for path in loaded:
            served = user.get(path)
            assert served.status_code == 200, path
            assert len(served.content) > 500
        assert "SwaggerUIBundle" in user.get(next(p for p in loaded if p.endswith(".js"))).text
        assert user.get("/openapi.json").status_code == 200
        # Only those files are open: the rest of the static folder, and everything else, wants a token.
        assert user.get("/static/swagger-ui/LICENSE").status_code == 401
        assert user.get("/static/swagger-ui/").status_code == 401
        assert user.get("/redoc").status_code == 401
        assert user.get("/items").status_code == 401


def test_the_openapi_document_declares_bearer_authentication(tmp_path: Path) -> None:
    with in_process_apps(tmp_path) as apps:
        doc = apps["user"].get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    bearer = [name for name, s in schemes.items() if s["type"] == "http" and s["scheme"] == "bearer"]
    assert len(bearer) == 1
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if path == "/health":
                assert not operation.get("security"), "the liveness check is open"
            else:
                assert operation.get("security") == [{bearer[0]: []}], f"{method} {path}"


def test_git_ignores_keys_and_the_demo_state() -> None:
    for path in ("keys/KOR.key", ".demo/KOR/node.db", "sub/keys/x.key"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{path} is not ignored by git"


# --- markings: compared in Unicode compatibility form, stored as the agreement spells them -------

ROMAN_II = "군사\u2161급비밀"  # 군사Ⅱ급비밀, as Korean documents often write it
VALID_KOR = "valid KOR markings: 군사III급비밀, 군사II급비밀"


def gsomia(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gsomia", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        timeout=120,
        check=False,
    )


def test_a_roman_numeral_marking_is_the_agreements_marking_in_the_core() -> None:
    agreement = terms.load(AGREEMENT)
    assert ROMAN_II != "군사II급비밀"
    assert schemes.spelling(agreement, "KOR", ROMAN_II) == "군사II급비밀"
    assert schemes.level_of(agreement, "KOR", ROMAN_II).name == "SECRET"
    assert schemes.national_rank(agreement, "KOR", ROMAN_II) == schemes.national_rank(agreement, "KOR", "군사II급비밀")
    assert schemes.spelling(agreement, "KOR", "군사X급비밀") is None
    with pytest.raises(schemes.MarkingError) as unknown:
        schemes.level_of(agreement, "KOR", "군사X급비밀")
    assert VALID_KOR in str(unknown.value)
    assert "\n" not in str(unknown.value)
    # A user's clearance is stored in the agreement's spelling, whichever way it was typed.
    assert users.check_clearance([agreement], "KOR", ROMAN_II) == "군사II급비밀"


def test_the_api_accepts_a_roman_numeral_marking_and_stores_the_agreements_spelling(tmp_path: Path) -> None:
    with in_process_apps(tmp_path) as apps:
        user, token = apps["user"], apps["tokens"]["analyst"]
        auth = {"Authorization": f"Bearer {token}"}
        made = user.post(
            "/items",
            json={"items": [{"to": "JPN", "classification": ROMAN_II, "text": "KN-23", "purposes": ["nk-missile"]}]},
            headers=auth,
        )
        assert made.status_code == 201, made.text
        [item] = made.json()["items"]
        assert item["classification"] == "군사II급비밀"
        listed = user.get("/items", headers=auth).json()["items"]
        assert [i["marking"] for i in listed if i["item_id"] == item["item_id"]] == ["군사II급비밀"]
        refused = user.post(
            "/items", json={"items": [{"to": "JPN", "classification": "군사X급비밀", "text": "x"}]}, headers=auth
        )
        assert refused.status_code == 403
        [reason] = refused.json()["reasons"]
        assert reason["rule"] == "R3"
        assert VALID_KOR in reason["text"]


def test_seal_accepts_a_roman_numeral_marking_and_names_the_valid_ones_otherwise(tmp_path: Path) -> None:
    for party in ("KOR", "JPN"):
        assert gsomia("keys", "generate", "--party", party, "--out", tmp_path / "keys").returncode == 0
    payload = tmp_path / "report.txt"
    payload.write_text("KN-23 launch preparations", encoding="utf-8")
    common: list[str | Path] = [
        "--agreement",
        AGREEMENT,
        "--key",
        tmp_path / "keys/KOR.key",
        "--to",
        tmp_path / "keys/JPN.pub",
    ]
    common += ["--at", "2024-01-15T09:00:00+09:00"]
    sealed = gsomia("seal", payload, "-o", tmp_path / "r.env", "--classification", ROMAN_II, *common)
    assert sealed.returncode == 0, sealed.stderr
    assert "(군사II급비밀," in sealed.stdout
    opened = gsomia(
        "open", tmp_path / "r.env", "-o", tmp_path / "r.out", "--agreement", AGREEMENT,
        "--key", tmp_path / "keys/JPN.key", "--trust", tmp_path / "keys/KOR.pub", "--json",
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout)["classification"] == "군사II급비밀"  # signed in the agreement's spelling
    refused = gsomia("seal", payload, "-o", tmp_path / "x.env", "--classification", "군사X급비밀", *common)
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    [line] = refused.stderr.splitlines()
    assert VALID_KOR in line
    assert not (tmp_path / "x.env").exists()


# --- help and words ----------------------------------------------------------------------------


def _json_after(text: str, marker: str) -> dict[str, object]:
    """The JSON object that follows ``marker`` in a help text (indented over several lines)."""
    start = text.index("{", text.index(marker))
    depth = 0
    for end in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0:
            return dict(json.loads(text[start : end + 1]))
    raise AssertionError(f"no JSON object after {marker!r}")


def test_policy_explain_help_shows_both_input_formats_with_a_working_example() -> None:
    shown = gsomia("policy", "explain", "--help", env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    for example in ("examples/kor-analyst.json", "examples/jpn-secret-label.json"):
        assert example in text
    # The formats shown are those of the example files, field for field.
    subject = json.loads((ROOT / "examples/kor-analyst.json").read_text(encoding="utf-8"))
    label = json.loads((ROOT / "examples/jpn-secret-label.json").read_text(encoding="utf-8"))
    assert _json_after(text, "--subject: who acts") == subject
    assert _json_after(text, "--label: the item's security label") == label
    # The example command runs as printed, from the repository's root.
    lines = text[text.index("Example:") :].splitlines()[1:]
    lines = lines[: next(n for n, line in enumerate(lines) if not line.strip())]  # up to the blank line
    argv = " ".join(line.strip().rstrip("\\") for line in lines).split()
    assert argv[:3] == ["gsomia", "policy", "explain"]
    ran = subprocess.run(
        [sys.executable, "-m", "gsomia", *argv[1:]], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.startswith("permit read by kim.analyst")
    assert "at 2019-12-02 10:00 KST" in ran.stdout  # in the subject's (KOR's) own zone


def test_counts_are_said_in_the_number_they_take() -> None:
    assert count(1, "entry", "entries") == "1 entry"
    assert count(2, "entry", "entries") == "2 entries"
    assert count(0, "row") == "0 rows"
    one = gsomia("agreement", "check", AGREEMENT)
    assert one.returncode == 0, one.stderr
    assert one.stdout.strip() == "1 agreement file valid"
    two = gsomia("agreement", "check", AGREEMENT, AGREEMENT)
    assert two.stdout.strip() == "2 agreement files valid"
    # No "entr(y/ies)" or "{n} row(s)" left in what the program prints.
    hacks = re.compile(r"\(y/ies\)|\(ies\)|\}\s?\w+\(s\)")
    found = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in sorted((ROOT / "src/gsomia").rglob("*.py"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if hacks.search(line)
    ]
    assert found == []


# --- tables that fit 80 columns; instants in the reader's own zone ---------------------------

ISO_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")  # what JSON shows, not people


def narrow(*args: str | Path) -> str:
    done = gsomia(*args, env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(cell_len(line.rstrip()) for line in lines) <= 80
    assert "…" not in done.stdout  # nothing cut short
    return done.stdout


def test_the_timeline_fits_80_columns_whole() -> None:
    shown = narrow("agreement", "timeline", AGREEMENT)
    words = set(shown.split())
    rows = json.loads(gsomia("agreement", "timeline", AGREEMENT, "--json").stdout)
    for row in rows:
        local = datetime.fromisoformat(row["at"])
        assert f"{local:%Y-%m-%d %H:%M}" in shown  # the instant whole, on one line
        assert row["event"] in words  # the event's name is never cut
        assert set(row["state"].split("_")) <= words
        assert set(row["detail"].split()) <= words  # wrapped between words, not cut
        if row["by"]:
            assert row["by"] in words
    assert "instant (KST)" in shown  # the agreement's zone (Asia/Seoul), said once


def test_replay_fits_80_columns_and_tells_its_instants_in_kst() -> None:
    shown = narrow("agreement", "replay", AGREEMENT)
    assert "termination_notice by KOR at 2019-08-23 00:00 KST" in shown
    assert "suspend_notice by KOR at 2019-11-22 18:00 KST" in shown
    assert "midnight (2019-11-23 00:00 KST) passes:" in shown
    assert not ISO_INSTANT.search(shown)
    assert "+00:00" not in shown
    assert "UTC" not in shown


def test_status_is_shown_in_the_reading_partys_zone_and_json_keeps_offsets() -> None:
    at = "2019-11-22T15:00:00Z"  # midnight in Seoul and Tokyo
    kst = narrow("agreement", "status", AGREEMENT, "--at", at)
    assert "at 2019-11-23 00:00 KST: termination_suspended" in kst
    said = " ".join(kst.split())
    assert "notified 2019-08-23 00:00 KST, effective 2019-11-23 00:00 KST" in said
    assert "suspended at 2019-11-22 18:00 KST" in said
    assert not ISO_INSTANT.search(kst)
    jst = narrow("agreement", "status", AGREEMENT, "--at", at, "--reading", "JPN")
    assert "at 2019-11-23 00:00 JST" in jst
    assert "KST" not in jst
    data = json.loads(gsomia("agreement", "status", AGREEMENT, "--at", at, "--json").stdout)
    assert data["termination"]["effective_at"] == "2019-11-23T00:00:00+09:00"
    assert data["termination"]["suspended_at"] == "2019-11-22T18:00:00+09:00"


def test_a_refusal_after_termination_names_the_instant_in_the_readers_zone() -> None:
    agreement = terms.load(AGREEMENT)
    # Without KOR's suspension the pact ended at 2019-11-23 00:00 KST (2019-11-22 15:00 UTC).
    unsuspended = agreement.with_notes(tuple(n for n in agreement.notes if n.type is terms.NoteType.TERMINATION))
    after = datetime(2019, 11, 23, 1, 0, tzinfo=terms.party_zone("KOR"))
    status = lifecycle.status(unsuspended, after)
    assert status.state is lifecycle.State.TERMINATED
    analyst = policy.Subject("kim.analyst", "KOR", policy.Role.ANALYST, "군사II급비밀", frozenset({"nk-missile"}))
    item = label.Label(
        item_id=label.new_item_id(), agreement=agreement.id, originator="KOR", classification="군사II급비밀",
        releasable_to=("JPN",), created_at=after, purposes=("nk-missile",),
    )  # fmt: skip
    decision = policy.decide(unsuspended, analyst, "provide", item, status, (), after, recipient="JPN")
    [r14] = [r for r in decision.reasons if r.rule == "R14"]
    assert "terminated at 2019-11-23 00:00 KST" in r14.text
    assert "+00:00" not in r14.text


def test_user_list_fits_80_columns_and_shows_revocation_in_the_nodes_zone(tmp_path: Path) -> None:
    from gsomia.cli.demo import terms_only
    from gsomia.node.setup.provision import provision_pair

    config = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"))["KOR"].config
    added = gsomia("user", "add", "--config", config, "park.analyst", "--role", "analyst", "--clearance", ROMAN_II)
    assert added.returncode == 0, added.stderr
    assert gsomia("user", "revoke", "--config", config, "park.analyst").returncode == 0
    shown = narrow("user", "list", "--config", config)
    [row] = [line for line in shown.splitlines() if "park.analyst" in line]
    assert "군사II급비밀" in row  # stored in the agreement's spelling
    assert re.search(r"revoked \d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? KST", " ".join(shown.split()))


# --- the demo: a summary when headless, the outcome and its instants in JSON -----------------


def test_demo_headless_prints_a_short_summary_in_kst(tmp_path: Path) -> None:
    done = gsomia(
        "demo", "--headless", "--items", "3", "--flash", "2", "--root", tmp_path / ".demo", "--agreement", AGREEMENT,
        env={"COLUMNS": "80"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) <= 8  # short: the story itself is for the narrated run
    said = "\n".join(lines)
    items = re.search(r"items: (\d+) sent, (\d+) delivered", said)
    assert items is not None
    assert items[1] == items[2] == str(3 * 2 + 2 + 20 * 2)
    assert re.search(r"flash reports JPN→KOR: 2, p50 \d+\.\d ms, p99 \d+\.\d ms", said)
    assert (
        "termination notice 2019-08-23 00:00 KST; suspended 2019-11-22 18:00 KST; deadline 2019-11-23 00:00 KST" in said
    )
    assert "at the end: termination_suspended, in force" in said
    assert not ISO_INSTANT.search(said)
    assert "+00:00" not in said
    for party in ("KOR", "JPN"):  # the nodes were stopped with their alert streams open: cleanly
        log = (tmp_path / ".demo" / party / "node.log").read_text(encoding="utf-8")
        assert not [word for word in LOG_TROUBLE if word in log], log


def test_a_reclassification_to_a_roman_numeral_marking_is_recorded_in_the_agreements_spelling(tmp_path: Path) -> None:
    with in_process_apps(tmp_path) as apps:
        user, tokens = apps["user"], apps["tokens"]
        analyst = {"Authorization": f"Bearer {tokens['analyst']}"}
        authority = {"Authorization": f"Bearer {tokens['security_authority']}"}
        made = user.post(
            "/items",
            json={"items": [{"to": "JPN", "classification": "군사III급비밀", "text": "x", "purposes": ["nk-missile"]}]},
            headers=analyst,
        )
        assert made.status_code == 201, made.text
        item = made.json()["items"][0]["item_id"]
        raised = user.post(
            "/records",
            json={"kind": "reclassification", "item_id": item, "classification": ROMAN_II},
            headers=authority,
        )
        assert raised.status_code == 201, raised.text
        assert raised.json()["record"]["classification"] == "군사II급비밀"


def test_key_history_fits_80_columns_with_every_key_id_whole(tmp_path: Path) -> None:
    from gsomia.cli.demo import terms_only
    from gsomia.node.setup.provision import provision_pair

    config = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"))["KOR"].config
    rotated = gsomia("keys", "rotate", "--config", config, env={"COLUMNS": "80"})
    assert rotated.returncode == 0, rotated.stderr
    assert re.search(r"rotation 1 at \d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? KST", " ".join(rotated.stdout.split()))
    shown = narrow("keys", "history", "--config", config)
    rows = json.loads(gsomia("keys", "history", "--config", config, "--json").stdout)
    assert len(rows) == 3
    for row in rows:
        assert row["kid"] in shown.split()
    assert "KST" in shown.split()  # the retirement and the new key's start, in KOR's zone
    assert not ISO_INSTANT.search(shown)
