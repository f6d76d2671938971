"""The analysts' and duty officers' command line against two real nodes over HTTPS.

`gsomia login`, `share`, `inbox`, `items`, `read`, `flash` and `watch` are run as a user runs
them: each user a home of their own (``GSOMIA_HOME``), the node's certificate trusted alone.
Most commands run in-process (Typer's runner, through the same entry point); `watch` and
the refusals' one-line form run as child processes, as from a shell. One pair of nodes serves
the whole module, on SQLite only: the client speaks HTTP, and what the node stores it in is
covered by the node's own tests on both backends.
"""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

from gsomia.cli import client
from gsomia.cli import people as cli_people
from gsomia.cli.main import app
from gsomia.node.api import intake
from gsomia.node.api.models import ItemIn
from nodes import Pair, node_pair

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with node_pair(tmp_path_factory.mktemp("people"), "sqlite", user_tls=True) as p:
        yield p


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


@dataclass
class Person:
    """One user of one node, with a home of their own for the profile."""

    pair: Pair
    party: str
    role: str
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {"GSOMIA_HOME": str(self.home), "GSOMIA_PROFILE": "default", "COLUMNS": "80"}

    @property
    def node(self) -> str:
        return self.pair.nodes[self.party].user_url

    @property
    def cacert(self) -> Path:
        return self.pair.nodes[self.party].tls_cert

    @property
    def token(self) -> str:
        return self.pair.nodes[self.party].tokens[self.role]

    def run(self, *args: str, stdin: str | None = None) -> Ran:
        result = CliRunner().invoke(app, list(args), input=stdin, env=self.env, catch_exceptions=False)
        return Ran(result.exit_code, result.stdout, result.stderr)

    def shell(self, *args: str, stdin: str | None = None) -> Ran:
        """As from a shell: ``python -m gsomia`` in a child process."""
        done = subprocess.run(
            [sys.executable, "-m", "gsomia", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=300,
            check=False,
        )
        return Ran(done.returncode, done.stdout, done.stderr)

    def login(self) -> Person:
        ran = self.run("login", "--node", self.node, "--cacert", str(self.cacert), stdin=self.token + "\n")
        assert ran.code == 0, ran.stderr
        return self


@pytest.fixture(scope="module")
def people(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Person]:
    homes = tmp_path_factory.mktemp("homes")
    return {
        f"{party.lower()}.{role}": Person(pair, party, role, homes / f"{party}-{role}").login()
        for party in ("KOR", "JPN")
        for role in ("analyst", "duty_officer", "auditor")
    }


def one_line_error(ran: Ran) -> str:
    """The refusal's line: exit 2, one line on stderr, nothing on stdout, no traceback."""
    assert ran.code == 2, (ran.code, ran.stdout, ran.stderr)
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert "Traceback" not in ran.stderr
    assert ran.stdout == ""
    return lines[0]


def wait_for_item(person: Person, item_id: str) -> None:
    def arrived() -> bool:
        ran = person.run("items")
        return ran.code == 0 and item_id in ran.stdout.split()

    person.pair.wait(arrived, f"{item_id} at {person.party}")


def test_login_keeps_the_token_in_a_private_profile_and_never_shows_it(pair: Pair, tmp_path: Path) -> None:
    """The token goes from a file or stdin into a 0600 profile in a 0700 directory; no output
    shows it; logout removes it, and commands then ask to log in."""
    person = Person(pair, "KOR", "analyst", tmp_path / "home")
    token_file = tmp_path / "token"
    token_file.write_text(person.token + "\n")
    token_file.chmod(0o600)  # a token file others may read is refused
    ran = person.run("login", "--node", person.node, "--cacert", str(person.cacert), "--token-file", str(token_file))
    assert ran.code == 0, ran.stderr
    assert "KOR" in ran.stdout
    assert person.token not in ran.stdout + ran.stderr

    profile = person.home / "profile.toml"
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    assert stat.S_IMODE(person.home.stat().st_mode) == 0o700
    assert person.token in profile.read_text()
    assert str(person.cacert) in profile.read_text()

    # a second profile for another node, the token from stdin; the first is kept
    other = person.run(
        "login",
        "--node",
        pair.nodes["JPN"].user_url,
        "--cacert",
        str(pair.nodes["JPN"].tls_cert),
        "--profile",
        "jpn",
        stdin=pair.nodes["JPN"].tokens["analyst"] + "\n",
    )
    assert other.code == 0, other.stderr
    assert "JPN" in other.stdout
    assert pair.nodes["JPN"].tokens["analyst"] not in other.stdout + other.stderr
    assert person.run("items").code == 0
    assert person.run("items", "--profile", "jpn").code == 0

    assert person.run("logout").code == 0
    assert person.token not in profile.read_text()
    line = one_line_error(person.run("items"))
    assert line == "gsomia: error: not logged in: gsomia login --node URL"
    assert person.run("items", "--profile", "jpn").code == 0
    assert person.run("logout", "--profile", "jpn").code == 0
    assert not profile.exists()


def test_a_profile_others_may_read_is_refused(pair: Pair, tmp_path: Path) -> None:
    person = Person(pair, "KOR", "analyst", tmp_path / "home").login()
    (person.home / "profile.toml").chmod(0o644)
    line = one_line_error(person.run("inbox"))
    assert "others may read it" in line
    assert "chmod 600" in line


def test_share_inbox_items_and_read_end_to_end(people: dict[str, Person], tmp_path: Path) -> None:
    """A KOR analyst shares a 1.5 MiB file (past the progress bar's threshold); the JPN analyst
    finds it in the inbox (80 columns, Tokyo time, the marking in Japan's scheme), lists its id
    and reads it back byte for byte into a private file."""
    kor, jpn = people["kor.analyst"], people["jpn.analyst"]
    payload = os.urandom(3 << 19)
    source = tmp_path / "launch-report.bin"
    source.write_bytes(payload)
    shared = kor.run("share", str(source), "--to", "JPN", "--classification", "군사II급비밀", "--purpose", "nk-missile")
    assert shared.code == 0, shared.stderr
    item_id = shared.stdout.strip()
    assert len(item_id) == 36
    assert item_id.count("-") == 4
    assert item_id in kor.run("items").stdout.split()

    wait_for_item(jpn, item_id)
    inbox = jpn.run("inbox")
    assert inbox.code == 0, inbox.stderr
    lines = inbox.stdout.splitlines()
    assert all(cell_len(line) <= 80 for line in lines), lines
    (row,) = [line for line in lines if line.startswith(item_id[:8])]
    assert "JST" in row
    assert "KOR" in row
    assert "極秘 (KOR 군사II급비밀)" in row
    assert item_id not in inbox.stdout  # the short id only: --wide and --json give the full one
    assert item_id in jpn.run("inbox", "--wide").stdout

    (entry,) = [r for r in json.loads(jpn.run("inbox", "--json").stdout) if r["item_id"] == item_id]
    assert entry["marking"] == "極秘"
    assert entry["originator"] == "KOR"
    assert entry["direction"] == "in"
    assert entry["created_at"].endswith("+09:00")
    assert item_id in [r["item_id"] for r in json.loads(jpn.run("items", "--json").stdout)]
    # the KOR analyst's own inbox holds nothing of its own sending
    assert item_id[:8] not in kor.run("inbox").stdout

    target = tmp_path / "out" / "report.bin"
    target.parent.mkdir()
    ran = jpn.run("read", item_id, "-o", str(target))
    assert ran.code == 0, ran.stderr
    assert target.read_bytes() == payload
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert f"{item_id}: 極秘 (provided by KOR as 군사II급비밀" in ran.stdout
    assert "purposes nk-missile" in ran.stdout
    assert "JST" in ran.stdout
    assert not list(target.parent.glob(".*partial"))

    # an existing file is kept unless --force; nothing goes to stdout unless -o -
    target.write_bytes(b"keep me")
    line = one_line_error(jpn.run("read", item_id, "-o", str(target)))
    assert "already exists" in line
    assert "--force" in line
    assert target.read_bytes() == b"keep me"
    assert jpn.run("read", item_id, "-o", str(target), "--force").code == 0
    assert target.read_bytes() == payload


def test_read_to_stdout_only_when_asked(people: dict[str, Person], tmp_path: Path) -> None:
    kor, jpn = people["kor.analyst"], people["jpn.analyst"]
    text = "Hwasong-15 launch at 03:17"
    (tmp_path / "note.txt").write_text(text)
    item_id = kor.run(
        "share",
        str(tmp_path / "note.txt"),
        "--to",
        "JPN",
        "--classification",
        "군사II급비밀",
        "--purpose",
        "nk-missile",
    ).stdout.strip()
    wait_for_item(jpn, item_id)
    result = CliRunner().invoke(app, ["read", item_id, "-o", "-"], env=jpn.env)
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == text.encode()  # the payload alone: the marking went to stderr
    assert "極秘" in result.stderr
    assert jpn.run("read", item_id).code == 2  # -o is required
    line = one_line_error(jpn.run("read", "../ledger/head", "-o", "-"))
    assert line == "gsomia: error: '../ledger/head' is not an item id (as `gsomia items` lists them)"


def test_refusals_are_one_line_citing_the_rule(people: dict[str, Person], tmp_path: Path) -> None:
    kor, jpn = people["kor.analyst"], people["jpn.analyst"]
    source = tmp_path / "note.txt"
    source.write_text("above my clearance")

    # above the analyst's clearance: the node's decision, its rule first (as from a shell)
    line = one_line_error(
        kor.shell("share", str(source), "--to", "JPN", "--classification", "군사I급비밀", "--purpose", "nk-missile")
    )
    assert line.startswith("gsomia: refused: R"), line

    # flash reports are the duty officers' (R17)
    line = one_line_error(kor.run("flash", "test", "--to", "JPN", "--classification", "군사II급비밀"))
    assert line.startswith("gsomia: refused: R17"), line

    # an item the reader may not know of is answered as an unknown one
    auditor_item = kor.run(
        "share", str(source), "--to", "JPN", "--classification", "군사II급비밀", "--purpose", "nk-nuclear"
    ).stdout.strip()
    wait_for_item(people["jpn.auditor"], auditor_item)
    duty = people["jpn.duty_officer"]  # need-to-know nk-missile and flash, not nk-nuclear (R7)
    line = one_line_error(duty.run("read", auditor_item, "-o", str(tmp_path / "x")))
    assert line == f"gsomia: error: no item {auditor_item}"
    assert not (tmp_path / "x").exists()
    # and one read for a purpose outside the label's is refused with its rule
    line = one_line_error(jpn.run("read", auditor_item, "--purpose", "nk-missile", "-o", str(tmp_path / "y")))
    assert line.startswith("gsomia: refused: R"), line
    assert not (tmp_path / "y").exists()


def test_a_file_over_the_limit_is_refused_before_anything_is_sent(people: dict[str, Person], tmp_path: Path) -> None:
    """The check is the client's, before it connects: the profile points at a closed port and
    the answer is about the size, not the connection."""
    kor = Person(people["kor.analyst"].pair, "KOR", "analyst", tmp_path / "home").login()
    profile = kor.home / "profile.toml"
    closed = kor.node.rsplit(":", 1)[0] + ":1"
    profile.write_text(profile.read_text().replace(kor.node, closed))
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(client.MAX_PAYLOAD + 1)  # sparse: nothing to read, the size is what counts
    line = one_line_error(
        kor.run("share", str(big), "--to", "JPN", "--classification", "군사II급비밀", "--purpose", "nk-missile")
    )
    assert "over the node's limit of 12.0 MiB" in line
    small = tmp_path / "small.bin"
    small.write_bytes(b"x")  # the same profile: a file within the limit does try the node
    line = one_line_error(
        kor.run("share", str(small), "--to", "JPN", "--classification", "군사II급비밀", "--purpose", "nk-missile")
    )
    assert line.startswith(f"gsomia: error: cannot reach {closed}")


def test_the_inbox_fits_80_columns_whatever_the_marking() -> None:
    """A long marking is cut (with an ellipsis) so the row stays within 80 columns; --wide keeps it whole."""
    row = {
        "item_id": "0123abcd-4567-89ab-cdef-0123456789ab",
        "created_at": "2019-11-22T15:00:00+00:00",
        "originator": "KOR",
        "lane": "flash",
        "marking": "極秘",
        "display": "極秘 (provided by KOR as 군사II급비밀 [COMPARTMENT ALPHA BRAVO CHARLIE] under jp-kr-gsomia-2016)",
    }
    narrow = Console(width=80, record=True, file=io.StringIO())
    narrow.print(cli_people.inbox_table([row], cli_people.zone_of("JPN"), wide=False))
    lines = narrow.export_text().splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    assert lines[1].startswith("0123abcd  2019-11-23 00:00 JST  KOR")
    assert lines[1].rstrip().endswith("…")
    wide = Console(width=1000, record=True, file=io.StringIO())
    wide.print(cli_people.inbox_table([row], cli_people.zone_of("JPN"), wide=True))
    assert row["display"] in wide.export_text()  # whole, its brackets not taken for markup


def test_large_files_show_progress_on_a_terminal(people: dict[str, Person], tmp_path: Path) -> None:
    """Sharing and reading 3 MiB on a terminal (stderr a pseudo-terminal) draws rich progress bars
    there; stdout still holds the item id alone, and the bytes read are the bytes shared."""
    kor, jpn = people["kor.analyst"], people["jpn.analyst"]
    payload = os.urandom(3 << 20)
    (tmp_path / "big.bin").write_bytes(payload)

    def on_a_terminal(person: Person, *args: str) -> tuple[int, str, str]:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "gsomia", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env={**os.environ, **person.env, "TERM": "xterm"},
        )
        os.close(slave)
        drawn = bytearray()
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            drawn += chunk
        os.close(master)
        stdout = proc.stdout.read().decode() if proc.stdout else ""
        return proc.wait(timeout=120), stdout, drawn.decode("utf-8", "replace")

    code, stdout, drawn = on_a_terminal(
        kor,
        "share",
        str(tmp_path / "big.bin"),
        "--to",
        "JPN",
        "--classification",
        "군사II급비밀",
        "--purpose",
        "nk-missile",
    )
    assert code == 0, drawn
    item_id = stdout.strip()
    assert len(item_id) == 36
    assert "reading big.bin" in drawn
    assert "sending" in drawn
    assert "MiB" in drawn

    wait_for_item(jpn, item_id)
    code, stdout, drawn = on_a_terminal(jpn, "read", item_id, "-o", str(tmp_path / "copy.bin"))
    assert code == 0, drawn
    assert f"reading {item_id[:8]}" in drawn
    assert (tmp_path / "copy.bin").read_bytes() == payload


