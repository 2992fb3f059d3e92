"""Shared test helpers: running a job and reading its ledger, reading tables and comparing
them without audit columns, reading a Delta log, ledger states of runners that are alive
or dead, a free port and a webhook receiver."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import threading
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from framework.core.config import Config
from framework.engine.job import Job
from framework.engine.runner import RunObserver, RunReport, RunRequest, run_job
from framework.lake.tables import Lakehouse
from framework.state.leases import this_host
from framework.state.ledger import RUNNING, Ledger, PartitionState, utcnow

# The test session's JVM runs ~200 tests' worth of small, ever-different queries for
# 15 minutes, and its JIT compilers (C2 most) spent more CPU than the queries did, on
# two cores the suite keeps busy. With C2's thresholds at 10x the defaults, methods
# stay longer in C1 code and C2 compiles only what stays hot; no result changes.
# Measured side by side (2026-12-02, 2 cores, alternating twice): test_runner +
# test_keys in one process, 160 and 166 CPU-s with the defaults, 104 and 136 with these.
# Child runs use the C1 compiler alone (framework.testing.ChildJvm).
TEST_JAVA_OPTIONS = (
    "-XX:Tier4InvocationThreshold=50000 -XX:Tier4MinInvocationThreshold=6000 "
    "-XX:Tier4CompileThreshold=150000 -XX:Tier4BackEdgeThreshold=400000"
)


def table(spark: SparkSession, config: Config, name: str) -> DataFrame:
    return Lakehouse(config.lakehouse).table(name).read(spark)


def dead_pid() -> int:
    """The pid of a process that has exited: a dead runner's."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def running(
    partition: dt.date,
    pid: int,
    *,
    host: str | None = None,
    expires_in: float = 600,
    attempt: int = 1,
    run_id: str = "other-run",
    job: str = "orders_daily",
) -> PartitionState:
    """A ``running`` claim of ``job``'s ``partition`` by ``pid`` on ``host`` (this one),
    its lease expiring in ``expires_in`` seconds."""
    now = utcnow()
    return PartitionState(
        job,
        partition,
        attempt,
        RUNNING,
        run_id,
        host=host or this_host(),
        pid=pid,
        lease_expires_at=now + dt.timedelta(seconds=expires_in),
        started_at=now,
    )


def run(
    spark: SparkSession,
    lake: Config | Lakehouse,
    job: Job,
    dates: Iterable[dt.date] = (),
    *,
    observers: Sequence[RunObserver] = (),
    **options: Any,
) -> RunReport:
    """Run ``job`` in this session over ``dates`` (none: a watermark job's window, or
    ``only_failed``); ``options`` are :class:`RunRequest`'s."""
    request = RunRequest.for_dates(dates, **options)
    return run_job(spark, lakehouse_of(lake), job, request, observers=observers)


def run_date(
    spark: SparkSession, lake: Config | Lakehouse, job: Job, day: dt.date, **options: Any
) -> PartitionState:
    """Run ``job`` for ``day`` alone: the state its last attempt ended in."""
    return run(spark, lake, job, [day], **options).results[-1]


def lakehouse_of(lake: Config | Lakehouse) -> Lakehouse:
    """The lakehouse a test's config names (or the lakehouse given)."""
    return lake if isinstance(lake, Lakehouse) else Lakehouse(lake.lakehouse)


def ledger_of(spark: SparkSession, lake: Config | Lakehouse) -> Ledger:
    """The ledger of ``lake``, to record states by hand or read its rows."""
    return Ledger(spark, lakehouse_of(lake).framework_table("ledger"))


def job_states(
    spark: SparkSession, lake: Config | Lakehouse, job: str
) -> dict[dt.date, PartitionState]:
    """The current state of each partition of the job named ``job``, from the ledger."""
    return ledger_of(spark, lake).states(job)[job]


def delta_version(table: Path | str) -> int:
    """The latest version of a Delta table, read by delta-rs (no Spark)."""
    return DeltaTable(str(table)).version()


def delta_log(table: Path | str) -> Path:
    """The ``_delta_log`` folder of a table, for the tests whose point is its raw files
    (counting checkpoints, planting a commit or what a killed commit leaves)."""
    return Path(table) / "_delta_log"


def commit_unknown_reader_feature(table: Path | str, feature: str) -> None:
    """Commit by hand, as a newer Delta writer would, a protocol that requires the
    reader feature ``feature``, which no engine here knows."""
    protocol = {
        "minReaderVersion": 3,
        "minWriterVersion": 7,
        "readerFeatures": [feature],
        "writerFeatures": [feature],
    }
    commit = delta_log(table) / f"{delta_version(table) + 1:020d}.json"
    commit.write_text(json.dumps({"protocol": protocol}))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Chat webhook URLs carry a secret in their path, as Slack's do.
SECRET_PATH = "/services/T0NINE/B0LIVES/xoxb-s3cr3t-t0ken"


class Webhook:
    """A chat webhook stand-in on 127.0.0.1: records every POST, answers with ``status``.
    The ``webhook`` fixture starts and stops one."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict]] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append((self.path, self.headers["Content-Type"], json.loads(body)))
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"ok" if hook.status == 200 else b"invalid_token")

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def secrets(self) -> list[str]:
        return [self.url, SECRET_PATH, "s3cr3t", f"127.0.0.1:{self.server.server_address[1]}"]
