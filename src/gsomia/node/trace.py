"""Marks on a flash report's way through the nodes, for ``bench/exchange.py --trace``.

Off unless ``GSOMIA_TRACE`` names a file when the process starts; then each mark appends
one line, ``<unix time> <pid> <item id> <point>``, in one ``write`` so that the lines of
both nodes' processes never interleave. py-spy shows where CPU time goes; these show
which hop a flash report waited at (R17).
"""

from __future__ import annotations

import os
import time

POINTS = (
    "provide.begin",  # the sender's transaction starts (the report is sealed)
    "provide.committed",
    "handed",  # the delivery worker takes it
    "posting",  # signed and encoded: on its way to the partner
    "receive.begin",  # the partner verified and opened it; its transaction starts
    "receive.committed",
    "stream.woke",  # an alert stream is woken with it
    "stream.shown",  # the stream hands it to its subscriber
)

_PATH = os.environ.get("GSOMIA_TRACE")
_FD = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) if _PATH else None


def mark(item_id: str, point: str) -> None:
    if _FD is not None:
        os.write(_FD, f"{time.time():.6f} {os.getpid()} {item_id} {point}\n".encode())