def test_a_flash_report_in_the_watchers_own_zone(capsys: pytest.CaptureFixture[str]) -> None:
    """`watch` shows a report in the watcher's party's time (seconds: flash reports race), and
    `watch --json` gives the instant in ISO 8601 with that party's offset."""
    report = {
        "alert_id": "0123abcd-4567-89ab-cdef-0123456789ab",
        "origin": "JPN",
        "direction": "in",
        "marking": "군사II급비밀",
        "display": "군사II급비밀 (provided by JPN as 極秘 under jp-kr-gsomia-2016)",
        "created_at": "2019-11-22T14:59:58.5+00:00",
        "text": "[launch] detected",
    }
    cli_people._show_report(report, cli_people.zone_of("KOR"), as_json=True)
    shown = json.loads(capsys.readouterr().out)
    assert shown["created_at"] == "2019-11-22T23:59:58.500000+09:00"
    assert shown["text"] == "[launch] detected"
    cli_people._show_report(report, cli_people.zone_of("KOR"), as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("FLASH 2019-11-22 23:59:58 KST  from JPN  군사II급비밀 (provided by JPN as 極秘")
    assert lines[1] == "  [launch] detected"  # text as sent, never read as markup


def test_the_profile_lives_where_the_user_says(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GSOMIA_HOME", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert client.profile_path() == tmp_path / "xdg" / "gsomia" / "profile.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert client.profile_path() == tmp_path / "home" / ".config" / "gsomia" / "profile.toml"
    monkeypatch.setenv("GSOMIA_HOME", str(tmp_path / "gh"))
    assert client.profile_path() == tmp_path / "gh" / "profile.toml"


def test_the_client_limits_are_the_apis() -> None:
    assert (
        next(m.max_length for m in ItemIn.model_fields["payload_b64"].metadata if hasattr(m, "max_length"))
        == client.PAYLOAD_B64_LIMIT
    )
    assert client.PROVIDE_BODY_LIMIT == intake.PROVIDE_BODY_LIMIT
    assert client.MAX_PAYLOAD * 4 // 3 <= client.PAYLOAD_B64_LIMIT


def test_a_token_the_node_does_not_know_says_log_in_again(pair: Pair, tmp_path: Path) -> None:
    person = Person(pair, "KOR", "analyst", tmp_path / "home")
    line = one_line_error(
        person.shell("login", "--node", person.node, "--cacert", str(person.cacert), stdin="not-a-token\n")
    )
    assert "log in again: gsomia login" in line
    assert "not-a-token" not in line
    assert not (person.home / "profile.toml").exists()

    person.login()
    profile = person.home / "profile.toml"
    profile.write_text(profile.read_text().replace(person.token, "revoked-token"))
    line = one_line_error(person.run("inbox"))
    assert "does not accept this token" in line
    assert "log in again: gsomia login" in line


def test_a_wrong_certificate_or_no_node_is_one_line(pair: Pair, tmp_path: Path) -> None:
    person = Person(pair, "KOR", "analyst", tmp_path / "home")
    wrong = pair.nodes["JPN"].tls_cert  # the partner's certificate does not vouch for the KOR node
    line = one_line_error(person.shell("login", "--node", person.node, "--cacert", str(wrong), stdin=person.token))
    assert line.startswith("gsomia: error: TLS:")
    assert str(wrong) in line
    assert not (person.home / "profile.toml").exists()

    line = one_line_error(person.run("login", "--node", person.node, stdin=person.token))
    assert "--cacert" in line
    line = one_line_error(
        person.run("login", "--node", person.node, "--cacert", str(tmp_path / "none.crt"), stdin=person.token)
    )
    assert "no such certificate file" in line
    line = one_line_error(person.run("login", "--node", "http://192.0.2.1:8701", stdin=person.token))
    assert "plain HTTP only to a node on this machine" in line

    closed = person.node.rsplit(":", 1)[0] + ":1"
    line = one_line_error(person.run("login", "--node", closed, "--cacert", str(person.cacert), stdin=person.token))
    assert line.startswith(f"gsomia: error: cannot reach {closed}")


class Watcher:
    """`gsomia watch` in a child process, its output collected as it comes."""

    def __init__(self, person: Person) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gsomia", "watch"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **person.env, "PYTHONUNBUFFERED": "1"},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._collect, args=(stream, into), daemon=True).start()

    @staticmethod
    def _collect(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)

    def wait_for(self, text: str, where: str = "out", timeout: float = 120.0) -> None:
        lines = self.out if where == "out" else self.err
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in list(lines)):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in watch's {where}: {''.join(lines)} / {''.join(self.err)}")

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_flash_and_watch_until_ctrl_c(people: dict[str, Person]) -> None:
    """A JPN duty officer watches; a KOR duty officer's flash report appears with its marking,
    origin and Tokyo time; the stream survives the JPN node's restart and resumes after the
    last report shown (not from the start); Ctrl-C ends it with exit 0 and a 'stopped' line."""
    kor, jpn = people["kor.duty_officer"], people["jpn.duty_officer"]
    watcher = Watcher(jpn)
    try:
        watcher.wait_for("watching flash reports", "err")
        sent = kor.run("flash", "TEL moving near Sinpo", "--to", "JPN", "--classification", "군사II급비밀")
        assert sent.code == 0, sent.stderr
        assert "accepted in" in sent.stderr
        assert " ms" in sent.stderr
        alert_id = sent.stdout.strip()
        assert len(alert_id) == 36
        watcher.wait_for("TEL moving near Sinpo")
        header = next(line for line in watcher.out if line.startswith("FLASH"))
        assert "JST" in header
        assert "from KOR" in header
        assert "極秘" in header

        jpn_node = jpn.pair.procs["JPN"]
        jpn_node.stop()
        watcher.wait_for("reconnecting in", "err")
        again = kor.run("flash", "second launch", "--to", "JPN", "--classification", "군사II급비밀")
        assert again.code == 0, again.stderr
        jpn_node.start()
        watcher.wait_for("second launch")
        assert sum("TEL moving near Sinpo" in line for line in watcher.out) == 1  # resumed, not replayed

        code = watcher.interrupt()
        stderr = "".join(watcher.err)
        assert code == 0, stderr
        assert stderr.strip().splitlines()[-1] == "stopped"
        assert "Traceback" not in stderr
        assert "KeyboardInterrupt" not in stderr
    finally:
        watcher.kill()


def test_the_commands_are_documented() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for command in ("login", "share", "inbox", "items", "read", "flash", "watch"):
        assert f"gsomia {command}" in readme, command
        assert f"gsomia {command}" in api, command
