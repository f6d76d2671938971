"""The agreement lifecycle (R13-R15), the file format and the schemes (R3, R4).

Expected values come from docs/rules.md (the recorded history and its edge
cases), written out by hand: KST = UTC+9, terms end each 23 November 00:00 KST and
a notice must precede the term end by 90 days (before 25 August 00:00 KST).
"""

from __future__ import annotations

import copy
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from gsomia.core.agreement import (
    Agreement,
    MarkingError,
    Note,
    NoteType,
    State,
    as_json,
    equivalent,
    level_of,
    lifecycle,
    load,
    parse,
    status,
)
from gsomia.core.errors import AgreementFileError, InvalidHistory, InvalidInput

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "agreements" / "jp-kr-gsomia-2016.toml"
KST = timezone(timedelta(hours=9))
SECOND = timedelta(seconds=1)


def kst(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=KST)


def raw() -> dict[str, Any]:
    """The real agreement file, decoded, as a fresh dict to mutate."""
    return tomllib.loads(REAL.read_text("utf-8"))


def note(at: datetime, by: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"at": at, "by": by, "type": kind, **extra}


def with_history(*notes: dict[str, Any], source: str = "history.toml", **term: Any) -> Agreement:
    data = raw()
    data["notes"] = list(notes)
    data["term"].update(term)
    return parse(data, source)


@pytest.fixture(scope="module")
def real() -> Agreement:
    return load(REAL)


TERMINATION = note(kst(2019, 8, 23), "KOR", "termination_notice")
SUSPENSION = note(kst(2019, 11, 22, 18), "KOR", "suspend_notice")


# --- the recorded history ------------------------------------------------------------


# (instant, state, term_start) just before and at every note and term end, 2016-2024.
REAL_HISTORY = [
    (kst(2016, 11, 23) - SECOND, State.NOT_IN_FORCE_YET, kst(2016, 11, 23)),
    (kst(2016, 11, 23), State.IN_FORCE, kst(2016, 11, 23)),
    (kst(2017, 11, 23) - SECOND, State.IN_FORCE, kst(2016, 11, 23)),
    (kst(2017, 11, 23), State.IN_FORCE, kst(2017, 11, 23)),
    (kst(2018, 11, 23) - SECOND, State.IN_FORCE, kst(2017, 11, 23)),
    (kst(2018, 11, 23), State.IN_FORCE, kst(2018, 11, 23)),
    (kst(2019, 8, 23) - SECOND, State.IN_FORCE, kst(2018, 11, 23)),
    (kst(2019, 8, 23), State.TERMINATION_PENDING, kst(2018, 11, 23)),
    (kst(2019, 11, 22, 18) - SECOND, State.TERMINATION_PENDING, kst(2018, 11, 23)),
    (kst(2019, 11, 22, 18), State.TERMINATION_SUSPENDED, kst(2018, 11, 23)),
    (kst(2019, 11, 23) - SECOND, State.TERMINATION_SUSPENDED, kst(2018, 11, 23)),
    (kst(2019, 11, 23), State.TERMINATION_SUSPENDED, kst(2019, 11, 23)),
    (kst(2020, 11, 23) - SECOND, State.TERMINATION_SUSPENDED, kst(2019, 11, 23)),
    (kst(2020, 11, 23), State.TERMINATION_SUSPENDED, kst(2020, 11, 23)),
    (kst(2021, 11, 23), State.TERMINATION_SUSPENDED, kst(2021, 11, 23)),
    (kst(2022, 11, 23) - SECOND, State.TERMINATION_SUSPENDED, kst(2021, 11, 23)),
    (kst(2022, 11, 23), State.TERMINATION_SUSPENDED, kst(2022, 11, 23)),
    (kst(2023, 3, 21) - SECOND, State.TERMINATION_SUSPENDED, kst(2022, 11, 23)),
    (kst(2023, 3, 21), State.IN_FORCE, kst(2022, 11, 23)),
    (kst(2023, 11, 23) - SECOND, State.IN_FORCE, kst(2022, 11, 23)),
    (kst(2023, 11, 23), State.IN_FORCE, kst(2023, 11, 23)),
    (kst(2024, 11, 23), State.IN_FORCE, kst(2024, 11, 23)),
]


