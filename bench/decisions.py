"""Benchmark: read decisions per second, gsomia's ``policy.decide`` against Cedar and Casbin.

All three engines evaluate the same rule set on the same requests:

- clearance hierarchy (R3, R7): the reader's clearance ranks, in the reader's own
  national scheme, at or above the item's equivalent marking (a JPN reader of a KOR
  군사II급비밀 item needs 極秘 or 特定秘密; of a JPN 特定秘密 item, 特定秘密);
- releasability (R5): the reader's party is among the item's ``releasable_to``
  (which always names the originator);
- need-to-know (R7): the item's compartment is among the reader's need-to-know.

gsomia derives the required marking from the label and the agreement file on every
call. Cedar (``cedarpy``) and Casbin (``casbin``, ABAC matcher) are given the
equivalence precomputed as data: each item carries the numeric rank a KOR reader
and a JPN reader must hold, and each subject its clearance's rank (-1 for none).
Cedar gets its policy set and entities pre-parsed once (its fastest documented
path) and is timed one request at a time (``is_authorized``) and as one batch
(``is_authorized_batch``). gsomia is timed with the agreement status computed
once (the other engines know nothing of the agreement's life), and for reference
with ``lifecycle.status`` called on every decision too.

Before any timing every engine decides every request and the script stops unless
they all agree on all of them. Timed runs of the engines alternate (a busy moment
on the machine hits them alike); each engine's figure is the best of ``RUNS``.

Run: ``.venv/bin/python bench/decisions.py [--requests N] [--runs R]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import casbin
import cedarpy

from gsomia.core.agreement import Agreement, load
from gsomia.core.agreement.lifecycle import status
from gsomia.core.label import Label, marking_for
from gsomia.core.policy import Action, Role, Subject, decide

ROOT = Path(__file__).resolve().parents[1]
KST = timezone(timedelta(hours=9))
AT = datetime(2018, 6, 1, tzinfo=KST)  # in force, nothing pending
TARGET = 5.0  # gsomia at least 5x each other engine
MIN_RUN_SECONDS = 0.2  # repeat the passes over the requests so a timed run lasts at least this long
PARTIES = ("KOR", "JPN")
COMPARTMENTS = ("NK-MISSILE", "NK-NUCLEAR", "MARITIME", "CYBER", "SATELLITE")

CEDAR_POLICY = """
permit (principal, action == Action::"read", resource)
when {
  resource.releasable_to.contains(principal.party) &&
  principal.need_to_know.contains(resource.compartment) &&
  ((principal.party == "KOR" && principal.clearance_rank >= resource.required_rank_kor) ||
   (principal.party == "JPN" && principal.clearance_rank >= resource.required_rank_jpn))
};
"""

CASBIN_MODEL = """
[request_definition]
r = sub, obj, act

