"""gsomia: a General Security of Military Information Agreement, in software.

The pure core (``agreement``, ``label``, ``policy``, ``envelope``, ``ledger``)
takes time and keys as parameters and does no I/O; the shell (``cli``, and later
the node and store) reads files, clocks and sockets and calls the core.
"""

__version__ = "0.1.0"
