"""docs/deploy.md, run as written: two node directories, two sets of ports, the real CLI.

The commands come out of the document itself: every fenced block marked ```` ```sh KOR ````
or ```` ```sh JPN ```` is run, line by line, in the order the document gives, each in a
shell on "its machine" (a directory of its own). What differs between two machines and one
is replaced, and each replacement must find its text in the document, so the two cannot
drift apart unnoticed:

- the machines' paths (``/opt/gsomia``: this clone; ``/var/lib/gsomia``: the node's directory),
- their host names (both ``localhost``), the wildcard address (``127.0.0.1``) and the ports
  (free ones, from the range ``GSOMIA_PORTS`` gives this worker);
- ``import-partner-file`` gets ``--yes`` (no terminal here to answer its question; the
  fingerprints are compared by the test instead), ``node serve`` is started in the
  background and stopped at the end, the analyst's token file is written with the token
  ``user add`` printed, and ``ITEM`` is the id the partner's ``share`` printed;
- on PostgreSQL, ``node init`` gets the ``--database-url`` of section 2.

No demo or provisioning helper is used: the nodes are what the document makes.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gsomia.core import keys
from gsomia.node.runtime import tls
from gsomia.node.setup import partner
from gsomia.node.setup.partner import PartnerFile
from gsomia.node.setup.provision import free_port
from nodes import ROOT, pg_databases

DOC = ROOT / "docs" / "deploy.md"
BLOCK = re.compile(r"^```sh (KOR|JPN)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
GSOMIA_BIN = Path(sys.executable).parent  # the environment gsomia is installed in (make: .venv/bin)
MACHINES = ("KOR", "JPN")
HOSTS = {"KOR": "kor.gsomia.example", "JPN": "jpn.gsomia.example"}
TEXTS = {"KOR": "KOR to JPN: launch detected", "JPN": "JPN to KOR: track data"}
MARKINGS = {"KOR": "군사II급비밀", "JPN": "極秘"}  # what each reads the other's item as (R3/R4)


def doc_steps() -> list[tuple[str, str]]:
    """(machine, command) for every line of every ``sh KOR`` / ``sh JPN`` block, in order."""
    steps = [
        (machine, line.strip())
        for machine, body in BLOCK.findall(DOC.read_text(encoding="utf-8"))
        for line in body.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert steps, f"{DOC}: no ```sh KOR / ```sh JPN blocks"
    return steps


class Machine:
    """One side: its node directory, its working directory, its ports, what its steps printed."""

    def __init__(self, party: str, root: Path, database_url: str | None) -> None:
        self.party = party
        self.home = root / f"{party}-home"  # where the operator's commands run
        self.node = root / f"{party}-node"  # --dir
        self.home.mkdir()
        self.user_port, self.peer_port = free_port(), free_port()
        self.database_url = database_url
        self.tokens: dict[str, str] = {}
        # Each machine's people have their own login profile (in their home directory).
        inherited = {
            k: v for k, v in os.environ.items() if k not in ("GSOMIA_HOME", "XDG_CONFIG_HOME", "GSOMIA_PROFILE")
        }
        self.env = {
            **inherited,
            "PATH": f"{GSOMIA_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.home),
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.up = False
        self.fingerprints: list[str] = []

    def substitute(self, command: str) -> str:
        replacements = [
            ("/opt/gsomia", str(ROOT)),
            ("/var/lib/gsomia", str(self.node)),
            (HOSTS[self.party], "localhost"),
            ("0.0.0.0:", "127.0.0.1:"),
            (":8701", f":{self.user_port}"),
            (":8711", f":{self.peer_port}"),
        ]
        for old, new in replacements:
            command = command.replace(old, new)
        return command

    @property
    def cert(self) -> Path:
        return self.node / "keys" / f"{self.party}.crt"

    @property
    def user_url(self) -> str:
        return f"https://localhost:{self.user_port}"

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.user_url,
            headers={"Authorization": f"Bearer {token}"},
            verify=tls.trust(self.cert),
            timeout=30,
        )

    def run(self, command: str, extra_env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.home,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            timeout=300,
            check=False,
        )
        out, err = done.stdout.decode(), done.stderr.decode()
        assert done.returncode == 0, f"{self.party}: {command}\nexit {done.returncode}\n{out}\n{err}"
        return out

    def serve(self, command: str) -> None:
        log = (self.home / "serve.log").open("wb")
        self.server = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=self.home, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def log(self) -> str:
        return (self.home / "serve.log").read_text(errors="replace")

    def wait_up(self) -> None:
        if self.server is None or self.up:
            return
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.server is not None
            assert self.server.poll() is None, f"{self.party}'s node stopped:\n{self.log()}"
            try:
                if httpx.get(f"{self.user_url}/health", verify=tls.trust(self.cert), timeout=5).status_code == 200:
                    self.up = True
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.party}'s node did not answer on {self.user_url}")

    def stop(self) -> None:
        if self.server is None or self.server.poll() is not None:
            return
        self.server.send_signal(signal.SIGINT)
        try:
            self.server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()


def _fingerprint(output: str) -> str:
    found = re.search(
        r"^fingerprint \(SHA-256 of the file's content\):\n((?:[0-9A-F]{4} ){15}[0-9A-F]{4})$", output, re.MULTILINE
    )
    assert found, output
    return found.group(1)


@contextmanager
def _databases(backend: str) -> Iterator[dict[str, str | None]]:
    if backend == "sqlite":
        yield {"KOR": None, "JPN": None}
        return
    with pg_databases(2) as urls:
        yield dict(zip(MACHINES, urls, strict=True))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_deploy_md_runs_as_written_and_items_flow_both_ways(tmp_path: Path, backend: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    for literal in ("/opt/gsomia", "/var/lib/gsomia", *HOSTS.values(), "0.0.0.0:", ":8701", ":8711"):
        assert literal in text, f"docs/deploy.md no longer says {literal!r}: update this test's replacements"
    with ExitStack() as stack:
        databases = stack.enter_context(_databases(backend))
        machines = {p: Machine(p, tmp_path, databases[p]) for p in MACHINES}
        for machine in machines.values():
            stack.callback(machine.stop)
        shared: dict[str, str] = {}
        read: dict[str, str] = {}
        for party, line in doc_steps():
            me = machines[party]
            other = machines["JPN" if party == "KOR" else "KOR"]
            command = me.substitute(line)
            if " node init " in f" {command} " and me.database_url:
                command += f" --database-url {me.database_url}"
            if "node import-partner-file" in command:
                # The file crossed between the machines (section 4): the test is the courier.
                name = f"{other.party}.partner.json"
                shutil.copyfile(other.home / name, me.home / name)
                output = me.run(command + " --yes")
                # What the importer was shown is what the exporter printed: the out-of-band check.
                assert _fingerprint(output) == other.fingerprints[0]
                continue
            if "node serve" in command:
                me.serve(command)
                continue
            for m in machines.values():  # a step after `node serve` waits for the nodes to answer
                m.wait_up()
            if command.startswith("gsomia login"):
                # The analyst's token, in the file the document names (user id + ".token").
                name = command.split("--token-file", 1)[1].split()[0]
                token_file = me.home / name
                token_file.write_text(me.tokens[name.removesuffix(".token")] + "\n")
                token_file.chmod(0o600)
            if command.startswith("gsomia inbox"):  # wait for the partner's item to arrive
                deadline = time.monotonic() + 120
                while shared[other.party] not in (listed := me.run(command)):
                    assert time.monotonic() < deadline, f"{party} never received {shared[other.party]}:\n{listed}"
                    time.sleep(0.2)
                continue
            output = me.run(command, {"ITEM": shared.get(other.party, "")})
            if "node export-partner-file" in command:
                me.fingerprints.append(_fingerprint(output))
            if "user add" in command:
                user_id = command.split("node.toml", 1)[1].split()[0]
                me.tokens[user_id] = output.strip().splitlines()[-1]
            if command.startswith("gsomia share"):
                shared[party] = output.strip().splitlines()[-1]
            if command.startswith("gsomia read"):
                assert output.startswith(f"{shared[other.party]}: {MARKINGS[party]} "), output  # R3, R4
            if command.startswith("cat "):
                read[party] = output

        # Both nodes were made, introduced, given users, run, and each read the other's item.
        assert read == {"KOR": TEXTS["JPN"] + "\n", "JPN": TEXTS["KOR"] + "\n"}
        # The same through httpx, pinning each node's own certificate, as a user's client does.
        for party, me in machines.items():
            sender = "JPN" if party == "KOR" else "KOR"
            with me.client(me.tokens[f"{party.lower()}.analyst"]) as client:
                r = client.get(f"/items/{shared[sender]}", params={"purpose": "nk-missile"})
                assert r.status_code == 200, r.text
                assert base64.b64decode(r.json()["payload_b64"]).decode() == TEXTS[sender] + "\n"
                assert r.json()["marking"] == MARKINGS[party]
                assert r.json()["decision"]["decision"] == "permit"
        # What init wrote is its operator's alone.
        for me in machines.values():
            assert stat.S_IMODE(me.node.stat().st_mode) == 0o700
            assert stat.S_IMODE((me.node / "keys").stat().st_mode) == 0o700
            for private in ("node.toml", f"keys/{me.party}.key", f"keys/{me.party}.tls.key"):
                assert stat.S_IMODE((me.node / private).stat().st_mode) == 0o600, private
            names = tls.names(me.cert.read_bytes())
            assert "localhost" in names  # --host
            assert "127.0.0.1" in names  # the --listen host
        for me in machines.values():
            me.stop()
            assert me.server is not None
            assert me.server.returncode == 0, me.log()  # Ctrl-C (SIGINT) stops it cleanly
            assert "Traceback" not in me.log(), me.log()


AGREEMENT = ROOT / "agreements" / "jp-kr-gsomia-2016.toml"


def gsomia(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command line as an operator runs it, without a terminal (stdin closed)."""
    return subprocess.run(
        [str(GSOMIA_BIN / "gsomia"), *map(str, args)],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def refused(done: subprocess.CompletedProcess[str], words: str) -> None:
    """Exit 2 and one line on stderr naming the problem; never a traceback."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("gsomia: error: "), lines[0]
    assert words in lines[0], lines[0]


def init(tmp: Path, party: str, *extra: str) -> Path:
    directory = tmp / party
    done = gsomia(
        "node", "init", "--party", party, "--agreement", AGREEMENT, "--dir", directory,
        "--listen", f"127.0.0.1:{free_port()}", "--peer-listen", f"127.0.0.1:{free_port()}", *extra, cwd=tmp,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return directory / "node.toml"


def export(config: Path, output: Path, *extra: str) -> str:
    done = gsomia("node", "export-partner-file", "--config", config, "-o", output, *extra, cwd=output.parent)
    assert done.returncode == 0, done.stderr
    return _fingerprint(done.stdout)


def test_node_init_refuses_before_writing_anything(tmp_path: Path) -> None:
    existing = init(tmp_path, "KOR")
    before = existing.read_bytes()
    refused(
        gsomia("node", "init", "--party", "KOR", "--agreement", AGREEMENT, "--dir", existing.parent, cwd=tmp_path),
        "already holds a node",
    )
    assert existing.read_bytes() == before
    fresh = tmp_path / "fresh"
    cases = [
        (["--party", "KORE"], "not an ISO 3166-1 alpha-3 code"),
        (["--party", "kor"], "not an ISO 3166-1 alpha-3 code"),
        (["--party", "USA"], "USA is not a party to jp-kr-gsomia-2016"),
        (["--party", "KOR", "--listen", "localhost"], "--listen: 'localhost' is not HOST:PORT"),
        (["--party", "KOR", "--listen", "127.0.0.1:0"], "is not HOST:PORT"),
        (["--party", "KOR", "--listen", "127.0.0.1:70000"], "is not HOST:PORT"),
        (["--party", "KOR", "--peer-listen", "no host:8711"], "is not a host name or IP address"),
        (["--party", "KOR", "--listen", "127.0.0.1:8701", "--peer-listen", "127.0.0.1:8701"], "same address"),
        (["--party", "KOR", "--database-url", "mysql://db/gsomia"], "'mysql' is not supported"),
        (["--party", "KOR", "--suite", "pq-hybrid"], "protects items with classic, not pq-hybrid"),
        (["--party", "KOR", "--host", "https://kor.example"], "is not a host name or IP address"),
    ]
    for args, words in cases:
        refused(gsomia("node", "init", "--agreement", AGREEMENT, "--dir", fresh, *args, cwd=tmp_path), words)
        assert not fresh.exists(), args


def test_partner_files_are_checked_before_anything_is_recorded(tmp_path: Path) -> None:
    kor, jpn = init(tmp_path, "KOR"), init(tmp_path, "JPN", "--host", "jpn.example")
    jpn_file, kor_file = tmp_path / "JPN.partner.json", tmp_path / "KOR.partner.json"
    jpn_print = export(jpn, jpn_file)
    export(kor, kor_file)
    config_before = kor.read_bytes()
    data = json.loads(jpn_file.read_text())

    def variant(name: str, change: Any) -> Path:
        copy = json.loads(json.dumps(data))
        change(copy)
        path = tmp_path / name
        path.write_text(json.dumps(copy))
        return path

    def imports(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return gsomia("node", "import-partner-file", path, "--config", kor, "--yes", *extra, cwd=tmp_path)

    (tmp_path / "garbage.json").write_text("not json {")
    refused(imports(tmp_path / "garbage.json"), "not a gsomia partner file")
    refused(imports(kor_file), "KOR's own")
    refused(imports(variant("agreement.json", lambda d: d.update(agreement="us-kr-jp-tisa-2014"))), "agreement")
    short = base64.b64encode(b"12345").decode()
    refused(imports(variant("key.json", lambda d: d["public_key"].update(ed25519=short))), "wrong length or form")
    pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    refused(imports(variant("cert.json", lambda d: d.update(tls_cert=pem))), "not a PEM certificate")
    refused(
        imports(variant("url.json", lambda d: d.update(peer_url="https://elsewhere.example:8711"))),
        "not named by the TLS certificate",
    )
    refused(imports(variant("party.json", lambda d: d.update(party="USA"))), "is JPN's key, not USA's")
    # Well formed, but from a party that is not KOR's partner under its agreement.
    usa = PartnerFile(
        "USA", "jp-kr-gsomia-2016", "classic", keys.generate("USA", "classic").public(), (),
        tls.make_certificate("USA", datetime.now(UTC))[0], "https://127.0.0.1:8711",
    )  # fmt: skip
    partner.write(usa, tmp_path / "USA.partner.json")
    refused(imports(tmp_path / "USA.partner.json"), "USA is not a party to this node's agreements: its partner is JPN")
    # Without --yes and without a terminal to ask on, nothing is recorded.
    refused(gsomia("node", "import-partner-file", jpn_file, "--config", kor, cwd=tmp_path), "then import with --yes")
    assert kor.read_bytes() == config_before
    assert not (kor.parent / "keys" / "JPN.pub").exists()

    # The fingerprint the importer is shown is the exporter's, whatever the file's layout.
    (tmp_path / "reindented.json").write_text(json.dumps(data, indent=8))
    done = imports(tmp_path / "reindented.json")
    assert done.returncode == 0, done.stderr
    assert _fingerprint(done.stdout) == jpn_print
    recorded = kor.read_bytes()
    assert b"[peers.JPN]" in recorded
    assert (kor.parent / "keys" / "JPN.crt").read_text() == data["tls_cert"]
    # The same file again: nothing changes.
    again = imports(jpn_file)
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stdout
    assert kor.read_bytes() == recorded

    # A new certificate for JPN: a different file for a known partner needs --replace.
    done = gsomia(
        "keys",
        "generate",
        "--party",
        "JPN",
        "--out",
        jpn.parent / "keys",
        "--tls-only",
        "--force",
        "--host",
        "127.0.0.1",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    new_print = export(jpn, jpn_file)
    assert new_print != jpn_print
    refused(imports(jpn_file), "import with --replace")
    assert kor.read_bytes() == recorded
    done = imports(jpn_file, "--replace")
    assert done.returncode == 0, done.stderr
    assert (kor.parent / "keys" / "JPN.crt").read_bytes() == (jpn.parent / "keys" / "JPN.crt").read_bytes()
    assert kor.read_text().count("[peers.JPN]") == 1


def test_a_partner_file_carries_the_key_chain_after_a_rotation(tmp_path: Path) -> None:
    kor, jpn = init(tmp_path, "KOR"), init(tmp_path, "JPN")
    first = json.loads((kor.parent / "keys" / "KOR.pub").read_text())
    done = gsomia("keys", "rotate", "--config", kor, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    kor_file = tmp_path / "KOR.partner.json"
    export(kor, kor_file)
    data = json.loads(kor_file.read_text())
    assert data["public_key"] == first  # the anchor the chain starts from
    assert len(data["rotations"]) == 1
    done = gsomia("node", "import-partner-file", kor_file, "--config", jpn, "--yes", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    history = gsomia("keys", "history", "--config", jpn, "--json", cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    kor_keys = [r for r in json.loads(history.stdout) if r["party"] == "KOR"]
    current = json.loads((kor.parent / "keys" / "KOR.pub").read_text())
    assert len(kor_keys) == 2  # JPN's node knows KOR's current key before they ever talk
    assert kor_keys[-1]["retired_at"] is None
    assert current != first


def test_a_flash_process_address_travels_in_the_partner_file(tmp_path: Path) -> None:
    """A node whose operator added a flash process (flash_listen, flash_peer_listen: R17)
    tells the partner where its flash peer API is, on the host of its peer URL."""
    kor, jpn = init(tmp_path, "KOR", "--host", "localhost"), init(tmp_path, "JPN")
    flash_port = free_port()
    text = kor.read_text().replace(
        "\n[peers]\n",
        f'flash_listen = "127.0.0.1:{free_port()}"\nflash_peer_listen = "127.0.0.1:{flash_port}"\n\n[peers]\n',
    )
    kor.write_text(text)
    peer_port = int(text.split('peer_listen = "127.0.0.1:')[1].split('"')[0])
    kor_file = tmp_path / "KOR.partner.json"
    export(kor, kor_file, "--peer-url", f"https://localhost:{peer_port}")
    assert json.loads(kor_file.read_text())["flash_url"] == f"https://localhost:{flash_port}"
    done = gsomia("node", "import-partner-file", kor_file, "--config", jpn, "--yes", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f'flash_url = "https://localhost:{flash_port}"' in jpn.read_text()
    # A wildcard peer_listen names no address the partner could call: --peer-url is needed.
    kor.write_text(text.replace('peer_listen = "127.0.0.1:', 'peer_listen = "0.0.0.0:', 1))
    refused(gsomia("node", "export-partner-file", "--config", kor, "-o", kor_file, cwd=tmp_path), "--peer-url")
    # And an address the certificate does not name would fail the partner's TLS check.
    refused(
        gsomia(
            "node",
            "export-partner-file",
            "--config",
            kor,
            "-o",
            kor_file,
            "--peer-url",
            "https://kor.example:8711",
            cwd=tmp_path,
        ),
        "not named by the TLS certificate",
    )


def test_import_asks_on_a_terminal_and_records_only_on_yes(tmp_path: Path) -> None:
    kor, jpn = init(tmp_path, "KOR"), init(tmp_path, "JPN")
    jpn_file = tmp_path / "JPN.partner.json"
    printed = export(jpn, jpn_file)
    before = kor.read_bytes()

    def answer(reply: str) -> subprocess.CompletedProcess[str]:
        main, side = os.openpty()  # stdin a terminal: the security authority at the keyboard
        try:
            os.write(main, reply.encode() + b"\n")
            return subprocess.run(
                [str(GSOMIA_BIN / "gsomia"), "node", "import-partner-file", str(jpn_file), "--config", str(kor)],
                cwd=tmp_path, stdin=side, capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
        finally:
            os.close(main)
            os.close(side)

    no = answer("n")
    refused(no, "not imported: the fingerprint was not confirmed")
    assert _fingerprint(no.stdout) == printed  # shown before the question
    assert "Is this the fingerprint" in no.stdout
    assert kor.read_bytes() == before
    yes = answer("y")
    assert yes.returncode == 0, yes.stderr
    assert "JPN recorded" in yes.stdout
    assert "[peers.JPN]" in kor.read_text()


def test_node_init_certificate_names_the_hosts_it_is_reached_at(tmp_path: Path) -> None:
    directory = tmp_path / "KOR"
    done = gsomia(
        "node", "init", "--party", "KOR", "--agreement", AGREEMENT, "--dir", directory,
        "--listen", f"0.0.0.0:{free_port()}", "--peer-listen", f"127.0.0.1:{free_port()}",
        "--host", "kor.gsomia.example", "--host", "10.1.2.3", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = set(tls.names((directory / "keys" / "KOR.crt").read_bytes()))
    # Not the wildcard; the loopback peer address and localhost beside it; every --host.
    assert names == {"127.0.0.1", "localhost", "kor.gsomia.example", "10.1.2.3"}
