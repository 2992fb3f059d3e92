"""orders_incremental: the order events as an incremental (watermark) job.

The same source, transform and rules as orders_daily, into ``silver.orders_incremental``,
but driven by a watermark: the landing folders are treated as an append-only stream of
daily windows. A run without dates processes every window from the watermark (the first
window not yet complete) to ``--to`` or yesterday; a window behind the watermark is only
reprocessed with ``--force``.

Run it::

    ninelives run orders_incremental --to 2024-01-07
    spark-submit jobs/orders_incremental.py --to 2024-01-07
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from framework.lake.sinks import MergeSink
from jobs.landing import SAMPLE_START
from jobs.orders_daily import JOB as ORDERS_DAILY

JOB = dataclasses.replace(
    ORDERS_DAILY,
    name="orders_incremental",
    sink=MergeSink("silver.orders_incremental"),
    watermark_start=SAMPLE_START,
)


def main(argv: Sequence[str] | None = None) -> int:
    from framework.cli import main as cli_main

    return cli_main(["run", JOB.name, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
