"""Shared test helpers: reading tables and comparing them without audit columns."""

from __future__ import annotations

from pathlib import Path

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from framework.config import Config
from framework.sinks import AUDIT_COLUMNS
from framework.tables import Lakehouse

# Tests move a few hundred rows: Spark's interpreted expressions are faster for them
# than generating and compiling Java per query shape (about 12 % of the suite's CPU, and
# more in short-lived child JVMs). Results are the same either way; production jobs keep
# Spark's defaults. factoryMode is Spark's own switch for tests.
NO_CODEGEN = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}


def table(spark: SparkSession, config: Config, name: str) -> DataFrame:
    return Lakehouse(config.lakehouse).table(name).read(spark)


def without_audit(df: DataFrame) -> DataFrame:
    return df.drop(*AUDIT_COLUMNS)


def assert_same_rows(actual: DataFrame, expected: DataFrame) -> None:
    """Whole-table equality of every non-audit column, in any row order."""
    assert_df_equality(
        without_audit(actual).select(*sorted(without_audit(actual).columns)),
        without_audit(expected).select(*sorted(without_audit(expected).columns)),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def delta_versions(path: Path) -> int:
    """Number of commits in a Delta table's log (no Spark needed)."""
    return len(list((path / "_delta_log").glob("*.json")))
