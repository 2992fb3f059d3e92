"""ninelives: nightly PySpark jobs on Delta Lake that are safe to ``kill -9`` at any
instant and to rerun, with no row lost and no row duplicated.

Everything a job and its runner need is importable from here::

    from framework import Job, JsonLinesSource, MergeSink, RunRequest, not_null, run_job

The layers underneath, each importing only those below it (``tests/test_layers.py``):

- :mod:`framework.core`: errors, names, dates, configuration, keys, expectations;
- :mod:`framework.lake`: tables, the Spark session, sources, sinks, commit tags, quarantine;
- :mod:`framework.state`: the partition ledger and its leases;
- :mod:`framework.engine`: jobs, planning, work units, chunks, the runner;
- :mod:`framework.ops`: what operators read: observers, history, metrics, alerts, reports;
- :mod:`framework.cli` and :mod:`framework.notebook`: the ``ninelives`` command and the
  Databricks notebooks' entry points;
- :mod:`framework.testing`: crash-testing a job (kill -9, rerun, compare), for users too.
"""

from framework.core.config import Config, load_config
from framework.core.errors import (
    AccountingError,
    ConfigError,
    ExpectationFailedError,
    NinelivesError,
    PartitionError,
    RejectRatioError,
    SchemaMismatchError,
    SourceMissingError,
    UsageError,
)
from framework.core.expectations import (
    Expectation,
    accepted_values,
    in_range,
    matches,
    not_null,
    sql_rule,
)
from framework.engine.job import Job
from framework.engine.registry import get_job
from framework.engine.runner import RunReport, RunRequest, reconcile, run_job
from framework.lake.session import get_or_create_session
from framework.lake.sinks import MergeSink, ReplaceSink
from framework.lake.sources import DeltaSource, FileSource, JsonLinesSource, Source, TableSource
from framework.lake.tables import Lakehouse

__all__ = [
    "AccountingError",
    "Config",
    "ConfigError",
    "DeltaSource",
    "Expectation",
    "ExpectationFailedError",
    "FileSource",
    "Job",
    "JsonLinesSource",
    "Lakehouse",
    "MergeSink",
    "NinelivesError",
    "PartitionError",
    "RejectRatioError",
    "ReplaceSink",
    "RunReport",
    "RunRequest",
    "SchemaMismatchError",
    "Source",
    "SourceMissingError",
    "TableSource",
    "UsageError",
    "accepted_values",
    "get_job",
    "get_or_create_session",
    "in_range",
    "load_config",
    "matches",
    "not_null",
    "reconcile",
    "run_job",
    "sql_rule",
]
