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
import datetime as dt
import json
import re
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.eventlog import eventlog_summary
from bench.job import JOB, START, TARGET, ninelives
from bench.measure import PYTHON, REPO, Measured, child_env, expect, run_child
from bench.timeline import committed_dates
from framework.testing.delta_log import log_commits as commits
from framework.testing.delta_log import log_versions as versions

BENCH = REPO / "bench"
SEED = 42
# The event log costs real time (about 4 MB of JSON per partition of orders_daily), so
# timed runs go without it unless asked; the no-op run keeps it to count its jobs.
EVENTLOG_RUNS = {"none": (), "noop": ("c_noop", "c_noop_spark"), "all": ()}
CRASH_FRACTION = 0.9
"""Case b is killed once its target holds this share of the dates (``--kill-clock dates``),
or of case a's wall time or CPU seconds has passed."""
SCALING_DAYS = (90, 365)
"""Case j: the same total rows over these many dates, against case a's."""


class Bench:
    """One invocation of the benchmark: its scratch folder, its landing data, the cases
    (each a method that runs its children and keeps their measurements in ``runs``) and
    what they found beside the timings (``details``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.workdir).resolve()
        self.days = args.days
        self.rows_requested = args.rows
        self.rows_per_day = args.rows // args.days
        self.rows = self.rows_per_day * self.days
        self.dates = self.dates_for(self.days)
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
        """``ninelives run orders_daily ARGS`` on ``lakehouse``, with the config of ``name``."""
        return ninelives(
            "run", JOB, *args, lakehouse=lakehouse, conf=self.conf(name, landing=landing)
        )

    def all_dates(self, days: int | None = None) -> list[str]:
        dates = self.dates_for(days) if days else self.dates
        return ["--from", dates[0].isoformat(), "--to", dates[-1].isoformat()]

    def baseline(self, name: str, mode: str, *args: str) -> list[str]:
        """``bench/baselines.py MODE ARGS`` with the config of ``name``."""
        return [PYTHON, str(BENCH / "baselines.py"), mode, "--conf", str(self.conf(name)), *args]

    def over_all_dates(self, case: str) -> tuple[str, ...]:
        """A baseline's target (in a fresh lakehouse of ``case``) and dates: all of them."""
        return ("--target", str(self.fresh_lakehouse(case) / TARGET), *self.all_dates())

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

    # seeding

    def seed(self, days: int | None = None) -> None:
        """Landing data of ``days`` dates (default ``--days``), ``rows // days`` a day."""
        days = days or self.days
        landing = self.landing_for(days)
        rows_per_day = self.rows_requested // days
        marker = landing / ".bench-seed.json"
        want = {"days": days, "rows_per_day": rows_per_day, "seed": SEED}
        name = "seed" if days == self.days else f"seed_{days}"
        if marker.is_file():
            have = json.loads(marker.read_text())
            if {k: have.get(k) for k in want} == want:
                print(f"[bench] reusing landing data {landing} ({have})", flush=True)
                self.details[name] = have
                return
        shutil.rmtree(landing, ignore_errors=True)
        run = self.measure(
            name,
            ninelives(
                "seed",
                "--days",
                str(days),
                "--rows-per-day",
                str(rows_per_day),
                "--seed",
                str(SEED),
                lakehouse=self.fresh_lakehouse(name),
                conf=self.conf(name, eventlog=False, landing=landing),
            ),
        )
        expect(run, 0)
        text = Path(run.log).read_text()
        found = re.search(
            r"seeded ([\d,]+) lines \(([\d,]+) re-delivered, ([\d,]+) malformed", text
        )
        info: dict[str, Any] = {**want, "seed_s": round(run.seconds, 1)}
        if found:
            lines, dups, bad = (int(g.replace(",", "")) for g in found.groups())
            info.update(lines=lines, duplicate_lines=dups, malformed_lines=bad)
        marker.write_text(json.dumps(info))
        self.details[name] = info

    # cases

    def case_a(self, suffix: str = "") -> None:
        lh = self.fresh_lakehouse("a")
        name = f"a_full{suffix}"
        expect(self.measure(name, self.ninelives(name, lh, *self.all_dates())), 0)

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
            expect(crash, -signal.SIGKILL)
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
        expect(self.measure("b_rerun", self.ninelives("b_rerun", lh, *self.all_dates())), 0)
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
            # The same rerun planned through Spark (as every rerun was before delta-rs):
            spark = self.measure(
                "c_noop_spark",
                self.ninelives("c_noop_spark", lh, *self.all_dates()),
                env={"NINELIVES_NATIVE": "0"},
            )
        finally:
            away.rename(self.landing)
        expect(run, 0)
        expect(spark, 0)

    def case_d(self, suffix: str = "") -> None:
        name = f"d_bare{suffix}"
        expect(self.measure(name, self.baseline(name, "bare", *self.over_all_dates("d"))), 0)

    def case_d_nmbs(self) -> None:
        """The bare loop with the MERGE written with WHEN NOT MATCHED BY SOURCE (no metric:
        it shows what the file pruning of ninelives' MERGE is worth)."""
        name = "d_bare_nmbs"
        argv = self.baseline(name, "bare-nmbs", *self.over_all_dates("d_nmbs"))
        expect(self.measure(name, argv), 0)

    def case_i(self, suffix: str = "") -> None:
        """Bulk: all dates in one Spark job and one replaceWhere commit."""
        name = f"i_bulk{suffix}"
        expect(self.measure(name, self.baseline(name, "bulk", *self.over_all_dates("i"))), 0)

    def case_j(self) -> None:
        """Scaling: a full run over the same total rows spread over more dates."""
        for days in self.scaling:
            lh = self.fresh_lakehouse(f"j{days}")
            name = f"j_dates{days}"
            argv = self.ninelives(name, lh, *self.all_dates(days), landing=self.landing_for(days))
            expect(self.measure(name, argv), 0)

    def case_e(self) -> None:
        target = self.fresh_lakehouse("e") / TARGET
        run = self.measure("e_plain", self.baseline("e_plain", "plain", "--target", str(target)))
        expect(run, 0)

    def case_f(self) -> None:
        args = self.over_all_dates("f")
        crash = self.measure(
            "f_naive_crash",
            self.baseline(
                "f_naive_crash", "naive", *args, "--crash-after", str(min(27, self.days - 1))
            ),
        )
        expect(crash, -signal.SIGKILL)
        expect(self.measure("f_naive_rerun", self.baseline("f_naive_rerun", "naive", *args)), 0)

    def case_g(self) -> None:
        lh = self.lakehouse("a")
        table = lh / TARGET
        day = self.dates[min(14, self.days - 1)]
        before = max(versions(table))
        run = self.measure(
            "g_force", self.ninelives("g_force", lh, "--date", day.isoformat(), "--force")
        )
        expect(run, 0)
        made = [
            {
                "version": c["version"],
                "operation": c.get("operation"),
                "operationMetrics": c.get("operationMetrics", {}),
                "userMetadata": c.get("userMetadata"),
                "add_actions": c["add_actions"],
                "remove_actions": c["remove_actions"],
            }
            for c in commits(table, after=before)
        ]

        def metric(commit: dict[str, Any], name: str) -> int:
            return int((commit["operationMetrics"] or {}).get(name, 0))

        self.details["g"] = {"date": day.isoformat(), "commits": made}
        self.details["unchanged_rows_updated"] = sum(
            metric(c, "numTargetRowsUpdated") for c in made
        )
        # numTargetFilesAdded for a MERGE; an empty marker append adds numFiles (0); the
        # add actions in the log count both.
        self.details["unchanged_files_added"] = sum(
            max(metric(c, "numTargetFilesAdded"), metric(c, "numFiles"), c["add_actions"])
            for c in made
        )

    def parallel_sweep(self) -> None:
        for n in self.args.max_parallel:
            if n == 1:
                continue
            lh = self.fresh_lakehouse(f"p{n}")
            name = f"a_parallel{n}"
            expect(
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
        expect(run, 0)
        lines = Path(run.log).read_text().splitlines()
        line = next(x for x in lines if x.startswith("INSPECT "))
        return json.loads(line[len("INSPECT ") :])
