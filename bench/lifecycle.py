"""Benchmark: ``lifecycle.status(agreement, at)`` for one instant, on one core.

The policy engine asks for the agreement's status on every decision, so one call
must be cheap: the target is at least 100,000 calls a second. The history is the
real 2016 terms with a 10-note history (notice / suspend / resume / withdraw cycles
over several years, ending in a termination); the instants vary over 2016-2024 so
every segment and term of the history is hit. For reference the script measures, in
the same run, a trivial Python baseline: ``bisect`` of the same instants in a list
of 10 datetimes in the instants' own offset (what any status lookup has to do at
the very least).

Run: ``.venv/bin/python bench/lifecycle.py`` (or ``make bench``). Best of 5 runs.
"""

from __future__ import annotations

import os
import platform
import random
import time
from bisect import bisect_right
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from gsomia.core.agreement import Note, NoteType, lifecycle, load

TARGET = 100_000  # calls per second
RUNS = 5
INSTANTS = 1_000  # distinct instants, cycled through
ROUNDS = 100  # passes over the instants per run: 100,000 calls per run

KST = timezone(timedelta(hours=9))
ROOT = Path(__file__).resolve().parents[1]


def history() -> tuple[Note, ...]:
    """Ten notes, valid under the file's default (renotice) reading."""
    rows = [
        ((2017, 3, 1), "KOR", NoteType.TERMINATION),
        ((2017, 6, 1), "KOR", NoteType.WITHDRAW),
        ((2018, 2, 1), "JPN", NoteType.TERMINATION),
        ((2018, 10, 1), "JPN", NoteType.SUSPEND),
        ((2019, 1, 15), "JPN", NoteType.RESUME),
        ((2019, 5, 1), "JPN", NoteType.WITHDRAW),
        ((2020, 1, 15), "KOR", NoteType.TERMINATION),
        ((2020, 6, 1), "KOR", NoteType.SUSPEND),
        ((2021, 1, 4), "KOR", NoteType.WITHDRAW),
        ((2022, 1, 10), "JPN", NoteType.TERMINATION),  # takes effect 2022-11-23
    ]
    return tuple(
        Note(at=datetime(*day, 9, 0, tzinfo=KST).astimezone(UTC), by=by, type=kind, index=i)
        for i, (day, by, kind) in enumerate(rows)
    )


def best_rates(fns: list[Callable[[datetime], object]], instants: list[datetime]) -> list[float]:
    """Calls per second of each function, best of ``RUNS`` runs of ``ROUNDS`` passes over
    ``instants``. The runs of the functions alternate, so a busy moment on the machine
    hits them alike and their ratio stays meaningful."""
    calls = ROUNDS * len(instants)
    best = [float("inf")] * len(fns)
    for _ in range(RUNS):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(ROUNDS):
                for at in instants:
                    fn(at)
            best[i] = min(best[i], time.perf_counter() - start)
    return [calls / b for b in best]


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    real = load(ROOT / "agreements" / "jp-kr-gsomia-2016.toml")
    agreement = real.with_notes(history())
    compiled = lifecycle.compile_history(agreement)  # raises InvalidHistory if the notes are impossible
    if len(agreement.notes) != 10 or not compiled.segments[-1].terminated:
        raise SystemExit("benchmark history is not the 10-note history ending in termination it should be")

    rng = random.Random(2016)
    first = datetime(2016, 11, 1, tzinfo=KST)
    span = int((datetime(2024, 12, 31, tzinfo=KST) - first).total_seconds())
    instants = [first + timedelta(seconds=rng.randrange(span)) for _ in range(INSTANTS)]
    states = {lifecycle.status(agreement, at).state.value for at in instants}

    def status(at: datetime) -> object:
        return lifecycle.status(agreement, at)

    starts = sorted(n.at.astimezone(KST) for n in agreement.notes)  # same offset as the instants: the cheapest search

    def baseline(at: datetime) -> object:
        return bisect_right(starts, at)

    status(instants[0])  # compile the history once, outside the timing
    rate, base = best_rates([status, baseline], instants)

    print(f"lifecycle.status: 10-note history, {INSTANTS} instants 2016-2024 (states hit: {', '.join(sorted(states))})")
    print(f"Python {platform.python_version()} on {platform.machine()}, one core, best of {RUNS} runs")
    print(f"  status            {rate:>12,.0f} calls/s  ({1e6 / rate:.2f} µs/call)")
    print(f"  baseline (bisect) {base:>12,.0f} calls/s  ({1e6 / base:.2f} µs/call)")
    print(f"  status / baseline {rate / base:>12.3f}  (status costs {base / rate:.1f}x a bare bisect)")
    verdict = "meets" if rate >= TARGET else "MISSES"
    print(f"  target ≥{TARGET:,}/s: {verdict}")


if __name__ == "__main__":
    main()
