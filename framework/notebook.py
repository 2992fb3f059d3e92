"""What the Databricks notebooks in ``notebooks/`` call: widgets in, one framework call.

The notebooks declare their widgets and call these functions; all parsing, validation
and work happens here, where it is tested. ``widgets`` is ``dbutils.widgets`` on
Databricks and :class:`framework.testing.dbutils.LocalWidgets` in tests.

Example (a notebook cell)::

    report = run_from_widgets(spark, dbutils.widgets)
    display(report_frame(spark, report))
    raise_for_status(report)
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Protocol

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType
from rich.console import Console

from framework.core.config import Config, load_config
from framework.core.dates import parse_date, requested_dates
from framework.core.errors import PartitionError, UsageError
from framework.engine.registry import get_job
from framework.engine.runner import RunReport, RunRequest, run_job
from framework.lake.tables import Lakehouse
from framework.ops.status import print_job_status, read_by_spark
from framework.state.ledger import COUNT_FIELDS, LEDGER_SCHEMA, Ledger

MODES = ("run", "force", "only-failed")


class Widgets(Protocol):
    def get(self, name: str) -> str: ...


def notebook_config(widgets: Widgets) -> Config:
    """``conf`` widget: a TOML file (default: the built-in local defaults); ``lakehouse``
    widget overrides the local root. On Databricks point ``conf`` at databricks.toml."""
    return load_config(widgets.get("conf") or None, lakehouse=widgets.get("lakehouse") or None)


def _date(widgets: Widgets, name: str) -> dt.date | None:
    text = widgets.get(name).strip()
    if not text:
        return None
    try:
        return parse_date(text)
    except ValueError as error:
        raise UsageError(f"widget {name}: {error}") from None


def widget_dates(widgets: Widgets, *, required: bool = True) -> list[dt.date]:
    """``date``, or ``from`` and ``to``; empty when not required and none given."""
    names = ("the date widget", "the from widget", "the to widget")
    one, start, end = _date(widgets, "date"), _date(widgets, "from"), _date(widgets, "to")
    return requested_dates(one, start, end, required=required, names=names) or []


def run_from_widgets(spark: SparkSession, widgets: Widgets) -> RunReport:
    """The ``run_job`` notebook: widgets job, date | from+to, mode, conf, lakehouse."""
    mode = widgets.get("mode")
    if mode not in MODES:
        raise UsageError(f"mode widget {mode!r} is not one of: {', '.join(MODES)}")
    config = notebook_config(widgets)
    job = get_job(widgets.get("job"))
    dates = widget_dates(widgets, required=mode != "only-failed")
    request = RunRequest.configured(
        dates, config.run, force=mode == "force", only_failed=mode == "only-failed"
    )
    return run_job(spark, Lakehouse(config.lakehouse), job, request)


def reprocess_from_widgets(spark: SparkSession, widgets: Widgets) -> RunReport:
    """The ``reprocess_date`` notebook: a forced, idempotent rerun of one whole date,
    only when the ``confirm`` widget says YES."""
    config = notebook_config(widgets)
    job = get_job(widgets.get("job"))
    day = _date(widgets, "date")
    if day is None:
        raise UsageError("fill the date widget with the date to reprocess")
    if widgets.get("confirm") != "YES":
        raise UsageError(
            f"set the confirm widget to YES to reprocess {job.name} for {day}; nothing was done"
        )
    request = RunRequest.configured([day], config.run, force=True)
    return run_job(spark, Lakehouse(config.lakehouse), job, request)


def report_frame(spark: SparkSession, report: RunReport) -> DataFrame:
    """The run's partitions as a DataFrame, for ``display``."""
    fields = ["partition", "state", "attempt", *COUNT_FIELDS, "error_class", "error_message"]
    schema = StructType([LEDGER_SCHEMA[f] for f in fields])
    rows = [tuple(getattr(s, f) for f in fields) for s in [*report.healed, *report.results]]
    return spark.createDataFrame(rows, schema=schema)


def raise_for_status(report: RunReport) -> None:
    """Fail the notebook (and so the Databricks job run) unless every partition is complete."""
    if report.exit_code != 0:
        raise PartitionError(
            f"{report.job}: {len(report.incomplete)} partition(s) not complete: "
            f"{', '.join(map(str, report.incomplete))}"
        )


def status_text(spark: SparkSession, widgets: Widgets) -> str:
    """The ``partition_status`` notebook's text: what ``ninelives status`` prints (the
    watermark of a watermark job, the status table, the runbook with stale and upstream
    dates, and the recovery command), read through the notebook's session."""
    config = notebook_config(widgets)
    job = get_job(widgets.get("job"))
    dates = widget_dates(widgets, required=False) or None
    status = read_by_spark(spark, Lakehouse(config.lakehouse), job, dates)
    buffer = io.StringIO()
    print_job_status(Console(file=buffer, width=160), job, status)
    return buffer.getvalue()


def ledger_frame(spark: SparkSession, widgets: Widgets) -> DataFrame:
    """Every ledger row of the widget's job, newest first, for ``display``."""
    config = notebook_config(widgets)
    job = get_job(widgets.get("job"))
    rows = Ledger(spark, Lakehouse(config.lakehouse).framework_table("ledger")).frame()
    return rows.where(rows.job == job.name).orderBy("partition", "attempt", "seq", "recorded_at")