@pytest.mark.parametrize(("at", "state", "term_start"), REAL_HISTORY, ids=lambda v: str(v))
def test_real_history_state_and_term(real: Agreement, at: datetime, state: State, term_start: datetime) -> None:
    s = status(real, at)
    assert s.state is state
    assert s.in_force is (state not in (State.NOT_IN_FORCE_YET, State.TERMINATED))
    assert s.term_start == term_start
    assert s.term_end == term_start.replace(year=term_start.year + 1)
    assert s.terminated_at is None
    pending = state in (State.TERMINATION_PENDING, State.TERMINATION_SUSPENDED)
    assert (s.termination is not None) is pending


def test_termination_pending_from_the_note_verbale(real: Agreement) -> None:
    s = status(real, kst(2019, 8, 23))
    assert s.state is State.TERMINATION_PENDING
    assert s.in_force
    assert s.termination is not None
    assert s.termination.by == "KOR"
    assert s.termination.notified_at == kst(2019, 8, 23)
    assert s.termination.effective_at == kst(2019, 11, 23)
    assert s.termination.suspended_at is None
    assert s.dispute is None  # the readings differ only on resuming a suspended notice


def test_suspension_keeps_the_agreement_in_force_past_midnight(real: Agreement) -> None:
    at_suspension = status(real, kst(2019, 11, 22, 18))
    assert at_suspension.termination is not None
    assert at_suspension.termination.suspended_at == kst(2019, 11, 22, 18)
    assert len(at_suspension.termination.conditions) == 2  # R16: recorded, not judged
    for at in (kst(2019, 11, 23), kst(2019, 11, 23) + SECOND, kst(2020, 8, 4), kst(2022, 11, 23)):
        s = status(real, at)
        assert s.state is State.TERMINATION_SUSPENDED
        assert s.in_force
        assert s.terminated_at is None
        assert s.termination is not None
        assert s.termination.effective_at == kst(2019, 11, 23)  # the end it would have had
    renewed = status(real, kst(2019, 11, 23))
    assert (renewed.term_start, renewed.term_end) == (kst(2019, 11, 23), kst(2020, 11, 23))


def test_a_suspension_never_lifted_keeps_the_agreement_in_force() -> None:
    a = with_history(TERMINATION, SUSPENSION)
    for year in (2019, 2025, 2040):
        s = status(a, kst(year, 12, 1))
        assert s.state is State.TERMINATION_SUSPENDED
        assert s.in_force
        assert s.term_start == kst(year, 11, 23)


def test_withdrawal_returns_to_normal_renewal(real: Agreement) -> None:
    s = status(real, kst(2023, 3, 21))
    assert s.state is State.IN_FORCE
    assert s.termination is None
    assert s.dispute is None
    assert status(real, kst(2030, 1, 1)).state is State.IN_FORCE


@pytest.mark.parametrize("year", range(2017, 2031))
def test_terms_end_each_23_november_with_a_90_day_deadline(real: Agreement, year: int) -> None:
    end = kst(year, 11, 23)
    before, at = status(real, end - SECOND), status(real, end)
    assert before.term_end == end
    assert at.term_start == end
    assert at.term_end == kst(year + 1, 11, 23)
    assert before.notice_deadline == end - timedelta(days=90) == kst(year, 8, 25)
    assert at.notice_deadline == kst(year + 1, 8, 25)


def test_first_term_before_entry_into_force(real: Agreement) -> None:
    s = status(real, kst(2016, 1, 1))
    assert s.state is State.NOT_IN_FORCE_YET
    assert not s.in_force
    assert (s.term_start, s.term_end, s.notice_deadline) == (kst(2016, 11, 23), kst(2017, 11, 23), kst(2017, 8, 25))


