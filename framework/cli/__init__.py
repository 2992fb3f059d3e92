"""The ``ninelives`` command.

Exit codes: 0 every requested partition is complete; 1 a partition failed; 2 a usage or
configuration error; 3 another runner holds the job. Every error is one readable line
on stderr (``NINELIVES_DEBUG=1`` adds the traceback).

Example::

    ninelives seed --days 7
    ninelives run orders_daily --from 2024-01-01 --to 2024-01-07
    ninelives status orders_daily --lakehouse /data/lake

One module per command (``run``, ``status``, ``history``, ``report``, ``quarantine``,
``reconcile``), each with its ``register``; :mod:`framework.cli.args` is what they share.
"""

from framework.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
