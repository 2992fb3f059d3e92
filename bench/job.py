"""The job every benchmark runs, where it writes, and the command line that runs it.

``orders_daily`` over sample landing data that ``ninelives seed`` generates from
2024-01-01 on; each benchmark gives every run a lakehouse (and a config) of its own.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bench.measure import PYTHON

JOB = "orders_daily"
TARGET = "silver/orders"
"""The job's target, relative to its lakehouse."""
START = dt.date(2024, 1, 1)  # jobs.landing.SAMPLE_START, the seed's first date


def ninelives(*args: str, lakehouse: Path, conf: Path | None = None) -> list[str]:
    """The command line of a ``ninelives`` child: ``args`` (``run orders_daily ...``,
    ``seed ...``, ``status ...``) on ``lakehouse``, with the TOML config ``conf`` if given.

    Example::

        ninelives("status", JOB, lakehouse=work / "lakehouse")
    """
    argv = [PYTHON, "-m", "framework.cli", *args, "--lakehouse", str(lakehouse)]
    return [*argv, "--conf", str(conf)] if conf is not None else argv
