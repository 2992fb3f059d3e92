"""The control plane without a JVM: ``ninelives status`` of a job with 365
complete dates, and the rerun with nothing to do over them, each through delta-rs and
through Spark (``NINELIVES_NATIVE=0``), side by side in one invocation.

Every timed command is a real ``ninelives`` child (``bench.measure.run_child``: wall clock,
CPU seconds, peak RSS), alternated ``--repeat`` times; the median of each is kept. The
365 dates are seeded and run once first, through Spark, in units as a night would::

    status_365_s        status through delta-rs              (target <= 1.5 s)
    status_365_spark_s  the same status through Spark
    noop_365_s          the no-op rerun of the 365 dates through delta-rs
    noop_365_spark_s    the same rerun planned through Spark

The four keys go into ``latest.json`` beside the nightly benchmark's; the details into
``results/control-plane.json``::

    python -m bench.control_plane [--days 365] [--rows-per-day 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench.figures import RESULTS, merge_into_latest
from bench.job import JOB, START, ninelives
from bench.measure import Measured, child_env, expect, machine, run_child


def command(work: Path, *args: str) -> list[str]:
    return ninelives(*args, lakehouse=work / "lakehouse")


def timed(work: Path, name: str, argv: list[str], *, spark: bool) -> Measured:
    env = child_env({"NINELIVES_NATIVE": "0"} if spark else None)
    run = run_child(name, argv, workdir=work, env=env, timeout=1800)
    expect(run, 0)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--rows-per-day", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", default="/tmp/ninelives-control-plane")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    work = Path(args.workdir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    last = START + dt.timedelta(days=args.days - 1)
    span = ("--from", START.isoformat(), "--to", last.isoformat())
    seed = command(work, "seed", "--days", str(args.days), "--rows-per-day", str(args.rows_per_day))
    night = command(work, "run", JOB, *span)
    setup = {"seed": timed(work, "seed", seed, spark=True)}
    setup["night"] = timed(work, "night", night, spark=True)
    cases = {
        "status": command(work, "status", JOB),
        "noop": night,
    }
    runs: dict[str, list[Measured]] = {}
    for i in range(args.repeat):
        for case, argv_ in cases.items():
            for spark in (False, True):
                name = f"{case}{'_spark' if spark else ''}"
                runs.setdefault(name, []).append(timed(work, f"{name}-{i}", argv_, spark=spark))
    median = {name: round(statistics.median(m.seconds for m in ms), 3) for name, ms in runs.items()}
    keys = {
        f"{name.replace('_spark', '')}_{args.days}{'_spark' if 'spark' in name else ''}_s": s
        for name, s in median.items()
    }
    result: dict[str, Any] = {
        **keys,
        "days": args.days,
        "rows_per_day": args.rows_per_day,
        "repeat": args.repeat,
        "runs": {
            name: [
                {
                    "seconds": round(m.seconds, 3),
                    "cpu_s": round(m.cpu_s, 2),
                    "tree_rss_mb": round(m.tree_rss_mb),
                    "java_rss_mb": round(m.java_rss_mb),
                }
                for m in ms
            ]
            for name, ms in runs.items()
        },
        "setup": {name: round(m.seconds, 1) for name, m in setup.items()},
        "machine": machine(),
        "finished_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        "bench_seconds": round(time.monotonic() - started),
    }
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "control-plane.json").write_text(json.dumps(result, indent=2) + "\n")
    merge_into_latest(out, keys)
    print(f"[bench] {json.dumps(keys)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
