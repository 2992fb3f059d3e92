"""Crash-test kit: real ``ninelives run`` child processes, killed with SIGKILL.

Every child is the real command line, ``python -m framework.cli run <job> ...``,
started in a new session, so that it leads its own process group: the driver, its JVM
and its Python workers. A crash is ``os.killpg(<group>, SIGKILL)``, either from outside
(:meth:`Child.kill`) or from inside at a named crash point (``NINELIVES_CRASH_AT``,
:mod:`framework.core.crashpoints`). Nothing is mocked and no exception stands in for a crash.

After a kill the kit checks that no live process is left in the group: a surviving JVM
would be a zombie writer racing the rerun, and the rerun would prove nothing.

:func:`assert_recovered` is the one definition of "recovered": the lakehouse holds
exactly what an uninterrupted run (:func:`reference_run`) wrote. It is used by
``tests/test_crash.py`` and by ``bench/soak.py``.

Example::

    lake = new_lake(tmp_path / "a", landing)
    crashed = run_child(lake, dates, crash_at="after_read@2024-01-02")
    expect_exit(crashed, -9)
    expect_exit(run_child(lake, dates), 0)
    assert_recovered(spark, lake.config, reference.restricted(dates))
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from framework.core.config import Config, LakehouseConfig, load_config
from framework.core.keys import KEY_COLUMN
from framework.engine.job import Job
from framework.engine.runner import RunObserver, RunReport, RunRequest, run_job, watermark
from framework.lake.tables import Lakehouse
from framework.state.ledger import COMPLETE, Ledger, PartitionState
from jobs.orders_daily import JOB as ORDERS_DAILY
from tests.helpers import TINY_DATA_CONFS, assert_same_rows, without_audit

REPO = Path(__file__).resolve().parents[1]
# The job a Lake runs unless it is given another (orders_incremental: a watermark job).
DEFAULT_JOB = ORDERS_DAILY
JOB_NAME = DEFAULT_JOB.name
TARGET = DEFAULT_JOB.sink.table
COUNTS = ("rows_read", "rows_written", "rows_rejected", "rows_duplicate")

# A child run over a few tiny partitions takes 15-40 s; ten minutes means "hung", even
# on a busy two-core machine with another Spark suite running next to it.
CHILD_TIMEOUT = 600.0
KILLED = -signal.SIGKILL

# Child JVMs live for seconds: the C1 compiler alone and the serial collector start
# them and run tiny partitions faster on two busy cores than the default tiered JIT,
# and change nothing about what is written or when a kill lands. Set
# NINELIVES_CHILD_JAVA_OPTIONS="" to run children with the JVM's defaults.
CHILD_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
# The classes a child JVM loads, archived once by `make test` (tests/jvm_archive.py);
# used when present, with the child Java options.
CDS_ARCHIVE = Path(os.environ.get("NINELIVES_CDS_ARCHIVE") or REPO / ".cache/cds/child.jsa")
ARCHIVE_WAIT = 300.0  # seconds a child waits for an archive that is being built


def archive_builder(archive: Path) -> Path:
    """The file that holds the pid of the process building ``archive``, while it does."""
    return archive.with_name(archive.name + ".building")


def archive_building(archive: Path) -> bool:
    """Whether a live process is building ``archive``."""
    try:
        os.kill(int(archive_builder(archive).read_text()), 0)
    except (OSError, ValueError):  # no builder, or it died
        return False
    return True


def wait_for_archive(archive: Path, timeout: float = ARCHIVE_WAIT) -> None:
    """Return once ``archive`` exists or nobody is building it any more (children then
    go without): ``make test`` builds it in the background while the first tests, which
    start no child, run."""
    deadline = time.monotonic() + timeout
    while not archive.is_file() and archive_building(archive) and time.monotonic() < deadline:
        time.sleep(0.5)
    log = archive.with_name("build.log")
    if not archive.is_file() and log.is_file() and log.stat().st_size:
        # The build failed in the background: say so once in pytest's warnings summary.
        last = log.read_text(errors="replace").strip().splitlines()[-1]
        warnings.warn(f"child JVMs start without {archive.name} ({log}: {last})", stacklevel=2)


# Crash points inside Delta's own writes (a table's first commit, a checkpoint), which no
# Python code can reach: a local file system that kills the group at the named instant,
# ``NINELIVES_CRASH_AT=<event>@<table folder>[#<version>]``. It is tests/jvm's
# CrashingLocalFileSystem (its Javadoc says when each event fires), built by `make test`.
# Every child has the jar on its class path, so that one class-data-sharing archive fits
# all of them; only a child given one of these events runs on that file system.
JVM_POINTS = (
    "log_folder_made",
    "data_file_opened",
    "commit_staged",
    "checkpoint_staged",
    "last_checkpoint_staged",
)
CRASH_FS_JAR = Path(
    os.environ.get("NINELIVES_CRASH_FS_JAR") or REPO / ".cache/crashfs/ninelives-crashfs.jar"
)
CRASH_FS = {
    "spark.hadoop.fs.file.impl": "ninelives.crash.CrashingLocalFileSystem",
    "spark.hadoop.fs.AbstractFileSystem.file.impl": "ninelives.crash.CrashingLocalFs",
}


# ---------------------------------------------------------------- lakehouses


@dataclass(frozen=True)
class Lake:
    """One lakehouse for child runs of ``job``: its root, its TOML config and a folder
    for logs."""

    root: Path
    conf: Path
    logs: Path
    job: Job = DEFAULT_JOB

    @property
    def config(self) -> Config:
        """The config a child run loads (``--conf`` + ``--lakehouse``), for in-process use."""
        return load_config(self.conf, lakehouse=str(self.root))

    @property
    def lakehouse(self) -> Lakehouse:
        return Lakehouse(self.config.lakehouse)

    def path(self, logical_name: str) -> Path:
        return Path(str(self.lakehouse.table(logical_name).path))

    @property
    def target_path(self) -> Path:
        return self.path(self.job.sink.table)

    def states(self, spark: SparkSession) -> dict[dt.date, PartitionState]:
        """The ledger's newest state of each of the job's partitions."""
        ledger = Ledger(spark, self.lakehouse.framework_table("ledger"))
        return ledger.states(self.job.name)[self.job.name]

    def watermark(self, spark: SparkSession) -> dt.date:
        """A watermark job's first window not yet complete, from the ledger."""
        return watermark(self.job, self.states(spark))

    @property
    def ledger_path(self) -> Path:
        return Path(str(self.lakehouse.framework_table("ledger").path))