def test_notice_deadline_for_the_2019_term(real: Agreement) -> None:
    s = status(real, kst(2019, 1, 1))
    assert s.notice_deadline == kst(2019, 8, 25)
    assert real.local(s.notice_deadline).isoformat() == "2019-08-25T00:00:00+09:00"


def test_instants_are_stored_as_utc_and_shown_in_the_agreement_zone(real: Agreement) -> None:
    assert real.entry_into_force == datetime(2016, 11, 22, 15, tzinfo=UTC)
    assert all(n.at.utcoffset() == timedelta(0) for n in real.notes)
    s = status(real, kst(2019, 9, 1))
    assert s.termination is not None
    expiry = s.termination.effective_at
    assert expiry == datetime(2019, 11, 22, 15, tzinfo=UTC)
    assert expiry.utcoffset() == timedelta(0)
    shown = as_json(real, s)
    assert shown["termination"]["effective_at"] == "2019-11-23T00:00:00+09:00"
    assert shown["term_end"] == "2019-11-23T00:00:00+09:00"
    # Same status whichever offset the question is asked in.
    assert status(real, datetime(2019, 11, 22, 15, tzinfo=UTC)) == status(real, kst(2019, 11, 23))
    assert status(real, datetime(2019, 11, 22, 14, 59, 59, tzinfo=UTC)).term_start == kst(2018, 11, 23)


def test_naive_instant_is_refused(real: Agreement) -> None:
    with pytest.raises(InvalidInput, match="UTC offset"):
        status(real, datetime(2019, 11, 23))


# --- the notice deadline ---------------------------------------------------------------


def test_notice_one_second_before_the_deadline_ends_the_term() -> None:
    a = with_history(note(kst(2019, 8, 24, 23, 59, 59), "KOR", "termination_notice"))
    s = status(a, kst(2019, 8, 24, 23, 59, 59))
    assert s.termination is not None
    assert s.termination.effective_at == kst(2019, 11, 23)
    assert status(a, kst(2019, 11, 23) - SECOND).state is State.TERMINATION_PENDING
    ended = status(a, kst(2019, 11, 23))
    assert ended.state is State.TERMINATED
    assert not ended.in_force
    assert ended.terminated_at == kst(2019, 11, 23)
    assert ended.term_start is None


def test_notice_at_the_deadline_is_late_and_ends_the_next_term() -> None:
    a = with_history(note(kst(2019, 8, 25), "KOR", "termination_notice"))
    s = status(a, kst(2019, 8, 25))
    assert s.termination is not None
    assert s.termination.effective_at == kst(2020, 11, 23)
    renewed = status(a, kst(2019, 11, 23))
    assert renewed.state is State.TERMINATION_PENDING
    assert renewed.in_force
    assert renewed.term_start == kst(2019, 11, 23)
    assert status(a, kst(2020, 11, 23) - SECOND).state is State.TERMINATION_PENDING
    assert status(a, kst(2020, 11, 23)).terminated_at == kst(2020, 11, 23)


def test_notice_at_a_term_boundary_counts_in_the_new_term() -> None:
    a = with_history(note(kst(2019, 11, 23), "JPN", "termination_notice"))
    s = status(a, kst(2019, 11, 23))
    assert s.termination is not None
    assert s.termination.effective_at == kst(2020, 11, 23)


def test_notice_days_come_from_the_file() -> None:
    # With 120 days the 2019 deadline moves to 2019-07-26 00:00 KST: 23 Aug is late.
    a = with_history(TERMINATION, notice_days=120)
    assert status(a, kst(2019, 1, 1)).notice_deadline == kst(2019, 7, 26)
    s = status(a, kst(2019, 8, 23))
    assert s.termination is not None
    assert s.termination.effective_at == kst(2020, 11, 23)