[policy_definition]
p = act

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.act == p.act && r.sub.party in r.obj.releasable_to && r.obj.compartment in r.sub.need_to_know \
&& ((r.sub.party == "KOR" && r.sub.clearance_rank >= r.obj.required_rank_kor) \
|| (r.sub.party == "JPN" && r.sub.clearance_rank >= r.obj.required_rank_jpn))
"""


@dataclass(frozen=True, slots=True)
class CasbinSubject:
    party: str
    clearance_rank: int
    need_to_know: frozenset[str]


@dataclass(frozen=True, slots=True)
class CasbinItem:
    releasable_to: frozenset[str]
    compartment: str
    required_rank_kor: int
    required_rank_jpn: int


@dataclass(frozen=True)
class Population:
    subjects: list[Subject]
    labels: list[Label]
    pairs: list[tuple[int, int]]  # (subject index, label index): one read request each


def population(agreement: Agreement, n_subjects: int, n_items: int, n_requests: int, seed: int) -> Population:
    rng = random.Random(seed)
    subjects = []
    for i in range(n_subjects):
        party = rng.choice(PARTIES)
        scheme = agreement.schemes[party]
        subjects.append(
            Subject(
                id=f"s{i}",
                party=party,
                role=Role.ANALYST,
                # half the time a high clearance, so that permits and denies both abound
                clearance=rng.choice(scheme[2:]) if rng.random() < 0.5 else rng.choice((None, *scheme)),
                need_to_know=frozenset(rng.sample(COMPARTMENTS, rng.randint(2, 4))),
            )
        )
    labels = []
    for _ in range(n_items):
        originator = rng.choice(PARTIES)
        level = rng.choice(agreement.levels)
        releasable = {originator} | ({"KOR", "JPN"} if rng.random() < 0.7 else set())
        labels.append(
            Label(
                item_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                agreement=agreement.id,
                originator=originator,
                classification=rng.choice(level.markings[originator]),
                releasable_to=tuple(releasable),
                created_at=AT - timedelta(days=rng.randint(1, 500)),
                compartments=(rng.choice(COMPARTMENTS),),
            )
        )
    pairs = [(rng.randrange(n_subjects), rng.randrange(n_items)) for _ in range(n_requests)]
    return Population(subjects, labels, pairs)


def rank(agreement: Agreement, party: str, marking: str | None) -> int:
    return -1 if marking is None else agreement.schemes[party].index(marking)


def required_ranks(agreement: Agreement, label: Label) -> dict[str, int]:
    """The rank a reader of each party must hold: the equivalence of R3, precomputed."""
    return {party: rank(agreement, party, marking_for(label, agreement, party)) for party in PARTIES}


# --- the three engines --------------------------------------------------------------------


def gsomia_engine(agreement: Agreement, pop: Population, *, status_per_call: bool) -> Callable[[], list[bool]]:
    in_force = status(agreement, AT)
    requests = [(pop.subjects[s], pop.labels[i]) for s, i in pop.pairs]
    read = Action.READ

    if status_per_call:

        def run() -> list[bool]:
            return [
                decide(agreement, subject, read, label, status(agreement, AT), (), AT).permit
                for subject, label in requests
            ]

    else:

        def run() -> list[bool]:
            return [decide(agreement, subject, read, label, in_force, (), AT).permit for subject, label in requests]

    return run


def cedar_data(agreement: Agreement, pop: Population) -> tuple[Any, Any, list[dict[str, Any]]]:
    entities: list[dict[str, Any]] = []
    for s in pop.subjects:
        entities.append(
            {
                "uid": {"type": "User", "id": s.id},
                "attrs": {
                    "party": s.party,
                    "clearance_rank": rank(agreement, s.party, s.clearance),
                    "need_to_know": sorted(s.need_to_know),
                },
                "parents": [],
            }
        )
    for label in pop.labels:
        required = required_ranks(agreement, label)
        entities.append(
            {
                "uid": {"type": "Item", "id": label.item_id},
                "attrs": {
                    "releasable_to": list(label.releasable_to),
                    "compartment": label.compartments[0],
                    "required_rank_kor": required["KOR"],
                    "required_rank_jpn": required["JPN"],
                },
                "parents": [],
            }
        )
    policies = cedarpy.PolicySet.from_str(CEDAR_POLICY)
    handle = cedarpy.Entities.from_json_str(json.dumps(entities))
    requests = [
        {
            "principal": f'User::"{pop.subjects[s].id}"',
            "action": 'Action::"read"',
            "resource": f'Item::"{pop.labels[i].item_id}"',
            "context": {},
        }
        for s, i in pop.pairs
    ]
    return policies, handle, requests


def cedar_engine(agreement: Agreement, pop: Population, *, batched: bool) -> Callable[[], list[bool]]:
    policies, entities, requests = cedar_data(agreement, pop)

    if batched:

        def run() -> list[bool]:
            return [r.allowed for r in cedarpy.is_authorized_batch(requests, policies, entities)]

    else:

        def run() -> list[bool]:
            return [cedarpy.is_authorized(r, policies, entities).allowed for r in requests]

    return run


def casbin_engine(agreement: Agreement, pop: Population, tmp: Path) -> Callable[[], list[bool]]:
    model = tmp / "model.conf"
    model.write_text(CASBIN_MODEL, encoding="utf-8")
    policy = tmp / "policy.csv"
    policy.write_text("p, read\n", encoding="utf-8")
    enforcer = casbin.Enforcer(str(model), str(policy))
    logging.getLogger("casbin").setLevel(logging.CRITICAL)  # it logs every request, a warning for each deny
    subjects = [
        CasbinSubject(s.party, rank(agreement, s.party, s.clearance), frozenset(s.need_to_know)) for s in pop.subjects
    ]
    items = []
    for label in pop.labels:
        required = required_ranks(agreement, label)
        items.append(
            CasbinItem(frozenset(label.releasable_to), label.compartments[0], required["KOR"], required["JPN"])
        )
    requests = [(subjects[s], items[i]) for s, i in pop.pairs]

    def run() -> list[bool]:
        return [enforcer.enforce(sub, obj, "read") for sub, obj in requests]

    return run


# --- timing ---------------------------------------------------------------------------------


def best_rates(engines: dict[str, Callable[[], list[bool]]], n_requests: int, runs: int) -> dict[str, float]:
    """Decisions per second of each engine: the best of ``runs`` timed runs, alternating engines."""
    passes = {}
    for name, run in engines.items():
        start = time.perf_counter()
        run()
        once = time.perf_counter() - start
        passes[name] = max(1, round(MIN_RUN_SECONDS / max(once, 1e-9)))
    best = dict.fromkeys(engines, float("inf"))
    for _ in range(runs):
        for name, run in engines.items():
            start = time.perf_counter()
            for _ in range(passes[name]):
                run()
            best[name] = min(best[name], (time.perf_counter() - start) / passes[name])
    return {name: n_requests / seconds for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2016)
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as bench/lifecycle.py
    agreement = load(ROOT / "agreements" / "jp-kr-gsomia-2016.toml")
    pop = population(agreement, args.subjects, args.items, args.requests, args.seed)

    with tempfile.TemporaryDirectory() as tmp:  # Casbin reads its model and policy from files
        casbin_run = casbin_engine(agreement, pop, Path(tmp))
    engines = {
        "gsomia policy.decide": gsomia_engine(agreement, pop, status_per_call=False),
        "gsomia decide + lifecycle.status": gsomia_engine(agreement, pop, status_per_call=True),
        "cedarpy is_authorized": cedar_engine(agreement, pop, batched=False),
        "cedarpy is_authorized_batch": cedar_engine(agreement, pop, batched=True),
        "pycasbin enforce (ABAC)": casbin_run,
    }

    # Equivalence first: every engine decides every request the same way.
    decisions = {name: run() for name, run in engines.items()}
    reference = decisions["gsomia policy.decide"]
    permits = sum(reference)
    print(
        f"{args.requests:,} read requests ({args.subjects} subjects x {args.items} items, seed {args.seed}): "
        f"{permits:,} permit, {args.requests - permits:,} deny"
    )
    disagreements = 0
    for name, got in decisions.items():
        agree = sum(a == b for a, b in zip(reference, got, strict=True))
        disagreements += args.requests - agree
        print(f"  {name:<34} agrees with gsomia on {agree:,}/{args.requests:,}")
    if disagreements:
        raise SystemExit("the engines disagree: the rule sets are not equivalent, no timing")
    if not 0.1 < permits / args.requests < 0.9:
        raise SystemExit("the population is too one-sided to say anything about the rules")

    rates = best_rates(engines, args.requests, args.runs)
    gsomia = rates["gsomia policy.decide"]
    print()
    print(
        f"Python {platform.python_version()} on {platform.machine()}, one core, best of {args.runs} runs; "
        f"cedarpy {version('cedarpy')}, casbin {version('casbin')}"
    )
    print(f"  {'engine':<34} {'decisions/s':>14} {'µs/decision':>12} {'gsomia ÷ engine':>16}")
    for name, rate in rates.items():
        print(f"  {name:<34} {rate:>14,.0f} {1e6 / rate:>12.2f} {gsomia / rate:>15.1f}x")

    others = {n: r for n, r in rates.items() if n.startswith(("cedarpy", "pycasbin"))}
    worst = min(gsomia / r for r in others.values())
    verdict = "MET" if worst >= TARGET else "NOT MET"
    print()
    print(
        f"target: gsomia policy.decide at least {TARGET:.0f}x both cedarpy (single and batched) and pycasbin: "
        f"{verdict} (smallest ratio {worst:.1f}x)"
    )
    with_status = rates["gsomia decide + lifecycle.status"]
    worst_with_status = min(with_status / r for r in others.values())
    print(f"  (with lifecycle.status on every call the smallest ratio is {worst_with_status:.1f}x)")


if __name__ == "__main__":
    main()
