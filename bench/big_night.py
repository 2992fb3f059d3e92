"""The big night: one date of 10M records in 20+ landing files, on the
default configuration (``local[*]``, a 2 GiB driver, the default shuffle partitions).

Every case is a real ``ninelives run`` child on the same landing data, in a lakehouse of
its own, timed side by side in one invocation (``bench.measure.run_child``: wall clock,
peak RSS of the JVM, CPU seconds; the JVM's peak heap from its GC log)::

    single   the night as one pass and one commit (--unit-size above the input)
    chunked  the night in chunks of --unit-size (about one landing file each)
    killed   chunked, killed by its crash point once 90 % of its chunks are committed
    rerun    the plain rerun after the kill: resumes at the next chunk

    chunked_vs_single        = chunked_s / single_s       (target <= 1.15)
    big_night_recovery_ratio = rerun_s / chunked_s         (target <= 0.30)

The three lakehouses must then agree: every ledger count of the date, and the target's
rows, keys and a checksum of their row hashes. The keys go into ``latest.json``, beside
the nightly benchmark's::

    python -m bench.big_night --rows 10000000 [--unit-size 256MB] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any

from bench.figures import RESULTS, merge_into_latest
from bench.job import JOB, ninelives
from bench.job import START as DATE
from bench.measure import Measured, child_env, expect, machine, run_child
from framework.core.config import parse_size
from framework.engine.chunks import cut

KILL_SHARE = 0.9
COUNTS = ("rows_read", "rows_written", "rows_rejected", "rows_duplicate", "rows_dropped")
_HEAP = re.compile(r"(\d+)M->(\d+)M\((\d+)M\)")


def conf(work: Path, name: str, landing: Path) -> Path:
    """The default configuration, plus a GC log to read the peak heap from."""
    gc = work / "logs" / f"{name}.gc.log"
    path = work / "conf" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'[lakehouse]\nlanding = "{landing}"\n\n'
        '[spark.extra]\n"spark.driver.extraJavaOptions" = '
        f'"-Xlog:gc:file={gc}"\n'
    )
    return path


def peak_heap_mb(work: Path, name: str) -> int | None:
    """The most heap the JVM held before any collection, from its GC log."""
    log = work / "logs" / f"{name}.gc.log"
    if not log.is_file():
        return None
    before = [int(m.group(1)) for m in _HEAP.finditer(log.read_text(errors="replace"))]
    return max(before, default=None)


def command(
    work: Path, name: str, landing: Path, *args: str, lakehouse: str | None = None
) -> list[str]:
    """A ``ninelives`` command line with a config of its own, in ``lh_<lakehouse>``."""
    return ninelives(
        *args, lakehouse=work / f"lh_{lakehouse or name}", conf=conf(work, name, landing)
    )


def run(
    work: Path,
    name: str,
    landing: Path,
    *args: str,
    crash_at: str | None = None,
    lakehouse: str | None = None,
) -> Measured:
    env = child_env({"NINELIVES_CRASH_AT": crash_at} if crash_at else None)
    argv = command(
        work, name, landing, "run", JOB, "--date", DATE.isoformat(), *args, lakehouse=lakehouse
    )
    return run_child(name, argv, workdir=work, env=env, timeout=3600)


def seed(work: Path, rows: int) -> Path:
    landing = work / "landing"
    marker = landing / ".bench-seed.json"
    if marker.is_file() and json.loads(marker.read_text()).get("rows") == rows:
        print(f"[bench] reusing landing data {landing}", flush=True)
        return landing
    shutil.rmtree(landing, ignore_errors=True)
    argv = command(work, "seed", landing, "seed", "--days", "1", "--rows-per-day", str(rows))
    seeded = run_child("seed", argv, workdir=work, env=child_env(), timeout=3600)
    expect(seeded, 0)
    marker.write_text(json.dumps({"rows": rows, "seed_s": round(seeded.seconds, 1)}))
    return landing


def agreement(work: Path, names: list[str]) -> dict[str, Any]:
    """Each lakehouse's ledger counts of the date and its target's rows, keys and row
    hash checksum, read in one Spark session."""
    from pyspark.sql import functions as F

    from framework.core.config import load_config
    from framework.lake.session import get_or_create_session
    from framework.lake.tables import Lakehouse
    from framework.state.ledger import Ledger

    spark = get_or_create_session(load_config())
    found: dict[str, Any] = {}
    for name in names:
        config = load_config(str(work / "conf" / f"{name}.toml"))
        lake = Lakehouse(config.with_lakehouse_root(str(work / f"lh_{name}")).lakehouse)
        state = Ledger(spark, lake.framework_table("ledger")).states(JOB)[JOB].get(DATE)
        table = lake.table("silver.orders").read(spark)
        row = table.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count_distinct("_key").alias("keys"),
            F.sum(F.xxhash64("_row_hash").cast("decimal(38,0)")).alias("checksum"),
        ).first()
        assert row is not None  # an aggregate without grouping has one row
        found[name] = {
            "state": state.state if state else None,
            **({n: getattr(state, n) for n in COUNTS} if state else {}),
            "chunks": state.chunks if state else None,
            "target_rows": row["rows"],
            "target_keys": row["keys"],
            "checksum": str(row["checksum"]),  # a decimal: 10M 64-bit hashes overflow a long
        }
    spark.stop()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--unit-size", default="256MB", help="the chunked runs' unit size")
    parser.add_argument("--workdir", default="/tmp/ninelives-big-night")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    landing = seed(work, args.rows)
    folder = landing / "orders" / f"order_date={DATE}"
    files = sorted(f for f in folder.iterdir() if not f.name.startswith((".", "_")))
    for name in ("single", "chunked", "killed"):
        shutil.rmtree(work / f"lh_{name}", ignore_errors=True)

    chunks = len(cut([f.stat().st_size for f in files], parse_size(args.unit_size)))
    kill_at = math.ceil(KILL_SHARE * chunks)
    single = run(work, "single", landing, "--unit-size", "1000GB")
    chunked = run(work, "chunked", landing, "--unit-size", args.unit_size)
    crash_at = f"after_chunk_commit@{DATE}#{kill_at}"
    killed = run(work, "killed", landing, "--unit-size", args.unit_size, crash_at=crash_at)
    # The rerun is the plain command (default unit size): the manifest says the chunks.
    rerun = run(work, "rerun", landing, lakehouse="killed")
    found = agreement(work, ["single", "chunked", "killed"])
    same = {k: v for k, v in found["single"].items() if k != "chunks"}
    agree = all({k: v for k, v in f.items() if k != "chunks"} == same for f in found.values())

    def entry(m: Measured) -> dict[str, Any]:
        return {
            "rc": m.rc,
            "seconds": round(m.seconds, 1),
            "cpu_s": round(m.cpu_s, 1),
            "java_rss_mb": round(m.java_rss_mb),
            "peak_heap_mb": peak_heap_mb(work, m.name),
            "log": m.log,
        }

    ok = single.rc == 0 and chunked.rc == 0 and rerun.rc == 0
    result = {
        "rows": args.rows,
        "landing_files": len(files),
        "landing_mb": round(sum(f.stat().st_size for f in files) / 2**20),
        "unit_size": args.unit_size,
        "chunks": chunks,
        "killed_after_chunks": kill_at,
        "chunked_vs_single": round(chunked.seconds / single.seconds, 3) if ok else None,
        "big_night_recovery_ratio": round(rerun.seconds / chunked.seconds, 3) if ok else None,
        "runs": {m.name: entry(m) for m in (single, chunked, killed, rerun)},
        "agreement": found,
        "lakehouses_agree": agree,
        "machine": machine(),
        "finished_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        "bench_seconds": round(time.monotonic() - started),
    }
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"big-night-rows-{args.rows}.json").write_text(json.dumps(result, indent=2) + "\n")
    merge_into_latest(
        out,
        {
            "chunked_vs_single": result["chunked_vs_single"],
            "big_night_recovery_ratio": result["big_night_recovery_ratio"],
            "big_night": {k: v for k, v in result.items() if k not in ("agreement",)},
        },
    )
    print(json.dumps({k: result[k] for k in list(result)[:9]}, indent=2))
    print(f"[bench] lakehouses agree: {agree}")
    return 0 if ok and agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