def test_counterfactual_without_the_suspension_terminates(real: Agreement) -> None:
    without = real.with_notes(tuple(n for n in real.notes if n.type is NoteType.TERMINATION))
    assert status(without, kst(2019, 11, 23) - SECOND).state is State.TERMINATION_PENDING
    for at in (kst(2019, 11, 23), kst(2023, 3, 21), kst(2030, 1, 1)):
        s = status(without, at)
        assert s.state is State.TERMINATED
        assert not s.in_force
        assert s.terminated_at == kst(2019, 11, 23)
        assert s.termination is not None
        assert s.termination.by == "KOR"
        assert (s.term_start, s.term_end, s.notice_deadline) == (None, None, None)
    # The real agreement is unaffected by the counterfactual (no shared memo).
    assert status(real, kst(2019, 11, 23)).state is State.TERMINATION_SUSPENDED


def test_counterfactual_from_a_file_terminates() -> None:
    a = with_history(TERMINATION)
    s = status(a, kst(2019, 11, 23))
    assert s.state is State.TERMINATED
    assert s.terminated_at == datetime(2019, 11, 22, 15, tzinfo=UTC)


# --- resuming a suspended notice (R15) ------------------------------------------------


def resumed(at: datetime) -> Agreement:
    return with_history(TERMINATION, SUSPENSION, note(at, "KOR", "resume_notice"))


def test_resume_immediate_after_the_original_end_takes_effect_at_once() -> None:
    a = resumed(kst(2020, 9, 1))
    assert status(a, kst(2020, 9, 1) - SECOND, "immediate").state is State.TERMINATION_SUSPENDED
    s = status(a, kst(2020, 9, 1), "immediate")
    assert s.state is State.TERMINATED
    assert s.terminated_at == kst(2020, 9, 1)
    assert s.reading == "immediate"


def test_resume_immediate_before_the_original_end_keeps_that_end() -> None:
    a = with_history(
        TERMINATION,
        note(kst(2019, 10, 1), "KOR", "suspend_notice"),
        note(kst(2019, 10, 15), "KOR", "resume_notice"),
    )
    s = status(a, kst(2019, 10, 15), "immediate")
    assert s.state is State.TERMINATION_PENDING
    assert s.termination is not None
    assert s.termination.effective_at == kst(2019, 11, 23)
    assert s.termination.notified_at == kst(2019, 8, 23)
    assert status(a, kst(2019, 11, 23), "immediate").state is State.TERMINATED
    # Read as a fresh notice, 15 Oct is past the 2019 deadline: it ends the next term.
    r = status(a, kst(2019, 10, 15), "renotice")
    assert r.termination is not None
    assert r.termination.effective_at == kst(2020, 11, 23)
    assert r.termination.notified_at == kst(2019, 10, 15)


def test_resume_renotice_counts_as_a_new_notice_at_the_resume_instant() -> None:
    late = status(resumed(kst(2020, 9, 1)), kst(2020, 9, 1), "renotice")
    assert late.state is State.TERMINATION_PENDING
    assert late.termination is not None
    assert late.termination.notified_at == kst(2020, 9, 1)
    assert late.termination.suspended_at is None
    assert late.termination.effective_at == kst(2021, 11, 23)  # 2020-08-25 had passed
    in_time = status(resumed(kst(2020, 3, 1)), kst(2020, 3, 1), "renotice")
    assert in_time.termination is not None
    assert in_time.termination.effective_at == kst(2020, 11, 23)


def test_party_readings_give_different_outcomes_for_the_same_history() -> None:
    a = resumed(kst(2020, 9, 1))
    kor, jpn = status(a, kst(2021, 1, 1), "KOR"), status(a, kst(2021, 1, 1), "JPN")
    assert (kor.reading, jpn.reading) == ("immediate", "renotice")
    assert kor.state is State.TERMINATED
    assert not kor.in_force
    assert jpn.state is State.TERMINATION_PENDING
    assert jpn.in_force
    # The file's default (resume_effect = "renotice") is JPN's reading.
    assert status(a, kst(2021, 1, 1)) == jpn


def test_default_reading_follows_resume_effect() -> None:
    a = with_history(TERMINATION, SUSPENSION, note(kst(2020, 9, 1), "KOR", "resume_notice"), resume_effect="immediate")
    s = status(a, kst(2021, 1, 1))
    assert s.reading == "immediate"
    assert s.state is State.TERMINATED


