"""A database that does not answer is one line and exit 2 on the command line, never a traceback:
the main database or the flash lane's own (``flash_database_url``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gsomia.cli.demo import terms_only
from gsomia.node.setup.provision import free_port, provision_pair
from nodes import AGREEMENT, pg_databases

GSOMIA = str(Path(sys.executable).parent / "gsomia")


@pytest.mark.parametrize("which", ["database_url", "flash_database_url"])
@pytest.mark.parametrize("command", [["user", "list"], ["audit", "verify"], ["node", "serve"]])
def test_a_database_that_does_not_answer_is_one_line_and_exit_2(tmp_path: Path, which: str, command: list[str]) -> None:
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"  # nothing listens there
    with pg_databases(2) as urls:
        nodes = provision_pair(
            tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"), dict(zip(("KOR", "JPN"), urls, strict=True))
        )
        config = nodes["KOR"].config
        text = config.read_text()
        if which == "database_url":
            text = text.replace(urls[0], closed)
        else:
            text = text.replace("key = ", f'flash_database_url = "{closed}"\nkey = ', 1)
        config.write_text(text)
        r = subprocess.run(
            [GSOMIA, *command, "--config", str(config)], capture_output=True, text=True, timeout=60, check=False
        )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    [line] = [x for x in r.stderr.splitlines() if x.startswith("gsomia: error:")]
    assert line.startswith("gsomia: error: database unavailable: ")
    assert closed.rsplit(":", 1)[1].split("/")[0] in line  # names the port it tried
