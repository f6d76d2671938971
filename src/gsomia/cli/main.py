"""The ``gsomia`` command line: thin, over the pure core.

Every ``GsomiaError`` becomes one line on stderr and exit code 2; a usage error is
Click's exit 2; anything else is a bug and says so (``terminal.run``). This module only
puts the command groups together, in the order ``gsomia --help`` lists them.
"""

from __future__ import annotations

import typer

from gsomia.cli import agreement, audit, keys, node, people, policy, protect, terminal, users
from gsomia.cli.demo_command import demo

app = typer.Typer(
    help="gsomia: classified military information shared under an agreement, sealed, labelled and provable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(agreement.app, name="agreement")
app.add_typer(keys.app, name="keys")
app.add_typer(policy.app, name="policy")
protect.register(app)
app.add_typer(node.app, name="node")
app.add_typer(users.app, name="user")
app.add_typer(audit.app, name="audit")
app.command("demo")(demo)
# The analysts' and duty officers' client of the user API: login, share, inbox, items, read, flash, watch.
people.register(app)


def main() -> None:
    """The ``gsomia`` script's entry point."""
    terminal.run(app)
