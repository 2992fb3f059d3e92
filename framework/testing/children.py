"""Real ``ninelives run`` child processes, killed with SIGKILL.

Every child is the real command line, ``python -m framework.cli run <job> ...``,
started in a new session, so that it leads its own process group: the driver, its JVM
and its Python workers. A crash is ``os.killpg(<group>, SIGKILL)``, either from outside
(:meth:`Child.kill`, :meth:`Child.kill_after`, :func:`kill_when`) or from inside at a
named crash point (``NINELIVES_CRASH_AT``, :mod:`framework.core.crashpoints`). Nothing
is mocked and no exception stands in for a crash.

After a kill the kit checks that no live process is left in the group: a surviving JVM
would be a zombie writer racing the rerun, and the rerun would prove nothing.

How a child's JVM starts is a :class:`ChildJvm`: Java options, and two things a
project may build to make children faster or reach further, both optional: a
class-data-sharing archive of the classes a child loads, and the crash file system jar
whose crash points lie inside Delta's own writes (:data:`JVM_POINTS`). Without them a
child starts a little slower, and every other crash point works.

Example::

    lake = new_lake(tmp_path / "a", landing, JOB)
    crashed = run_child(lake, dates, crash_at="after_read@2024-01-02")
    expect_exit(crashed, KILLED)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from framework.testing.lakes import Lake, import_root

# A child run over a few tiny partitions takes 15-40 s; ten minutes means "hung", even
# on a busy two-core machine with another Spark suite running next to it.
CHILD_TIMEOUT = 600.0
KILLED = -signal.SIGKILL

# Child JVMs live for seconds: the C1 compiler alone and the serial collector start
# them and run tiny partitions faster on two busy cores than the default tiered JIT,
# and change nothing about what is written or when a kill lands. Set
# NINELIVES_CHILD_JAVA_OPTIONS="" to run children with the JVM's defaults.
CHILD_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
ARCHIVE_WAIT = 300.0  # seconds a child waits for an archive that is being built

# Crash points inside Delta's own writes (a table's first commit, a checkpoint), which no
# Python code can reach: a local file system that kills the group at the named instant,
# ``NINELIVES_CRASH_AT=<event>@<table folder>[#<version>]``. It is this project's
# tests/jvm CrashingLocalFileSystem (its Javadoc says when each event fires), built by
# `make test` into the crash file system jar. Every child has the jar on its class path
# when there is one, so that one class-data-sharing archive fits all of them; only a
# child given one of these events runs on that file system.
JVM_POINTS = (
    "log_folder_made",
    "data_file_opened",
    "commit_staged",
    "checkpoint_staged",
    "last_checkpoint_staged",
)
CRASH_FS = {
    "spark.hadoop.fs.file.impl": "ninelives.crash.CrashingLocalFileSystem",
    "spark.hadoop.fs.AbstractFileSystem.file.impl": "ninelives.crash.CrashingLocalFs",
}


@dataclass(frozen=True)
class ChildJvm:
    """How a child's JVM starts.

    :param java_options: added to ``JAVA_TOOL_OPTIONS``; empty for the JVM's defaults.
    :param cds_archive: a class-data-sharing archive of a child's classes, used with
        ``java_options`` when the file exists (a child waits while another process
        builds it, :func:`wait_for_archive`); None for none.
    :param crash_fs_jar: the crash file system jar, needed only for :data:`JVM_POINTS`;
        None (or a missing file) for none.
    :param jars_dir: Delta's jars for the child's session (``NINELIVES_JARS_DIR``);
        None to let the child find them as any run does.

    Example::

        jvm = ChildJvm.from_environment()                  # this project's defaults
        plain = ChildJvm(java_options="")                  # the JVM's own defaults
    """

    java_options: str = CHILD_JAVA_OPTIONS
    cds_archive: Path | None = None
    crash_fs_jar: Path | None = None
    jars_dir: Path | None = None

    @classmethod
    def from_environment(cls, project: Path | None = None) -> ChildJvm:
        """``NINELIVES_CHILD_JAVA_OPTIONS``, ``NINELIVES_CDS_ARCHIVE``,
        ``NINELIVES_CRASH_FS_JAR`` and ``NINELIVES_JARS_DIR`` when set, else what
        ``make test`` builds under ``project`` (the working directory by default):
        ``.cache/cds/child.jsa``, ``.cache/crashfs/ninelives-crashfs.jar`` and
        ``.cache/jars``. Files that are not there are simply not used."""
        cache = (project or Path.cwd()).resolve() / ".cache"
        env = os.environ
        jars = Path(env.get("NINELIVES_JARS_DIR") or cache / "jars")
        return cls(
            java_options=env.get("NINELIVES_CHILD_JAVA_OPTIONS", CHILD_JAVA_OPTIONS),
            cds_archive=Path(env.get("NINELIVES_CDS_ARCHIVE") or cache / "cds/child.jsa"),
            crash_fs_jar=Path(
                env.get("NINELIVES_CRASH_FS_JAR") or cache / "crashfs/ninelives-crashfs.jar"
            ),
            jars_dir=jars if jars.is_dir() else None,
        )

    @property
    def has_crash_fs(self) -> bool:
        return self.crash_fs_jar is not None and self.crash_fs_jar.is_file()


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


def child_env(crash_at: str | None = None, jvm: ChildJvm | None = None) -> dict[str, str]:
    """The environment of a child run: this one's, with the child's JVM settings
    (``jvm``, :meth:`ChildJvm.from_environment` by default) and ``crash_at`` as
    ``NINELIVES_CRASH_AT`` (unset when None)."""
    jvm = jvm or ChildJvm.from_environment()
    env = dict(os.environ)
    if jvm.jars_dir is not None:
        env["NINELIVES_JARS_DIR"] = str(jvm.jars_dir)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env["PYSPARK_PYTHON"] = sys.executable
    java_options = jvm.java_options
    archive = jvm.cds_archive
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
    if in_jvm and not jvm.has_crash_fs:
        raise AssertionError(
            f"crash point {crash_at} lies inside Delta's own writes and needs the crash "
            f"file system jar ({jvm.crash_fs_jar or 'none given'}; this project's "
            "`make test` builds it)"
        )
    if jvm.has_crash_fs:
        # PySpark passes these to spark-submit, which needs the file system class on the
        # JVM's own class path: it lists local files before any spark.jars are loaded.
        submit = ["--driver-class-path", str(jvm.crash_fs_jar)]
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
        lake.job_argument,
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
    jvm: ChildJvm | None = None,
    cwd: Path | None = None,
) -> Child:
    """Start ``ninelives run <job>`` over ``dates`` as the leader of a new group, in
    ``cwd`` (this process's working directory by default).

    ``start_new_session`` is not optional: a crash point kills its own process group,
    which without a new session would be pytest's.
    """
    argv = run_command(lake, dates, *extra)
    env = child_env(crash_at, jvm)
    root = import_root(lake.job_argument)
    if root is not None:  # a job given as module:attribute imports as it does here
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    n = next(_serial)
    stdout_path = lake.logs / f"child-{n:03d}.out"
    stderr_path = lake.logs / f"child-{n:03d}.err"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            argv,
            cwd=cwd or Path.cwd(),
            env=env,
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
    jvm: ChildJvm | None = None,
    cwd: Path | None = None,
) -> Child:
    """Run a child to its end (or its crash point) and return it."""
    child = start_run(lake, dates, *extra, crash_at=crash_at, jvm=jvm, cwd=cwd)
    child.wait(timeout)
    return child


def expect_exit(child: Child, expected: int) -> None:
    """Fail with the child's command, exit code and output tails unless it exited
    ``expected`` (:data:`KILLED` for a kill)."""
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
