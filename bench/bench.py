"""The nightly benchmark: what a 30-date night costs with ninelives, and what recovery costs.

Every case is a real child process (``python -m framework.cli ...`` or
``bench/baselines.py``) on the SAME generated landing data, seeded once with
``jobs.landing.seed_orders`` (``rows // days`` good events per date) and reused while
its size matches. Each child gets the same TOML config (``local[2]``, 4 shuffle
partitions, 4g driver, Spark event log on) and its own fresh lakehouse. The benchmark
times each child's wall clock, polls its process tree every 0.2 s with psutil (peak RSS
of the JVM and of the whole tree, CPU seconds), and counts its Spark jobs from the
event log.

Cases::

    a  full run: orders_daily over all dates
    b  crash after 27 of 30 dates (NINELIVES_CRASH_AT=after_claim@<28th date>, rc -9),
       then a rerun                                   recovery_ratio = rerun_s / full_s
    c  no-op rerun of a's lakehouse with the landing folder renamed away (must exit 0;
       no Spark SQL execution may touch the landing or the target)
                                                      noop_ratio = noop_s / full_s
    d  bare loop: the same per-date read, transform, dedupe and MERGE, hand-written
                                                      overhead_vs_bare = full_s / bare_s
    e  plain floor: one bulk partitioned Delta append   overhead_vs_plain = full_s / plain_s
    f  naive: append-only loop killed after 27 dates, rerun from scratch
                                                      naive_duplicates = rows - distinct keys
                                                      ninelives_duplicates (b's target)
    g  unchanged rerun: ``run --date D --force`` on a's lakehouse: rows updated and files
       added by the commit(s) it made, from the target's Delta log
    h  peak RSS of a and b

Run from the repository root (``make bench ROWS=1000000``)::

    python bench/bench.py --rows 1000000 [--cases abcdefg] [--parallel-sweep] [--bare-nmbs]

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
EVENTLOG_RUNS = {"none": (), "noop": ("c_noop",), "all": ()}
MB = 1024 * 1024

TARGETS: dict[str, tuple[str, float, str]] = {
    # metric: (comparison, target, case)
    "recovery_ratio": ("<=", 0.15, "b"),
    "noop_ratio": ("<=", 0.05, "c"),
    "overhead_vs_bare": ("<=", 1.15, "d"),
    "overhead_vs_plain": ("<=", 3.0, "e"),
    "ninelives_duplicates": ("==", 0, "f"),
    "unchanged_rows_updated": ("==", 0, "g"),
    "unchanged_files_added": ("==", 0, "g"),
}


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
) -> Measured:
    """Run ``argv`` in its own process group; time it and poll its tree every 0.2 s."""
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    result = Measured(name, argv, load_before=os.getloadavg()[0], log=str(log_path))
    print(f"[bench] {name}: {' '.join(argv[1:])}", flush=True)
    cpu: dict[int, float] = {}
    with open(log_path, "w") as log:
        started = time.monotonic()
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
            if time.monotonic() - started > timeout:
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
    print(
        f"[bench] {name}: rc={result.rc} {result.seconds:.1f}s cpu={result.cpu_s:.0f}s "
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


def partition_profile(work: Path) -> dict[str, Any]:
    """Where one partition's time goes, from the Delta logs of runs a and d (no Spark).

    ninelives, per partition of run a (attempt 1), between consecutive commits (a run
    claims all its partitions up front, in one ledger commit): the target write since
    the previous partition's ledger ``complete`` row (fingerprint, read, validate,
    stage, count and the write: a ``replaceWhere`` into an empty partition, or a MERGE,
    whose own ``executionTimeMs`` is split out); the quarantine commit since the
    target's; the ledger's ``complete`` row since the quarantine's. Bare loop, per date
    of run d: its write (a MERGE's source materialization is the read and dedupe) and
    the rest. Medians
    over the dates, first date excluded (JVM warm-up).
    """
    out: dict[str, Any] = {}
    lh = work / "lh_a"
    writes: dict[str, dict[str, Any]] = {}
    for c in _commit_infos(lh / TARGET):
        meta = json.loads(c["userMetadata"]) if c.get("userMetadata") else {}
        if meta.get("attempt") == 1:
            writes.setdefault(meta["partition"], c)
    quarantine: dict[str, dict[str, Any]] = {}
    for c in _commit_infos(lh / "_ninelives" / "quarantine_orders_daily"):
        meta = json.loads(c["userMetadata"]) if c.get("userMetadata") else {}
        if meta.get("attempt") == 1:
            quarantine.setdefault(meta["partition"], c)
    ledger: dict[str, float] = {}
    for c in _commit_infos(lh / "_ninelives" / "ledger"):
        for stats in c["added"]:
            row = stats.get("minValues") or {}
            if row.get("attempt") == 1 and row.get("state") == "complete":
                ledger.setdefault(row["partition"], c["timestamp"])
    steps: dict[str, list[float]] = defaultdict(list)
    previous_end = None
    for day in sorted(writes):
        write, q, done = writes[day], quarantine.get(day), ledger.get(day)
        if previous_end is not None and q and done:
            steps["fingerprint, read, validate, stage, count, target write"].append(
                (write["timestamp"] - previous_end) / 1000
            )
            if write.get("operation") == "MERGE":
                steps["  of which MERGE"].append(_ms(write, "executionTimeMs"))
            steps["target commit -> quarantine commit"].append(
                (q["timestamp"] - write["timestamp"]) / 1000
            )
            steps["quarantine commit -> ledger complete commit"].append(
                (done - q["timestamp"]) / 1000
            )
            steps["partition"].append((done - previous_end) / 1000)
        previous_end = done
    out["ninelives"] = {k: _median(v) for k, v in steps.items()}
    out["ninelives_partitions"] = len(steps["partition"])
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
    return out


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

    def conf(self, name: str, *, eventlog: bool = True) -> Path:
        """A TOML config for one child; its own event-log folder."""
        confs = self.work / "conf"
        confs.mkdir(parents=True, exist_ok=True)
        text = (
            "[lakehouse]\n"
            f'landing = "{self.landing}"\n'
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

    def ninelives(self, name: str, lakehouse: Path, *args: str) -> list[str]:
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
            str(self.conf(name)),
        ]

    def all_dates(self) -> list[str]:
        return ["--from", self.dates[0].isoformat(), "--to", self.dates[-1].isoformat()]

    def baseline(self, name: str, mode: str, *args: str) -> list[str]:
        return [PYTHON, str(BENCH / "baselines.py"), mode, "--conf", str(self.conf(name)), *args]

    def measure(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Measured:
        result = run_child(name, argv, workdir=self.work, env=child_env(env), timeout=self.timeout)
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

    def seed(self) -> None:
        marker = self.landing / ".bench-seed.json"
        want = {"days": self.days, "rows_per_day": self.rows_per_day, "seed": SEED}
        if marker.is_file():
            have = json.loads(marker.read_text())
            if {k: have.get(k) for k in want} == want:
                print(f"[bench] reusing landing data {self.landing} ({have})", flush=True)
                self.details["seed"] = have
                return
        shutil.rmtree(self.landing, ignore_errors=True)
        run = self.measure(
            "seed",
            [
                PYTHON,
                "-m",
                "framework.cli",
                "seed",
                "--days",
                str(self.days),
                "--rows-per-day",
                str(self.rows_per_day),
                "--seed",
                str(SEED),
                "--lakehouse",
                str(self.fresh_lakehouse("seed")),
                "--conf",
                str(self.conf("seed", eventlog=False)),
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
        self.details["seed"] = info

    # cases

    def case_a(self, suffix: str = "") -> None:
        lh = self.fresh_lakehouse("a")
        name = f"a_full{suffix}"
        self.expect(self.measure(name, self.ninelives(name, lh, *self.all_dates())), 0)

    def case_b_crash(self) -> None:
        """The killed run; its time is no metric (only its peak RSS is)."""
        lh = self.fresh_lakehouse("b")
        crash_date = self.dates[min(27, self.days - 1)]
        crash = self.measure(
            "b_crash",
            self.ninelives("b_crash", lh, *self.all_dates()),
            env={"NINELIVES_CRASH_AT": f"after_claim@{crash_date.isoformat()}"},
        )
        self.expect(crash, -signal.SIGKILL)
        self.details["b_crash_at"] = f"after_claim@{crash_date.isoformat()}"

    def case_b_rerun(self) -> None:
        lh = self.lakehouse("b")
        self.expect(self.measure("b_rerun", self.ninelives("b_rerun", lh, *self.all_dates())), 0)

    def case_c(self) -> None:
        lh = self.lakehouse("a")
        away = self.landing.with_name(self.landing.name + ".away")
        self.landing.rename(away)  # a run that reads any source file now fails
        try:
            run = self.measure("c_noop", self.ninelives("c_noop", lh, *self.all_dates()))
        finally:
            away.rename(self.landing)
        self.expect(run, 0)

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
            self.lakehouse(c) / TARGET for c in "abdf" if (self.lakehouse(c) / TARGET).is_dir()
        ]
        ledgers = [self.lakehouse(c) for c in "ab" if (self.lakehouse(c) / "_ninelives").is_dir()]
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
        best = {
            base: min(
                (m for n, m in r.items() if re.fullmatch(rf"{base}(_\d+)?", n)),
                key=lambda m: m.seconds,
                default=None,
            )
            for base in ("a_full", "d_bare")
        }
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

        def rss(*names: str) -> dict[str, float] | None:
            found = [r[n] for n in names if n in r]
            if not found:
                return None
            return {
                "java": round(max(m.java_rss_mb for m in found), 1),
                "tree": round(max(m.tree_rss_mb for m in found), 1),
            }

        cpu = {n: round(m.cpu_s, 1) for n, m in r.items()}
        cpu_a = min((v for n, v in cpu.items() if re.fullmatch(r"a_full(_\d+)?", n)), default=None)
        cpu_d = min((v for n, v in cpu.items() if re.fullmatch(r"d_bare(_\d+)?", n)), default=None)
        out: dict[str, Any] = {
            "rows": self.rows,
            "full_s": round(full, 2) if full else None,
            "bare_s": seconds("d_bare"),
            "bare_nmbs_s": seconds("d_bare_nmbs"),
            "plain_s": seconds("e_plain"),
            "recovery_ratio": ratio("b_rerun"),
            "noop_ratio": ratio("c_noop"),
            "overhead_vs_bare": inverse("d_bare"),
            "overhead_vs_plain": inverse("e_plain"),
            "naive_duplicates": dups("f"),
            "ninelives_duplicates": dups("b"),
            "unchanged_rows_updated": self.details.get("unchanged_rows_updated"),
            "unchanged_files_added": self.details.get("unchanged_files_added"),
            "peak_rss_mb": {"a": rss("a_full"), "b": rss("b_crash", "b_rerun")},
            # details
            "days": self.days,
            "rows_per_day": self.rows_per_day,
            "seed": self.details.get("seed"),
            "seconds": {n: round(m.seconds, 2) for n, m in r.items()},
            "cpu_seconds": cpu,
            "cpu_ratios": {
                "recovery": _div(cpu.get("b_rerun"), cpu_a),
                "noop": _div(cpu.get("c_noop"), cpu_a),
                "vs_bare": _div(cpu_a, cpu_d),
                "vs_plain": _div(cpu_a, cpu.get("e_plain")),
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
            "noop_sql_touching": r["c_noop"].eventlog.get("sql_touching")
            if "c_noop" in r
            else None,
            "noop_spark_jobs": r["c_noop"].eventlog.get("spark_jobs") if "c_noop" in r else None,
            "crash": self.details.get("b_crash_at"),
            "untimed_runs_overlapped": bool(self.details.get("overlapped")),
            "unchanged_rerun": self.details.get("g"),
            "inspected": inspected,
            "profile": partition_profile(self.work),
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
    "b_crash": "b: run killed at after_claim of date 28",
    "b_rerun": "b: rerun after the crash",
    "c_noop": "c: no-op rerun, landing renamed away",
    "d_bare": "d: bare hand-written loop of the same writes",
    "d_bare_nmbs": "bare loop, MERGE with WHEN NOT MATCHED BY SOURCE (reference)",
    "a_parallel2": "a with `--max-parallel 2`",
    "a_parallel4": "a with `--max-parallel 4`",
    "e_plain": "e: plain bulk partitioned append",
    "f_naive_crash": "f: naive append loop killed after 27 dates",
    "f_naive_rerun": "f: naive rerun from scratch",
    "g_force": "g: `--force` rerun of one unchanged date",
}


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
    cpu_key = {
        "recovery_ratio": "recovery",
        "noop_ratio": "noop",
        "overhead_vs_bare": "vs_bare",
        "overhead_vs_plain": "vs_plain",
    }
    for metric, (op, target, case) in TARGETS.items():
        value = res.get(metric)
        shown = (
            "—" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
        )
        cpu = (res.get("cpu_ratios") or {}).get(cpu_key.get(metric, ""))
        cpu_shown = f"{cpu:.3f} ({verdict(metric, cpu)})" if cpu is not None else ""
        lines.append(
            f"| {case} | `{metric}` | {op} {target} | {shown} | {verdict(metric, value)} "
            f"| {cpu_shown} |"
        )
    rss = res.get("peak_rss_mb") or {}
    runs = res.get("runs") or {}
    uneven = [
        f"{name} ran at a mean load of {runs[name].get('load_mean', 0):.1f} against "
        f"{runs['a_full'].get('load_mean', 0):.1f} for a_full"
        for name in ("d_bare", "e_plain", "b_rerun", "c_noop")
        if name in runs
        and "a_full" in runs
        and abs(runs[name].get("load_mean", 0) - runs["a_full"].get("load_mean", 0))
        > 0.25 * max(runs["a_full"].get("load_mean", 0), 1.0)
    ]
    lines += [
        f"| f | `naive_duplicates` (the problem) | — | {res.get('naive_duplicates')} | | |",
        f"| h | `peak_rss_mb` a (JVM / tree) | — | {_rss(rss.get('a'))} | | |",
        f"| h | `peak_rss_mb` b (JVM / tree) | — | {_rss(rss.get('b'))} | | |",
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
        f"`full_s` = {res.get('full_s')} s, bare {res.get('bare_s')} s, plain "
        f"{res.get('plain_s')} s (with `--repeat`, the fastest of the repeats)"
        + (
            f"; the bare loop with a `WHEN NOT MATCHED BY SOURCE` MERGE took {res['bare_nmbs_s']} s"
            if res.get("bare_nmbs_s")
            else ""
        )
        + ". The same "
        "ratios in CPU seconds of the child's process tree, less sensitive to the shared "
        f"load: {', '.join(f'{k} {v}' for k, v in res['cpu_ratios'].items() if v is not None)}.",
        "",
        "Peak RSS: the JVM alone, and summed over the child's process tree (the Python "
        "driver and any PySpark worker processes; pages shared between forked workers "
        "count once per process).",
        "",
        "Why a target is missed, with a Spark event-log profile of one partition against "
        "the bare loop: [README.md, Findings](README.md#findings) (the latest round is "
        "last); the per-partition split from the Delta logs is below.",
        "",
        "## Runs",
        "",
        "| run | what | wall s | CPU s | rc | JVM peak RSS MB | tree peak RSS MB "
        "| load at start / mean | Spark jobs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    untimed = ("b_crash", "f_naive_crash", "f_naive_rerun", "g_force")
    for name, run in res["runs"].items():
        jobs = run["eventlog"].get("spark_jobs", "—") if run["eventlog"] else "—"
        what = CASE_TEXT.get(name, name)
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
            "include each other's contention). Timed runs (a, d, e, c, b_rerun) ran alone.",
        ]
    par = {k: v for k, v in res["parallel"].items() if v}
    if len(par) > 1:
        bare = res.get("bare_s")
        lines += [
            "",
            "## `--max-parallel`",
            "",
            "Full runs (case a) with N partitions at a time in one Spark application, "
            "run right after a and d. The bare loop is serial by definition, so only N = 1 "
            "is like for like (`overhead_vs_bare`); the others show what a night gains "
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
    if c:
        touching = res.get("noop_sql_touching") or {}
        lines += [
            "",
            "## No-op rerun reads no data",
            "",
            f"The landing folder was renamed away for the whole no-op run, which still "
            f"exited {c['rc']}. Its event log has {res.get('noop_spark_jobs')} Spark jobs and "
            f"{c['eventlog'].get('sql_executions')} SQL executions; SQL executions whose "
            f"plan mentions the landing folder: {touching.get('landing')}, the target "
            f"`{TARGET}`: {touching.get('target')} (the jobs read the ledger and append the "
            "run history).",
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
    prof = res.get("profile") or {}
    fw, bare = prof.get("ninelives") or {}, prof.get("bare") or {}
    if fw:
        lines += [
            "",
            "## Where a partition's time goes",
            "",
            "Medians over the dates of runs a and d (the first date left out: JVM warm-up), "
            "from the Delta logs the runs wrote: commit timestamps of the target, the "
            "quarantine and the ledger, and a MERGE's own `executionTimeMs` and its parts "
            "where a date was MERGEd (`partition_profile` in bench.py; "
            f"{prof.get('ninelives_partitions')} partitions of a, "
            f"{prof.get('bare_dates')} dates of d, timed by the bare loop's own log lines). "
            "Both write a date's first rows with the partition's `replaceWhere` overwrite "
            "(a MERGE only where the partition already has files); ninelives reads, "
            "validates and counts the staged rows once (cached) before it writes them.",
            "",
            "| step | ninelives s | bare s |",
            "|---|---|---|",
        ]
        rows = [
            (
                "read, validate, stage, count, target write",
                "fingerprint, read, validate, stage, count, target write",
                None,
            ),
            ("bare: read, dedupe, before the MERGE", None, "before the MERGE"),
            ("MERGE", "  of which MERGE", "MERGE"),
            ("… of which materialize source (read, dedupe)", None, "  of which materialize source"),
            ("… of which scan for matches", None, "  of which scan for matches"),
            ("… of which write", None, "  of which write"),
            ("target commit → quarantine commit", "target commit -> quarantine commit", None),
            (
                "quarantine commit → ledger complete commit",
                "quarantine commit -> ledger complete commit",
                None,
            ),
            ("**one partition**", "partition", "partition"),
        ]
        for label, a_name, d_name in rows:
            a_value = fw.get(a_name) if a_name else None
            d_value = bare.get(d_name) if d_name else None
            if a_value is None and d_value is None:
                continue
            lines.append(
                f"| {label} | {'—' if a_value is None else a_value} "
                f"| {'—' if d_value is None else d_value} |"
            )
    lines += [
        "",
        "## Where the time goes (Spark event logs)",
        "",
        "Timed runs write no event log (it costs about 4 MB of JSON per partition); "
        "`--eventlog all` adds one to every run. The py-spy profile and the fixes it points "
        "to are in [README.md](README.md#findings).",
        "",
    ]
    for name in ("a_full", "d_bare", "b_rerun", "c_noop"):
        run = res["runs"].get(name)
        if not run or not run["eventlog"]:
            continue
        ev = run["eventlog"]
        lines += [
            f"**{name}**: {ev['spark_jobs']} Spark jobs "
            f"({ev['spark_jobs'] / res['days']:.1f} per date), {ev['job_seconds']} s inside jobs, "
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
    metrics = ["recovery_ratio", "noop_ratio", "overhead_vs_bare", "overhead_vs_plain"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(12, 3.6))
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
        "per-partition profile from the workdir's Delta logs; runs nothing",
    )
    parser.add_argument(
        "--cases", default="abcdefg", help="subset of a-g (b, c, d, e and g also run a)"
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
        help="run the untimed runs (b's killed run, f, g) one at a time too; by default "
        "they run side by side to keep the benchmark short",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run a and d this many times, alternating; ratios use the fastest of each "
        "(other processes' load only ever slows a run down)",
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
    if set(args.cases) - set("abcdefgh"):
        parser.error("--cases takes letters a-h")
    if args.workdir is None:
        args.workdir = f"/tmp/ninelives-bench/rows-{args.rows}"
    return args


def report_only(args: argparse.Namespace, argv: list[str]) -> int:
    out = Path(args.results)
    res = json.loads((out / "latest.json").read_text())
    if res.get("rows") != Bench(args).rows:
        raise SystemExit(f"[bench] {out / 'latest.json'} is for {res.get('rows')} rows")
    res["profile"] = partition_profile(Path(args.workdir))
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
    if cases & set("bcdeg") or "h" in cases:
        cases.add("a")  # their ratios are against the full run, c and g run on its lakehouse
    if "h" in cases:
        cases.add("b")
    print(
        f"[bench] {bench.rows:,} rows over {bench.days} dates, cases {''.join(sorted(cases))}, "
        f"workdir {bench.work}, load {fmt_load(load_start)}",
        flush=True,
    )
    started = time.monotonic()
    bench.seed()
    if args.seed_only:
        return 0
    # Timed runs one at a time; a and d back to back, so that the overhead ratio
    # compares them under similar load.
    for repeat in range(args.repeat):
        suffix = f"_{repeat + 1}" if repeat else ""
        if "a" in cases:
            bench.case_a(suffix)
        if "d" in cases:
            bench.case_d(suffix)
    if args.bare_nmbs:
        bench.case_d_nmbs()
    if args.parallel_sweep:  # right after a and d: the same load, comparable ratios
        bench.parallel_sweep()
    for letter, case in (("e", bench.case_e), ("c", bench.case_c)):
        if letter in cases:
            case()
    # Runs whose duration is no metric (the killed run of b, the naive loop of f, the
    # forced rerun of g, which reports Delta metrics) run side by side unless --serial.
    untimed = [
        case
        for letter, case in (("b", bench.case_b_crash), ("f", bench.case_f), ("g", bench.case_g))
        if letter in cases
    ]
    if args.serial or len(untimed) < 2:
        for case in untimed:
            case()
    else:
        bench.details["overlapped"] = True
        with ThreadPoolExecutor(max_workers=len(untimed)) as pool:
            for future in [pool.submit(case) for case in untimed]:
                future.result()
    if "b" in cases:
        bench.case_b_rerun()
    inspected = bench.inspect() if cases & set("abdf") else {}
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
    summary = {k: res[k] for k in ("rows", "full_s", *TARGETS, "naive_duplicates", "peak_rss_mb")}
    print("[bench] " + json.dumps(summary), flush=True)
    print(f"[bench] done in {res['bench_seconds']} s; wrote {out / 'latest.json'}, {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
