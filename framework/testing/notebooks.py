"""Run a Databricks source-format notebook locally, cell by cell, for tests.

The notebook gets what Databricks gives it: ``spark``, ``dbutils`` (the local widget
stand-in) and ``display`` (which here keeps what was displayed, for assertions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from framework.testing.dbutils import LocalDBUtils

HEADER = "# Databricks notebook source"
CELL_SEPARATOR = "# COMMAND ----------"


@dataclass
class NotebookRun:
    namespace: dict[str, Any]
    displayed: list[Any] = field(default_factory=list)


def cells(path: Path) -> list[str]:
    """The notebook's cells; raises ValueError if it is not in Databricks source format."""
    text = path.read_text()
    if not text.startswith(HEADER + "\n"):
        raise ValueError(f"{path}: first line must be {HEADER!r}")
    return [c.strip() for c in text[len(HEADER) :].split(CELL_SEPARATOR) if c.strip()]


def run_notebook(path: Path, spark: SparkSession, widgets: Mapping[str, str]) -> NotebookRun:
    """Execute every cell in order, like 'Run all'; an exception stops the run as there."""
    run = NotebookRun(namespace={})
    run.namespace.update(spark=spark, dbutils=LocalDBUtils(widgets), display=run.displayed.append)
    for number, source in enumerate(cells(path), start=1):
        code = compile(source, f"{path}#cell{number}", "exec")
        exec(code, run.namespace)
    return run
