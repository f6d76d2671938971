"""Files a node writes, inputs it registers, and what its refusals say about its disk.

A node's database, its write-ahead log, its flash file and its log hold the ledger, the
labels, the users' token hashes and who read what: readable by the node's operator
alone (0600) in directories only the operator may enter (0700), whatever the umask of
whoever started it. ``gsomia user add`` registers only ids of a safe alphabet and
clearances of the node's own national scheme. A problem detail never names a path on
the node's disk. ``gsomia open`` never writes over its input and leaves no readable
plaintext behind when killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gsomia.cli.demo import terms_only
from gsomia.core import users
from gsomia.core.errors import InvalidInput
from gsomia.node import peer
from gsomia.node.api.problems import without_paths
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime.clock import SystemClock
from gsomia.node.service import Node
from gsomia.node.setup.provision import provision_pair
from gsomia.store import files
from gsomia.store.db import open_database
from inprocess import in_process_apps
from nodes import AGREEMENT, node_pair

GSOMIA = str(Path(sys.executable).parent / "gsomia")
AT = "2024-01-15T09:00:00+09:00"  # in force: the 2019 notice was withdrawn in 2023


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [GSOMIA, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd, env=env, check=False
    )


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@contextmanager
def umask(value: int) -> Iterator[None]:
    """Run with a login shell's usual umask (0022), which made every file 0644 before."""
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


PUBLIC = (".pub", ".crt")  # public keys and certificates, handed to partners anyway


