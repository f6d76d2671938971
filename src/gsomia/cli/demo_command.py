"""``gsomia demo``: the command that tells the 2019 story (``cli.demo``) on two loopback nodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gsomia.cli.agreement import replay_command
from gsomia.cli.terminal import out
from gsomia.core.agreement import terms


def demo(
    agreement_file: Annotated[
        Path, typer.Option("--agreement", help="Agreement whose terms the nodes run under.")
    ] = Path("agreements/jp-kr-gsomia-2016.toml"),
    headless: Annotated[bool, typer.Option(help="No narrative; exit when the story ends.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with the figures.")] = False,
    suspension: Annotated[bool, typer.Option(help="--no-suspension: the pact ends at 2019-11-23 00:00 KST.")] = True,
    root: Annotated[Path, typer.Option(help="Where the nodes keep their state.")] = Path(".demo"),
    items: Annotated[int, typer.Option(min=1, max=100000, help="Routine items each side shares.")] = 200,
    flash: Annotated[int, typer.Option(min=1, max=10000, help="Flash reports JPN sends.")] = 20,
    trilateral: Annotated[
        bool,
        typer.Option(
            "--trilateral",
            help="KOR, JPN and USA nodes: the direct route, then the route through the USA after termination (R18).",
        ),
    ] = False,
) -> None:
    """KOR and JPN nodes on loopback replay the 2019 story on a simulated clock.

    --headless prints a short summary (items, flash reports, the notes' instants in the
    agreement's zone, whether the pact is in force); --json prints the same as one JSON
    object, instants in ISO 8601 with their offset."""
    if trilateral:
        _trilateral(agreement_file, root, headless, as_json, items)
        return
    # The story needs the node, its store and an HTTP client: loaded when it runs, not for --help.
    from gsomia.cli.demo import run, summary

    if not headless:
        replay_command(agreement_file)
    result = run(
        root,
        agreement_file,
        out,
        headless=headless or as_json,
        suspension=suspension,
        items_per_side=items,
        flash_count=flash,
        keep_running=not headless,
    )
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    elif headless:
        for line in summary(result, terms.load(agreement_file)):
            out.print(line, markup=False, soft_wrap=True)


def _trilateral(agreement_file: Path, root: Path, headless: bool, as_json: bool, items: int) -> None:
    """``demo --trilateral``: ``items`` on each route, and as many out of scope."""
    from gsomia.cli import trilateral_demo

    result = trilateral_demo.run(root, agreement_file, out, headless=headless or as_json, items=items)
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    elif headless:
        for line in trilateral_demo.summary(result):
            out.print(line, markup=False, soft_wrap=True)