def test_dispute_is_shown_only_while_suspended(real: Agreement) -> None:
    suspended = status(real, kst(2020, 8, 4))
    assert suspended.dispute is not None
    assert dict(suspended.dispute.readings) == {"KOR": "immediate", "JPN": "renotice"}
    assert as_json(real, suspended)["dispute"] == {"JPN": "renotice", "KOR": "immediate"}
    assert status(real, kst(2019, 9, 1)).dispute is None
    assert status(real, kst(2023, 6, 1)).dispute is None


def test_no_dispute_when_the_readings_agree() -> None:
    data = raw()
    data["readings"] = {"KOR": "renotice", "JPN": "renotice"}
    a = parse(data, "agreeing.toml")
    assert status(a, kst(2020, 8, 4)).state is State.TERMINATION_SUSPENDED
    assert status(a, kst(2020, 8, 4)).dispute is None


def test_unknown_readings_are_refused(real: Agreement) -> None:
    with pytest.raises(InvalidInput, match="unknown reading 'USA'"):
        status(real, kst(2020, 1, 1), "USA")
    with pytest.raises(InvalidInput, match="unknown reading 'soon'"):
        status(real, kst(2020, 1, 1), "soon")
    data = raw()
    del data["readings"]["JPN"]
    with pytest.raises(InvalidInput, match="JPN has no recorded reading"):
        status(parse(data, "one-reading.toml"), kst(2020, 1, 1), "JPN")


# --- invalid histories ----------------------------------------------------------------------


INVALID = {
    "suspend with nothing pending": ([note(kst(2019, 9, 1), "KOR", "suspend_notice")], 0, "no termination notice"),
    "resume with nothing pending": ([note(kst(2019, 9, 1), "KOR", "resume_notice")], 0, "no termination notice"),
    "withdraw with nothing pending": ([note(kst(2019, 9, 1), "JPN", "withdraw_notice")], 0, "no termination notice"),
    "resume of a notice not suspended": (
        [TERMINATION, note(kst(2019, 9, 1), "KOR", "resume_notice")],
        1,
        "not suspended",
    ),
    "suspend twice": (
        [TERMINATION, SUSPENSION, note(kst(2019, 12, 1), "KOR", "suspend_notice")],
        2,
        "already suspended",
    ),
    "suspend by the other party": (
        [TERMINATION, note(kst(2019, 11, 22, 18), "JPN", "suspend_notice")],
        1,
        "only KOR",
    ),
    "withdraw by the other party": (
        [TERMINATION, note(kst(2019, 9, 1), "JPN", "withdraw_notice")],
        1,
        "only KOR",
    ),
    "note after termination": (
        [TERMINATION, note(kst(2019, 11, 23), "KOR", "withdraw_notice")],
        1,
        "after the agreement terminated at 2019-11-23T00:00:00+09:00",
    ),
    "note before entry into force": (
        [note(kst(2016, 11, 22, 23, 59, 59), "KOR", "termination_notice")],
        0,
        "before entry into force",
    ),
    "second termination notice while one is pending": (
        [TERMINATION, note(kst(2019, 9, 1), "JPN", "termination_notice")],
        1,
        "already pending",
    ),
    "file order is not time order": (
        # notes[0] comes second in time and is the impossible one.
        [note(kst(2019, 9, 1), "JPN", "suspend_notice"), TERMINATION],
        0,
        "only KOR",
    ),
}


@pytest.mark.parametrize(("notes", "index", "problem"), INVALID.values(), ids=INVALID.keys())
def test_invalid_history_names_the_note(notes: list[dict[str, Any]], index: int, problem: str) -> None:
    a = with_history(*notes, source="bad-history.toml")  # the file itself parses
    with pytest.raises(InvalidHistory) as caught:
        status(a, kst(2025, 1, 1))
    assert isinstance(caught.value, AgreementFileError)
    assert caught.value.key == f"notes[{index}]"
    message = str(caught.value)
    assert message.startswith(f"bad-history.toml: notes[{index}]: ")
    assert problem in message
    # validate: the same problem, as one line, instead of an exception.
    assert lifecycle.validate(a) == [message]


