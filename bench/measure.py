"""Child processes, measured: every benchmark run is a real child in a process group of
its own, timed by its wall clock and polled every 0.2 s with psutil (peak RSS of the JVM
and of the whole process tree, CPU seconds, load average); and the machine they ran on.

Example::

    run = run_child("a_full", argv, workdir=work, env=child_env(), timeout=3600)
    expect(run, 0)  # else stop, with the tail of its log
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
POLL_SECONDS = 0.2
MB = 1024 * 1024


@dataclass
class Measured:
    """One child process: wall clock, exit code, memory, CPU and Spark jobs."""

    name: str
    argv: list[str]
    rc: int | None = None
    """Its exit code; -9 when it was SIGKILLed."""
    seconds: float = 0.0
    """Wall clock, from its start to its exit."""
    java_rss_mb: float = 0.0
    """Peak RSS of its JVM(s)."""
    tree_rss_mb: float = 0.0
    """Peak RSS summed over its whole process tree (Python driver, JVM, workers)."""
    cpu_s: float = 0.0
    """User and system CPU seconds of every process of its tree."""
    load_before: float = 0.0
    """1-minute load average at its start."""
    load_mean: float = 0.0
    """Mean 1-minute load average over the run (samples every 0.2 s)."""
    max_procs: int = 0
    """The most processes its tree had at once."""
    timed_out: bool = False
    killed_after_s: float | None = None
    """Set when the harness SIGKILLed the child's process group on purpose (case b)."""
    killed_at_cpu_s: float | None = None
    """The tree's CPU seconds by then."""
    started_epoch: float = 0.0
    """``time.time()`` at the start: lines the run up with its Delta commit timestamps."""
    log: str = ""
    eventlog: dict[str, Any] = field(default_factory=dict)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # Nothing from the caller's environment may steer the children.
        if not k.startswith("NINELIVES_")
    }
    env.update(
        NINELIVES_JARS_DIR=str(REPO / ".cache" / "jars"),
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=PYTHON,
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        NINELIVES_PROGRESS="plain",
    )
    env.update(extra or {})
    return env


def _sample(root: psutil.Process, cpu: dict[int, float]) -> tuple[float, float, int]:
    """(RSS of the JVM(s), RSS summed over the tree, processes); updates per-pid CPU s."""
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0.0, 0
    java = tree = 0.0
    for proc in procs:
        try:
            with proc.oneshot():
                rss = proc.memory_info().rss
                times = proc.cpu_times()
                name = proc.name()
        except psutil.Error:
            continue
        tree += rss
        if name == "java":
            java += rss
        cpu[proc.pid] = times.user + times.system
    return java, tree, len(procs)


def run_child(
    name: str,
    argv: list[str],
    *,
    workdir: Path,
    env: dict[str, str],
    timeout: float,
    kill_after: float | None = None,
    kill_after_cpu: float | None = None,
    kill_when: Callable[[], bool] | None = None,
) -> Measured:
    """Run ``argv`` in its own process group; time it and poll its tree every 0.2 s.

    ``kill_after``: SIGKILL the whole process group once that many seconds have passed
    (a ``kill -9`` at a chosen moment; the exit code is then -9); ``kill_after_cpu``:
    once its process tree has used that many CPU seconds; ``kill_when``: at the first
    poll at which it returns true."""
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    result = Measured(name, argv, load_before=os.getloadavg()[0], log=str(log_path))
    print(f"[bench] {name}: {' '.join(argv[1:])}", flush=True)
    cpu: dict[int, float] = {}
    with open(log_path, "w") as log:
        started = time.monotonic()
        result.started_epoch = time.time()
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: crash points kill only it
        )
        root = psutil.Process(proc.pid)
        seen: dict[int, psutil.Process] = {}
        loads: list[float] = []
        while True:
            loads.append(os.getloadavg()[0])
            java, tree, procs = _sample(root, cpu)
            result.max_procs = max(result.max_procs, procs)
            result.java_rss_mb = max(result.java_rss_mb, java / MB)
            result.tree_rss_mb = max(result.tree_rss_mb, tree / MB)
            try:
                for p in root.children(recursive=True):
                    seen.setdefault(p.pid, p)
            except psutil.Error:
                pass
            try:
                result.rc = proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            elapsed = time.monotonic() - started
            used = sum(cpu.values())
            if result.killed_after_s is None and (
                (kill_after is not None and elapsed >= kill_after)
                or (kill_after_cpu is not None and used >= kill_after_cpu)
                or (kill_when is not None and kill_when())
            ):
                result.killed_after_s = round(elapsed, 2)
                result.killed_at_cpu_s = round(used, 1)
                _kill_group(proc.pid)
            if elapsed > timeout:
                result.timed_out = True
                _kill_group(proc.pid)
        result.seconds = time.monotonic() - started
        result.load_mean = round(sum(loads) / len(loads), 2)
    # The JVM may outlive its Python parent by a moment; the next case must not overlap.
    deadline = time.monotonic() + 60
    while any(_alive(p) for p in seen.values()):
        if time.monotonic() > deadline:
            _kill_group(proc.pid)
            break
        time.sleep(0.1)
    result.cpu_s = sum(cpu.values())
    killed = f" (killed at {result.killed_after_s}s)" if result.killed_after_s is not None else ""
    print(
        f"[bench] {name}: rc={result.rc}{killed} {result.seconds:.1f}s cpu={result.cpu_s:.0f}s "
        f"java={result.java_rss_mb:.0f}MB tree={result.tree_rss_mb:.0f}MB",
        flush=True,
    )
    return result


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def expect(run: Measured, *rcs: int) -> None:
    """Stop the benchmark, with the tail of its log, when ``run`` exited otherwise than ``rcs``."""
    if run.rc not in rcs:
        tail = Path(run.log).read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(
            f"[bench] {run.name} exited {run.rc}, expected {rcs}; log {run.log}:\n"
            + "\n".join(tail)
        )


def machine() -> dict[str, Any]:
    cpu_model = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "java": (java.splitlines() or ["?"])[0],
        "pyspark": metadata.version("pyspark"),
        "delta_spark": metadata.version("delta-spark"),
        "kernel": platform.release(),
    }
