"""The nightly benchmark: what a 30-date night costs with ninelives, and what recovery costs.

Every case is a real child process (``python -m framework.cli ...`` or
``bench/baselines.py``) on the SAME generated landing data, seeded once with
``jobs.landing.seed_orders`` (``rows // days`` good events per date) and reused while
its size matches. Each child gets the same TOML config (``local[2]``, 4 shuffle
partitions, 4g driver) and its own fresh lakehouse. The benchmark times each child's
wall clock, polls its process tree every 0.2 s with psutil (peak RSS of the JVM and of
the whole tree, CPU seconds), and counts its Spark jobs from the event log where it
wrote one.

ninelives packs the planned dates of a run into work units (consecutive dates, up to
``--unit-size`` of input, default 1GB, and ``--max-partitions-per-unit``, default 31):
one Spark pass and one commit per table (target, quarantine, ledger) per unit. The
runs below use the defaults.

Cases::

    a  full run: orders_daily over all dates                       full_s
    b  the same command as a, SIGKILLed (its whole process group) once 90 % of a's
       wall time has passed, then a rerun          recovery_ratio = rerun_s / full_s
    c  no-op rerun of a's lakehouse with the landing folder renamed away (must exit 0;
       no Spark SQL execution may touch the landing or the target)
                                                      noop_ratio = noop_s / full_s
    d  bare loop: the same per-date read, transform, dedupe and write, hand-written
                                                      full_vs_bare = full_s / bare_s
    e  plain floor: one bulk partitioned Delta append  full_vs_plain = full_s / plain_s
    f  naive: append-only loop killed after 27 dates, rerun from scratch
                                                      naive_duplicates = rows - distinct keys
                                                      ninelives_duplicates (b's target)
    g  unchanged rerun: ``run --date D --force`` on a's lakehouse: rows updated and files
       added by the commit(s) it made, from the target's Delta log
    h  peak RSS of every run (a, b, c, d, e, i, j)                  peak_rss_mb
    i  bulk: what a user writes instead: ONE Spark job over all dates (same reader,
       transform, key, row hash, latest-wins dedupe per (date, key)) and one
       replaceWhere commit of the whole range          full_vs_bulk = full_s / bulk_s
    j  scaling: the same total rows over 90 and 365 dates (landing data of their own,
       rows // 90 and rows // 365 a day), a full run each
                                     dates_90_vs_30, dates_365_vs_30 = j_s / full_s

``overhead_vs_bare`` and ``overhead_vs_plain``, the names of ``full_vs_bare`` and
``full_vs_plain`` before work units, are kept in latest.json as aliases.

Case b's kill: with work units a crash point such as ``after_claim@<28th date>`` no
longer falls after 27 dates of work (at the default unit size all 30 dates may be one
unit, claimed before any is read). So b runs a's command and is killed by the harness
once the target's log holds commits for 90 % of the dates (``--kill-clock wall`` or
``cpu``: at 90 % of a's wall time or CPU seconds instead, which a run faster than a
can outlast). ``crash`` in latest.json says when it was killed, how many dates its
target had committed by then, and how many the rerun wrote again.

Timed runs (a, d, i, e, c, j, b's killed run, b's rerun) run one at a time; f and g,
whose durations are no metric, run side by side unless ``--serial``.

Run from the repository root (``make bench ROWS=1000000``)::

    python bench/bench.py --rows 1000000 [--cases abcdefgij] [--parallel-sweep] [--bare-nmbs]

It writes ``bench/results/latest.json`` (and a copy, ``rows-<ROWS>.json``),
``bench/results/ratios.png`` and ``bench/RESULTS.md``. ``--parallel-sweep`` adds full runs
at ``--max-parallel`` 2 and 4 right after a and d; ``--bare-nmbs`` adds the bare loop with
the MERGE written with ``WHEN NOT MATCHED BY SOURCE`` (quadratic: each MERGE scans the
whole table). Scratch data lives in ``/tmp/ninelives-bench/rows-<ROWS>``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
PYTHON = sys.executable
JOB = "orders_daily"
TARGET = "silver/orders"
START = dt.date(2024, 1, 1)  # jobs.landing.SAMPLE_START, the seed's first date
SEED = 42
POLL_SECONDS = 0.2
# The event log costs real time (about 4 MB of JSON per partition of orders_daily), so
# timed runs go without it unless asked; the no-op run keeps it to count its jobs.
EVENTLOG_RUNS = {"none": (), "noop": ("c_noop", "c_noop_spark"), "all": ()}
MB = 1024 * 1024

TARGETS: dict[str, tuple[str, float, str]] = {
    # metric: (comparison, target, case)
    "full_vs_bulk": ("<=", 1.25, "i"),
    "full_vs_plain": ("<=", 2.5, "e"),
    "full_vs_bare": ("<=", 1.0, "d"),
    "recovery_ratio": ("<=", 0.20, "b"),
    "noop_ratio": ("<=", 0.02, "c"),
    "dates_365_vs_30": ("<=", 1.5, "j"),
    "ninelives_duplicates": ("==", 0, "f"),
    "unchanged_rows_updated": ("==", 0, "g"),
    "unchanged_files_added": ("==", 0, "g"),
}
# Keys of latest.json before work units: kept as aliases of their new names, and read
# from old files by --report-only.
ALIASES = {"overhead_vs_bare": "full_vs_bare", "overhead_vs_plain": "full_vs_plain"}
# The same ratios in CPU seconds (results' cpu_ratios) under their own names.
CPU_KEYS = {
    "recovery_ratio": "recovery",
    "noop_ratio": "noop",
    "full_vs_bare": "vs_bare",
    "full_vs_plain": "vs_plain",
    "full_vs_bulk": "vs_bulk",
    "dates_90_vs_30": "dates_90_vs_30",
    "dates_365_vs_30": "dates_365_vs_30",
}
CRASH_FRACTION = 0.9
"""Case b is killed when this share of case a's wall time has passed."""
SCALING_DAYS = (90, 365)
"""Case j: the same total rows over these many dates, against case a's."""


# -- child processes ------------------------------------------------------------------


@dataclass
class Measured:
    """One child process: wall clock, exit code, memory, CPU and Spark jobs."""

    name: str
    argv: list[str]
    rc: int | None = None
    seconds: float = 0.0
    java_rss_mb: float = 0.0
    tree_rss_mb: float = 0.0
    cpu_s: float = 0.0
    load_before: float = 0.0
    load_mean: float = 0.0
    """Mean 1-minute load average over the run (samples every 0.2 s)."""
    max_procs: int = 0
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


# -- event logs -------------------------------------------------------------------------

_DIGITS = re.compile(r"\d+")


def eventlog_summary(folder: Path, watch: dict[str, str] | None = None) -> dict[str, Any]:
    """Spark jobs and SQL executions from an event-log folder.

    ``watch`` maps a label to a path: the number of SQL executions whose physical plan
    or description mentions that path (a scan of it) is reported per label.
    """
    jobs = 0
    job_start: dict[tuple[str, int], int] = {}
    job_desc: dict[tuple[str, int], str] = {}
    job_ms: dict[str, float] = defaultdict(float)
    job_count: dict[str, int] = defaultdict(int)
    sql = 0
    touching: dict[str, int] = {label: 0 for label in (watch or {})}
    app_ms = 0
    # Spark 4 writes a folder per application (eventlog_v2_*, rolling files) or one file.
    files = [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith((".", "appstatus"))
    ]
    for path in files if folder.is_dir() else []:
        app_start = app_end = last = 0
        with open(path, errors="replace") as lines:
            for line in lines:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(ev, dict):
                    continue
                kind = ev.get("Event", "")
                last = max(last, ev.get("Timestamp") or ev.get("time") or 0)
                if kind == "SparkListenerApplicationStart":
                    app_start = ev.get("Timestamp", 0)
                elif kind == "SparkListenerApplicationEnd":
                    app_end = ev.get("Timestamp", 0)
                elif kind == "SparkListenerJobStart":
                    jobs += 1
                    key = (path.name, ev["Job ID"])
                    job_start[key] = ev.get("Submission Time", 0)
                    props = ev.get("Properties") or {}
                    desc = props.get("spark.job.description") or ""
                    if not desc:
                        stages = ev.get("Stage Infos") or [{}]
                        desc = stages[-1].get("Stage Name", "?")
                    job_desc[key] = _DIGITS.sub("N", desc)[:90]
                    last = max(last, job_start[key])
                elif kind == "SparkListenerJobEnd":
                    key = (path.name, ev["Job ID"])
                    end = ev.get("Completion Time", 0)
                    last = max(last, end)
                    if key in job_start:
                        desc = job_desc[key]
                        job_ms[desc] += end - job_start[key]
                        job_count[desc] += 1
                elif kind.endswith("SparkListenerSQLExecutionStart"):
                    sql += 1
                    text = f"{ev.get('description', '')}\n{ev.get('physicalPlanDescription', '')}"
                    for label, watched in (watch or {}).items():
                        if watched in text:
                            touching[label] += 1
        if app_start:
            app_ms += (app_end or last) - app_start
    top = sorted(job_ms.items(), key=lambda kv: -kv[1])[:10]
    return {
        "spark_jobs": jobs,
        "sql_executions": sql,
        "job_seconds": round(sum(job_ms.values()) / 1000, 2),
        "app_seconds": round(app_ms / 1000, 2),
        "sql_touching": touching,
        "top_jobs": [
            {"job": desc, "count": job_count[desc], "seconds": round(ms / 1000, 2)}
            for desc, ms in top
        ],
    }