def exposed(home: Path) -> dict[str, str]:
    """Everything under a node's directory that anyone but its owner may read or enter."""
    found = {}
    for path in [home, *home.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_file() and path.name.endswith(PUBLIC):
            continue
        if mode(path) != (0o700 if path.is_dir() else 0o600):
            found[str(path.relative_to(home.parent))] = oct(mode(path))
    return found


# --- files a node makes -------------------------------------------------------------------------


def test_a_running_nodes_database_wal_flash_file_and_log_are_its_owners_alone(tmp_path: Path) -> None:
    with umask(0o022), node_pair(tmp_path, "sqlite") as pair:
        duty = pair.user("JPN", "duty_officer")
        alert = {"to": "KOR", "classification": "極秘", "text": "launch", "purposes": ["nk-missile"]}
        assert duty.post("/alerts", alert).status_code == 201  # both nodes' flash files now exist
        pair.share("KOR", "JPN", "군사II급비밀", 2)
        pair.wait(lambda: pair.pending("KOR") == 0 and pair.pending("JPN") == 0, "delivery")
        for party in ("KOR", "JPN"):
            home = tmp_path / party
            made = {p.name for p in home.iterdir()}
            # Looked at while the nodes run: the write-ahead logs and shared memory are there.
            expected = {"node.db", "node.db-wal", "node.db-shm", "node.db-flash", "node.db-flash-wal", "node.log"}
            assert expected <= made, made
            assert exposed(home) == {}, party


def test_an_existing_database_made_readable_is_narrowed_when_opened(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    with umask(0o022):
        open_database(f"sqlite:///{db}").dispose()
    assert mode(db) == 0o600  # made 0600 before SQLite opened it
    os.chmod(db, 0o644)  # as an earlier version made it
    (tmp_path / "node.db-wal").touch(mode=0o644)
    engine = open_database(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("SELECT 1")
    made = {p.name: mode(p) for p in tmp_path.iterdir()}
    assert {"node.db", "node.db-wal", "node.db-shm"} <= set(made)
    assert made == dict.fromkeys(made, 0o600)
    engine.dispose()


def test_provisioning_makes_private_node_directories_configuration_and_tokens(tmp_path: Path) -> None:
    with umask(0o022):
        nodes = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"))
    for party, node in nodes.items():
        assert exposed(node.root) == {}, party
        assert mode(node.config) == 0o600
        assert mode(node.root / "tokens.json") == 0o600
        assert mode(node.root / "node.db") == 0o600


def test_the_demo_keeps_its_nodes_state_private(tmp_path: Path) -> None:
    root = tmp_path / ".demo"
    with umask(0o022):
        done = run(
            "demo", "--headless", "--json", "--items", "1", "--flash", "1", "--root", root, "--agreement", AGREEMENT
        )
    assert done.returncode == 0, done.stderr
    assert mode(root) == 0o700
    for party in ("KOR", "JPN"):
        assert (root / party / "node.log").exists()
        assert exposed(root / party) == {}, party


def test_private_dir_narrows_an_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir(mode=0o755)
    os.chmod(tmp_path / "d", 0o755)
    files.private_dir(tmp_path / "d")
    assert mode(tmp_path / "d") == 0o700


# --- users ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kor_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("users")
    return provision_pair(root, terms_only(AGREEMENT, root / "agreement-terms.toml"))["KOR"].config


def user_ids(config: Path) -> set[str]:
    listed = run("user", "list", "--config", config, "--json")
    assert listed.returncode == 0, listed.stderr
    return {u["user_id"] for u in json.loads(listed.stdout)}


@pytest.mark.parametrize(
    ("user_id", "clearance", "needle"),
    [
        ("kim.analyst", "TOP-SECRET-XYZ", "clearance 'TOP-SECRET-XYZ' is not a KOR marking"),
        ("kim.analyst", "極秘", "clearance '極秘' is not a KOR marking"),  # JPN's marking, on a KOR node
        ("kim.analyst", "SECRET", "군사II급비밀"),  # the rule names the markings allowed
        ("../../etc/x", "군사II급비밀", "user id '../../etc/x' is not allowed"),
        ("Kim.Analyst", "군사II급비밀", "a-z, 0-9"),
        ("kim analyst", "군사II급비밀", "is not allowed"),
        ("-kim", "군사II급비밀", "starting with a letter or digit"),
        ("k" * 65, "군사II급비밀", "1 to 64"),
        ("kim\u200b", "군사II급비밀", "is not allowed"),  # an invisible character
    ],
)
def test_user_add_refuses_a_foreign_marking_or_an_unsafe_id(
    kor_config: Path, user_id: str, clearance: str, needle: str
) -> None:
    before = user_ids(kor_config)
    done = run("user", "add", "--config", kor_config, "--role", "analyst", "--clearance", clearance, "--", user_id)
    one_line_error(done, needle)
    assert user_ids(kor_config) == before


def test_user_add_refuses_before_it_makes_a_database(kor_config: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "KOR"
    shutil.copytree(kor_config.parent, fresh, ignore=shutil.ignore_patterns("node.db*"))
    assert not list(fresh.glob("node.db*"))
    done = run("user", "add", "--config", fresh / "node.toml", "--role", "analyst", "--", "../../etc/x")
    one_line_error(done, "user id '../../etc/x' is not allowed")
    done = run("user", "add", "--config", fresh / "node.toml", "kim", "--role", "analyst", "--clearance", "極秘")
    one_line_error(done, "is not a KOR marking")
    assert not list(fresh.glob("node.db*"))


def test_user_add_stores_the_schemes_own_spelling_of_a_decomposed_marking(kor_config: Path) -> None:
    decomposed = unicodedata.normalize("NFD", "군사III급비밀")
    assert decomposed != "군사III급비밀"
    done = run("user", "add", "--config", kor_config, "lee.duty", "--role", "duty_officer", "--clearance", decomposed)
    assert done.returncode == 0, done.stderr
    listed = json.loads(run("user", "list", "--config", kor_config, "--json").stdout)
    assert {u["user_id"]: u["clearance"] for u in listed}["lee.duty"] == "군사III급비밀"


def test_a_top_secret_marking_of_the_nodes_own_scheme_is_a_clearance(kor_config: Path) -> None:
    # 군사I급비밀 lies outside the agreement's levels (nothing at it is shared) but is a KOR
    # clearance: a security authority holding it reads everything below.
    done = run(
        "user", "add", "--config", kor_config, "choi.sa", "--role", "security_authority", "--clearance", "군사I급비밀"
    )
    assert done.returncode == 0, done.stderr


def test_the_service_refuses_what_the_command_line_refuses(kor_config: Path) -> None:
    cfg = node_config.load(kor_config)
    node = Node(cfg, open_database(cfg.database_url), SystemClock())
    try:
        with pytest.raises(InvalidInput, match="is not a KOR marking"):
            node.add_user("kim.analyst2", "analyst", "特定秘密", [])
        with pytest.raises(InvalidInput, match="user id"):
            node.add_user("../x", "analyst", "군사II급비밀", [])
        assert "kim.analyst2" not in {u["user_id"] for u in node.list_users()}
        assert "../x" not in {u["user_id"] for u in node.list_users()}
    finally:
        node.dispose()


def test_users_check_is_pure_and_names_the_rule() -> None:
    from gsomia.core.agreement import terms

    agreement = terms.load(AGREEMENT)
    assert users.check_clearance([agreement], "JPN", "極秘") == "極秘"
    assert users.check_clearance([agreement], "JPN", None) is None
    with pytest.raises(users.UserInvalid, match=r"\(R7\)"):
        users.check_clearance([agreement], "JPN", "군사II급비밀")
    assert users.check_user_id("kor.analyst") == "kor.analyst"


# --- problem details name no paths ---------------------------------------------------------------


@pytest.fixture(scope="module")
def kor_apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with in_process_apps(tmp_path_factory.mktemp("paths"), "agreement-terms.toml") as found:
        yield found


def assert_no_path(response: Any, root: Path) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    detail = str(response.json()["detail"])
    assert str(root) not in response.text
    assert "/" not in detail, detail
    return detail


@pytest.mark.parametrize("note_type", ["suspend_notice", "resume_notice", "withdraw_notice"])
def test_a_refused_note_names_the_agreement_file_but_not_where_it_lies(
    kor_apps: dict[str, Any], note_type: str
) -> None:
    auth = {"Authorization": f"Bearer {kor_apps['tokens']['security_authority']}"}
    r = kor_apps["user"].post("/notes", json={"to": "JPN", "type": note_type}, headers=auth)
    assert r.status_code == 409, r.text
    detail = assert_no_path(r, kor_apps["root"])
    assert detail.startswith("agreement-terms.toml: notes[0]:"), detail  # still says which file and note
    assert "no termination notice" in detail


def test_a_partners_refused_note_names_no_path_either(kor_apps: dict[str, Any]) -> None:
    note: dict[str, Any] = {
        "note_id": str(uuid.uuid4()),
        "agreement": "jp-kr-gsomia-2016",
        "at": datetime.now(UTC).isoformat(),
        "by": "JPN",
        "type": "suspend_notice",
        "conditions": [],
        "ref": None,
    }
    raw = json.dumps(note).encode()
    r = kor_apps["peer"].post(
        "/peer/notes", content=raw, headers=peer.sign_request(kor_apps["jpn_key"], "POST", "/peer/notes", raw)
    )
    assert r.status_code == 409, r.text
    assert "no termination notice" in assert_no_path(r, kor_apps["root"])


def test_the_command_line_still_shows_the_operator_the_whole_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('id = "x"\n', encoding="utf-8")
    line = one_line_error(run("agreement", "check", bad))
    assert str(bad) in line


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("/srv/gsomia/.demo/agreement-terms.toml: notes[1]: x", "agreement-terms.toml: notes[1]: x"),
        ("../../agreements/jp.toml: term", "jp.toml: term"),
        ("database sqlite:////var/lib/gsomia/node.db", "database sqlite:node.db"),
        ("'/etc/gsomia/KOR.key' (/a/b/)", "'KOR.key' (b)"),
        ("KOR/JPN, 1/2, and/or, a / b, https:// URL", "KOR/JPN, 1/2, and/or, a / b, https:// URL"),
    ],
)
def test_without_paths_keeps_file_names_and_plain_slashes(text: str, shown: str) -> None:
    assert without_paths(text) == shown


# --- gsomia open ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("open")
    keys = root / "keys"
    for party in ("KOR", "JPN"):
        assert run("keys", "generate", "--party", party, "--out", keys).returncode == 0
    payload = root / "report.txt"
    payload.write_bytes("북한 탄도미사일 발사 보고 ".encode() * 4000)  # ~120 KB, 469 segments of 256 bytes
    envelope = root / "report.gsom"
    done = run(
        "seal", payload, "-o", envelope, "--agreement", AGREEMENT, "--key", keys / "KOR.key",
        "--to", keys / "JPN.pub", "--classification", "군사II급비밀", "--segment-size", "256", "--at", AT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {"keys": keys, "payload": payload, "envelope": envelope}


def open_args(sealed: dict[str, Path], envelope: Path, output: Path) -> list[str | Path]:
    keys = sealed["keys"]
    return [
        "open",
        envelope,
        "-o",
        output,
        "--agreement",
        AGREEMENT,
        "--key",
        keys / "JPN.key",
        "--trust",
        keys / "KOR.pub",
    ]


@pytest.mark.parametrize("how", ["itself", "symlink", "hardlink", "another-spelling"])
def test_open_refuses_to_write_over_its_input(sealed: dict[str, Path], tmp_path: Path, how: str) -> None:
    envelope = tmp_path / "a.gsom"
    envelope.write_bytes(sealed["envelope"].read_bytes())
    (tmp_path / "sub").mkdir()
    # "another-spelling": relative to the working directory, through a sibling and back.
    output = {"itself": envelope, "another-spelling": Path("sub/../a.gsom")}.get(how, tmp_path / "b")
    if how == "symlink":
        output.symlink_to(envelope)
    elif how == "hardlink":
        os.link(envelope, output)
    one_line_error(run(*open_args(sealed, envelope, output), cwd=tmp_path), "is the input file")
    assert envelope.read_bytes() == sealed["envelope"].read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_seal_refuses_to_write_over_its_payload(sealed: dict[str, Path], tmp_path: Path) -> None:
    payload = tmp_path / "report.txt"
    payload.write_bytes(sealed["payload"].read_bytes())
    keys = sealed["keys"]
    done = run(
        "seal", payload, "-o", payload, "--agreement", AGREEMENT, "--key", keys / "KOR.key",
        "--to", keys / "JPN.pub", "--classification", "군사II급비밀", "--at", AT,
    )  # fmt: skip
    one_line_error(done, "is the input file")
    assert payload.read_bytes() == sealed["payload"].read_bytes()


def test_open_writes_the_payload_for_its_owner_alone(sealed: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "report.txt"
    with umask(0o022):
        done = run(*open_args(sealed, sealed["envelope"], output))
    assert done.returncode == 0, done.stderr
    assert output.read_bytes() == sealed["payload"].read_bytes()
    assert mode(output) == 0o600


def partials(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if files.PARTIAL.match(p.name)]


def test_open_killed_midway_leaves_only_a_private_partial_which_the_next_run_removes(
    sealed: dict[str, Path], tmp_path: Path
) -> None:
    # The envelope arrives through a pipe: half of it is written, then the writer waits, so
    # ``gsomia open`` is certainly mid-way (plaintext of verified segments written, the
    # rest unread) when it is killed.
    fifo = tmp_path / "incoming.gsom"
    os.mkfifo(fifo)
    output = tmp_path / "out" / "report.txt"
    output.parent.mkdir()
    data = sealed["envelope"].read_bytes()
    with umask(0o022):
        proc = subprocess.Popen([GSOMIA, *map(str, open_args(sealed, fifo, output))], stderr=subprocess.PIPE)
    try:
        with fifo.open("wb") as pipe:
            pipe.write(data[: len(data) // 2])
            pipe.flush()
            deadline = time.monotonic() + 60
            while not any(p.stat().st_size > 0 for p in partials(output.parent)):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "no plaintext was written"
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    except BrokenPipeError:
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    [left] = partials(output.parent)
    assert mode(left) == 0o600  # readable by its owner alone, even half-written
    assert left.name.startswith(".report.txt.")
    assert not output.exists()

    done = run(*open_args(sealed, sealed["envelope"], output))
    assert done.returncode == 0, done.stderr
    assert partials(output.parent) == []
    assert sorted(p.name for p in output.parent.iterdir()) == ["report.txt"]
    assert output.read_bytes() == sealed["payload"].read_bytes()


def test_a_partial_file_of_a_live_process_is_left_alone(tmp_path: Path) -> None:
    mine = tmp_path / f".x.{os.getpid()}-0123abcd.gsomia.partial"  # this process is alive
    mine.write_bytes(b"half")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f".y.{gone.pid}-0123abcd.gsomia.partial"
    dead.write_bytes(b"half")
    other = tmp_path / ".z.partial"  # not ours: another tool's
    other.write_bytes(b"")
    assert files.remove_stale_partials(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other.name])
    # Untouched for a day, a live pid's file is a reused pid's leftover.
    assert files.remove_stale_partials(tmp_path, now=time.time() + files.STALE_AFTER + 1) == [mine]