def write_conf(path: Path, landing: Path) -> Path:
    """A child config: absolute landing folder, and a light one-core Spark session set
    up for tiny data like the tests' own (``TINY_DATA_CONFS``)."""
    tiny = ", ".join(f'"{k}" = "{v}"' for k, v in TINY_DATA_CONFS.items())
    path.write_text(
        f'[lakehouse]\nlanding = "{landing.resolve()}"\n\n'
        '[spark]\nmaster = "local[1]"\nshuffle_partitions = 1\n'
        f"extra = {{ {tiny} }}\n"
    )
    return path


def new_lake(
    base: Path, landing: Path, *, template: Path | None = None, job: Job = DEFAULT_JOB
) -> Lake:
    """A lakehouse for ``job`` under ``base`` reading ``landing``; a copy of
    ``template`` if given.

    Copying a Delta table is safe: its log refers to data files by relative path.
    """
    base.mkdir(parents=True, exist_ok=True)
    root = base / "lakehouse"
    if template is not None:
        shutil.copytree(template, root)
    else:
        root.mkdir()
    logs = base / "logs"
    logs.mkdir(exist_ok=True)
    return Lake(root, write_conf(base / "ninelives.toml", landing), logs, job)


# ---------------------------------------------------------------- child processes


def child_env(crash_at: str | None = None, archive: Path | None = CDS_ARCHIVE) -> dict[str, str]:
    env = dict(os.environ)
    env["NINELIVES_JARS_DIR"] = os.environ.get("NINELIVES_JARS_DIR") or str(REPO / ".cache/jars")
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env["PYSPARK_PYTHON"] = sys.executable
    java_options = os.environ.get("NINELIVES_CHILD_JAVA_OPTIONS", CHILD_JAVA_OPTIONS)
    if java_options and archive is not None:
        wait_for_archive(archive)
    if java_options and archive is not None and archive.is_file():
        # An archive of other jars or another JDK is skipped; without the log switches
        # the JVM would say so on stderr, which tests read.
        java_options += f" -XX:SharedArchiveFile={archive} -Xlog:cds=off -Xlog:cds+dynamic=off"
    if java_options:
        env["JAVA_TOOL_OPTIONS"] = f"{env.get('JAVA_TOOL_OPTIONS', '')} {java_options}".strip()
    env.pop("NINELIVES_CRASH_AT", None)
    if crash_at is not None:
        env["NINELIVES_CRASH_AT"] = crash_at
    in_jvm = crash_at is not None and crash_at.partition("@")[0] in JVM_POINTS
    if in_jvm and not CRASH_FS_JAR.is_file():
        raise AssertionError(f"crash point {crash_at} needs {CRASH_FS_JAR}: run `make test`")
    if CRASH_FS_JAR.is_file():
        # PySpark passes these to spark-submit, which needs the file system class on the
        # JVM's own class path: it lists local files before any spark.jars are loaded.
        submit = ["--driver-class-path", str(CRASH_FS_JAR)]
        for key, value in CRASH_FS.items() if in_jvm else ():
            submit += ["--conf", f"{key}={value}"]
        env["PYSPARK_SUBMIT_ARGS"] = " ".join([*submit, "pyspark-shell"])
    return env


