"""``python -m gsomia``: the same as the ``gsomia`` command."""

from gsomia.cli.main import main

main()
