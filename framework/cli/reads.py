"""What the commands read, through delta-rs where it can (no JVM) or else Spark:
partition states, the run history, the quarantine."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyspark.sql import SparkSession

from framework.core.config import Config
from framework.lake.tables import Lakehouse
from framework.ops import native
from framework.ops.history import RunHistory, RunRecord
from framework.state.ledger import Ledger, PartitionState


def session(config: Config) -> SparkSession:
    """The Spark session, started only by the command that needs it."""
    from framework.lake.session import get_or_create_session

    return get_or_create_session(config)


def states(
    config: Config, lakehouse: Lakehouse, job: str, upstream: tuple[str, ...]
) -> tuple[dict[dt.date, PartitionState], dict[str, dict[dt.date, PartitionState]]]:
    """The job's and its upstream jobs' states."""
    every = native.or_spark(
        lambda: native.ledger_states(lakehouse, [job, *upstream]),
        lambda: Ledger(session(config), lakehouse.framework_table("ledger")).states(job, *upstream),
    )
    return every[job], {name: every[name] for name in upstream if name != job}


def recent_runs(config: Config, job: str, limit: int) -> list[RunRecord]:
    """The run history's newest rows."""
    lakehouse = Lakehouse(config.lakehouse)
    return native.or_spark(
        lambda: native.recent_runs(lakehouse, job, limit),
        lambda: RunHistory.of(session(config), lakehouse).recent(job, limit),
    )


def quarantined(
    config: Config, job: str, date: dt.date | None, limit: int
) -> tuple[int, list[dict[str, Any]]] | None:
    """How many records ``job``'s quarantine holds (of ``date``), and the first ``limit``;
    None without a quarantine table."""
    lakehouse = Lakehouse(config.lakehouse)

    def by_spark() -> tuple[int, list[dict[str, Any]]] | None:
        from framework.lake.quarantine import quarantine_table

        spark = session(config)
        ref = quarantine_table(lakehouse, job)
        if not ref.exists(spark):
            return None
        rows = ref.read(spark)
        if date:
            rows = rows.where(rows.partition == date)
        shown = rows.orderBy("partition", "reason", "raw").limit(limit).collect()
        return rows.count(), [row.asDict() for row in shown]

    return native.or_spark(lambda: native.quarantined(lakehouse, job, date, limit), by_spark)
