"""Cluster kit: a real Spark standalone cluster on 127.0.0.1 and real spark-submits.

:func:`standalone_cluster` starts a master and one worker from the installed pyspark
(``spark-class org.apache.spark.deploy.master.Master`` / ``...worker.Worker``), each the
leader of its own process group, waits until the worker has registered with the master,
and tears both down (SIGTERM to the group, then SIGKILL) when the ``with`` block ends,
whatever happened inside it. Everything binds to 127.0.0.1 only.

:func:`build_wheel` builds the project wheel from a copy of the sources (nothing is
written into the work tree), and :func:`start_submit` runs
``spark-submit --master spark://... --py-files <wheel> --jars <Delta jars> jobs/orders_daily.py
...`` as the leader of a new process group, so that a crash point
(``NINELIVES_CRASH_AT``, which kills its own group) takes the driver's Python process
and the spark-submit JVM, and nothing else. It returns a :class:`framework.testing.Child`.

Example::

    with standalone_cluster(tmp_path / "cluster") as cluster:
        child = start_submit(cluster, wheel, script, ["--date", "2024-01-01", ...], logs)
        assert child.wait() == 0
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

from framework.testing import Child, wait_group_gone
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[1]

SPARK_HOME = Path(pyspark.__file__).resolve().parent
SPARK_CLASS = SPARK_HOME / "bin" / "spark-class"
SPARK_SUBMIT = SPARK_HOME / "bin" / "spark-submit"
HOST = "127.0.0.1"

# Bounds, generous for a busy two-core machine: a daemon JVM starts in 2-10 s there.
REGISTER_TIMEOUT = 120.0
STOP_GRACE = 10.0

# The master and the worker are light JVMs; their default heap is 1g each.
DAEMON_MEMORY = "256m"
# Short-lived JVMs (daemons, spark-submit driver, executors) start and run tiny jobs
# faster with C1 only and the serial collector; nothing about what is written changes.
JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def jars_dir() -> Path:
    return Path(os.environ.get("NINELIVES_JARS_DIR") or REPO / ".cache" / "jars")


def delta_jars() -> list[str]:
    """The Delta jars ``make setup`` resolved, as absolute paths (empty if none)."""
    folder = jars_dir()
    return sorted(str(p.resolve()) for p in folder.glob("*.jar")) if folder.is_dir() else []


def delta_package() -> str:
    """Maven coordinates of Delta for this pyspark, for ``--packages`` (needs internet)."""
    from importlib.metadata import version

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_2.13:{version('delta-spark')}"


def spark_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for every cluster process: loopback only, this pyspark, this venv."""
    env = dict(os.environ if base is None else base)
    env.pop("NINELIVES_CRASH_AT", None)
    env.pop("PYSPARK_GATEWAY_PORT", None)
    env.pop("PYSPARK_GATEWAY_SECRET", None)
    env["SPARK_HOME"] = str(SPARK_HOME)
    env["SPARK_LOCAL_IP"] = HOST
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    options = os.environ.get("NINELIVES_CHILD_JAVA_OPTIONS", JAVA_OPTIONS)
    if options:
        env["JAVA_TOOL_OPTIONS"] = f"{env.get('JAVA_TOOL_OPTIONS', '')} {options}".strip()
    return env


def _get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


