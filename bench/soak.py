"""Soak: hundreds of ``kill -9`` of a real ``ninelives run``; every rerun must equal an
uninterrupted run.

It seeds sample landing data, makes the reference (an uninterrupted in-process run into
its own lakehouse), then loops until it has killed ``--kills`` child runs:

1. start a child run of ``orders_daily`` on the soak lakehouse: over all dates on a
   wiped lakehouse (``fresh``), all dates with ``--force`` (``force-all``), or one
   random date with ``--force`` (``force-one``); forcing keeps work there to be killed
   once everything is complete;
2. SIGKILL its whole process group at a random instant in [1, T] s, T being the
   measured duration of an uninterrupted run of that kind (runs let finish, about one
   in ten, keep T current);
3. with probability ``--chain`` (default 0.5), the next run is the plain rerun over all
   dates, and it is killed in turn: healing itself gets killed, and a chain of kills
   ends with step 4 like a single one;
4. rerun over all dates to completion and compare the lakehouse with the reference:
   duplicate rows (repeated ``_key``), missing reference keys, mismatched rows (a
   non-audit column differs, or a key the reference lacks), plus the ledger (complete,
   counts add up) and the quarantine.

The rerun is ``run_job`` in the soak's own, already warm Spark session (``--rerun
in-process``, the default): the same planning, healing, lease takeover and writes as
the command line, without a second JVM start per kill. The
killed runs are always real child processes. ``--rerun child`` reruns with the plain
command line instead. A ``fresh`` run gets a new lakehouse folder rather than wiping
the old one in place, so that no Delta log cached by the soak's session outlives its
table.

It prints a running tally and, last, one JSON line::

    {"kills": 200, "duplicates": 0, "missing": 0, "mismatched": 0, "seconds": 7012.4, ...}

and exits 1 on any difference. Run it from the repository root::

    python -m bench.soak --kills 200 --seed 7
    pytest -m soak          # the same with --kills 200, as a test
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import SparkSession

from framework.core.config import SparkConfig
from framework.engine.runner import RunRequest, run_job
from framework.lake.session import local_session_builder
from framework.testing import (
    Lake,
    Reference,
    diff_rows,
    ledger_problems,
    new_lake,
    quarantine_problems,
    reference_run,
    run_child,
    start_run,
    target_frame,
)
from jobs.landing import sample_dates, seed_orders
from jobs.orders_daily import JOB

MODES = ("fresh", "force-all", "force-one")
MODE_WEIGHTS = (0.3, 0.3, 0.4)
RERUN_ATTEMPTS = 2


@dataclass
class Tally:
    kills: int = 0
    finished: int = 0
    reruns: int = 0
    duplicates: int = 0
    missing: int = 0
    mismatched: int = 0
    ledger_problems: int = 0
    quarantine_problems: int = 0
    failed_runs: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.duplicates
            or self.missing
            or self.mismatched
            or self.ledger_problems
            or self.quarantine_problems
            or self.failed_runs
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--kills", type=int, default=200, help="kills to make (default 200)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--days", type=int, default=3, help="dates of sample data (default 3)")
    parser.add_argument("--rows-per-day", type=int, default=100, help="(default 100)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temp dir")
    parser.add_argument(
        "--rerun",
        choices=("in-process", "child"),
        default="in-process",
        help="how to rerun after a kill (default in-process: see above)",
    )
    parser.add_argument(
        "--chain",
        type=float,
        default=0.5,
        help="share of kills whose rerun is itself killed before any check (default 0.5)",
    )
    parser.add_argument(
        "--finish-ratio",
        type=float,
        default=0.1,
        help="share of runs let finish, to measure T (default 0.1)",
    )
    return parser.parse_args(argv)


def check(
    spark: SparkSession, lake: Lake, reference: Reference, tally: Tally, label: str
) -> list[str]:
    """Compare the lakehouse with the reference; add what differs to the tally."""
    diff = diff_rows(target_frame(spark, lake, JOB), reference.silver)
    tally.duplicates += diff.duplicates
    tally.missing += diff.missing
    tally.mismatched += diff.mismatched
    ledger = ledger_problems(spark, lake, reference)
    quarantine = quarantine_problems(spark, lake, reference)
    tally.ledger_problems += len(ledger)
    tally.quarantine_problems += len(quarantine)
    problems = [*ledger, *quarantine]
    if not diff.clean:
        problems.insert(0, f"target: {diff}")
    tally.problems.extend(f"{label}: {p}" for p in problems)
    return problems


class Aborted(Exception):
    """A rerun did not complete: the soak cannot go on from this lakehouse."""


def rerun_to_completion(
    spark: SparkSession, lake: Lake, dates: Sequence, how: str, tally: Tally, label: str
) -> float:
    """Rerun every date until the run succeeds (at most twice); return its seconds."""
    for _ in range(RERUN_ATTEMPTS):
        started = time.monotonic()
        if how == "child":
            rerun = run_child(lake, dates)
            ok, detail = rerun.rc == 0, rerun.describe(15)
        else:
            report = run_job(spark, lake.lakehouse, JOB, RunRequest.for_dates(dates))
            ok = report.exit_code == 0
            detail = "; ".join(
                f"{r.partition} {r.state}: {r.error_message}"
                for r in report.results
                if r.state != "complete"
            )
        tally.reruns += 1
        if ok:
            return time.monotonic() - started
        tally.failed_runs += 1
        tally.problems.append(f"{label}: rerun failed\n{detail}")
        print(f"  rerun failed:\n{detail}", flush=True)
    raise Aborted(f"{label}: the rerun did not complete in {RERUN_ATTEMPTS} attempts")


def soak(spark: SparkSession, args: argparse.Namespace, rng: random.Random, tally: Tally) -> None:
    """Seed, make the reference, then kill and rerun until ``args.kills`` kills."""
    workdir: Path = args.workdir
    dates = sample_dates(args.days)
    landing = workdir / "landing"
    if not landing.exists():
        seed_orders(spark, str(landing), days=args.days, rows_per_day=args.rows_per_day)
    for stale in ("reference", "soak"):
        shutil.rmtree(workdir / stale, ignore_errors=True)
    reference = reference_run(
        spark, new_lake(workdir / "reference", landing, JOB).config, dates, JOB
    )
    lakes = 1
    lake = new_lake(workdir / "soak" / str(lakes), landing, JOB)

    # T starts as an uninterrupted child run: the kind of run that gets killed.
    first = run_child(lake, dates)
    if first.rc != 0:
        raise Aborted(f"the uninterrupted run failed\n{first.describe(15)}")
    check(spark, lake, reference, tally, "uninterrupted run")
    duration = {mode: first.seconds for mode in (*MODES, "rerun")}
    print(f"uninterrupted run: {first.seconds:.1f} s", flush=True)

    iteration = 0
    chained = False  # the last run was killed and its rerun is the next killed run
    while tally.kills < args.kills or chained:
        iteration += 1
        mode = "rerun" if chained else rng.choices(MODES, MODE_WEIGHTS)[0]
        if mode == "fresh":
            shutil.rmtree(Path(lake.root).parent)
            lakes += 1
            lake = new_lake(workdir / "soak" / str(lakes), landing, JOB)
            child = start_run(lake, dates)
        elif mode == "rerun":
            child = start_run(lake, dates)
        elif mode == "force-all":
            child = start_run(lake, dates, "--force")
        else:
            child = start_run(lake, [rng.choice(dates)], "--force")
        try:
            finish = rng.random() < args.finish_ratio or tally.kills >= args.kills
            at = rng.uniform(1.0, max(1.0, duration[mode]))
            killed = False if finish else child.kill_after(at)
            if not killed:
                child.wait()
        finally:
            if child.poll() is None:  # interrupted: leave no writer behind
                child.kill()
        if killed:
            tally.kills += 1
            what = f"killed at {at:.1f} s"
        else:
            tally.finished += 1
            duration[mode] = 0.5 * duration[mode] + 0.5 * child.seconds
            what = f"ended by itself after {child.seconds:.1f} s, exit {child.rc}"
            if child.rc != 0:
                tally.failed_runs += 1
                tally.problems.append(f"#{iteration} {mode}: {child.describe(15)}")
        label = f"#{iteration} {mode} {what}"
        chained = killed and rng.random() < args.chain
        if chained:
            print(f"{label}; its rerun is the next run, killed too", flush=True)
            continue
        rerun_seconds = rerun_to_completion(spark, lake, dates, args.rerun, tally, label)
        problems = check(spark, lake, reference, tally, label)
        print(
            f"{label}; rerun {rerun_seconds:.1f} s; "
            f"{'OK' if not problems else 'DIFFERS: ' + '; '.join(problems)} | "
            f"kills {tally.kills}/{args.kills}, finished {tally.finished}, "
            f"dup {tally.duplicates}, missing {tally.missing}, "
            f"mismatched {tally.mismatched}, ledger {tally.ledger_problems}, "
            f"quarantine {tally.quarantine_problems}, failed runs {tally.failed_runs}",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    args.workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ninelives-soak-"))
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"soak: seed {seed}, {args.kills} kills, workdir {args.workdir}", flush=True)

    spark = local_session_builder(
        SparkConfig(master="local[2]", app_name="ninelives-soak", shuffle_partitions=2)
    ).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    tally = Tally()
    aborted = None
    try:
        soak(spark, args, random.Random(seed), tally)
    except Aborted as error:
        aborted = str(error)
    finally:
        summary = {
            "kills": tally.kills,
            "duplicates": tally.duplicates,
            "missing": tally.missing,
            "mismatched": tally.mismatched,
            "seconds": round(time.monotonic() - started, 1),
            "finished": tally.finished,
            "reruns": tally.reruns,
            "ledger_problems": tally.ledger_problems,
            "quarantine_problems": tally.quarantine_problems,
            "failed_runs": tally.failed_runs,
            "aborted": aborted,
            "seed": seed,
            "rerun": args.rerun,
        }
        for problem in tally.problems[:20]:
            print(f"problem: {problem}", file=sys.stderr, flush=True)
        print(json.dumps(summary), flush=True)
        spark.stop()
    return 0 if tally.clean and aborted is None else 1


if __name__ == "__main__":
    sys.exit(main())
