"""The same night's work without ninelives, for ``bench/bench.py`` to compare against.

Each mode is run by the benchmark as its own child process, with the session built
from the same TOML config as the ``ninelives`` runs (``framework.lake.session.
local_session_builder``: same master, shuffle partitions, driver memory, Delta jars)::

    python bench/baselines.py bare  --conf C --target T --from D --to D
    python bench/baselines.py plain --conf C --target T
    python bench/baselines.py bulk  --conf C --target T --from D --to D
    python bench/baselines.py naive --conf C --target T --from D --to D [--crash-after N]
    python bench/baselines.py inspect --conf C --table T [--table T ...] [--ledger LH ...]

* ``bare``: a hand-written loop, one date at a time: read the JSON lines with the job's
  schema in PERMISSIVE mode, drop malformed lines, ``normalise_orders``, the same key
  and row hash, dedupe by key with a window (latest ``ingested_at`` wins), then the same
  write ninelives makes into a table with deletion vectors: the partition's
  ``replaceWhere`` overwrite when the target has no file of it yet, else the same MERGE
  (literal partition predicate and key; the partition's keys missing from the new rows
  added to the source and deleted by a MATCHED clause; update when the row hash
  differs; insert). No ledger, no counts, no quarantine, no commit tags.
* ``bare-nmbs``: the same loop with every date MERGEd, the MERGE written the obvious
  way, ``WHEN NOT MATCHED BY SOURCE DELETE`` for vanished keys (what ninelives issued
  before; Delta skips no target file for it, so each MERGE scans the whole table).
* ``plain``: the floor: one read of every date's JSON, ``normalise_orders``, one
  partitioned Delta write.
* ``bulk``: what a user writes instead of ninelives for a range of dates: ONE Spark
  job over all the dates: the bare loop's reader over every date's folder at once, the
  same transform, key and row hash, latest ``ingested_at`` wins per (date, key), then
  one ``replaceWhere`` overwrite commit of the whole range (``order_date >= first AND
  order_date <= last``) into a table created like the bare loop's (partitioned by
  ``order_date``, deletion vectors). No ledger, counts, quarantine or commit tags, and
  nothing to resume from: a crash redoes every date.
* ``naive``: what a user writes without ninelives: the bare loop with a blind append
  instead of the MERGE. ``--crash-after N`` SIGKILLs its own process group after the
  N-th date's append, like ``NINELIVES_CRASH_AT``.
* ``inspect``: counts (rows, distinct ``_key``) of tables and ledger states, as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import time

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from framework.core.config import load_config
from framework.core.keys import KEY_COLUMN, ROW_HASH_COLUMN, with_key, with_row_hash
from framework.lake.session import local_session_builder
from jobs.landing import ORDERS_FOLDER
from jobs.orders_daily import JOB, normalise_orders, raw_order_schema

CORRUPT = "_corrupt_record"
PARTITION_COLUMN = JOB.partition_column


def session(conf: str, app: str) -> SparkSession:
    config = load_config(conf)
    builder = local_session_builder(config.spark).appName(app)
    return builder.getOrCreate()


def landing(conf: str) -> str:
    return load_config(conf).lakehouse.landing


def read_json(spark: SparkSession, path: str | list[str]) -> DataFrame:
    """The job's reader: its schema plus a corrupt-record column, PERMISSIVE, good lines only.

    ``path``: one date's folder, or a list of them (``order_date`` then comes from each
    line, as for one folder: no partition discovery above the given folders)."""
    raw = (
        spark.read.schema(raw_order_schema(CORRUPT))
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT)
        .json(path)
    )
    return raw.where(F.col(CORRUPT).isNull()).drop(CORRUPT)


def deduped(spark: SparkSession, path: str | list[str], run_id: str) -> DataFrame:
    """Read, transform, key + row hash, latest ``ingested_at`` per key.

    One date's folder (the loops: per key) or a list of them (``bulk``: per (date, key),
    like ninelives' units; the key includes ``order_date``, so the rows kept are the
    same)."""
    out = (
        normalise_orders(read_json(spark, path))
        .transform(with_key(JOB.key))
        .transform(with_row_hash())
    )
    by = [PARTITION_COLUMN, KEY_COLUMN] if isinstance(path, list) else [KEY_COLUMN]
    latest_first = Window.partitionBy(*by).orderBy(
        F.col("ingested_at").desc_nulls_last(), F.col(ROW_HASH_COLUMN).desc()
    )
    return (
        out.withColumn("_rank", F.row_number().over(latest_first))
        .where(F.col("_rank") == 1)
        .drop("_rank")
        .withColumn("_run_id", F.lit(run_id))
        .withColumn("_processed_at", F.current_timestamp())
    )


def dates(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def day_path(root: str, day: dt.date) -> str:
    return f"{root}/{ORDERS_FOLDER}/{PARTITION_COLUMN}={day.isoformat()}"


def ensure_table(spark: SparkSession, target: str, df: DataFrame) -> None:
    """Create the target as ninelives' first write does: partitioned by the date, with
    ``framework.lake.sinks.TABLE_PROPERTIES`` (deletion vectors on)."""
    if not DeltaTable.isDeltaTable(spark, target):
        (
            DeltaTable.createIfNotExists(spark)
            .location(target)
            .addColumns(df.schema)
            .partitionedBy(PARTITION_COLUMN)
            .property("delta.enableDeletionVectors", "true")
            .execute()
        )


def merge_day(
    spark: SparkSession, target: str, df: DataFrame, day: dt.date, *, nmbs: bool = False
) -> None:
    """The write of ``framework.lake.sinks.MergeSink``, hand-written (``nmbs``: the old MERGE).

    Like MergeSink: the partition's ``replaceWhere`` overwrite when the target has no
    file of it, else the MERGE."""
    ensure_table(spark, target, df)
    in_partition = F.col(f"t.{PARTITION_COLUMN}") == F.lit(day)
    files = (
        spark.read.format("delta").load(target).where(F.col(PARTITION_COLUMN) == F.lit(day))
    ).inputFiles()
    if not files and not nmbs:
        # An empty partition: MergeSink writes it with the partition's replaceWhere.
        (
            df.write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", f"{PARTITION_COLUMN} = DATE'{day}'")
            .save(target)
        )
        return
    on = in_partition & (F.col(f"t.{KEY_COLUMN}") == F.col(f"s.{KEY_COLUMN}"))
    changed = F.col(f"t.{ROW_HASH_COLUMN}") != F.col(f"s.{ROW_HASH_COLUMN}")
    table = DeltaTable.forPath(spark, target).alias("t")
    if nmbs:
        (
            table.merge(df.alias("s"), on)
            .whenMatchedUpdateAll(condition=changed)
            .whenNotMatchedInsertAll()
            .whenNotMatchedBySourceDelete(condition=in_partition)
            .execute()
        )
        return
    gone = (
        spark.read.format("delta")
        .load(target)
        .where(F.col(PARTITION_COLUMN) == F.lit(day))
        .select(PARTITION_COLUMN, KEY_COLUMN)
        .distinct()
        .join(df.select(KEY_COLUMN), KEY_COLUMN, "left_anti")
    )
    vanished = F.col(f"s.{ROW_HASH_COLUMN}").isNull()
    (
        table.merge(df.unionByName(gone, allowMissingColumns=True).alias("s"), on)
        .whenMatchedDelete(condition=vanished)
        .whenMatchedUpdateAll(condition=changed)
        .whenNotMatchedInsertAll(condition=~vanished)
        .execute()
    )


def loop(args: argparse.Namespace, *, append: bool, nmbs: bool = False) -> None:
    spark = session(args.conf, f"bench-{args.mode}")
    root = landing(args.conf)
    run_id = f"{args.mode}-{os.getpid()}"
    for n, day in enumerate(dates(args.start, args.end), start=1):
        started = time.monotonic()
        df = deduped(spark, day_path(root, day), run_id)
        if append:
            df.write.format("delta").mode("append").partitionBy(PARTITION_COLUMN).save(args.target)
        else:
            merge_day(spark, args.target, df, day, nmbs=nmbs)
        print(f"{args.mode} {day} done in {time.monotonic() - started:.1f}s", flush=True)
        if args.crash_after and n == args.crash_after:
            os.killpg(os.getpgid(0), signal.SIGKILL)


def plain(args: argparse.Namespace) -> None:
    spark = session(args.conf, "bench-plain")
    root = landing(args.conf)
    # The folder's order_date=... is also a field of every line: the user schema's
    # string column takes the directory value, which equals the field.
    df = normalise_orders(read_json(spark, f"{root}/{ORDERS_FOLDER}"))
    df.write.format("delta").mode("append").partitionBy(PARTITION_COLUMN).save(args.target)
    print("plain done", flush=True)


def bulk(args: argparse.Namespace) -> None:
    """All dates in one Spark job and one ``replaceWhere`` commit of the whole range."""
    spark = session(args.conf, "bench-bulk")
    root = landing(args.conf)
    started = time.monotonic()
    days = dates(args.start, args.end)
    df = deduped(spark, [day_path(root, day) for day in days], f"bulk-{os.getpid()}")
    ensure_table(spark, args.target, df)
    in_range = f"{PARTITION_COLUMN} >= DATE'{days[0]}' AND {PARTITION_COLUMN} <= DATE'{days[-1]}'"
    (
        df.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", in_range)
        .partitionBy(PARTITION_COLUMN)
        .save(args.target)
    )
    print(
        f"bulk {days[0]}..{days[-1]} ({len(days)} dates) done in {time.monotonic() - started:.1f}s",
        flush=True,
    )


def inspect(args: argparse.Namespace) -> None:
    spark = session(args.conf, "bench-inspect")
    result: dict[str, object] = {"tables": {}, "ledgers": {}}
    for path in args.table:
        if not DeltaTable.isDeltaTable(spark, path):
            result["tables"][path] = None  # type: ignore[index]
            continue
        row = (
            spark.read.format("delta")
            .load(path)
            .agg(F.count(F.lit(1)).alias("rows"), F.count_distinct(KEY_COLUMN).alias("keys"))
            .first()
        )
        assert row is not None
        result["tables"][path] = {"rows": row["rows"], "distinct_keys": row["keys"]}  # type: ignore[index]
    for root in args.ledger:
        from framework.core.config import LakehouseConfig
        from framework.lake.tables import Lakehouse
        from framework.state.ledger import Ledger

        lake = Lakehouse(LakehouseConfig(root=root))
        states = Ledger(spark, lake.framework_table("ledger")).states(JOB.name)[JOB.name]
        by_state: dict[str, int] = {}
        for state in states.values():
            by_state[state.state] = by_state.get(state.state, 0) + 1
        result["ledgers"][root] = {  # type: ignore[index]
            "states": by_state,
            "rows_written": sum(s.rows_written or 0 for s in states.values()),
            "target_versions": {p.isoformat(): s.target_version for p, s in sorted(states.items())},
        }
    print("INSPECT " + json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("bare", "bare-nmbs", "plain", "bulk", "naive", "inspect"))
    parser.add_argument("--conf", required=True, help="the benchmark's TOML config")
    parser.add_argument("--target", help="Delta table path to write")
    parser.add_argument("--from", dest="start", type=dt.date.fromisoformat)
    parser.add_argument("--to", dest="end", type=dt.date.fromisoformat)
    parser.add_argument("--crash-after", type=int, default=0)
    parser.add_argument("--table", action="append", default=[])
    parser.add_argument("--ledger", action="append", default=[], help="a lakehouse root")
    args = parser.parse_args(argv)
    if args.mode in ("bare", "bare-nmbs", "naive"):
        if not (args.target and args.start and args.end):
            parser.error(f"{args.mode} needs --target, --from and --to")
        loop(args, append=args.mode == "naive", nmbs=args.mode == "bare-nmbs")
    elif args.mode == "bulk":
        if not (args.target and args.start and args.end):
            parser.error("bulk needs --target, --from and --to")
        bulk(args)
    elif args.mode == "plain":
        if not args.target:
            parser.error("plain needs --target")
        plain(args)
    else:
        inspect(args)


if __name__ == "__main__":
    main(sys.argv[1:])