def _stop_group(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """SIGTERM the process group led by ``proc``, then SIGKILL whatever is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(AssertionError):
        # Executors the worker started live in its group too; wait until all are gone.
        wait_group_gone(proc.pid, timeout=grace)


@dataclass
class StandaloneCluster:
    """One master and one worker on 127.0.0.1; see :func:`standalone_cluster`."""

    base: Path
    master_port: int = field(default_factory=free_port)
    master_ui_port: int = field(default_factory=free_port)
    worker_ui_port: int = field(default_factory=free_port)
    cores: int = 1
    memory: str = "1g"
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    submissions: list[Child] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://{HOST}:{self.master_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.master_ui_port}"

    @property
    def log_dir(self) -> Path:
        return self.base / "logs"

    @property
    def work_dir(self) -> Path:
        return self.base / "work"

    def env(self) -> dict[str, str]:
        env = spark_env()
        env["SPARK_LOG_DIR"] = str(self.log_dir)
        env["SPARK_WORKER_DIR"] = str(self.work_dir)
        env["SPARK_DAEMON_MEMORY"] = DAEMON_MEMORY
        return env

    def _start(self, name: str, argv: list[str]) -> None:
        out = (self.log_dir / f"{name}.out").open("wb")
        with out:
            self.procs[name] = subprocess.Popen(
                argv,
                cwd=self.base,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._start(
            "master",
            [
                str(SPARK_CLASS),
                "org.apache.spark.deploy.master.Master",
                "--host",
                HOST,
                "--port",
                str(self.master_port),
                "--webui-port",
                str(self.master_ui_port),
            ],
        )
        self._start(
            "worker",
            [
                str(SPARK_CLASS),
                "org.apache.spark.deploy.worker.Worker",
                self.url,
                "--host",
                HOST,
                "--cores",
                str(self.cores),
                "--memory",
                self.memory,
                "--webui-port",
                str(self.worker_ui_port),
                "--work-dir",
                str(self.work_dir),
            ],
        )

    def state(self) -> dict:
        """The master's own view (``/json/``): workers, active and completed apps."""
        return _get_json(f"{self.ui_url}/json/")

    def wait_for_workers(self, count: int = 1, timeout: float = REGISTER_TIMEOUT) -> dict:
        """Poll the master until ``count`` workers are alive; fail with the logs otherwise."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise AssertionError(
                        f"spark {name} exited with {proc.returncode} during start-up\n"
                        + self.describe()
                    )
            try:
                state = self.state()
                if int(state.get("aliveworkers", 0)) >= count:
                    return state
                last = f"aliveworkers={state.get('aliveworkers')}"
            except (OSError, ValueError) as error:
                last = error
            time.sleep(0.5)
        raise AssertionError(
            f"{count} worker(s) did not register with {self.url} within {timeout:.0f} s "
            f"(last: {last})\n" + self.describe()
        )

    def wait_idle(self, timeout: float = 60.0) -> dict:
        """Wait until no application is active (a killed driver's app is removed once the
        master sees its connection drop) and the worker's cores are free again."""
        deadline = time.monotonic() + timeout
        state = self.state()
        while time.monotonic() < deadline:
            state = self.state()
            if not state.get("activeapps") and int(state.get("coresused", 0)) == 0:
                return state
            time.sleep(0.5)
        raise AssertionError(f"the cluster is still busy after {timeout:.0f} s: {state}")

    def stop(self) -> None:
        # A submission still running when a test fails or times out goes first (a
        # spark-submit group holds no state worth a graceful stop), then the worker,
        # which takes its executors with it, then the master.
        for child in self.submissions:
            if child.poll() is None:
                _stop_group(child.proc, grace=1.0)
        for name in ("worker", "master"):
            proc = self.procs.get(name)
            if proc is not None:
                _stop_group(proc)

    def describe(self, lines: int = 30) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.out")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(tail))
        return "\n".join(parts)


@contextlib.contextmanager
def standalone_cluster(
    base: Path, *, cores: int = 1, memory: str = "1g"
) -> Iterator[StandaloneCluster]:
    """A started cluster whose worker has registered; stopped on exit, even on failure."""
    base.mkdir(parents=True, exist_ok=True)
    cluster = StandaloneCluster(base, cores=cores, memory=memory)
    try:
        cluster.start()
        cluster.wait_for_workers(1)
        yield cluster
    finally:
        cluster.stop()


# ---------------------------------------------------------------- the wheel


def build_wheel(out: Path, source: Path = REPO) -> Path:
    """``pip wheel --no-deps`` of the project, built from a copy of its sources so that
    no ``build/`` or ``*.egg-info`` lands in the work tree; returns the wheel's path."""
    copy = out / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    copy.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(source / name, copy / name)
    for package in ("framework", "jobs"):
        shutil.copytree(source / package, copy / package, ignore=ignore)
    dist = out / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(copy)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout}\n{result.stderr}"
    wheels = sorted(dist.glob("ninelives-*.whl"))
    assert len(wheels) == 1, f"expected one ninelives wheel in {dist}, found {wheels}"
    return wheels[0]


# ---------------------------------------------------------------- spark-submit

_serial = itertools.count(1)


def submit_command(
    cluster: StandaloneCluster,
    wheel: Path,
    script: Path,
    args: Sequence[str],
    *,
    jars: Sequence[str] | None = None,
) -> list[str]:
    """The spark-submit command line of one job run on ``cluster``.

    Delta's JVM half comes from ``--jars`` (the jars ``make setup`` put in
    ``.cache/jars``), or from ``--packages`` when that folder is empty, as the session's
    own fallback does.
    """
    jars = delta_jars() if jars is None else list(jars)
    delta = ["--jars", ",".join(jars)] if jars else ["--packages", delta_package()]
    return [
        str(SPARK_SUBMIT),
        "--master",
        cluster.url,
        "--py-files",
        str(wheel),
        *delta,
        "--conf",
        "spark.executor.memory=512m",
        "--conf",
        "spark.cores.max=1",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        "spark.databricks.delta.snapshotPartitions=2",
        "--driver-memory",
        "1g",
        str(script),
        *args,
    ]


def start_submit(
    cluster: StandaloneCluster,
    wheel: Path,
    script: Path,
    args: Sequence[str],
    logs: Path,
    *,
    crash_at: str | None = None,
    cwd: Path | None = None,
) -> Child:
    """Start spark-submit as the leader of a new process group; output goes to files.

    ``start_new_session`` is what confines a crash point's ``killpg`` to this
    submission: the spark-submit JVM and the Python driver, not pytest or the cluster.
    """
    argv = submit_command(cluster, wheel, script, args)
    env = spark_env()
    if crash_at is not None:
        env["NINELIVES_CRASH_AT"] = crash_at
    logs.mkdir(parents=True, exist_ok=True)
    n = next(_serial)
    stdout_path = logs / f"submit-{n:02d}.out"
    stderr_path = logs / f"submit-{n:02d}.err"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            argv,
            cwd=cwd or logs,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    child = Child(proc, argv, crash_at, stdout_path, stderr_path)
    cluster.submissions.append(child)
    return child
