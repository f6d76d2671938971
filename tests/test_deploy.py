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
  fingerprints are compared by the test instead), and ``node serve`` is started in the
  background and stopped at the end;
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
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gsomia import tls
from gsomia.node.provision import free_port
from nodes import ROOT, pg_databases

DOC = ROOT / "docs" / "deploy.md"
BLOCK = re.compile(r"^```sh (KOR|JPN)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
GSOMIA_BIN = ROOT / ".venv" / "bin"
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
        self.env = {
            **os.environ,
            "PATH": f"{GSOMIA_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.home),
        }
        self.server: subprocess.Popen[bytes] | None = None
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
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.server is not None
            assert self.server.poll() is None, f"{self.party}'s node stopped:\n{self.log()}"
            try:
                if httpx.get(f"{self.user_url}/health", verify=tls.trust(self.cert), timeout=5).status_code == 200:
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
    found = re.search(r"^fingerprint: ((?:[0-9A-F]{4} ){15}[0-9A-F]{4})$", output, re.MULTILINE)
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
        read: dict[str, dict[str, Any]] = {}
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
            if command.startswith("curl"):
                for m in machines.values():
                    if m.server is not None:
                        m.wait_up()
                token = me.tokens[f"{party.lower()}.analyst"]
                if "/items/$ITEM" in command:
                    item = shared[other.party]
                    read[party] = json.loads(me.run(command, {"TOKEN": token, "ITEM": item}))
                elif " -d " in command:
                    [made] = json.loads(me.run(command, {"TOKEN": token}))["items"]
                    shared[party] = made["item_id"]
                else:  # the listing: wait for the partner's item to arrive
                    deadline = time.monotonic() + 120
                    while True:
                        listed = json.loads(me.run(command, {"TOKEN": token}))["items"]
                        if any(r["item_id"] == shared[other.party] and r["direction"] == "in" for r in listed):
                            break
                        assert time.monotonic() < deadline, f"{party} never received {shared[other.party]}: {listed}"
                        time.sleep(0.2)
                continue
            output = me.run(command)
            if "node export-partner-file" in command:
                me.fingerprints.append(_fingerprint(output))
            if "user add" in command:
                user_id = command.split("node.toml", 1)[1].split()[0]
                me.tokens[user_id] = output.strip().splitlines()[-1]

        # Both nodes were made, introduced, given users, run, and each read the other's item.
        assert set(read) == set(MACHINES)
        for party, body in read.items():
            sender = "JPN" if party == "KOR" else "KOR"
            assert body["item_id"] == shared[sender]
            assert base64.b64decode(body["payload_b64"]).decode() == TEXTS[sender]
            assert body["marking"] == MARKINGS[party]
            assert body["decision"]["decision"] == "permit"
        # The same through httpx, pinning each node's own certificate, as a user's client does.
        for party, me in machines.items():
            sender = "JPN" if party == "KOR" else "KOR"
            with me.client(me.tokens[f"{party.lower()}.analyst"]) as client:
                r = client.get(f"/items/{shared[sender]}", params={"purpose": "nk-missile"})
                assert r.status_code == 200, r.text
                assert base64.b64decode(r.json()["payload_b64"]).decode() == TEXTS[sender]
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
            assert me.server.returncode is not None
            assert "Traceback" not in me.log(), me.log()  # Ctrl-C (SIGINT) stops it cleanly