def test_invalid_history_fails_at_any_instant() -> None:
    a = with_history(note(kst(2019, 9, 1), "KOR", "withdraw_notice"))
    with pytest.raises(InvalidHistory, match=r"notes\[0\]"):
        status(a, kst(2016, 1, 1))  # even before the impossible note


def test_parse_rejects_a_note_by_a_non_party() -> None:
    with pytest.raises(AgreementFileError) as caught:
        with_history(TERMINATION, note(kst(2019, 9, 1), "USA", "suspend_notice"), source="usa.toml")
    assert not isinstance(caught.value, InvalidHistory)
    assert caught.value.key == "notes[1].by"
    assert str(caught.value) == "usa.toml: notes[1].by: unknown party 'USA' (parties: KOR, JPN)"


def test_lifecycle_rejects_a_note_by_a_non_party(real: Agreement) -> None:
    # Built in code, bypassing parse(): the lifecycle still refuses it.
    stranger = Note(at=kst(2019, 9, 1).astimezone(UTC), by="USA", type=NoteType.TERMINATION, index=3)
    a = real.with_notes((*real.notes, stranger))
    with pytest.raises(InvalidHistory, match=r"notes\[3\]: termination_notice by USA .* not a party"):
        status(a, kst(2020, 1, 1))
    assert len(lifecycle.validate(a)) == 1


def test_validity_can_depend_on_the_reading() -> None:
    # Resumed after the original end: under KOR's reading it ends at once, so the
    # later withdrawal is impossible; under JPN's it is a pending notice withdrawn.
    a = with_history(
        TERMINATION,
        SUSPENSION,
        note(kst(2020, 9, 1), "KOR", "resume_notice"),
        note(kst(2021, 1, 4), "KOR", "withdraw_notice"),
    )
    assert status(a, kst(2021, 6, 1), "JPN").state is State.IN_FORCE
    with pytest.raises(InvalidHistory, match=r"notes\[3\]"):
        status(a, kst(2021, 6, 1), "KOR")
    problems = lifecycle.validate(a)
    assert len(problems) == 1
    assert "notes[3]" in problems[0]
    assert "immediate reading" in problems[0]


def test_valid_files_validate_cleanly(real: Agreement) -> None:
    assert lifecycle.validate(real) == []
    assert lifecycle.validate(load(ROOT / "agreements" / "us-kr-jp-tisa-2014.toml")) == []


def test_a_fresh_notice_replaces_a_suspended_one() -> None:
    a = with_history(TERMINATION, SUSPENSION, note(kst(2020, 3, 1), "JPN", "termination_notice"))
    s = status(a, kst(2020, 3, 1))
    assert s.state is State.TERMINATION_PENDING
    assert s.termination is not None
    assert (s.termination.by, s.termination.effective_at) == ("JPN", kst(2020, 11, 23))


# --- parse errors ----------------------------------------------------------------------------


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple[Any, ...]) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return mutate


def _swap_levels(data: dict[str, Any]) -> None:
    data["levels"].reverse()