# -- Delta log, read without Spark ------------------------------------------------------


def delta_versions(table: Path) -> list[int]:
    log = table / "_delta_log"
    return sorted(int(p.stem) for p in log.glob("*.json") if p.stem.isdigit())


def delta_commit(table: Path, version: int) -> dict[str, Any]:
    """commitInfo of one version plus its add/remove action counts."""
    info: dict[str, Any] = {}
    adds = removes = 0
    with open(table / "_delta_log" / f"{version:020d}.json") as lines:
        for line in lines:
            action = json.loads(line)
            if "commitInfo" in action:
                info = action["commitInfo"]
            adds += "add" in action
            removes += "remove" in action
    return {
        "version": version,
        "operation": info.get("operation"),
        "operationMetrics": info.get("operationMetrics", {}),
        "userMetadata": info.get("userMetadata"),
        "add_actions": adds,
        "remove_actions": removes,
    }


def _commit_infos(table: Path) -> list[dict[str, Any]]:
    """Every commit of a Delta table: its commitInfo plus the stats of the rows it added."""
    out = []
    for version in delta_versions(table) if (table / "_delta_log").is_dir() else []:
        info: dict[str, Any] = {"version": version, "added": []}
        with open(table / "_delta_log" / f"{version:020d}.json") as lines:
            for line in lines:
                action = json.loads(line)
                if "commitInfo" in action:
                    info.update(action["commitInfo"])
                elif "add" in action and action["add"].get("stats"):
                    info["added"].append(json.loads(action["add"]["stats"]))
        out.append(info)
    return out


def _ms(commit: dict[str, Any], name: str) -> float:
    return int((commit.get("operationMetrics") or {}).get(name, 0)) / 1000


def _iso_ms(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def _median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return round(values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2, 2)


def _user_metadata(commit: dict[str, Any]) -> dict[str, Any] | None:
    text = commit.get("userMetadata")
    try:
        meta = json.loads(text) if text else None
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


UnitKey = tuple[Any, ...]


def _unit_of(meta: dict[str, Any]) -> tuple[UnitKey, dict[str, dict[str, Any]]] | None:
    """(unit key, {date: what the tag says of it}) of a ninelives commit's userMetadata.

    The unit format is ``{"job", "run_id", "unit", "partitions": {date: {"attempt",
    counts...}}}``; the per-partition one from before work units (``{"job",
    "partition", "run_id", "attempt", ...}``) reads as a unit of one date, so that
    ``--report-only`` still profiles an old workdir."""
    if isinstance(meta.get("partitions"), dict) and meta.get("unit") is not None:
        return ("unit", int(meta["unit"])), meta["partitions"]
    if meta.get("partition"):
        return ("partition", meta["partition"], meta.get("attempt")), {meta["partition"]: meta}
    return None


def _stat_range(files: list[dict[str, Any]], column: str) -> tuple[Any, Any]:
    lows = [(f.get("minValues") or {}).get(column) for f in files]
    highs = [(f.get("maxValues") or {}).get(column) for f in files]
    if not files or None in lows or None in highs:
        return None, None
    return min(lows), max(highs)


def _ledger_commits(table: Path) -> tuple[float | None, dict[UnitKey, float]]:
    """The first claim (a commit of ``running`` rows only) and, per unit, the commit of
    its outcome rows (``complete``/``failed``), from the ledger's file statistics.

    A unit's outcome is one commit of its partitions' rows, which carry the unit number
    (the ``unit`` column); an old ledger without it has one commit per partition."""
    claim = None
    outcomes: dict[UnitKey, float] = {}
    for c in _commit_infos(table):
        files = c["added"]
        if not files:
            continue
        low_state, high_state = _stat_range(files, "state")
        if low_state == "running":
            if claim is None and high_state == "running":
                claim = c["timestamp"]
            continue
        if high_state not in ("complete", "failed"):
            continue
        low_unit, high_unit = _stat_range(files, "unit")
        if low_unit is not None and low_unit == high_unit:
            outcomes.setdefault(("unit", int(low_unit)), c["timestamp"])
        first, last = _stat_range(files, "partition")
        attempt, same = _stat_range(files, "attempt")
        if first is not None and first == last and attempt == same:
            outcomes.setdefault(("partition", first, attempt), c["timestamp"])
    return claim, outcomes


def _seconds(later: float | None, earlier: float | None) -> float | None:
    return round((later - earlier) / 1000, 2) if later is not None and earlier is not None else None


UNIT_STEPS = ("to_quarantine_commit_s", "to_target_commit_s", "target_to_ledger_s", "unit_s")


def unit_profile(lh: Path, run: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where a ninelives run's time goes, unit by unit, from its lakehouse's Delta logs.

    A unit is one target commit, one quarantine commit and one ledger commit of its
    partitions' outcomes, all tagged with its number (the target and quarantine
    commits in ``userMetadata``, the ledger rows in their ``unit`` column). Per unit,
    between consecutive commits: the previous unit's ledger commit (the run's claim of
    all its units, for the first) to the quarantine commit (fingerprints, read,
    validate, stage, count and the rejects' write); the target commit since the
    quarantine's, or since the previous ledger commit in a unit without rejects (the
    write, whose own ``executionTimeMs`` is given for a MERGE); the ledger's outcome
    commit since the target's. Only the first run that wrote the target is profiled (later runs of
    the same lakehouse, the no-op rerun and the ``--force`` rerun, are not). ``run``, the
    child's measurement, adds the time from its start to the claim (JVM start, ledger
    read, plan, sizing the dates) and from the last unit's ledger commit to its exit.
    """
    units: dict[UnitKey, dict[str, Any]] = {}
    run_id = None
    for c in _commit_infos(lh / TARGET):
        meta = _user_metadata(c)
        found = _unit_of(meta) if meta else None
        if found is None:
            continue
        if run_id is None:
            run_id = meta.get("run_id")  # type: ignore[union-attr]
        if meta.get("run_id") != run_id:  # type: ignore[union-attr]
            continue
        key, parts = found
        units.setdefault(key, {"commit": c, "dates": sorted(parts), "parts": parts})
    quarantine: dict[UnitKey, float] = {}
    for c in _commit_infos(lh / "_ninelives" / f"quarantine_{JOB}"):
        meta = _user_metadata(c)
        found = _unit_of(meta) if meta else None
        if found is not None:
            quarantine.setdefault(found[0], c["timestamp"])
    claim, outcomes = _ledger_commits(lh / "_ninelives" / "ledger")
    rows: list[dict[str, Any]] = []
    previous = claim
    for key, unit in sorted(units.items(), key=lambda kv: kv[1]["commit"]["timestamp"]):
        commit = unit["commit"]
        target, q, done = commit["timestamp"], quarantine.get(key), outcomes.get(key)
        entry: dict[str, Any] = {
            "unit": key[1] if key[0] == "unit" else None,
            "first": unit["dates"][0],
            "last": unit["dates"][-1],
            "dates": len(unit["dates"]),
            "rows_written": sum(
                int(p.get("rows_written") or 0)
                for p in unit["parts"].values()
                if isinstance(p, dict)
            ),
            "operation": commit.get("operation"),
            "merge_s": (
                _ms(commit, "executionTimeMs") if commit.get("operation") == "MERGE" else None
            ),
            "to_quarantine_commit_s": _seconds(q, previous),
            "to_target_commit_s": _seconds(target, q if q is not None else previous),
            "target_to_ledger_s": _seconds(done, target),
            "unit_s": _seconds(done, previous),
        }
        entry["s_per_date"] = (
            round(entry["unit_s"] / entry["dates"], 3) if entry["unit_s"] else None
        )
        rows.append(entry)
        previous = done if done is not None else previous
    out: dict[str, Any] = {
        "run_id": run_id,
        "units": rows,
        "dates": sum(r["dates"] for r in rows),
        "totals": {
            step: round(sum(r[step] for r in rows if r[step] is not None), 2) for step in UNIT_STEPS
        },
    }
    if run and run.get("started_epoch") and claim is not None:
        started = run["started_epoch"] * 1000
        out["start_to_claim_s"] = _seconds(claim, started)
        out["after_last_unit_s"] = _seconds(started + run["seconds"] * 1000, previous)
    return out


def profile(work: Path, runs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Where the time goes, from the Delta logs the runs wrote (no Spark).

    ninelives (runs a and j): per unit, :func:`unit_profile`. A per-date split of
    ninelives' time is gone with work units: the dates of a unit share its commits.
    Bare loop, per date of run d: its write (a MERGE's source materialization is the
    read and dedupe) and the rest, medians over the dates, the first date excluded (JVM
    warm-up). Bulk (run i): its one commit, and when it came.
    """
    runs = runs or {}

    def latest(pattern: str) -> dict[str, Any] | None:
        # With --repeat the lakehouse is the last repeat's.
        found = [m for n, m in runs.items() if re.fullmatch(pattern, n)]
        return max(found, key=lambda m: m.get("started_epoch") or 0) if found else None

    out: dict[str, Any] = {}
    for label, folder, run in (
        ("ninelives", "lh_a", latest(r"a_full(_\d+)?")),
        *(
            (f"dates_{n}", f"lh_j{n}", runs[f"j_dates{n}"])
            for n in sorted(int(x[7:]) for x in runs if re.fullmatch(r"j_dates\d+", x))
        ),
    ):
        if (work / folder / TARGET / "_delta_log").is_dir():
            out[label] = unit_profile(work / folder, run)
    bare: dict[str, list[float]] = defaultdict(list)
    log = work / "logs" / "d_bare.log"
    totals = (
        [float(x) for x in re.findall(r"bare \S+ done in ([\d.]+)s", log.read_text())]
        if log.is_file()
        else []
    )
    bare_writes = [
        c for c in _commit_infos(work / "lh_d" / TARGET) if c.get("operation") in ("WRITE", "MERGE")
    ]
    # A killed or unfinished loop has fewer writes than dates: pair what is there.
    for total, write in list(zip(totals, bare_writes, strict=False))[1:]:
        bare["partition"].append(total)
        if write.get("operation") == "MERGE":
            bare["MERGE"].append(_ms(write, "executionTimeMs"))
            bare["  of which materialize source"].append(_ms(write, "materializeSourceTimeMs"))
            bare["  of which scan for matches"].append(_ms(write, "scanTimeMs"))
            bare["  of which write"].append(_ms(write, "rewriteTimeMs"))
            bare["before the MERGE"].append(total - _ms(write, "executionTimeMs"))
    out["bare"] = {k: _median(v) for k, v in bare.items()}
    out["bare_dates"] = len(bare["partition"])
    writes = [c for c in _commit_infos(work / "lh_i" / TARGET) if c.get("operation") == "WRITE"]
    if writes:
        commit, run = writes[-1], latest(r"i_bulk(_\d+)?")
        metrics = commit.get("operationMetrics") or {}
        started = run["started_epoch"] * 1000 if run and run.get("started_epoch") else None
        out["bulk"] = {
            "operation": commit.get("operation"),
            "rows": int(metrics.get("numOutputRows", 0)),
            "files": int(metrics.get("numFiles", 0)),
            "start_to_commit_s": _seconds(commit["timestamp"], started),
            "after_commit_s": _seconds(started + run["seconds"] * 1000, commit["timestamp"])
            if started is not None and run
            else None,
        }
    return out


