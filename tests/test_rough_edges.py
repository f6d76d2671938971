"""What a new user meets first: a clean stop, tables that fit, one time zone, plain words."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from nodes import FlashListener, node_pair

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