def run_command(lake: Lake, dates: Sequence[dt.date], *extra: str) -> list[str]:
    """The command line of a child run: ``python -m framework.cli`` and :func:`run_args`."""
    return [sys.executable, "-m", "framework.cli", *run_args(lake, dates, *extra)]


def run_args(lake: Lake, dates: Sequence[dt.date], *extra: str) -> list[str]:
    """The ``ninelives`` arguments of a run over ``dates``; for a watermark job, over
    every window from its watermark to the last of ``dates`` (``--to``), as a nightly
    run would."""
    first, last = min(dates), max(dates)
    if lake.job.watermark_start is not None:
        span = ["--to", last.isoformat()]
    elif first == last:
        span = ["--date", first.isoformat()]
    else:
        span = ["--from", first.isoformat(), "--to", last.isoformat()]
    return [
        "run",
        lake.job.name,
        *span,
        "--lakehouse",
        str(lake.root),
        "--conf",
        str(lake.conf),
        *extra,
    ]


_serial = itertools.count(1)


@dataclass
class Child:
    """A running or finished child run. Output goes to files: a pipe nobody reads
    could fill up and stall the child, and would be held open by orphaned workers."""

    proc: subprocess.Popen[bytes]
    argv: list[str]
    crash_at: str | None
    stdout_path: Path
    stderr_path: Path
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def rc(self) -> int | None:
        return self.proc.returncode

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def poll(self) -> int | None:
        rc = self.proc.poll()
        if rc is not None and self.ended is None:
            self.ended = time.monotonic()
        return rc

    def wait(self, timeout: float = CHILD_TIMEOUT) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"child run did not finish within {timeout:.0f} s and was killed\n"
                + self.describe()
            ) from None
        if self.ended is None:
            self.ended = time.monotonic()
        # A crash point takes the whole group: nothing may live on to write after it.
        # After a normal exit the JVM follows its driver within moments; stragglers
        # are cleaned up, not counted against the run.
        wait_group_gone(self.pid, strict=rc == KILLED)
        return rc

    def kill_after(self, seconds: float) -> bool:
        """Let the child run ``seconds`` from its start, then SIGKILL its group.

        Returns True if it was killed, False if it had ended on its own by then."""
        deadline = self.started + seconds
        while time.monotonic() < deadline:
            if self.poll() is not None:
                self.wait()
                return False
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if self.poll() is not None:
            self.wait()
            return False
        self.kill()
        return True

    def kill(self) -> float:
        """SIGKILL the whole process group now; return the seconds it had been running."""
        at = self.seconds
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait()
        if self.ended is None:
            self.ended = time.monotonic()
        wait_group_gone(self.pid)
        return at

    def describe(self, lines: int = 30) -> str:
        """The command, its exit code, and the tails of its stdout (the run summary)
        and stderr (without JVM stack frames), for assertion messages."""
        out = [line[:300] for line in self.stdout.splitlines()][-15:]
        err = [
            line[:500]
            for line in self.stderr.splitlines()
            if not line.lstrip().startswith(("at ", "... "))
        ][-lines:]
        env = f"NINELIVES_CRASH_AT={self.crash_at} " if self.crash_at else ""
        return (
            f"command: {env}{' '.join(self.argv)}\nexit code: {self.rc} after "
            f"{self.seconds:.1f} s\n--- stdout (last lines) ---\n"
            + "\n".join(out)
            + "\n--- stderr (last lines, stack frames left out) ---\n"
            + "\n".join(err)
        )


