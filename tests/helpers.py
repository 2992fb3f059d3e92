"""Shared test helpers: reading tables and comparing them without audit columns."""

from __future__ import annotations

from pathlib import Path

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from framework.config import Config
from framework.sinks import AUDIT_COLUMNS
from framework.tables import Lakehouse


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