PARSE_ERRORS = {
    "unknown top-level key": (_set(("colour",), "red"), "colour", "unknown key"),
    "unknown term key": (_set(("term", "notice_day"), 90), "term.notice_day", "unknown key"),
    "unknown note key": (_set(("notes", 1, "when"), "night"), "notes[1].when", "unknown key"),
    "missing id": (_delete(("id",)), "id", "missing"),
    "missing timezone": (_delete(("timezone",)), "timezone", "missing"),
    "missing notice_days": (_delete(("term", "notice_days")), "term.notice_days", "missing"),
    "missing note type": (_delete(("notes", 2, "type")), "notes[2].type", "missing"),
    "bad timezone": (_set(("timezone",), "Asia/Sejong"), "timezone", "not an IANA time zone"),
    "local entry into force": (
        _set(("entry_into_force",), datetime(2016, 11, 23)),
        "entry_into_force",
        "must carry a UTC offset",
    ),
    "local note instant": (_set(("notes", 0, "at"), datetime(2019, 8, 23)), "notes[0].at", "must carry a UTC offset"),
    "date without time": (
        _set(("entry_into_force",), datetime(2016, 11, 23).date()),
        "entry_into_force",
        "must be an offset date-time",
    ),
    "two-letter party": (_set(("parties",), ["KR", "JPN"]), "parties[0]", "ISO 3166-1 alpha-3"),
    "lower-case party": (_set(("parties",), ["KOR", "jpn"]), "parties[1]", "ISO 3166-1 alpha-3"),
    "one party": (_set(("parties",), ["KOR"]), "parties", "at least two parties"),
    "non-alpha-3 scheme": (_set(("schemes", "Korea"), ["x"]), "schemes.Korea", "ISO 3166-1 alpha-3"),
    "marking not in scheme": (
        _set(("levels", 1, "JPN"), ["極秘", "特定秘密", "部外秘"]),
        "levels[1].JPN",
        "'部外秘' is not in the JPN scheme",
    ),
    "levels out of order": (_swap_levels, "levels[1].KOR", "list levels lowest first"),
    "receive_as not in level": (
        _set(("levels", 1, "receive_as", "JPN"), "秘"),
        "levels[1].receive_as.JPN",
        "'秘' is not one of this level's JPN markings",
    ),
    "receive_as for a non-party": (
        _set(("levels", 1, "receive_as", "USA"), "SECRET"),
        "levels[1].receive_as.USA",
        "unknown key",
    ),
    "bad suite": (_set(("protection", "suite"), "rot13"), "protection.suite", "'rot13' is not a suite"),
    "bad resume_effect": (_set(("term", "resume_effect"), "never"), "term.resume_effect", "'never' is not one of"),
    "bad reading": (_set(("readings", "JPN"), "maybe"), "readings.JPN", "'maybe' is not one of"),
    "zero notice days": (_set(("term", "notice_days"), 0), "term.notice_days", "positive whole number"),
    "boolean years": (_set(("term", "initial_years"), True), "term.initial_years", "must be a whole number"),
    "bad note type": (_set(("notes", 0, "type"), "denounce"), "notes[0].type", "'denounce' is not a note type"),
    "notes without a term": (_delete(("term",)), "readings", "need a [term]"),
}


@pytest.mark.parametrize(("mutate", "key", "problem"), PARSE_ERRORS.values(), ids=PARSE_ERRORS.keys())
def test_parse_errors_name_file_key_and_problem(mutate: Any, key: str, problem: str) -> None:
    data = raw()
    mutate(data)
    with pytest.raises(AgreementFileError) as caught:
        parse(data, "agreements/bad.toml")
    assert caught.value.key == key
    assert caught.value.source == "agreements/bad.toml"
    assert str(caught.value).startswith(f"agreements/bad.toml: {key}: ")
    assert problem in caught.value.problem


def test_the_real_file_parses_as_recorded() -> None:
    # The mutations above start from this file: make sure it is what they assume.
    data = raw()
    a = parse(copy.deepcopy(data), "real.toml")
    assert a.parties == ("KOR", "JPN")
    assert [n.type for n in a.notes] == [NoteType.TERMINATION, NoteType.SUSPEND, NoteType.WITHDRAW]
    assert [lvl.name for lvl in a.levels] == ["CONFIDENTIAL", "SECRET"]
    assert a.term is not None
    assert (a.term.initial_years, a.term.renewal_years, a.term.notice_days) == (1, 1, 90)
    assert a.readings == {"KOR": "immediate", "JPN": "renotice"}


