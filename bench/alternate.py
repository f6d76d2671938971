"""Two commits' exchange figures, measured in turns on the same machine.

A change meant to leave performance alone (a refactor) is checked by running
``bench/exchange.py`` of each commit, alternately, several times: the machine's load drifts
over minutes, so two runs done one after the other would compare the drift, not the commits.
Each round runs both, in the opposite order from the round before, and the ratio against
medallion (measured in the same run) is the figure compared, since it cancels most of what
the machine does to both.

Each commit is taken with ``git archive`` into a directory of its own and run with its own
``src`` first on ``PYTHONPATH``, so the nodes it starts import that commit's code.

Run: ``.venv/bin/python bench/alternate.py OLD [NEW] [--rounds 3] [--items 20000]``
(NEW defaults to HEAD; any further options go to ``bench/exchange.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Run:
    commit: str
    round: int
    items_per_s: float
    medallion_per_s: float
    flash_p99_ms: float

    @property
    def ratio(self) -> float:
        return self.items_per_s / self.medallion_per_s


def snapshot(commit: str, into: Path) -> Path:
    """The tree of ``commit`` in ``into``/<its short hash>."""
    short = subprocess.run(
        ["git", "rev-parse", "--short", commit], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    where = into / short
    where.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def run_once(tree: Path, commit: str, number: int, items: int, extra: list[str], out: Path) -> Run:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    command = [sys.executable, str(tree / "bench" / "exchange.py"), "--items", str(items), "--json", str(out), *extra]
    subprocess.run(command, env=env, cwd=tree, check=True, stdout=subprocess.DEVNULL)
    data = json.loads(out.read_text(encoding="utf-8"))
    ours = data["gsomia"][0]
    return Run(commit, number, ours["items_per_s"], data["medallion"]["objects_per_s"], ours["flash_ms_p99"])


def report(runs: list[Run], commits: list[str]) -> None:
    print(f"{'commit':<12} {'round':>5} {'items/s':>9} {'medallion/s':>12} {'ratio':>7} {'flash p99 ms':>13}")
    for r in runs:
        print(
            f"{r.commit:<12} {r.round:>5} {r.items_per_s:>9,.0f} {r.medallion_per_s:>12,.0f}"
            f" {r.ratio:>6.2f}x {r.flash_p99_ms:>13.1f}"
        )
    print()
    medians = {}
    for commit in commits:
        ratios = [r.ratio for r in runs if r.commit == commit]
        medians[commit] = statistics.median(ratios)
        spread = max(ratios) - min(ratios)
        print(f"{commit:<12} median ratio {medians[commit]:.2f}x (spread {spread:.2f} over {len(ratios)} runs)")
    old, new = commits
    change = (medians[new] - medians[old]) / medians[old]
    print(f"{new} against {old}: {change:+.1%} in the median ratio against medallion")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="the commit to compare against")
    parser.add_argument("new", nargs="?", default="HEAD", help="the commit compared (default HEAD)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each commit")
    parser.add_argument("--items", type=int, default=20_000, help="items per run (bench/exchange.py --items)")
    args, extra = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="gsomia-alternate-") as tmp:
        trees = [snapshot(c, Path(tmp)) for c in (args.old, args.new)]
        commits = [t.name for t in trees]
        runs: list[Run] = []
        for number in range(1, args.rounds + 1):
            order = list(zip(trees, commits, strict=True))
            if number % 2 == 0:  # each commit goes first in every other round
                order.reverse()
            for tree, commit in order:
                print(f"round {number}: {commit}", file=sys.stderr, flush=True)
                runs.append(run_once(tree, commit, number, args.items, extra, Path(tmp) / "out.json"))
        report(runs, commits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
