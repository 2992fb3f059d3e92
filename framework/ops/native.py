"""The control plane without a JVM: the framework's tables read by delta-rs.

A run with nothing to do, ``status``, ``history``, ``quarantine`` and ``report`` need
the ledger, the run history or the quarantine (small Delta tables) and a listing of the
landing files; starting Spark for them costs seconds, delta-rs (the ``deltalake``
package) opens a table in milliseconds. Its DataFusion query engine reads deletion
vectors; the newest row of each (job, partition) is the same rule as
:meth:`framework.state.ledger.Ledger.latest_frame`, in SQL, and rows come back as PySpark
returns them (timestamps naive, on the local clock).

This module only reads, and only path lakehouses (a catalog's three-part names go
through Spark). It never guesses: whatever it cannot answer for certain (a catalog
lakehouse, a table feature delta-rs refuses, any error of delta-rs, a source whose
input has no fingerprint without Spark) raises :class:`NativeUnavailable`, and the
caller goes through Spark after a one-line notice (:func:`notice`).
``NINELIVES_NATIVE=0`` always goes through Spark, without a notice.

Example::

    states = or_spark(
        lambda: ledger_states(lakehouse, ["orders_daily"]),
        lambda: Ledger(spark, lakehouse.framework_table("ledger")).states("orders_daily"),
    )
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
from collections.abc import Callable, Iterable
from typing import TypeVar

from framework.engine.job import Job
from framework.engine.runner import Plan, RunRequest, plan_request, stale_among, watermark_windows
from framework.lake.tables import Lakehouse
from framework.ops.history import HISTORY_SCHEMA, RunRecord
from framework.ops.history import TABLE_NAME as HISTORY_TABLE
from framework.state.ledger import COMPLETE, LEDGER_SCHEMA, PartitionState

log = logging.getLogger(__name__)

ENABLED_VARIABLE = "NINELIVES_NATIVE"
T = TypeVar("T")


class NativeUnavailable(Exception):
    """Why delta-rs cannot answer here; the caller asks Spark instead."""


def enabled() -> bool:
    """Whether to try delta-rs first (``NINELIVES_NATIVE=0``: Spark only, no notice)."""
    return os.environ.get(ENABLED_VARIABLE, "1") != "0"


def notice(why: NativeUnavailable) -> None:
    """The one warning a fallback to Spark logs (a line on the command's stderr)."""
    log.warning("%s; reading it with Spark", why)


def or_spark(by_delta_rs: Callable[[], T], by_spark: Callable[[], T]) -> T:
    """``by_delta_rs()``; ``by_spark()`` instead when it cannot answer (after the notice)
    or when :func:`enabled` is false."""
    if enabled():
        try:
            return by_delta_rs()
        except NativeUnavailable as why:
            notice(why)
    return by_spark()


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _local(value: object) -> object:
    """A timestamp as PySpark returns it: naive, on the local clock."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone().replace(tzinfo=None)
    return value


def _rows(lakehouse: Lakehouse, table: str, sql: str) -> list[dict[str, object]] | None:
    """The rows ``sql`` selects from the framework table ``table`` (named so in the SQL),
    as PySpark would return them; None when the table has no commit yet."""
    if lakehouse.is_catalog:
        raise NativeUnavailable("a catalog lakehouse is read through Spark")
    path = lakehouse.framework_table(table).path
    assert path is not None  # not a catalog lakehouse
    try:
        if not lakehouse.storage.has_delta_commit(path):
            return None  # no table yet, or a kill inside its first commit left no commit
        from deltalake import DeltaTable, QueryBuilder

        delta = DeltaTable(path, storage_options=lakehouse.storage.delta_rs_options())
        found = QueryBuilder().register(table, delta).execute(sql).read_all()
        columns = {name: found.column(name).to_pylist() for name in found.column_names}
    except Exception as error:  # delta-rs errors have no common base: never guess
        first = (str(error).splitlines() or [""])[0]
        raise NativeUnavailable(
            f"{path} could not be read without a JVM ({type(error).__name__}: {first})"
        ) from error
    return [
        {name: _local(values[i]) for name, values in columns.items()} for i in range(found.num_rows)
    ]


def ledger_states(
    lakehouse: Lakehouse, jobs: Iterable[str]
) -> dict[str, dict[dt.date, PartitionState]]:
    """``{job: {partition: newest state}}``, as :meth:`Ledger.states` gives it."""
    jobs = list(dict.fromkeys(jobs))
    newest = (
        'row_number() OVER (PARTITION BY job, "partition" '
        "ORDER BY attempt DESC, seq DESC, recorded_at DESC)"
    )
    rows = _rows(
        lakehouse,
        "ledger",
        f"SELECT * FROM (SELECT *, {newest} AS _newest FROM ledger "
        f"WHERE job IN ({', '.join(map(_quoted, jobs))})) WHERE _newest = 1",
    )
    result: dict[str, dict[dt.date, PartitionState]] = {job: {} for job in jobs}
    fields = [f.name for f in LEDGER_SCHEMA.fields if f.name != "seq"]
    for row in rows or []:
        # A ledger written before a column was added lacks it, as in Ledger.latest_frame.
        state = PartitionState(**{name: row.get(name) for name in fields})  # type: ignore[arg-type]
        result[state.job][state.partition] = state
    return result


def recent_runs(lakehouse: Lakehouse, job: str, limit: int = 20) -> list[RunRecord]:
    """:meth:`framework.ops.history.RunHistory.recent`: ``job``'s newest runs, newest first."""
    rows = _rows(
        lakehouse,
        HISTORY_TABLE,
        f"SELECT * FROM {HISTORY_TABLE} WHERE job = {_quoted(job)} "
        f"ORDER BY started_at DESC, run_id DESC LIMIT {int(limit)}",
    )
    names = HISTORY_SCHEMA.fieldNames()
    return [RunRecord(**{name: row.get(name) for name in names}) for row in rows or []]  # type: ignore[arg-type]


def quarantined(
    lakehouse: Lakehouse, job: str, partition: dt.date | None, limit: int
) -> tuple[int, list[dict[str, object]]] | None:
    """``job``'s quarantined records (of ``partition`` if given): how many, and the first
    ``limit`` by partition, reason and raw text, as ``ninelives quarantine`` lists them;
    None when the job has no quarantine table."""
    table = f"quarantine_{job}"
    where = f"WHERE \"partition\" = DATE '{partition.isoformat()}'" if partition else ""
    counted = _rows(lakehouse, table, f"SELECT count(*) AS n FROM {table} {where}")
    if counted is None:
        return None
    rows = _rows(
        lakehouse,
        table,
        f'SELECT * FROM {table} {where} ORDER BY "partition" ASC NULLS FIRST, '
        f"reason ASC NULLS FIRST, raw ASC NULLS FIRST LIMIT {int(limit)}",
    )
    return int(counted[0]["n"]), rows or []  # type: ignore[call-overload]


def stale(
    lakehouse: Lakehouse,
    job: Job,
    states: dict[dt.date, PartitionState],
    candidates: Iterable[dt.date],
) -> frozenset[dt.date]:
    """:func:`framework.engine.runner.stale_partitions` by a listing of the landing files."""
    listing = getattr(job.source, "listing_fingerprint", None)
    candidates = list(candidates)
    needed = any(
        (s := states.get(p)) is not None and s.state == COMPLETE and s.fingerprint
        for p in candidates
    )
    if not needed:
        return frozenset()
    if listing is None:
        raise NativeUnavailable(
            f"the input of {job.name} ({type(job.source).__name__}) has no fingerprint "
            "without Spark"
        )
    return stale_among(states, candidates, lambda partition: listing(lakehouse, partition))


def plan(
    lakehouse: Lakehouse, job: Job, request: RunRequest
) -> tuple[Plan, dict[dt.date, PartitionState]]:
    """The plan ``run_job`` would make first, and the job's states it is made from, read
    without a JVM. Advisory: a run that has work starts Spark, and claims from the
    ledger as it is then."""
    states = ledger_states(lakehouse, [job.name])[job.name]
    if job.watermark_start is not None:
        request = dataclasses.replace(request, partitions=watermark_windows(job, states, request))
    planned = plan_request(job, request, states, lambda dates: stale(lakehouse, job, states, dates))
    return planned, states
