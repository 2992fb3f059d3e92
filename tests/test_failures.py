"""Every failure a person sees names its root cause, in one line.

Each error here is caused for real, in the test session or in a run: a missing table,
a file whose checksum no longer matches, a truncated gzip file, a Python exception in
a worker and in a job's transform. ``describe`` must give the condition, the message
and the innermost cause, with the file or the job's own line, and no stack frame.

Then the catalogue of what a night meets, each caused for real in a run: a landing
folder deleted mid-run, a table from a newer Delta, another writer's commit during the
write, the target deleted mid-run, a full disk (a 16 KiB tmpfs), an unreadable file the
job quarantines whole, and a driver that runs out of memory (a child process). Each
checks the one line ``status`` shows, the ledger's error class, and whether it was
retried (transient) or not.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from framework.core.config import Config
from framework.core.errors import SourceMissingError
from framework.core.failures import describe, root_cause
from framework.engine.runner import is_transient
from framework.lake.sinks import MergeSink
from framework.lake.tables import Lakehouse
from framework.state.ledger import COMPLETE, FAILED
from framework.testing import child_env
from jobs.orders_daily import JOB as ORDERS
from tests.helpers import commit_unknown_reader_feature, free_port, job_states, ledger_of, run


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
    report = run(spark, config, job, [DAY])
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


def test_a_job_can_quarantine_an_unreadable_file_whole_and_go_on(
    spark: SparkSession, sample_config: Config
) -> None:
    """``corrupt_files="quarantine"``: the truncated file is one quarantined record with
    its path and the reason; the date's other files are written as without it."""
    job = dataclasses.replace(ORDERS, corrupt_files="quarantine")
    [clean] = run(spark, sample_config, job, [DAY], **QUICK_RETRIES).results
    folder = Path(sample_config.lakehouse.landing) / "orders" / f"order_date={DAY}"
    whole = gzip.compress(b"".join(f.read_bytes() for f in folder.glob("part-*")))
    truncated = folder / "late-delivery.json.gz"
    truncated.write_bytes(whole[: len(whole) // 2])

    [state] = run(spark, sample_config, job, [DAY], force=True).results
    assert state.state == COMPLETE, state.error_message
    assert (state.rows_read, state.rows_rejected) == (clean.rows_read + 1, clean.rows_rejected + 1)
    assert (state.rows_written, state.rows_updated, state.rows_deleted) == (
        clean.rows_written,
        0,
        0,
    )
    quarantine = Lakehouse(sample_config.lakehouse).framework_table("quarantine_orders_daily")
    files = quarantine.read(spark).where(F.col("raw").startswith("file:")).collect()
    assert [(r.raw, r.reason) for r in files] == [
        (
            f"file://{truncated}",
            "unreadable file, quarantined whole: EOFException: Unexpected end of input stream",
        )
    ]


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


# ------------------------------------------------- the catalogue of a night's failures

D2 = DAY + dt.timedelta(days=1)
QUICK_RETRIES: dict[str, Any] = {"retry_base_seconds": 0.01}


def failed_attempts(spark: SparkSession, config: Config, day: dt.date) -> list[tuple]:
    """(attempt, error_class, error_message) of every failed attempt at ``day``."""
    ledger = ledger_of(spark, config)
    rows = ledger.frame().where((F.col("partition") == day) & (F.col("state") == FAILED))
    return sorted((r.attempt, r.error_class, r.error_message) for r in rows.collect())


def target_path(config: Config) -> Path:
    return Path(str(Lakehouse(config.lakehouse).table(ORDERS.sink.table).path))


def with_side_effect(job, effect):
    """``job`` whose transform first does ``effect()``: something the world does to the
    lakehouse while the run is under way, between the plan and the write."""

    def transform(df: DataFrame) -> DataFrame:
        effect()
        return job.transform(df)

    return dataclasses.replace(job, transform=transform)


def test_a_landing_folder_deleted_mid_run_is_listed_again_then_missing(
    spark: SparkSession, sample_config: Config
) -> None:
    folder = Path(sample_config.lakehouse.landing) / "orders" / f"order_date={DAY}"
    job = with_side_effect(ORDERS, lambda: shutil.rmtree(folder, ignore_errors=True))
    [state] = run(spark, sample_config, job, [DAY], **QUICK_RETRIES).results
    [(attempt, error_class, message), second] = failed_attempts(spark, sample_config, DAY)
    # Attempt 1 read files that were gone by then: transient, the next attempt lists again.
    assert (attempt, error_class) == (1, "Py4JJavaError:FAILED_READ_FILE.FILE_NOT_EXIST")
    assert_one_line(message)
    assert message.startswith(
        f"FAILED_READ_FILE.FILE_NOT_EXIST: Encountered error while reading file file://{folder}/"
    ), message
    assert "; cause: FileNotFoundException: File file:" in message, message
    # Attempt 2 finds no folder at all, which is permanent and what status shows.
    assert second == (2, "SourceMissingError", state.error_message)
    assert (state.state, state.attempt) == (FAILED, 2)
    assert state.error_message == f"no source files for {DAY} under {folder.parent}"


def test_a_newer_protocol_fails_at_once_naming_the_feature(
    spark: SparkSession, sample_config: Config
) -> None:
    run(spark, sample_config, ORDERS, [DAY], **QUICK_RETRIES)
    path = target_path(sample_config)
    commit_unknown_reader_feature(path, "timeTravelToTheFuture")

    [state] = run(spark, sample_config, ORDERS, [D2], **QUICK_RETRIES).results
    assert (state.state, state.attempt) == (FAILED, 1)  # permanent: no retry helps
    assert state.error_class == "Py4JJavaError:DELTA_UNSUPPORTED_FEATURES_FOR_READ"
    assert state.error_message == (
        "DELTA_UNSUPPORTED_FEATURES_FOR_READ: Unsupported Delta read feature: table "
        f'"file:{path}" requires reader table feature(s) that are unsupported by '
        f'Delta Lake "{metadata.version("delta-spark")}": timeTravelToTheFuture.'
    )


@dataclasses.dataclass(frozen=True)
class SinkWithAConcurrentWriter(MergeSink):
    """A MergeSink whose first write meets another writer's commit to the same table.

    The write's rows pass a Python UDF that waits for the other commit: Delta's
    transaction has read the table by then, so the commit that follows conflicts.
    """

    barrier: str = ""
    conflicting_sql: str = ""

    def write(self, spark, ref, df, partition_column, tag, **options):
        if set(tag.attempts.values()) == {1}:
            started, committed = Path(self.barrier, "started"), Path(self.barrier, "committed")

            @F.udf("boolean")
            def after_the_other_commit(_: int) -> bool:
                started.touch()
                deadline = time.monotonic() + 120
                while not committed.exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
                return True

            def other_writer() -> None:
                while not started.exists():
                    time.sleep(0.02)
                try:
                    spark.sql(self.conflicting_sql)
                finally:
                    committed.touch()

            threading.Thread(target=other_writer, daemon=True).start()
            df = df.where(after_the_other_commit(F.lit(1)))
        return super().write(spark, ref, df, partition_column, tag, **options)


def test_a_write_conflict_is_retried_as_a_new_attempt(
    spark: SparkSession, sample_config: Config, tmp_path: Path
) -> None:
    run(spark, sample_config, ORDERS, [DAY], **QUICK_RETRIES)
    path = target_path(sample_config)
    sink = SinkWithAConcurrentWriter(
        ORDERS.sink.table,
        barrier=str(tmp_path),
        conflicting_sql=f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('team' = 'someone')",
    )
    job = dataclasses.replace(ORDERS, sink=sink)
    [state] = run(spark, sample_config, job, [D2], **QUICK_RETRIES).results
    assert (state.state, state.attempt) == (COMPLETE, 2), state
    [(attempt, error_class, message)] = failed_attempts(spark, sample_config, D2)
    assert (attempt, error_class) == (1, "MetadataChangedException:DELTA_METADATA_CHANGED")
    assert message == (
        "DELTA_METADATA_CHANGED: MetadataChangedException: The metadata of the Delta table "
        f"delta.`file:{path}` has been changed by a concurrent update. "
        "Please try the operation again."
    )


def test_a_target_deleted_mid_run_is_not_recreated_without_its_partitions(
    spark: SparkSession, sample_config: Config
) -> None:
    run(spark, sample_config, ORDERS, [DAY], **QUICK_RETRIES)
    path = target_path(sample_config)
    job = with_side_effect(ORDERS, lambda: shutil.rmtree(path))
    [state] = run(spark, sample_config, job, [D2], **QUICK_RETRIES).results
    assert (state.state, state.attempt, state.error_class) == (FAILED, 1, "TargetMissingError")
    assert state.error_message == (
        f"job orders_daily, partition {D2}: the target silver.orders was deleted or moved "
        "while the attempt was under way; put it back (restore the folder), or rebuild it "
        "with `ninelives run orders_daily --force` over its dates"
    )
    assert not path.exists()
    # The next run sees the ledger's complete partition and still will not recreate it.
    [state] = run(spark, sample_config, ORDERS, [D2], **QUICK_RETRIES).results
    assert (state.state, state.error_class) == (FAILED, "TargetMissingError")
    assert state.error_message == (
        f"job orders_daily, partition {D2}: the target silver.orders has no committed "
        f"version, but the ledger records 1 complete partition(s) written to it ({DAY}): it "
        "was deleted or moved. Put it back (restore the folder), or rebuild it: "
        f"`ninelives run orders_daily --force --from {DAY} --to {D2}`"
    )
    # The command it names rebuilds the target from the landing files.
    report = run(spark, sample_config, ORDERS, [DAY, D2], force=True)
    assert [r.state for r in report.results] == [COMPLETE, COMPLETE], report.results
    assert target_path(sample_config).exists()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 16 KiB tmpfs: room for a Delta log, not for a day's data files."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_retried_then_fails_naming_the_device_error(
    spark: SparkSession, sample_config: Config, full_disk: Path
) -> None:
    silver = Path(sample_config.lakehouse.root) / "silver"
    silver.symlink_to(full_disk)  # the target's folder; the ledger stays on a roomy disk
    job = dataclasses.replace(ORDERS, max_attempts=2)
    [state] = run(spark, sample_config, job, [DAY], **QUICK_RETRIES).results
    message = (
        f"TASK_WRITE_FAILED: Task failed while writing rows to file:{silver}/orders. "
        "SQLSTATE: 58030; cause: IOException: No space left on device"
    )
    # Transient: space can come back. Every attempt failed the same way, in one line.
    assert (state.state, state.attempt, state.error_message) == (FAILED, 2, message)
    assert failed_attempts(spark, sample_config, DAY) == [
        (attempt, "Py4JJavaError:TASK_WRITE_FAILED", message) for attempt in (1, 2)
    ]
    # With room again, the same command completes the date.
    subprocess.run(["mount", "-o", "remount,size=1m", str(full_disk)], check=True)
    [state] = run(spark, sample_config, job, [DAY], **QUICK_RETRIES).results
    assert (state.state, state.attempt, state.rows_written) == (COMPLETE, 3, 100)


SWELLING_JOB = """
import dataclasses

from pyspark.sql import functions as F

from framework.lake.sinks import MergeSink
from jobs.orders_daily import JOB as ORDERS


def swell(df):
    # Each row grows to ~700 MB of text: more than a 512 MB driver holds.
    return ORDERS.transform(df).withColumn("blob", F.repeat(F.col("source_id"), 50_000_000))


JOB = dataclasses.replace(
    ORDERS, name="orders_swelling", transform=swell, sink=MergeSink("silver.swollen")
)
"""


def test_a_driver_out_of_memory_is_recorded_with_what_to_change(
    spark: SparkSession, sample_config: Config, tmp_path: Path
) -> None:
    """Spark exits the JVM on OutOfMemoryError; the run's Python lives on, records the
    failure through a new process, and says what to change instead of "run it again"."""
    (tmp_path / "swelling.py").write_text(SWELLING_JOB)
    conf = tmp_path / "small-driver.toml"
    conf.write_text(
        f'[lakehouse]\nlanding = "{sample_config.lakehouse.landing}"\n'
        '[spark]\nmaster = "local[1]"\ndriver_memory = "512m"\n'
    )
    argv = [sys.executable, "-m", "framework.cli", "run", "swelling:JOB", "--date", str(DAY)]
    argv += ["--lakehouse", sample_config.lakehouse.root, "--conf", str(conf)]
    # The crash kit's light child JVM (its class-data archive, the C1 compiler only),
    # for the run and for the process that records its death.
    died = subprocess.run(
        argv,
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert died.returncode == 1, died.stderr
    assert "Traceback" not in died.stderr, died.stderr
    # A quiet start: the JVM's start-up notices are hidden, Spark's errors are not.
    for notice in ("WARNING: Using incubator modules", "Setting default log level"):
        assert notice not in died.stderr, died.stderr
    assert "ERROR Executor: Exception in task" in died.stderr, died.stderr
    message = (
        f"job orders_swelling, partition {DAY}: Spark's driver died during the attempt: "
        "OutOfMemoryError: Java heap space"
    )
    assert died.stderr.splitlines()[-1] == (
        f"ninelives: {message}; the ledger records {DAY} as failed. Spark's driver ran out "
        "of memory and died. The same command with the same settings dies the same way: "
        "raise [spark] driver_memory in the config (spark-submit: --driver-memory), or run "
        "smaller units (--unit-size) or give the job fewer rows per partition, then rerun"
    )
    state = job_states(spark, sample_config, "orders_swelling")[DAY]
    assert (state.state, state.attempt, state.error_class) == (FAILED, 1, "OutOfMemoryError")
    assert state.error_message == message.split(": ", 1)[1]


PY4J_MEETS_A_DEAD_JVM = """
import socket, sys, threading
from py4j.java_gateway import GatewayClient, GatewayParameters
from framework.cli.main import quiet_py4j

if sys.argv[1] == "quiet":
    quiet_py4j()
dead = socket.create_server(("127.0.0.1", 0))  # accepts, then hangs up: a JVM that died


def hang_up():
    while True:
        dead.accept()[0].close()


threading.Thread(target=hang_up, daemon=True).start()
client = GatewayClient(gateway_parameters=GatewayParameters(port=dead.getsockname()[1]))
print(repr(client.send_command("c\\nt\\ngetClass\\ne\\n")))  # py4j's error answer
"""


def test_py4j_meeting_a_dead_jvm_prints_no_traceback_from_the_cli() -> None:
    """py4j's failed send logs a traceback through the root logger (the ``ERROR:root:
    Exception while sending command.`` that a CI run's out-of-memory test once saw)."""

    def stderr(mode: str) -> str:
        argv = [sys.executable, "-c", PY4J_MEETS_A_DEAD_JVM, mode]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        assert done.stdout.strip() == "'x'", done
        return done.stderr

    assert "ERROR:root:Exception while sending command." in stderr("as-is")  # py4j does
    assert stderr("quiet") == ""


def test_a_spark_connect_call_the_network_failed_is_retried_a_server_error_is_not() -> None:
    """A real Spark Connect client calling a port where no server listens (its own
    retries off): gRPC UNAVAILABLE, retried like an I/O error. A Delta conflict told only
    by its condition (what a Connect client receives) is retried; an analysis error of
    the server is not."""
    from grpc import StatusCode
    from pyspark.errors.exceptions.connect import AnalysisException, SparkConnectGrpcException
    from pyspark.sql.connect.client import SparkConnectClient

    client = SparkConnectClient(f"sc://127.0.0.1:{free_port()}", retry_policy={"max_retries": 0})
    with pytest.raises(SparkConnectGrpcException) as unreachable:
        client.get_configs("spark.app.name")
    assert unreachable.value.getGrpcStatusCode() == StatusCode.UNAVAILABLE
    assert is_transient(unreachable.value)
    conflict = SparkConnectGrpcException(
        "[DELTA_CONCURRENT_APPEND.WITHOUT_HINT] Files were added to the root of the table",
        errorClass="DELTA_CONCURRENT_APPEND.WITHOUT_HINT",
        grpc_status_code=StatusCode.INTERNAL,
    )
    assert is_transient(conflict)
    missing = AnalysisException(
        "[TABLE_OR_VIEW_NOT_FOUND] The table or view `x` cannot be found.",
        errorClass="TABLE_OR_VIEW_NOT_FOUND",
        grpc_status_code=StatusCode.INTERNAL,
    )
    assert not is_transient(missing)


def test_a_spark_connect_server_that_does_not_answer_is_one_line_and_exit_1(tmp_path) -> None:
    """``SPARK_REMOTE`` naming a port where no server listens: one line within seconds,
    not ten minutes of the client's retries and a traceback."""
    remote = f"sc://127.0.0.1:{free_port()}"
    argv = ["run", "orders_daily", "--date", "2024-01-01", "--lakehouse", str(tmp_path)]
    child = subprocess.run(
        [sys.executable, "-m", "framework.cli", *argv],
        env={**child_env(), "SPARK_REMOTE": remote},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 1, child.stderr
    [line] = child.stderr.strip().splitlines()
    assert line.startswith(f"ninelives: cannot reach the Spark Connect server {remote} "), line
    assert "UNAVAILABLE" in line, line
