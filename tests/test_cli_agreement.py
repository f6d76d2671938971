"""``gsomia agreement status|timeline|check|replay`` run as a real process.

Error handling lives in ``gsomia.cli.main.main`` (every ``GsomiaError`` is one line on
stderr and exit 2), so these tests run the installed console script; only the
many-instant status check runs in-process through Typer's test runner.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gsomia.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
GSOMIA = Path(sys.executable).parent / "gsomia"
REAL = ROOT / "agreements" / "jp-kr-gsomia-2016.toml"
TISA = ROOT / "agreements" / "us-kr-jp-tisa-2014.toml"
STATUS_KEYS = [
    "state",
    "in_force",
    "term_start",
    "term_end",
    "notice_deadline",
    "termination",
    "terminated_at",
    "reading",
    "dispute",
]


def gsomia(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GSOMIA), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def ok_json(*args: str | Path) -> Any:
    result = gsomia(*args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 2, nothing on stdout, one line on stderr, no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gsomia: error: ")
    return lines[0]


def resumed_file(tmp_path: Path) -> Path:
    """The real history, but KOR resumes its notice on 2023-03-21 instead of withdrawing it."""
    text = REAL.read_text("utf-8")
    assert text.count('type = "withdraw_notice"') == 1
    path = tmp_path / "resumed.toml"
    path.write_text(text.replace('type = "withdraw_notice"', 'type = "resume_notice"'), encoding="utf-8")
    return path


# --- status -------------------------------------------------------------------------------


def test_status_json_has_exactly_the_documented_keys() -> None:
    data = ok_json("agreement", "status", REAL, "--json", "--at", "2019-12-01T00:00:00Z")
    assert list(data) == STATUS_KEYS
    assert data["state"] == "termination_suspended"
    assert data["in_force"] is True
    assert data["term_start"] == "2019-11-23T00:00:00+09:00"
    assert data["term_end"] == "2020-11-23T00:00:00+09:00"
    assert data["notice_deadline"] == "2020-08-25T00:00:00+09:00"
    assert data["terminated_at"] is None
    assert data["reading"] == "renotice"
    assert data["dispute"] == {"JPN": "renotice", "KOR": "immediate"}
    t = data["termination"]
    assert t["by"] == "KOR"
    assert t["notified_at"] == "2019-08-23T00:00:00+09:00"
    assert t["effective_at"] == "2019-11-23T00:00:00+09:00"
    assert t["suspended_at"] == "2019-11-22T18:00:00+09:00"
    assert len(t["conditions"]) == 2


@pytest.mark.parametrize(
    ("at", "state"),
    [
        ("2016-11-22T23:59:59+09:00", "not_in_force_yet"),
        ("2016-11-22T15:00:00Z", "in_force"),
        ("2019-08-23T00:00:00+09:00", "termination_pending"),
        ("2019-11-22T08:59:59Z", "termination_pending"),
        ("2019-11-22T09:00:00Z", "termination_suspended"),
        ("2023-03-20T23:59:59+09:00", "termination_suspended"),
        ("2023-03-21T00:00:00+09:00", "in_force"),
    ],
)
def test_status_at_instants_in_any_offset(at: str, state: str) -> None:
    result = CliRunner().invoke(app, ["agreement", "status", str(REAL), "--json", "--at", at])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["state"] == state
    for key in ("term_start", "term_end", "notice_deadline"):
        assert data[key].endswith("+09:00")  # shown in the agreement's zone


def test_status_reading_changes_the_outcome(tmp_path: Path) -> None:
    path = resumed_file(tmp_path)
    kor = ok_json("agreement", "status", path, "--json", "--at", "2023-06-01T00:00:00+09:00", "--reading", "KOR")
    jpn = ok_json("agreement", "status", path, "--json", "--at", "2023-06-01T00:00:00+09:00", "--reading", "JPN")
    assert (kor["reading"], jpn["reading"]) == ("immediate", "renotice")
    assert kor["state"] == "terminated"
    assert kor["terminated_at"] == "2023-03-21T00:00:00+09:00"
    assert kor["term_start"] is None
    assert jpn["state"] == "termination_pending"
    assert jpn["termination"]["notified_at"] == "2023-03-21T00:00:00+09:00"
    assert jpn["termination"]["effective_at"] == "2023-11-23T00:00:00+09:00"
    immediate = ok_json(
        "agreement", "status", path, "--json", "--at", "2023-06-01T00:00:00+09:00", "--reading", "immediate"
    )
    assert immediate == kor


def test_status_table() -> None:
    result = gsomia("agreement", "status", REAL, "--at", "2020-08-04T12:00:00+09:00")
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())  # however wide the terminal, and so wrapped
    assert "at 2020-08-04 12:00 KST: termination_suspended" in out
    assert "suspended at 2019-11-22 18:00 KST" in out
    assert "KOR reads a resumed notice as immediate" in out
    assert "JPN reads a resumed notice as renotice" in out


def test_status_of_an_arrangement_without_a_term() -> None:
    data = ok_json("agreement", "status", TISA, "--json", "--at", "2020-01-01T00:00:00+09:00")
    assert data["state"] == "in_force"
    assert (data["term_start"], data["term_end"], data["notice_deadline"]) == ("2014-12-29T00:00:00+09:00", None, None)


# --- timeline ----------------------------------------------------------------------------


def test_timeline_json() -> None:
    rows = ok_json("agreement", "timeline", REAL, "--json")
    assert all(list(row) == ["at", "event", "by", "state", "detail"] for row in rows)
    assert all(row["at"].endswith("+09:00") for row in rows)
    assert [row["at"] for row in rows] == sorted(row["at"] for row in rows)
    assert rows[0] == {
        "at": "2016-11-23T00:00:00+09:00",
        "event": "entry_into_force",
        "by": None,
        "state": "in_force",
        "detail": "in force",
    }
    notes = [(row["event"], row["by"], row["at"], row["state"]) for row in rows if row["by"]]
    assert notes == [
        ("termination_notice", "KOR", "2019-08-23T00:00:00+09:00", "termination_pending"),
        ("suspend_notice", "KOR", "2019-11-22T18:00:00+09:00", "termination_suspended"),
        ("withdraw_notice", "KOR", "2023-03-21T00:00:00+09:00", "in_force"),
    ]
    renewals = {row["at"][:4]: row for row in rows if row["event"] == "renewal"}
    assert sorted(renewals) == ["2017", "2018", "2019", "2020", "2021", "2022", "2023"]
    assert renewals["2019"]["state"] == "termination_suspended"  # it held that night
    assert renewals["2019"]["detail"] == "renewed; notice deadline 2020-08-25 00:00"
    assert "terminated" not in {row["event"] for row in rows}


def test_timeline_until_and_reading(tmp_path: Path) -> None:
    rows = ok_json("agreement", "timeline", REAL, "--json", "--until", "2019-12-31T00:00:00+09:00")
    assert rows[-1]["event"] == "renewal"
    assert rows[-1]["at"] == "2019-11-23T00:00:00+09:00"
    path = resumed_file(tmp_path)
    kor = ok_json("agreement", "timeline", path, "--json", "--reading", "KOR")
    assert kor[-1] == {
        "at": "2023-03-21T00:00:00+09:00",
        "event": "terminated",
        "by": None,
        "state": "terminated",
        "detail": "notice by KOR takes effect",
    }
    jpn = ok_json("agreement", "timeline", path, "--json", "--reading", "JPN")
    assert jpn[-1]["event"] == "terminated"
    assert jpn[-1]["at"] == "2023-11-23T00:00:00+09:00"


def test_timeline_table() -> None:
    result = gsomia("agreement", "timeline", REAL)
    assert result.returncode == 0, result.stderr
    assert "jp-kr-gsomia-2016: timeline (Asia/Seoul)" in result.stdout
    for text in ("2019-08-23 00:00", "2019-11-22 18:00", "suspend_notice", "2023-03-21 00:00", "withdraw_notice"):
        assert text in result.stdout


# --- check ---------------------------------------------------------------------------------


def test_check_accepts_the_shipped_agreements() -> None:
    files = sorted((ROOT / "agreements").glob("*.toml"))
    result = gsomia("agreement", "check", *files)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"{len(files)} agreement files valid" in result.stdout


def test_check_refuses_an_arrangement_without_the_agreements_that_carry_its_hops() -> None:
    alone = gsomia("agreement", "check", TISA)
    assert alone.returncode == 2
    lines = alone.stderr.strip().splitlines()
    assert lines == [
        f"{TISA}: carried_by[0]: kr-us-gsomia-1987 is not loaded",
        f"{TISA}: carried_by[1]: jp-us-gsomia-2007 is not loaded",
        f"{TISA}: carried_by: no agreement carries USA–KOR",
        f"{TISA}: carried_by: no agreement carries USA–JPN",
    ]
    with_one = gsomia("agreement", "check", TISA, ROOT / "agreements" / "kr-us-gsomia-1987.toml")
    assert with_one.returncode == 2
    assert "carried_by[1]: jp-us-gsomia-2007 is not loaded" in with_one.stderr
    assert "kr-us-gsomia-1987 is not loaded" not in with_one.stderr


def test_check_reports_one_line_per_problem(tmp_path: Path) -> None:
    text = REAL.read_text("utf-8")
    history = tmp_path / "history.toml"  # JPN cannot suspend KOR's notice
    history.write_text(
        text.replace('by = "KOR"\ntype = "suspend_notice"', 'by = "JPN"\ntype = "suspend_notice"'), encoding="utf-8"
    )
    reading = tmp_path / "reading.toml"  # impossible only under KOR's reading
    reading.write_text(
        text.replace('type = "withdraw_notice"', 'type = "resume_notice"')
        + '\n[[notes]]\nat = 2023-06-01T00:00:00+09:00\nby = "KOR"\ntype = "withdraw_notice"\n',
        encoding="utf-8",
    )
    parse = tmp_path / "parse.toml"
    parse.write_text(text.replace('suite = "classic"', 'suite = "rot13"'), encoding="utf-8")
    missing = tmp_path / "missing.toml"
    result = gsomia("agreement", "check", REAL, history, reading, parse, missing)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 4, result.stderr
    assert lines[0].startswith(f"{history}: notes[1]: suspend_notice by JPN")
    assert "only KOR" in lines[0]
    assert lines[1].startswith(f"{reading}: notes[3]: withdraw_notice by KOR")
    assert lines[1].endswith("(under the immediate reading)")
    assert lines[2].startswith(f"{parse}: protection.suite: 'rot13' is not a suite")
    assert lines[3] == f"{missing}: no such file"


# --- bad input: exit 2, one line, no traceback ----------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    line = one_line_error(gsomia("agreement", "status", path))
    assert line == f"gsomia: error: {path}: no such file"


def test_malformed_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('id = "x"\ntitle = \n', encoding="utf-8")
    line = one_line_error(gsomia("agreement", "status", path, "--json"))
    assert line.startswith(f"gsomia: error: {path}: malformed TOML (")
    assert "line 2" in line


def test_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "extra.toml"
    path.write_text(
        REAL.read_text("utf-8").replace("notice_days = 90", "notice_days = 90\ngrace_days = 5"), encoding="utf-8"
    )
    line = one_line_error(gsomia("agreement", "timeline", path))
    assert line.startswith(f"gsomia: error: {path}: term.grace_days: unknown key")


@pytest.mark.parametrize(
    ("at", "problem"),
    [
        ("23 Nov 2019", "--at: '23 Nov 2019' is not an ISO 8601 instant"),
        ("2019-11-31T00:00:00+09:00", "is not an ISO 8601 instant"),
        ("2019-11-23T00:00:00", "--at: '2019-11-23T00:00:00' has no UTC offset"),
        ("9999-12-01T00:00:00+09:00", "out of range"),
        ("0001-01-01T00:00:00+09:00", "out of range"),
    ],
)
def test_bad_instant(at: str, problem: str) -> None:
    line = one_line_error(gsomia("agreement", "status", REAL, "--at", at))
    assert problem in line


def test_bad_until() -> None:
    line = one_line_error(gsomia("agreement", "timeline", REAL, "--until", "2019-11-23"))
    assert "--until: '2019-11-23' has no UTC offset" in line


@pytest.mark.parametrize("reading", ["USA", "eventually"])
def test_unknown_reading(reading: str) -> None:
    line = one_line_error(gsomia("agreement", "status", REAL, "--at", "2020-01-01T00:00:00Z", "--reading", reading))
    assert f"unknown reading '{reading}'" in line
    assert "KOR, JPN" in line


def test_party_without_a_recorded_reading(tmp_path: Path) -> None:
    path = tmp_path / "one-reading.toml"
    path.write_text(REAL.read_text("utf-8").replace('JPN = "renotice"', ""), encoding="utf-8")
    line = one_line_error(gsomia("agreement", "status", path, "--reading", "JPN"))
    assert line.startswith(f"gsomia: error: {path}: readings: JPN has no recorded reading")


def test_invalid_history_in_status(tmp_path: Path) -> None:
    path = tmp_path / "late.toml"  # the suspension comes after the notice took effect
    path.write_text(
        REAL.read_text("utf-8").replace("2019-11-22T18:00:00+09:00", "2019-11-23T06:00:00+09:00"), encoding="utf-8"
    )
    line = one_line_error(gsomia("agreement", "status", path, "--at", "2020-01-01T00:00:00Z"))
    assert line.startswith(f"gsomia: error: {path}: notes[1]: suspend_notice by KOR at 2019-11-23T06:00:00+09:00")
    assert "after the agreement terminated at 2019-11-23T00:00:00+09:00" in line


# --- replay (the history told step by step) --------------------------------------------------


def test_replay_tells_the_2019_night_and_its_counterfactual() -> None:
    result = gsomia("agreement", "replay", REAL)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "suspend_notice by KOR at 2019-11-22 18:00 KST" in out
    assert "midnight (2019-11-23 00:00 KST) passes:" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["with", "the", "suspension", "termination_suspended"] in lines
    assert ["without", "it", "terminated"] in lines