def committed_dates(table: Path) -> dict[str, list[str]]:
    """Per run (``run_id``, in commit order), the dates its ninelives commits of the
    target cover (their userMetadata)."""
    dates: dict[str, set[str]] = {}
    for c in _commit_infos(table):
        meta = _user_metadata(c)
        found = _unit_of(meta) if meta else None
        if found is not None:
            dates.setdefault(str(meta.get("run_id")), set()).update(found[1])  # type: ignore[union-attr]
    return {run: sorted(days) for run, days in dates.items()}


# -- the benchmark ----------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.workdir).resolve()
        self.days = args.days
        self.rows_requested = args.rows
        self.rows_per_day = args.rows // args.days
        self.rows = self.rows_per_day * self.days
        self.dates = [START + dt.timedelta(days=n) for n in range(self.days)]
        self.landing = self.work / "landing"
        # Case j: the same total rows over more dates, each size in a landing of its own.
        self.scaling = [n for n in args.scaling_days if n != self.days and args.rows // n >= 1]
        self.timeout = args.timeout
        self.runs: dict[str, Measured] = {}
        self.details: dict[str, Any] = {}

    # paths and commands

    def lakehouse(self, case: str) -> Path:
        return self.work / f"lh_{case}"

    def fresh_lakehouse(self, case: str) -> Path:
        path = self.lakehouse(case)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def landing_for(self, days: int) -> Path:
        return self.landing if days == self.days else self.work / f"landing-{days}d"

    def dates_for(self, days: int) -> list[dt.date]:
        return [START + dt.timedelta(days=n) for n in range(days)]

    def conf(self, name: str, *, eventlog: bool = True, landing: Path | None = None) -> Path:
        """A TOML config for one child; its own event-log folder."""
        confs = self.work / "conf"
        confs.mkdir(parents=True, exist_ok=True)
        text = (
            "[lakehouse]\n"
            f'landing = "{landing or self.landing}"\n'
            "[spark]\n"
            f'master = "{self.args.master}"\n'
            "shuffle_partitions = 4\n"
            'driver_memory = "4g"\n'
        )
        folder = self.eventlog_dir(name)
        shutil.rmtree(folder, ignore_errors=True)  # never report an older run's log
        if eventlog and (self.args.eventlog == "all" or name in EVENTLOG_RUNS[self.args.eventlog]):
            folder.mkdir(parents=True)
            text += (
                "[spark.extra]\n"
                '"spark.eventLog.enabled" = "true"\n'
                f'"spark.eventLog.dir" = "{folder.as_uri()}"\n'
                '"spark.eventLog.compress" = "false"\n'
            )
        path = confs / f"{name}.toml"
        path.write_text(text)
        return path

    def eventlog_dir(self, name: str) -> Path:
        return self.work / "eventlogs" / name

    def ninelives(
        self, name: str, lakehouse: Path, *args: str, landing: Path | None = None
    ) -> list[str]:
        return [
            PYTHON,
            "-m",
            "framework.cli",
            "run",
            JOB,
            *args,
            "--lakehouse",
            str(lakehouse),
            "--conf",
            str(self.conf(name, landing=landing)),
        ]

    def all_dates(self, days: int | None = None) -> list[str]:
        dates = self.dates_for(days) if days else self.dates
        return ["--from", dates[0].isoformat(), "--to", dates[-1].isoformat()]

    def baseline(self, name: str, mode: str, *args: str) -> list[str]:
        return [PYTHON, str(BENCH / "baselines.py"), mode, "--conf", str(self.conf(name)), *args]

    def measure(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        kill_after: float | None = None,
        kill_after_cpu: float | None = None,
        kill_when: Callable[[], bool] | None = None,
    ) -> Measured:
        result = run_child(
            name,
            argv,
            workdir=self.work,
            env=child_env(env),
            timeout=self.timeout,
            kill_after=kill_after,
            kill_after_cpu=kill_after_cpu,
            kill_when=kill_when,
        )
        folder = self.eventlog_dir(name)
        if folder.is_dir():
            result.eventlog = eventlog_summary(
                folder, {"landing": str(self.landing), "target": TARGET}
            )
        self.runs[name] = result
        return result

    def expect(self, run: Measured, *rcs: int) -> None:
        if run.rc not in rcs:
            tail = Path(run.log).read_text(errors="replace").splitlines()[-15:]
            raise SystemExit(
                f"[bench] {run.name} exited {run.rc}, expected {rcs}; log {run.log}:\n"
                + "\n".join(tail)
            )

    # seeding

    def seed(self, days: int | None = None) -> None:
        """Landing data of ``days`` dates (default ``--days``), ``rows // days`` a day."""
        days = days or self.days
        landing = self.landing_for(days)
        rows_per_day = self.rows_requested // days
        marker = landing / ".bench-seed.json"
        want = {"days": days, "rows_per_day": rows_per_day, "seed": SEED}
        key = "seed" if days == self.days else f"seed_{days}"
        if marker.is_file():
            have = json.loads(marker.read_text())
            if {k: have.get(k) for k in want} == want:
                print(f"[bench] reusing landing data {landing} ({have})", flush=True)
                self.details[key] = have
                return
        shutil.rmtree(landing, ignore_errors=True)
        name = "seed" if days == self.days else f"seed_{days}"
        run = self.measure(
            name,
            [
                PYTHON,
                "-m",
                "framework.cli",
                "seed",
                "--days",
                str(days),
                "--rows-per-day",
                str(rows_per_day),
                "--seed",
                str(SEED),
                "--lakehouse",
                str(self.fresh_lakehouse(name)),
                "--conf",
                str(self.conf(name, eventlog=False, landing=landing)),
            ],
        )
        self.expect(run, 0)
        text = Path(run.log).read_text()
        found = re.search(
            r"seeded ([\d,]+) lines \(([\d,]+) re-delivered, ([\d,]+) malformed", text
        )
        info: dict[str, Any] = {**want, "seed_s": round(run.seconds, 1)}
        if found:
            lines, dups, bad = (int(g.replace(",", "")) for g in found.groups())
            info.update(lines=lines, duplicate_lines=dups, malformed_lines=bad)
        marker.write_text(json.dumps(info))
        self.details[key] = info

    # cases

    def case_a(self, suffix: str = "") -> None:
        lh = self.fresh_lakehouse("a")
        name = f"a_full{suffix}"
        self.expect(self.measure(name, self.ninelives(name, lh, *self.all_dates())), 0)

    def case_b_crash(self) -> None:
        """a's command, SIGKILLed (process group) once 90 % of the work is done.

        A crash point after the 27th date no longer means 27 dates of work: the dates
        are claimed unit by unit, and all 30 may be one unit. By default (``--kill-clock
        dates``) the harness kills the run at the first poll at which the target's log
        holds commits for 90 % of the dates (within 0.2 s of the target commit of the
        unit that holds the 27th date, the unit's last write: the rerun heals that unit
        from it); ``wall`` and
        ``cpu`` kill at 90 % of a's wall time or CPU seconds instead (a run faster than
        a may then end first). Its time is no metric (its peak RSS is); it runs alone.
        """
        full = self.best("a_full")
        assert full is not None, "case b needs case a's wall time"
        lh = self.fresh_lakehouse("b")
        clock = self.args.kill_clock
        need = max(1, round(CRASH_FRACTION * self.days))  # 27 of 30

        def dates_done() -> bool:
            return sum(len(days) for days in committed_dates(lh / TARGET).values()) >= need

        budget = round(CRASH_FRACTION * (full.seconds if clock == "wall" else full.cpu_s), 2)
        crash = self.measure(
            "b_crash",
            self.ninelives("b_crash", lh, *self.all_dates()),
            kill_after=budget if clock == "wall" else None,
            kill_after_cpu=budget if clock == "cpu" else None,
            kill_when=dates_done if clock == "dates" else None,
        )
        killed = crash.killed_after_s is not None and crash.rc == -signal.SIGKILL
        if crash.rc == 0:  # faster than a: it finished before the kill
            print("[bench] b_crash finished before the kill: the rerun has nothing to do")
        else:
            self.expect(crash, -signal.SIGKILL)
        done = [d for days in committed_dates(lh / TARGET).values() for d in days]
        what = {
            "wall": "of a's wall time",
            "cpu": "of a's CPU seconds",
            "dates": f"of the dates committed ({need} of {self.days})",
        }[clock]
        self.details["b_crash"] = {
            "kill": f"SIGKILL of the process group at {CRASH_FRACTION * 100:.0f} % {what}",
            "clock": clock,
            "kill_after_s": crash.killed_after_s,
            "kill_at_cpu_s": crash.killed_at_cpu_s,
            "of_full_s": round(full.seconds, 2),
            "of_full_cpu_s": round(full.cpu_s, 1),
            "killed": killed,
            "rc": crash.rc,
            "dates_committed": len(done),
            "dates": self.days,
            "last_committed": done[-1] if done else None,
        }
        print(
            f"[bench] b_crash: the target had {len(done)} of {self.days} dates committed",
            flush=True,
        )

    def best(self, base: str) -> Measured | None:
        """The fastest of a run and its ``--repeat`` copies."""
        return min(
            (m for n, m in self.runs.items() if re.fullmatch(rf"{base}(_\d+)?", n)),
            key=lambda m: m.seconds,
            default=None,
        )

    def case_b_rerun(self) -> None:
        lh = self.lakehouse("b")
        before = set(committed_dates(lh / TARGET))
        self.expect(self.measure("b_rerun", self.ninelives("b_rerun", lh, *self.all_dates())), 0)
        # Dates the rerun wrote to the target again; the others it settled from the killed
        # run's commits (or they were complete already).
        again = {
            d
            for run, days in committed_dates(lh / TARGET).items()
            if run not in before
            for d in days
        }
        if "b_crash" in self.details:
            self.details["b_crash"]["rerun_dates_written"] = len(again)

    def case_c(self) -> None:
        lh = self.lakehouse("a")
        away = self.landing.with_name(self.landing.name + ".away")
        self.landing.rename(away)  # a run that reads any source file now fails
        try:
            run = self.measure("c_noop", self.ninelives("c_noop", lh, *self.all_dates()))
            # The same rerun planned through Spark (before issue 17, every rerun was):
            spark = self.measure(
                "c_noop_spark",
                self.ninelives("c_noop_spark", lh, *self.all_dates()),
                env={"NINELIVES_NATIVE": "0"},
            )
        finally:
            away.rename(self.landing)
        self.expect(run, 0)
        self.expect(spark, 0)

    def case_d(self, suffix: str = "") -> None:
        target = self.fresh_lakehouse("d") / TARGET
        first, last = self.all_dates()[1], self.all_dates()[3]
        args = ("--target", str(target), "--from", first, "--to", last)
        name = f"d_bare{suffix}"
        self.expect(self.measure(name, self.baseline(name, "bare", *args)), 0)

    def case_d_nmbs(self) -> None:
        """The bare loop with the MERGE written with WHEN NOT MATCHED BY SOURCE (no metric:
        it shows what the file pruning of ninelives' MERGE is worth)."""
        target = self.fresh_lakehouse("d_nmbs") / TARGET
        first, last = self.all_dates()[1], self.all_dates()[3]
        args = ("--target", str(target), "--from", first, "--to", last)
        name = "d_bare_nmbs"
        self.expect(self.measure(name, self.baseline(name, "bare-nmbs", *args)), 0)

    def case_i(self, suffix: str = "") -> None:
        """Bulk: all dates in one Spark job and one replaceWhere commit."""
        target = self.fresh_lakehouse("i") / TARGET
        first, last = self.all_dates()[1], self.all_dates()[3]
        args = ("--target", str(target), "--from", first, "--to", last)
        name = f"i_bulk{suffix}"
        self.expect(self.measure(name, self.baseline(name, "bulk", *args)), 0)

    def case_j(self) -> None:
        """Scaling: a full run over the same total rows spread over more dates."""
        for days in self.scaling:
            lh = self.fresh_lakehouse(f"j{days}")
            name = f"j_dates{days}"
            argv = self.ninelives(name, lh, *self.all_dates(days), landing=self.landing_for(days))
            self.expect(self.measure(name, argv), 0)

    def case_e(self) -> None:
        target = self.fresh_lakehouse("e") / TARGET
        run = self.measure("e_plain", self.baseline("e_plain", "plain", "--target", str(target)))
        self.expect(run, 0)

    def case_f(self) -> None:
        target = self.fresh_lakehouse("f") / TARGET
        first, last = self.all_dates()[1], self.all_dates()[3]
        args = ("--target", str(target), "--from", first, "--to", last)
        crash = self.measure(
            "f_naive_crash",
            self.baseline(
                "f_naive_crash", "naive", *args, "--crash-after", str(min(27, self.days - 1))
            ),
        )
        self.expect(crash, -signal.SIGKILL)
        self.expect(
            self.measure("f_naive_rerun", self.baseline("f_naive_rerun", "naive", *args)), 0
        )

    def case_g(self) -> None:
        lh = self.lakehouse("a")
        table = lh / TARGET
        day = self.dates[min(14, self.days - 1)]
        before = max(delta_versions(table))
        run = self.measure(
            "g_force", self.ninelives("g_force", lh, "--date", day.isoformat(), "--force")
        )
        self.expect(run, 0)
        commits = [delta_commit(table, v) for v in delta_versions(table) if v > before]
        metric = lambda c, k: int((c["operationMetrics"] or {}).get(k, 0))  # noqa: E731
        self.details["g"] = {"date": day.isoformat(), "commits": commits}
        self.details["unchanged_rows_updated"] = sum(
            metric(c, "numTargetRowsUpdated") for c in commits
        )
        # numTargetFilesAdded for a MERGE; an empty marker append adds numFiles (0); the
        # add actions in the log count both.
        self.details["unchanged_files_added"] = sum(
            max(metric(c, "numTargetFilesAdded"), metric(c, "numFiles"), c["add_actions"])
            for c in commits
        )

    def parallel_sweep(self) -> None:
        for n in self.args.max_parallel:
            if n == 1:
                continue
            lh = self.fresh_lakehouse(f"p{n}")
            name = f"a_parallel{n}"
            self.expect(
                self.measure(
                    name, self.ninelives(name, lh, *self.all_dates(), "--max-parallel", str(n))
                ),
                0,
            )

    def inspect(self) -> dict[str, Any]:
        tables = [
            self.lakehouse(c) / TARGET
            for c in ("a", "b", "d", "f", "i")
            if (self.lakehouse(c) / TARGET).is_dir()
        ]
        ledgers = [
            self.lakehouse(c)
            for c in ("a", "b", *(f"j{n}" for n in self.scaling))
            if (self.lakehouse(c) / "_ninelives").is_dir()
        ]
        argv = self.baseline("inspect", "inspect")
        argv += [a for t in tables for a in ("--table", str(t))]
        argv += [a for lh in ledgers for a in ("--ledger", str(lh))]
        run = run_child("inspect", argv, workdir=self.work, env=child_env(), timeout=self.timeout)
        self.expect(run, 0)
        lines = Path(run.log).read_text().splitlines()
        line = next(x for x in lines if x.startswith("INSPECT "))
        return json.loads(line[len("INSPECT ") :])

    # results

    def results(self, inspected: dict[str, Any], load_start: tuple[float, ...]) -> dict[str, Any]:
        r = self.runs
        # With --repeat, the fastest of the repeated runs: load from other processes only
        # ever slows a run down.
        best = {base: self.best(base) for base in ("a_full", "d_bare", "i_bulk")}
        full = best["a_full"].seconds if best["a_full"] else None
        tables = inspected.get("tables", {})

        def seconds(name: str) -> float | None:
            m = best.get(name) or r.get(name)
            return round(m.seconds, 2) if m else None

        def ratio(name: str) -> float | None:
            s = seconds(name)
            return round(s / full, 4) if full and s else None

        def inverse(name: str) -> float | None:
            s = seconds(name)
            return round(full / s, 4) if full and s else None

        def dups(case: str) -> int | None:
            t = tables.get(str(self.lakehouse(case) / TARGET))
            return t["rows"] - t["distinct_keys"] if t else None

        def rss(*patterns: str) -> dict[str, float] | None:
            found = [m for n, m in r.items() if any(re.fullmatch(p, n) for p in patterns)]
            if not found:
                return None
            return {
                "java": round(max(m.java_rss_mb for m in found), 1),
                "tree": round(max(m.tree_rss_mb for m in found), 1),
            }

        cpu = {n: round(m.cpu_s, 1) for n, m in r.items()}

        def best_cpu(base: str) -> float | None:
            found = [v for n, v in cpu.items() if re.fullmatch(rf"{base}(_\d+)?", n)]
            return min(found, default=None)

        cpu_a, cpu_d, cpu_i = best_cpu("a_full"), best_cpu("d_bare"), best_cpu("i_bulk")
        scaling: dict[str, Any] = {}
        if full:
            scaling[str(self.days)] = {
                "run": best["a_full"].name,  # type: ignore[union-attr]
                "rows": self.rows,
                "rows_per_day": self.rows_per_day,
            }
        for days in self.scaling:
            if f"j_dates{days}" in r:
                scaling[str(days)] = {
                    "run": f"j_dates{days}",
                    "rows": (self.rows_requested // days) * days,
                    "rows_per_day": self.rows_requested // days,
                }
        prof = profile(self.work, {n: asdict(m) for n, m in r.items()})
        for days, entry in scaling.items():
            m = r[entry["run"]]
            units = prof.get("ninelives" if days == str(self.days) else f"dates_{days}") or {}
            entry.update(
                seconds=round(m.seconds, 2),
                cpu_s=round(m.cpu_s, 1),
                units=len(units.get("units") or []),
                peak_rss_mb={"java": round(m.java_rss_mb, 1), "tree": round(m.tree_rss_mb, 1)},
                vs_full=_div(m.seconds, full),
                cpu_vs_full=_div(m.cpu_s, cpu_a),
            )
        full_vs_bare, full_vs_plain = inverse("d_bare"), inverse("e_plain")
        out: dict[str, Any] = {
            "rows": self.rows,
            "full_s": round(full, 2) if full else None,
            "bare_s": seconds("d_bare"),
            "bare_nmbs_s": seconds("d_bare_nmbs"),
            "plain_s": seconds("e_plain"),
            "bulk_s": seconds("i_bulk"),
            "full_vs_bulk": inverse("i_bulk"),
            "full_vs_plain": full_vs_plain,
            "full_vs_bare": full_vs_bare,
            "recovery_ratio": ratio("b_rerun"),
            "noop_ratio": ratio("c_noop"),
            "noop_spark_ratio": ratio("c_noop_spark"),
            **{
                f"dates_{days}_vs_{self.days}": ratio(f"j_dates{days}")
                for days in sorted(self.scaling)
            },
            "overhead_vs_bare": full_vs_bare,  # the old names of full_vs_bare and _plain
            "overhead_vs_plain": full_vs_plain,
            "naive_duplicates": dups("f"),
            "ninelives_duplicates": dups("b"),
            "bulk_duplicates": dups("i"),
            "unchanged_rows_updated": self.details.get("unchanged_rows_updated"),
            "unchanged_files_added": self.details.get("unchanged_files_added"),
            "peak_rss_mb": {
                key: value
                for key, value in {
                    "a": rss(r"a_full(_\d+)?"),
                    "b": rss("b_crash", "b_rerun"),
                    "c": rss("c_noop"),
                    "d": rss(r"d_bare(_\d+)?"),
                    "e": rss("e_plain"),
                    "i": rss(r"i_bulk(_\d+)?"),
                    **{f"dates_{days}": rss(f"j_dates{days}") for days in self.scaling},
                }.items()
                if value is not None or key in ("a", "b")
            },
            # details
            "days": self.days,
            "rows_per_day": self.rows_per_day,
            "seed": self.details.get("seed"),
            "seeds": {k: v for k, v in self.details.items() if k.startswith("seed_")},
            "scaling": scaling,
            "seconds": {n: round(m.seconds, 2) for n, m in r.items()},
            "cpu_seconds": cpu,
            "cpu_ratios": {
                "recovery": _div(cpu.get("b_rerun"), cpu_a),
                "noop": _div(cpu.get("c_noop"), cpu_a),
                "vs_bare": _div(cpu_a, cpu_d),
                "vs_plain": _div(cpu_a, cpu.get("e_plain")),
                "vs_bulk": _div(cpu_a, cpu_i),
                **{
                    f"dates_{days}_vs_{self.days}": _div(cpu.get(f"j_dates{days}"), cpu_a)
                    for days in sorted(self.scaling)
                },
            },
            "parallel": {
                "1": round(full, 2) if full else None,
                **{
                    n.removeprefix("a_parallel"): round(m.seconds, 2)
                    for n, m in r.items()
                    if n.startswith("a_parallel")
                },
            },
            # full run at --max-parallel N / the (serial) bare loop: the bare loop does one
            # date at a time by definition, so N > 1 is not like for like.
            "overhead_vs_bare_parallel": {
                n.removeprefix("a_parallel"): _div(m.seconds, seconds("d_bare"))
                for n, m in r.items()
                if n.startswith("a_parallel")
            },
            "noop_exit_code_without_landing": r["c_noop"].rc if "c_noop" in r else None,
            # Of the Spark-planned rerun: the delta-rs one starts no JVM and has no log.
            "noop_sql_touching": r["c_noop_spark"].eventlog.get("sql_touching")
            if "c_noop_spark" in r
            else None,
            "noop_spark_jobs": r["c_noop_spark"].eventlog.get("spark_jobs")
            if "c_noop_spark" in r
            else None,
            "crash": self.details.get("b_crash"),
            "untimed_runs_overlapped": bool(self.details.get("overlapped")),
            "unchanged_rerun": self.details.get("g"),
            "inspected": inspected,
            "profile": prof,
            "runs": {n: asdict(m) for n, m in r.items()},
            "load_average": {"start": load_start, "end": os.getloadavg()},
            "machine": machine(),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        return out


def _div(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


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


def verdict(metric: str, value: Any) -> str:
    if value is None:
        return "not measured"
    op, target, _ = TARGETS[metric]
    ok = value <= target if op == "<=" else value == target
    return "met" if ok else "**missed**"


CASE_TEXT = {
    "inspect": "counts rows and keys (not timed)",
    "seed": "seed the landing data (seed_orders)",
    "a_full": "a: full run, all dates",
    "b_crash": "b: a's command, SIGKILLed at 90 % of a's wall time",
    "b_rerun": "b: rerun after the kill",
    "c_noop": "c: no-op rerun, landing renamed away",
    "c_noop_spark": "c: the same, planned through Spark (NINELIVES_NATIVE=0)",
    "d_bare": "d: bare hand-written loop of the same writes",
    "d_bare_nmbs": "bare loop, MERGE with WHEN NOT MATCHED BY SOURCE (reference)",
    "a_parallel2": "a with `--max-parallel 2`",
    "a_parallel4": "a with `--max-parallel 4`",
    "e_plain": "e: plain bulk partitioned append",
    "f_naive_crash": "f: naive append loop killed after 27 dates",
    "f_naive_rerun": "f: naive rerun from scratch",
    "g_force": "g: `--force` rerun of one unchanged date",
    "i_bulk": "i: bulk: one Spark job, one replaceWhere commit of all dates",
}


def case_text(name: str) -> str:
    if name in CASE_TEXT:
        return CASE_TEXT[name]
    if found := re.fullmatch(r"j_dates(\d+)", name):
        return f"j: full run, the same rows over {found[1]} dates"
    if found := re.fullmatch(r"seed_(\d+)", name):
        return f"seed the landing data of {found[1]} dates"
    if found := re.fullmatch(r"(a_full|d_bare|i_bulk)_(\d+)", name):
        return f"{CASE_TEXT[found[1]]} (repeat {found[2]})"
    return name


TIMED = (
    "a_full",
    "d_bare",
    "i_bulk",
    "e_plain",
    "c_noop",
    "c_noop_spark",
    "b_rerun",
    "j_dates",
)


def with_aliases(res: dict[str, Any]) -> dict[str, Any]:
    """An older latest.json read with today's names (``--report-only``)."""
    for old, new in ALIASES.items():
        if res.get(new) is None and res.get(old) is not None:
            res[new] = res[old]
    return res


def _secs(value: Any) -> str:
    return "—" if value is None else f"{value:.2f}"


def _value(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_markdown(res: dict[str, Any], path: Path, argv: list[str]) -> None:
    m = res["machine"]
    seed = res.get("seed") or {}
    lines = [
        "# ninelives benchmark results",
        "",
        f"Generated by `bench/bench.py` on {res['finished_at']} "
        f"(`{' '.join(['python', 'bench/bench.py', *argv])}`). How it measures, and what the "
        "numbers mean for the framework: [README.md](README.md).",
        "",
        f"- data: {res['rows']:,} good events over {res['days']} dates "
        f"({res['rows_per_day']:,} a day)"
        + (
            f"; {seed['lines']:,} source lines incl. {seed['duplicate_lines']:,} re-delivered "
            f"and {seed['malformed_lines']:,} malformed"
            if "lines" in seed
            else ""
        ),
        f"- machine: {m['nproc']} CPUs (`nproc`), {m['memory_gb']} GB RAM, {m['cpu_model']}; "
        f"{m['java']}; Python {m['python']}, pyspark {m['pyspark']}, delta-spark "
        f"{m['delta_spark']}; Spark `local[2]`, 4 shuffle partitions, 4g driver",
        f"- load average (1/5/15 min) at start {fmt_load(res['load_average']['start'])}, "
        f"at end {fmt_load(res['load_average']['end'])}: the machine is shared, so wall "
        "times carry noise from other processes; CPU seconds are given alongside",
        "",
        "## Targets",
        "",
        "| case | metric | target | measured (wall s) | | the same in CPU s |",
        "|---|---|---|---|---|---|",
    ]
    cpu_ratios = res.get("cpu_ratios") or {}
    for metric, (op, target, case) in TARGETS.items():
        value = res.get(metric)
        cpu = cpu_ratios.get(CPU_KEYS.get(metric, ""))
        cpu_shown = f"{cpu:.3f} ({verdict(metric, cpu)})" if cpu is not None else ""
        lines.append(
            f"| {case} | `{metric}` | {op} {target} | {_value(value)} | {verdict(metric, value)} "
            f"| {cpu_shown} |"
        )
    for metric in sorted(k for k in res if re.fullmatch(r"dates_\d+_vs_\d+", k)):
        if metric in TARGETS:
            continue
        cpu = cpu_ratios.get(metric)
        lines.append(
            f"| j | `{metric}` | — | {_value(res.get(metric))} | "
            f"| {'' if cpu is None else f'{cpu:.3f}'} |"
        )
    naive = res.get("naive_duplicates")
    lines.append(f"| f | `naive_duplicates` (the problem) | — | {naive} | | |")
    runs = res.get("runs") or {}
    uneven = [
        f"{name} ran at a mean load of {runs[name].get('load_mean', 0):.1f} against "
        f"{runs['a_full'].get('load_mean', 0):.1f} for a_full"
        for name in runs
        if name != "a_full"
        and name.startswith(TIMED)
        and "a_full" in runs
        and abs(runs[name].get("load_mean", 0) - runs["a_full"].get("load_mean", 0))
        > 0.25 * max(runs["a_full"].get("load_mean", 0), 1.0)
    ]
    if uneven:
        lines += [
            "",
            "**Uneven load**: "
            + "; ".join(uneven)
            + ". Other processes on this shared machine slow a run's wall clock more than "
            "its CPU seconds, so for these ratios the CPU-second column is the like-for-like "
            "one.",
        ]
    lines += [
        "",
        f"`full_s` = {res.get('full_s')} s"
        + "".join(
            f", {label} {res[key]} s"
            for key, label in (("bulk_s", "bulk"), ("bare_s", "bare"), ("plain_s", "plain"))
            if res.get(key) is not None
        )
        + " (with `--repeat`, the fastest of the repeats)"
        + (
            f"; the bare loop with a `WHEN NOT MATCHED BY SOURCE` MERGE took {res['bare_nmbs_s']} s"
            if res.get("bare_nmbs_s")
            else ""
        )
        + ". The same "
        "ratios in CPU seconds of the child's process tree, less sensitive to the shared "
        f"load: {', '.join(f'{k} {v}' for k, v in cpu_ratios.items() if v is not None)}. "
        "`overhead_vs_bare` and `overhead_vs_plain` in latest.json are the former names "
        "of `full_vs_bare` and `full_vs_plain`.",
    ]
    crash = res.get("crash")
    if isinstance(crash, dict):
        lines += [
            "",
            f"Case b: {crash['kill']}: after {_secs(crash['kill_after_s'])} s and "
            f"{_secs(crash.get('kill_at_cpu_s'))} CPU s (a took {crash['of_full_s']} s, "
            f"{_secs(crash.get('of_full_cpu_s'))} CPU s); exit code {crash['rc']}"
            + ("" if crash.get("killed") else " (**it finished before the kill**)")
            + f". By then the target had {crash['dates_committed']} of {crash['dates']} dates "
            "committed"
            + (
                f"; the rerun wrote {crash['rerun_dates_written']} dates to the target again"
                if crash.get("rerun_dates_written") is not None
                else ""
            )
            + ".",
        ]
    elif crash:
        lines += ["", f"Case b: crash point `{crash}`."]
    scaling = res.get("scaling") or {}
    if len(scaling) > 1:
        lines += [
            "",
            "## Dates: the same rows over more dates (case j)",
            "",
            "Full runs over the same total rows, spread over more dates (landing data of "
            "their own); the ratios are against the first row, case a.",
            "",
            "| dates | rows | a day | units | wall s | CPU s | / a (wall) | / a (CPU) "
            "| JVM / tree peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for days, e in sorted(scaling.items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"| {days} | {e['rows']:,} | {e['rows_per_day']:,} | {e['units']} "
                f"| {e['seconds']:.1f} | {e['cpu_s']:.0f} | {_value(e['vs_full'])} "
                f"| {_value(e['cpu_vs_full'])} | {_rss(e['peak_rss_mb'])} |"
            )
    rss = res.get("peak_rss_mb") or {}
    if rss:
        lines += [
            "",
            "## Peak RSS (case h)",
            "",
            "The JVM alone, and summed over the child's process tree (the Python driver "
            "and any PySpark worker processes; pages shared between forked workers count "
            "once per process). The JVM's heap is at most 4g (`driver_memory`).",
            "",
            "| case | JVM / tree MB |",
            "|---|---|",
            *(f"| {case} | {_rss(value)} |" for case, value in rss.items()),
        ]
    lines += [
        "",
        "Why a target is missed: [README.md, Findings](README.md#findings) (the latest round "
        "is last); the per-unit split from the Delta logs is below.",
        "",
        "## Runs",
        "",
        "| run | what | wall s | CPU s | rc | JVM peak RSS MB | tree peak RSS MB "
        "| load at start / mean | Spark jobs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    untimed = ("f_naive_crash", "f_naive_rerun", "g_force")
    for name, run in res["runs"].items():
        jobs = run["eventlog"].get("spark_jobs", "—") if run["eventlog"] else "—"
        what = case_text(name)
        if res.get("untimed_runs_overlapped") and name in untimed:
            what += " †"
        lines.append(
            f"| {name} | {what} | {run['seconds']:.1f} | {run['cpu_s']:.0f} | "
            f"{run['rc']} | {run['java_rss_mb']:.0f} | {run['tree_rss_mb']:.0f} | "
            f"{run['load_before']:.1f} / {run.get('load_mean', 0):.1f} | {jobs} |"
        )
    if res.get("untimed_runs_overlapped"):
        lines += [
            "",
            "† not a timed metric; these runs ran side by side (their wall and CPU seconds "
            "include each other's contention). All other runs ran alone.",
        ]
    par = {k: v for k, v in res["parallel"].items() if v}
    if len(par) > 1:
        bare = res.get("bare_s")
        lines += [
            "",
            "## `--max-parallel`",
            "",
            "Full runs (case a) with N units at a time in one Spark application, "
            "run right after a and d. The bare loop is serial by definition, so only N = 1 "
            "is like for like (`full_vs_bare`); the others show what a night gains "
            "from the option.",
            "",
            "| N | wall s | CPU s | speed-up vs N = 1 | / bare (serial) |",
            "|---|---|---|---|---|",
        ]
        for n, secs in par.items():
            run = res["runs"].get("a_full" if n == "1" else f"a_parallel{n}") or {}
            cpu = f"{run['cpu_s']:.0f}" if run else "—"
            vs_bare = f"{secs / bare:.3f}" if bare else "—"
            lines.append(f"| {n} | {secs:.1f} | {cpu} | {par['1'] / secs:.2f} | {vs_bare} |")
    c = res["runs"].get("c_noop")
    spark = res["runs"].get("c_noop_spark")
    if c:
        touching = res.get("noop_sql_touching") or {}
        lines += [
            "",
            "## No-op rerun reads no data",
            "",
            f"The landing folder was renamed away for the whole no-op run, which still "
            f"exited {c['rc']}"
            + (
                "; it has no event log: it planned through delta-rs and started no JVM."
                if not c["eventlog"]
                else "."
            )
            + (
                f" The same rerun planned through Spark (`NINELIVES_NATIVE=0`): its event log "
                f"has {res.get('noop_spark_jobs')} Spark jobs and "
                f"{spark['eventlog'].get('sql_executions')} SQL executions; SQL executions "
                f"whose plan mentions the landing folder: {touching.get('landing')}, the "
                f"target `{TARGET}`: {touching.get('target')} (the jobs read the ledger and "
                "append the run history)."
                if spark and spark["eventlog"]
                else ""
            ),
        ]
    g = res.get("unchanged_rerun")
    if g:
        lines += [
            "",
            "## Unchanged `--force` rerun",
            "",
            f"Date {g['date']}; commits it made to the target:",
            "",
        ]
        lines += [
            "| version | operation | numTargetRowsUpdated | numTargetFilesAdded | add actions |",
            "|---|---|---|---|---|",
        ]
        for commit in g["commits"]:
            om = commit["operationMetrics"] or {}
            updated = om.get("numTargetRowsUpdated", "—")
            added = om.get("numTargetFilesAdded", om.get("numFiles", "—"))
            lines.append(
                f"| {commit['version']} | {commit['operation']} | {updated} | {added} "
                f"| {commit['add_actions']} |"
            )
    lines += _profile_markdown(res.get("profile") or {})
    lines += [
        "",
        "## Where the time goes (Spark event logs)",
        "",
        "Timed runs write no event log (it costs about 4 MB of JSON per partition); "
        "`--eventlog all` adds one to every run. The py-spy profile and the fixes it points "
        "to are in [README.md](README.md#findings).",
        "",
    ]
    days_of = {e["run"]: int(d) for d, e in scaling.items()}
    for name, run in res["runs"].items():
        if not name.startswith(("a_full", "d_bare", "i_bulk", "b_rerun", "c_noop", "j_dates")):
            continue
        if not run["eventlog"]:
            continue
        ev = run["eventlog"]
        days = days_of.get(name, res["days"])
        lines += [
            f"**{name}**: {ev['spark_jobs']} Spark jobs "
            f"({ev['spark_jobs'] / days:.1f} per date), {ev['job_seconds']} s inside jobs, "
            f"app {ev['app_seconds']} s of {run['seconds']:.1f} s wall.",
            "",
            "| Spark job (description) | count | s |",
            "|---|---|---|",
            *[
                f"| {t['job'].replace('|', '/')} | {t['count']} | {t['seconds']} |"
                for t in ev["top_jobs"][:8]
            ],
            "",
        ]
    path.write_text("\n".join(lines) + "\n")


def _profile_markdown(prof: dict[str, Any]) -> list[str]:
    """RESULTS.md's "Where a unit's time goes": ninelives per unit, bare and bulk."""
    lines: list[str] = []
    runs = [
        (label, p)
        for label, p in prof.items()
        if (label == "ninelives" or label.startswith("dates_"))
        and isinstance(p, dict)
        and p.get("units")
    ]
    if runs:
        lines += [
            "",
            "## Where a unit's time goes",
            "",
            "A work unit is one Spark pass over its dates and one commit per table: the "
            "target, the quarantine, the ledger's outcome rows. Its dates share those "
            "commits, so there is no per-date split any more: per unit, from the Delta "
            "logs the run wrote (`unit_profile` in bench.py), the time from the previous "
            "unit's ledger commit (the run's claim, for the first unit) to the quarantine "
            "commit (fingerprints, read, validate, stage, count, the rejects' write), then "
            'to the target commit, then to the ledger commit. "start → claim" is the JVM\'s '
            'start, the ledger read and the plan; "after" is the run\'s end after its last '
            "unit (run history, shutdown).",
        ]
    for label, p in runs:
        title = "run a" if label == "ninelives" else f"run j, {label.removeprefix('dates_')} dates"
        lines += [
            "",
            f"**{title}**: {len(p['units'])} unit(s), {p['dates']} dates; start → claim "
            f"{_secs(p.get('start_to_claim_s'))} s, after the last unit "
            f"{_secs(p.get('after_last_unit_s'))} s.",
            "",
            "| unit | dates | rows written | write | → quarantine commit s | → target s "
            "| → ledger s | unit s | s a date |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        shown = p["units"] if len(p["units"]) <= 16 else [*p["units"][:8], None, *p["units"][-4:]]
        for u in shown:
            if u is None:
                lines.append("| … | | | | | | | | |")
                continue
            write = u["operation"] or "—"
            if u.get("merge_s") is not None:
                write += f" ({u['merge_s']} s)"
            lines.append(
                f"| {_value(u['unit'])} | {u['first']}..{u['last']} ({u['dates']}) "
                f"| {u['rows_written']:,} | {write} | {_secs(u.get('to_quarantine_commit_s'))} "
                f"| {_secs(u.get('to_target_commit_s'))} | {_secs(u.get('target_to_ledger_s'))} "
                f"| {_secs(u['unit_s'])} | {_value(u['s_per_date'])} |"
            )
        t = p.get("totals") or {}
        lines.append(
            f"| **all** | {p['dates']} | | | {_secs(t.get('to_quarantine_commit_s'))} "
            f"| {_secs(t.get('to_target_commit_s'))} "
            f"| {_secs(t.get('target_to_ledger_s'))} | {_secs(t.get('unit_s'))} | |"
        )
    bare, bulk = prof.get("bare") or {}, prof.get("bulk")
    if bare:
        lines += [
            "",
            "**Bare loop (run d), one date**: medians over its dates, the first left out "
            f"(JVM warm-up); {prof.get('bare_dates')} dates, timed by the loop's own log "
            "lines, a MERGE's parts from its commit metrics (a date is MERGEd only where "
            "the partition already has files).",
            "",
            "| step | s |",
            "|---|---|",
            *(
                f"| {'one date' if step == 'partition' else step.strip()} | {value} |"
                for step, value in bare.items()
            ),
        ]
    if bulk:
        lines += [
            "",
            f"**Bulk (run i)**: one {bulk['operation']} commit of {bulk['rows']:,} rows in "
            f"{bulk['files']} files, {_secs(bulk['start_to_commit_s'])} s after the start "
            f"(JVM start, read, dedupe, write); {_secs(bulk['after_commit_s'])} s after it "
            "to the exit.",
        ]
    return lines


def _rss(value: dict[str, float] | None) -> str:
    return f"{value['java']:.0f} / {value['tree']:.0f}" if value else "—"


def fmt_load(load: Any) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def write_chart(res: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[bench] matplotlib not installed: no chart (pip install matplotlib)", flush=True)
        return
    metrics = [m for m, (op, _, _) in TARGETS.items() if op == "<="]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3 * len(metrics), 3.6))
    for ax, metric in zip(axes, metrics, strict=True):
        value = res.get(metric)
        target = TARGETS[metric][1]
        ok = value is not None and value <= target
        ax.bar([0], [value or 0], color="tab:green" if ok else "tab:red", width=0.6)
        ax.axhline(target, color="black", linestyle="--", label=f"target ≤ {target}")
        ax.set_title(metric, fontsize=10)
        ax.set_xticks([])
        top = max(value or 0, target) * 1.3
        ax.set_ylim(0, top)
        if value is not None:
            ax.text(0, value, f"{value:.3f}", ha="center", va="bottom")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(
        f"ninelives bench, {res['rows']:,} rows, {res['days']} dates ({res['finished_at']})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ninelives benchmark (issue 7)")
    parser.add_argument("--rows", type=int, default=10_000_000, help="good events in all")
    parser.add_argument("--days", type=int, default=30, help="date partitions")
    parser.add_argument(
        "--workdir",
        default=None,
        help="scratch folder (default /tmp/ninelives-bench/rows-<ROWS>: each size keeps its "
        "seeded landing data, so a 1M run does not reseed the 10M data)",
    )
    parser.add_argument(
        "--seed-only", action="store_true", help="seed the landing data for --rows and stop"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite RESULTS.md and the chart from --results/latest.json, adding the "
        "per-unit profile from the workdir's Delta logs; runs nothing",
    )
    parser.add_argument(
        "--cases",
        default="abcdefgij",
        help="subset of a-j (b, c, d, e, g, i and j also run a; h reports peak RSS, of "
        "every run anyway)",
    )
    parser.add_argument(
        "--scaling-days",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=list(SCALING_DAYS),
        help="case j: the same rows over these many dates (default 90,365)",
    )
    parser.add_argument(
        "--max-parallel",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[1, 2, 4],
        help="--max-parallel values for --parallel-sweep (default 1,2,4)",
    )
    parser.add_argument(
        "--parallel-sweep", action="store_true", help="also time full runs at each --max-parallel"
    )
    parser.add_argument(
        "--bare-nmbs",
        action="store_true",
        help="also time the bare loop with a WHEN NOT MATCHED BY SOURCE MERGE (scans the "
        "whole target per date: quadratic in the number of dates)",
    )
    parser.add_argument(
        "--serial",
        action="store_true",
        help="run the untimed runs (f, g) one at a time too; by default "
        "they run side by side to keep the benchmark short",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run a and d this many times, alternating; ratios use the fastest of each "
        "(other processes' load only ever slows a run down)",
    )
    parser.add_argument(
        "--kill-clock",
        choices=("dates", "wall", "cpu"),
        default="dates",
        help="case b: kill once the target's log holds 90%% of the dates (default), or at "
        "90%% of a's wall time or of its CPU seconds",
    )
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--timeout", type=float, default=3600, help="per child process, s")
    parser.add_argument(
        "--eventlog",
        choices=sorted(EVENTLOG_RUNS),
        default="noop",
        help="runs that write a Spark event log: noop (only c, to count its Spark jobs; "
        "default), all (every run, for profiling: it slows runs down) or none",
    )
    parser.add_argument("--results", default=str(RESULTS), help="folder for latest.json, png")
    parser.add_argument("--markdown", default=str(BENCH / "RESULTS.md"))
    args = parser.parse_args(argv)
    if args.days < 2 or args.rows < args.days:
        parser.error("need --days >= 2 and --rows >= --days")
    if set(args.cases) - set("abcdefghij"):
        parser.error("--cases takes letters a-j")
    if args.workdir is None:
        args.workdir = f"/tmp/ninelives-bench/rows-{args.rows}"
    return args


def report_only(args: argparse.Namespace, argv: list[str]) -> int:
    out = Path(args.results)
    res = with_aliases(json.loads((out / "latest.json").read_text()))
    if res.get("rows") != Bench(args).rows:
        raise SystemExit(f"[bench] {out / 'latest.json'} is for {res.get('rows')} rows")
    res["profile"] = profile(Path(args.workdir), res.get("runs"))
    text = json.dumps(res, indent=2, default=str) + "\n"
    (out / "latest.json").write_text(text)
    (out / f"rows-{args.rows}.json").write_text(text)
    write_chart(res, out / "ratios.png")
    write_markdown(res, Path(args.markdown), res.get("argv", argv))
    print(f"[bench] rewrote {args.markdown} and {out}/ from {out / 'latest.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.report_only:
        return report_only(args, [a for a in argv if a != "--report-only"])
    load_start = os.getloadavg()
    bench = Bench(args)
    bench.work.mkdir(parents=True, exist_ok=True)
    cases = set(args.cases)
    if cases & set("bcdeghij"):
        # Their ratios are against the full run (b's kill is timed by it too); c and g run
        # on its lakehouse.
        cases.add("a")
    if "h" in cases:
        cases.add("b")
    print(
        f"[bench] {bench.rows:,} rows over {bench.days} dates, cases {''.join(sorted(cases))}, "
        f"workdir {bench.work}, load {fmt_load(load_start)}",
        flush=True,
    )
    started = time.monotonic()
    bench.seed()
    if "j" in cases:
        for days in bench.scaling:
            bench.seed(days)
    if args.seed_only:
        return 0
    # Timed runs one at a time; a, d and i back to back, so that the ratios against the
    # baselines compare runs under similar load.
    for repeat in range(args.repeat):
        suffix = f"_{repeat + 1}" if repeat else ""
        if "a" in cases:
            bench.case_a(suffix)
        if "d" in cases:
            bench.case_d(suffix)
        if "i" in cases:
            bench.case_i(suffix)
    if args.bare_nmbs:
        bench.case_d_nmbs()
    if args.parallel_sweep:  # right after a and d: the same load, comparable ratios
        bench.parallel_sweep()
    for letter, case in (("e", bench.case_e), ("c", bench.case_c), ("j", bench.case_j)):
        if letter in cases:
            case()
    # b's killed run alone too: it is killed at 90 % of a's wall time, which is 90 % of
    # a's work only without other runs beside it. Then its rerun, timed.
    if "b" in cases:
        bench.case_b_crash()
        bench.case_b_rerun()
    # Runs whose duration is no metric (the naive loop of f, the forced rerun of g, which
    # reports Delta metrics) run side by side unless --serial.
    untimed = [
        case for letter, case in (("f", bench.case_f), ("g", bench.case_g)) if letter in cases
    ]
    if args.serial or len(untimed) < 2:
        for case in untimed:
            case()
    else:
        bench.details["overlapped"] = True
        with ThreadPoolExecutor(max_workers=len(untimed)) as pool:
            for future in [pool.submit(case) for case in untimed]:
                future.result()
    inspected = bench.inspect() if cases & set("abdfij") else {}
    res = bench.results(inspected, load_start)
    res["bench_seconds"] = round(time.monotonic() - started, 1)
    res["argv"] = argv
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(res, indent=2, default=str) + "\n"
    (out / "latest.json").write_text(text)
    (out / f"rows-{bench.rows_requested}.json").write_text(text)  # kept per size
    write_chart(res, out / "ratios.png")
    write_markdown(res, Path(args.markdown), argv)
    keys = ("rows", "full_s", *TARGETS, *(k for k in res if re.fullmatch(r"dates_\d+_vs_\d+", k)))
    summary = {k: res.get(k) for k in (*dict.fromkeys(keys), "naive_duplicates", "peak_rss_mb")}
    print("[bench] " + json.dumps(summary), flush=True)
    print(f"[bench] done in {res['bench_seconds']} s; wrote {out / 'latest.json'}, {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
