"""What a new user meets first: a clean stop, tables that fit, one time zone, plain words."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from inprocess import in_process_apps
from nodes import ROOT, FlashListener, node_pair

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