def test_load_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(AgreementFileError, match=r"nowhere\.toml: no such file$"):
        load(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text('id = "x"\nthis is not toml\n', encoding="utf-8")
    with pytest.raises(AgreementFileError, match=r"broken\.toml: malformed TOML"):
        load(broken)
    latin = tmp_path / "latin.toml"
    latin.write_bytes('title = "Caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(AgreementFileError, match=r"latin\.toml: is not UTF-8 text"):
        load(latin)
    with pytest.raises(AgreementFileError, match="is a directory"):
        load(tmp_path)


def test_load_names_the_file_in_key_errors(tmp_path: Path) -> None:
    path = tmp_path / "extra.toml"
    path.write_text('extra = "x"\n' + REAL.read_text("utf-8"), encoding="utf-8")
    with pytest.raises(AgreementFileError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}: extra: unknown key")


# --- classification schemes (R3, R4) -------------------------------------------------------


@pytest.mark.parametrize("marking", ["군사I급비밀", "대외비"])
def test_markings_outside_the_agreement_are_refused(real: Agreement, marking: str) -> None:
    with pytest.raises(MarkingError) as caught:
        level_of(real, "KOR", marking)
    assert caught.value.rule == "R3"
    assert "R3" in str(caught.value)
    assert "outside jp-kr-gsomia-2016" in str(caught.value)


def test_unknown_marking_is_refused(real: Agreement) -> None:
    with pytest.raises(MarkingError, match="not a KOR marking"):
        level_of(real, "KOR", "極秘")


@pytest.mark.parametrize(
    ("party", "marking", "level"),
    [
        ("KOR", "군사II급비밀", "SECRET"),
        ("JPN", "極秘", "SECRET"),
        ("JPN", "特定秘密", "SECRET"),
        ("KOR", "군사III급비밀", "CONFIDENTIAL"),
        ("JPN", "秘", "CONFIDENTIAL"),
    ],
)
def test_level_of(real: Agreement, party: str, marking: str, level: str) -> None:
    assert level_of(real, party, marking).name == level


def test_equivalents(real: Agreement) -> None:
    secret = level_of(real, "KOR", "군사II급비밀")
    assert equivalent(real, secret, "JPN") == "極秘"  # via receive_as, not the first listed by chance
    assert equivalent(real, level_of(real, "JPN", "特定秘密"), "KOR") == "군사II급비밀"
    assert equivalent(real, level_of(real, "KOR", "군사III급비밀"), "JPN") == "秘"
    assert equivalent(real, level_of(real, "JPN", "秘"), "KOR") == "군사III급비밀"


def test_receive_as_decides_the_many_to_one_mapping() -> None:
    data = raw()
    data["levels"][1]["receive_as"]["JPN"] = "特定秘密"
    a = parse(data, "receive-as.toml")
    assert equivalent(a, level_of(a, "KOR", "군사II급비밀"), "JPN") == "特定秘密"


def test_without_receive_as_the_mapping_is_refused() -> None:
    data = raw()
    del data["levels"][1]["receive_as"]
    a = parse(data, "no-receive-as.toml")
    secret = level_of(a, "KOR", "군사II급비밀")
    with pytest.raises(MarkingError, match="refusing to guess") as caught:
        equivalent(a, secret, "JPN")
    assert "R3" in str(caught.value)
    assert "極秘" in str(caught.value)
    assert "特定秘密" in str(caught.value)
    assert equivalent(a, secret, "KOR") == "군사II급비밀"  # one marking: no choice to make


# --- robustness at the edges of the calendar ---------------------------------------------


def test_instants_beyond_the_computable_calendar_are_refused(real: Agreement) -> None:
    with pytest.raises(InvalidInput, match="beyond the last term"):
        status(real, datetime(9999, 12, 1, tzinfo=KST))
    assert status(real, kst(9998, 12, 1)).term_start == kst(9998, 11, 23)


def test_absurd_notice_period_is_an_error_not_a_crash() -> None:
    a = with_history(TERMINATION, source="absurd.toml", notice_days=1_000_000_000)
    with pytest.raises(InvalidInput, match=r"absurd\.toml: term\.notice_days"):
        status(a, kst(2020, 1, 1))