def start_run(
    lake: Lake,
    dates: Sequence[dt.date],
    *extra: str,
    crash_at: str | None = None,
) -> Child:
    """Start ``ninelives run <job>`` over ``dates`` as the leader of a new group.

    ``start_new_session`` is not optional: a crash point kills its own process group,
    which without a new session would be pytest's.
    """
    argv = run_command(lake, dates, *extra)
    n = next(_serial)
    stdout_path = lake.logs / f"child-{n:03d}.out"
    stderr_path = lake.logs / f"child-{n:03d}.err"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=child_env(crash_at),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    return Child(proc, argv, crash_at, stdout_path, stderr_path)


def run_child(
    lake: Lake,
    dates: Sequence[dt.date],
    *extra: str,
    crash_at: str | None = None,
    timeout: float = CHILD_TIMEOUT,
) -> Child:
    """Run a child to its end (or its crash point) and return it."""
    child = start_run(lake, dates, *extra, crash_at=crash_at)
    child.wait(timeout)
    return child


def expect_exit(child: Child, expected: int) -> None:
    assert child.rc == expected, f"expected exit code {expected}\n{child.describe()}"


def _live_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, command) of every non-zombie process whose process group is ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            state, group = fields[0], int(fields[2])
            if group == pgid and state not in ("Z", "X"):
                cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ")
                members.append((int(entry.name), cmd.decode(errors="replace")[:160]))
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
    return members


