"""Every failure a person sees names its root cause, in one line (issue 14).

Each error here is caused for real, in the test session or in a run: a missing table,
a file whose checksum no longer matches, a truncated gzip file, a Python exception in
a worker and in a job's transform. ``describe`` must give the condition, the message
and the innermost cause, with the file or the job's own line, and no stack frame.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from framework.config import Config
from framework.errors import SourceMissingError
from framework.failures import describe, root_cause
from framework.ledger import FAILED
from framework.runner import RunRequest, run_job
from framework.tables import Lakehouse
from jobs.orders_daily import JOB as ORDERS


def failure(action) -> BaseException:
    with pytest.raises(Exception) as caught:
        action()
    return caught.value


def assert_one_line(text: str) -> None:
    assert "\n" not in text and "\tat " not in text and " at org." not in text, text


def test_a_missing_path_names_its_condition_and_path(spark: SparkSession, tmp_path: Path) -> None:
    error = failure(lambda: spark.read.format("delta").load(str(tmp_path / "nope")).count())
    assert (
        describe(error) == f"PATH_NOT_FOUND: Path does not exist: {tmp_path}/nope. SQLSTATE: 42K03"
    )
    assert root_cause(error).condition == "PATH_NOT_FOUND"


def test_a_checksum_mismatch_names_the_file_and_the_checksum_error(
    spark: SparkSession, tmp_path: Path
) -> None:
    spark.range(3).selectExpr("cast(id as string) as value").write.text(str(tmp_path / "t"))
    edited = next((tmp_path / "t").glob("part-*.txt"))
    with edited.open("a") as file:
        file.write("edited by hand\n")
    error = failure(lambda: spark.read.text(str(tmp_path / "t")).collect())
    line = describe(error)
    assert_one_line(line)
    assert line.startswith(
        f"FAILED_READ_FILE.NO_HINT: Encountered error while reading file file://{edited}"
    )
    assert f"; cause: ChecksumException: Checksum error: file:{edited}" in line, line


def test_a_python_error_in_a_worker_names_the_exception_and_its_line(spark: SparkSession) -> None:
    @F.udf("int")
    def divide(x: int) -> int:
        return x // 0

    line = describe(failure(lambda: spark.range(1).select(divide("id")).collect()))
    assert line.startswith("PYTHON_EXCEPTION: An exception was thrown from the Python worker; ")
    assert line.endswith(
        f"cause: ZeroDivisionError: integer division or modulo by zero "
        f"at {__file__}:{divide.func.__code__.co_firstlineno + 2}, in divide"
    ), line


def test_the_frameworks_own_errors_are_kept_whole() -> None:
    error = SourceMissingError("no source files for 2024-01-15 under /lake/landing/orders")
    assert describe(error) == f"SourceMissingError: {error}"


# ---------------------------------------------------------------- in a run


DAY = dt.date(2024, 1, 1)


def failed_state(spark: SparkSession, config: Config, job=ORDERS):
    report = run_job(spark, Lakehouse(config.lakehouse), job, RunRequest.for_dates([DAY]))
    assert report.exit_code == 1 and [r.state for r in report.results] == [FAILED], report
    return report.results[0]


def test_a_truncated_gzip_file_fails_its_date_at_once_naming_the_file(
    spark: SparkSession, sample_config: Config
) -> None:
    folder = Path(sample_config.lakehouse.landing) / "orders" / f"order_date={DAY}"
    whole = gzip.compress(b"".join(f.read_bytes() for f in folder.glob("part-*")))
    truncated = folder / "late-delivery.json.gz"
    truncated.write_bytes(whole[: len(whole) // 2])

    state = failed_state(spark, sample_config)
    assert state.error_class == "Py4JJavaError:FAILED_READ_FILE.NO_HINT"
    assert_one_line(state.error_message)
    assert state.error_message.startswith(
        f"FAILED_READ_FILE.NO_HINT: Encountered error while reading file file://{truncated}."
    )
    assert state.error_message.endswith("; cause: EOFException: Unexpected end of input stream")
    assert state.attempt == 1  # permanent: the same bytes fail the same way, no retry


def test_a_python_error_in_a_jobs_transform_names_the_jobs_own_line(
    spark: SparkSession, sample_config: Config
) -> None:
    def clean(df: DataFrame) -> DataFrame:
        return df.select(df.columns[99])

    state = failed_state(spark, sample_config, dataclasses.replace(ORDERS, transform=clean))
    assert state.error_class == "IndexError"
    line = clean.__code__.co_firstlineno + 1
    # The class is the ledger's error_class; the message names the job's own line.
    assert state.error_message == f"list index out of range (at {__file__}:{line}, in clean)"