def wait_group_gone(pgid: int, *, strict: bool = True, timeout: float = 15.0) -> None:
    """Wait until no live process is left in the group. Leftovers are killed; with
    ``strict`` (the group was SIGKILLed) they also fail the test."""
    if not os.path.isdir("/proc"):
        return
    deadline = time.monotonic() + timeout
    while (members := _live_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if members:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        if strict:
            raise AssertionError(f"processes of group {pgid} survived SIGKILL: {members}")


def kill_when(
    child: Child,
    seen: Callable[[], str | None],
    *,
    poll: float = 0.02,
    timeout: float = CHILD_TIMEOUT,
    must_happen: bool = True,
) -> str | None:
    """Poll ``seen`` every ``poll`` seconds; SIGKILL the group the moment it returns a
    description of what it saw, and return that description.

    If the child ends first, that fails the test, or with ``must_happen=False`` returns
    None (the child must then have succeeded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        what = seen()
        if what is not None:
            child.kill()
            return what
        if child.poll() is not None:
            child.wait()
            if not must_happen:
                expect_exit(child, 0)
                return None
            raise AssertionError(
                "the child ended before the watched event happened\n" + child.describe()
            )
        time.sleep(poll)
    child.kill()
    raise AssertionError(f"no watched event within {timeout:.0f} s\n{child.describe()}")


def files_under(folder: Path) -> set[str]:
    """Relative paths of every file under ``folder`` (empty if it does not exist)."""
    found: set[str] = set()
    for top, _, names in os.walk(folder):
        found.update(os.path.relpath(os.path.join(top, n), folder) for n in names)
    return found


# ---------------------------------------------------------------- Delta logs


def log_versions(table: Path) -> list[int]:
    """Versions of the commit files in a Delta table's ``_delta_log``."""
    return sorted(int(p.stem) for p in (table / "_delta_log").glob("*.json") if p.stem.isdigit())


def commits(table: Path) -> list[tuple[int, str, dict | None]]:
    """(version, operation, ninelives commit metadata or None) of each commit in a
    Delta log, read from the ``_delta_log`` files without Spark."""
    found = []
    for version in log_versions(table):
        with (table / "_delta_log" / f"{version:020d}.json").open() as log:
            for line in log:
                info = json.loads(line).get("commitInfo")
                if info is None:
                    continue
                meta = None
                with contextlib.suppress(TypeError, ValueError):
                    meta = json.loads(info.get("userMetadata"))
                found.append(
                    (version, info.get("operation", "?"), meta if isinstance(meta, dict) else None)
                )
    return found


def commit_operations(table: Path) -> list[tuple[int, str]]:
    """(version, operation) of each commit in a Delta log."""
    return [(version, operation) for version, operation, _ in commits(table)]


def tagged_commits(table: Path) -> list[tuple[int, str, dict]]:
    """(version, operation, metadata) of the commits a ninelives unit tagged."""
    return [(v, op, meta) for v, op, meta in commits(table) if meta and "partitions" in meta]


def committed_partitions(table: Path) -> list[str]:
    """The partitions of each tagged commit, in log order (a unit's in date order)."""
    return [p for _, _, meta in tagged_commits(table) for p in sorted(meta["partitions"])]


def assert_log_has_no_gap(table: Path) -> None:
    versions = log_versions(table)
    assert versions, f"{table} has no Delta log"
    assert versions == list(range(versions[0], versions[-1] + 1)) and versions[0] == 0, (
        f"Delta log of {table} has a gap: versions {versions}"
    )


# ---------------------------------------------------------------- the reference


@dataclass(frozen=True)
class Reference:
    """What an uninterrupted run wrote: the target's rows, quarantine rows and counts.

    The rows are collected and rebuilt with their schema, so the reference does not
    depend on files that a test might delete.
    """

    dates: tuple[dt.date, ...]
    silver: DataFrame
    quarantine: tuple[tuple[dt.date, str | None, str], ...]
    counts: dict[dt.date, dict[str, int]]
    job: Job = DEFAULT_JOB

    def restricted(self, dates: Iterable[dt.date]) -> Reference:
        keep = tuple(sorted(set(dates)))
        missing = set(keep) - set(self.dates)
        assert not missing, f"the reference has no run for {sorted(missing)}"
        return Reference(
            keep,
            self.silver.where(F.col(self.job.partition_column).isin(list(keep))),
            tuple(q for q in self.quarantine if q[0] in keep),
            {d: c for d, c in self.counts.items() if d in keep},
            self.job,
        )


def frozen_frame(spark: SparkSession, df: DataFrame) -> DataFrame:
    return spark.createDataFrame(df.collect(), df.schema)


def run_in_process(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    dates: Sequence[dt.date],
    observers: Sequence[RunObserver] = (),
) -> RunReport:
    """``run_job`` over ``dates`` in this process, as :func:`run_command` would run it
    (a watermark job: its windows up to the last date); fails the test unless it exits
    0. Crash tests rerun this way: the same planning, healing, lease takeover and
    writes as the command line, in the test's warm session, which saves a JVM start."""
    if job.watermark_start is not None:
        request = RunRequest(partitions=(), until=max(dates))
    else:
        request = RunRequest.for_dates(dates)
    report = run_job(spark, lakehouse, job, request, observers=observers)
    assert report.exit_code == 0, [(r.partition, r.state, r.error_message) for r in report.results]
    return report


def rerun(
    spark: SparkSession,
    lake: Lake,
    dates: Sequence[dt.date],
    observers: Sequence[RunObserver] = (),
) -> RunReport:
    """The rerun after a crash, in-process (:func:`run_in_process`)."""
    return run_in_process(spark, lake.lakehouse, lake.job, dates, observers)


def reference_run(
    spark: SparkSession, config: Config, dates: Sequence[dt.date], job: Job = DEFAULT_JOB
) -> Reference:
    """Run ``job`` in-process, uninterrupted, into ``config``'s lakehouse; return what
    the lakehouse then holds for ``dates``.

    Partitions are independent, so the lakehouse may already hold some of ``dates``
    from an earlier uninterrupted run (a snapshot of it can serve as a template).
    """
    run_in_process(spark, Lakehouse(config.lakehouse), job, dates)
    return read_reference(spark, config, dates, job)


def read_reference(
    spark: SparkSession, config: Config, dates: Sequence[dt.date], job: Job = DEFAULT_JOB
) -> Reference:
    """What ``config``'s lakehouse holds for ``dates``, written by an uninterrupted run."""
    lakehouse = Lakehouse(config.lakehouse)
    keep = sorted(set(dates))
    silver = (
        lakehouse.table(job.sink.table).read(spark).where(F.col(job.partition_column).isin(keep))
    )
    rejects = lakehouse.framework_table(f"quarantine_{job.name}")
    rows = rejects.read(spark).collect() if rejects.exists(spark) else []  # none rejected
    quarantine = tuple((r.partition, r.raw, r.reason) for r in rows if r.partition in keep)
    states = Ledger(spark, lakehouse.framework_table("ledger")).states(job.name)[job.name]
    counts = {d: {n: getattr(states[d], n) for n in COUNTS} for d in keep}
    return Reference(tuple(keep), frozen_frame(spark, silver), quarantine, counts, job)


# ---------------------------------------------------------------- recovered?


def _lakehouse_config(lake_cfg: Lake | Config | LakehouseConfig) -> LakehouseConfig:
    if isinstance(lake_cfg, Lake):
        return lake_cfg.config.lakehouse
    if isinstance(lake_cfg, Config):
        return lake_cfg.lakehouse
    return lake_cfg


@dataclass(frozen=True)
class RowDiff:
    """How a target differs from the reference, row by row, keyed on ``_key``."""

    rows: int
    duplicates: int
    missing: int
    mismatched: int
    examples: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not (self.duplicates or self.missing or self.mismatched)


def diff_rows(
    actual: DataFrame, expected: DataFrame, partition_column: str = DEFAULT_JOB.partition_column
) -> RowDiff:
    """Count duplicates (rows beyond the first of each ``_key``), missing reference keys
    and mismatched rows (a non-audit column differs, or a key the reference lacks)."""
    actual, expected = without_audit(actual), without_audit(expected)
    columns = sorted(c for c in expected.columns if c != KEY_COLUMN)
    stats = actual.agg(
        F.count(F.lit(1)).alias("rows"), F.count_distinct(KEY_COLUMN).alias("keys")
    ).first()
    assert stats is not None
    a, e = actual.alias("a"), expected.alias("e")
    joined = a.join(e, F.col(f"a.{KEY_COLUMN}") == F.col(f"e.{KEY_COLUMN}"), "full_outer")
    same = F.lit(True)
    for c in columns:
        same = same & F.col(f"a.{c}").eqNullSafe(F.col(f"e.{c}"))
    a_key, e_key = F.col(f"a.{KEY_COLUMN}"), F.col(f"e.{KEY_COLUMN}")
    missing = e_key.isNotNull() & a_key.isNull()
    mismatched = a_key.isNotNull() & (e_key.isNull() | ~same)
    counts = joined.agg(
        F.sum(missing.cast("int")).alias("missing"),
        F.sum(mismatched.cast("int")).alias("mismatched"),
    ).first()
    assert counts is not None
    if not (counts["missing"] or counts["mismatched"]):
        return RowDiff(
            rows=stats["rows"], duplicates=stats["rows"] - stats["keys"], missing=0, mismatched=0
        )
    examples = tuple(
        str(r.asDict())
        for r in joined.where(missing | mismatched)
        .select(
            F.coalesce(a_key, e_key).alias(KEY_COLUMN),
            F.col(f"a.{partition_column}").alias("actual_partition"),
            F.col(f"e.{partition_column}").alias("expected_partition"),
            F.when(missing, "missing").otherwise("mismatched").alias("problem"),
        )
        .limit(5)
        .collect()
    )
    return RowDiff(
        rows=stats["rows"],
        duplicates=stats["rows"] - stats["keys"],
        missing=counts["missing"] or 0,
        mismatched=counts["mismatched"] or 0,
        examples=examples,
    )


def ledger_problems(
    spark: SparkSession, lake_cfg: Lake | Config | LakehouseConfig, reference: Reference
) -> list[str]:
    """Requested partitions not complete, or whose counts do not add up or differ from
    the reference's (a record lost or counted twice)."""
    lakehouse = Lakehouse(_lakehouse_config(lake_cfg))
    job = reference.job.name
    states = Ledger(spark, lakehouse.framework_table("ledger")).states(job)[job]
    problems = []
    for day in reference.dates:
        state = states.get(day)
        if state is None or state.state != COMPLETE:
            problems.append(f"{day} is {state.state if state else 'missing'} in the ledger")
            continue
        got = {n: getattr(state, n) for n in COUNTS}
        if None in got.values() or (
            state.rows_read != state.rows_written + state.rows_rejected + state.rows_duplicate
        ):
            problems.append(f"ledger counts of {day} do not add up: {got}")
        elif got != reference.counts[day]:
            problems.append(
                f"ledger counts of {day} differ from the uninterrupted run: "
                f"{got} != {reference.counts[day]}"
            )
    return problems


def quarantine_problems(
    spark: SparkSession, lake_cfg: Lake | Config | LakehouseConfig, reference: Reference
) -> list[str]:
    """Quarantine rows that differ from the reference's (partition, raw, reason), or a
    partition whose rows come from more than one attempt."""
    lakehouse = Lakehouse(_lakehouse_config(lake_cfg))
    quarantine = lakehouse.framework_table(f"quarantine_{reference.job.name}")
    rows = quarantine.read(spark).collect() if quarantine.exists(spark) else []
    actual, expected = (
        Counter((r.partition, r.raw, r.reason) for r in rows),
        Counter(reference.quarantine),
    )
    problems = []
    if actual != expected:
        problems.append(
            f"quarantine differs from the uninterrupted run: extra {dict(actual - expected)}, "
            f"missing {dict(expected - actual)}"
        )
    # A partition in chunks: each chunk's rows from one attempt (a rerun resumes it).
    attempts: dict[tuple[dt.date, int | None], set[tuple[str, int]]] = {}
    for r in rows:
        attempts.setdefault((r.partition, r.asDict().get("chunk")), set()).add(
            (r.run_id, r.attempt)
        )
    mixed = {str(d): sorted(a) for d, a in attempts.items() if len(a) > 1}
    if mixed:
        problems.append(f"quarantine partitions hold rows of several attempts: {mixed}")
    return problems


def target_frame(
    spark: SparkSession, lake_cfg: Lake | Config | LakehouseConfig, job: Job = DEFAULT_JOB
) -> DataFrame:
    return Lakehouse(_lakehouse_config(lake_cfg)).table(job.sink.table).read(spark)


def assert_recovered(
    spark: SparkSession, lake_cfg: Lake | Config | LakehouseConfig, reference: Reference
) -> None:
    """The lakehouse holds exactly what the uninterrupted ``reference`` run wrote.

    * every requested partition is ``complete`` in the ledger, and its counts add up
      (read = written + rejected + duplicate) and equal the reference's;
    * the target has no duplicate ``_key``, no missing one, nothing outside the
      reference's partitions, and equals the reference in every non-audit column
      (``_key`` and ``_row_hash`` included; chispa, any row order);
    * the quarantine holds exactly the reference's (partition, raw, reason) rows, each
      partition's from a single attempt.
    """
    where = Lakehouse(_lakehouse_config(lake_cfg)).root
    problems = ledger_problems(spark, lake_cfg, reference)
    problems += quarantine_problems(spark, lake_cfg, reference)
    job = reference.job
    target = target_frame(spark, lake_cfg, job)
    diff = diff_rows(target, reference.silver, job.partition_column)
    if not diff.clean:
        problems.append(f"target differs from the uninterrupted run: {diff}")
    assert not problems, f"{where} did not recover:\n  " + "\n  ".join(problems)
    assert_same_rows(target, reference.silver)
