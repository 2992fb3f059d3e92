"""Seed deterministic sample landing data for the example job ``orders_daily``.

The landing zone is what a source system drops before any job runs: one folder per
order date, each holding JSON lines, one order event per line::

    <landing_root>/orders/order_date=2024-01-01/part-00000-....txt
    {"source_id":"ORD-0000000000","order_date":"2024-01-01","event_type":"created",
     "event_ts":"2024-01-01T10:11:12.123+01:00","customer_id":"C-004711",
     "amount":12.30,"currency":"EUR","ingested_at":"2024-01-02T04:12:13.456Z"}

The data is built entirely by Spark from ``spark.range`` and ``xxhash64`` of
``(seed, tag, id)``, never ``rand()``, so the same arguments always give the same
multiset of lines (file names and line order may differ) on any cluster, and
10 million lines take one to two minutes on two cores.

Example::

    report = seed_orders(spark, "/tmp/lakehouse/landing", days=7, rows_per_day=1000)
    df = spark.read.schema(RAW_ORDER_SCHEMA).json(report.path)
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType
from rich.console import Console

from framework.cli.args import Commands, positive
from framework.core.config import Config
from framework.lake.session import get_or_create_session
from framework.lake.tables import Lakehouse

SAMPLE_START = datetime.date(2024, 1, 1)

ORDERS_FOLDER = "orders"
EVENTS_PER_ORDER = 3
"""Event slots per order: 0 ``created``, 1 ``paid``, 2 ``shipped`` or ``cancelled``."""

MALFORMED_EVERY = 500
"""One malformed line per this many good events in a day (0.2 %)."""

DUPLICATE_PER_MILLE = 10
"""Each of the two re-delivery kinds (copy, correction) hits this many events per 1000."""

OFFSETS = ("+00:00", "+01:00", "-05:00")
CURRENCIES = ("EUR", "USD", "GBP")
CUSTOMERS = 100_000

# Event times are drawn local to the order's offset and must stay on the order date:
# created before 20:00, then each later slot 1 to 60 minutes after the previous one.
_CREATED_WITHIN_MS = 20 * 3_600_000
_MAX_GAP_MS = 3_600_000
# Exports happen the next UTC day. The latest possible event is 22:00 at -05:00, i.e.
# 03:00Z the next day, so first deliveries at 04:00-05:00Z come after every event and
# re-deliveries at 12:00-13:00Z come after every first delivery.
_FIRST_EXPORT_HOUR = 4
_REDELIVERY_HOUR = 12

# Range partitions are cut so that no task spans two days (see _events); this bounds
# how many events one task writes.
_EVENTS_PER_TASK = 500_000


@dataclass(frozen=True)
class SeedReport:
    """What :func:`seed_orders` wrote; every count is exact, measured on the frame.

    ``lines_written = days * rows_per_day + duplicate_lines + malformed_lines``.
    ``duplicate_lines`` counts the second deliveries (identical copies and corrections
    together); ``path`` is the ``orders`` folder to read.
    """

    days: int
    rows_per_day: int
    lines_written: int
    duplicate_lines: int
    malformed_lines: int
    path: str


def sample_dates(days: int = 7, start: datetime.date = SAMPLE_START) -> list[datetime.date]:
    """The order dates :func:`seed_orders` writes with the same arguments.

    Example::

        sample_dates(3)  # [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)]
    """
    return [start + datetime.timedelta(days=i) for i in range(days)]


def malformed_per_day(rows_per_day: int) -> int:
    """How many malformed lines each day gets: ``max(1, rows_per_day // 500)``, or 0
    below 100 rows a day (a tiny sample should be clean unless asked otherwise)."""
    return max(1, rows_per_day // MALFORMED_EVERY) if rows_per_day >= 100 else 0


def seed_orders(
    spark: SparkSession,
    landing_root: str,
    *,
    days: int = 7,
    rows_per_day: int = 1000,
    start: datetime.date = SAMPLE_START,
    seed: int = 42,
) -> SeedReport:
    """Write ``days`` days of order events, with known bad data, under ``landing_root``.

    Every line comes from an event slot ``id = i * (rows_per_day + m) + n`` for day
    ``i`` (order date ``d = start + i``) and slot ``n`` in ``[0, rows_per_day + m)``,
    where ``m = malformed_per_day(rows_per_day)``; slots ``n < rows_per_day`` are good
    events, the ``m`` slots after them are malformed lines.

    Good events: for each order date ``d`` exactly ``rows_per_day`` distinct events,
    unique by ``(source_id, order_date, event_type)``. Slot ``n`` belongs to order
    ``i * ceil((rows_per_day + m) / 3) + n // 3`` (its ``source_id`` is ``ORD-`` and
    that number in 10 digits) and has event type ``created``, ``paid``, then ``shipped``
    (or, for about 1 order in 10, ``cancelled``) for ``n % 3`` = 0, 1, 2.
    An order's ``source_id``, ``customer_id``, ``amount``, ``currency`` and UTC offset
    are the same on all its events; its ``event_ts`` values increase and lie on ``d`` in
    local time. First deliveries have ``ingested_at`` on ``d + 1`` between 04:00 and
    05:00 UTC, after every event time.

    Bad data, drawn per slot from ``hash = xxhash64(seed, tag, id)``, fixed for given
    arguments:

    * **re-delivered duplicates**: an event with ``pmod(hash, 1000) < 10`` is delivered
      a second time as a byte-identical copy; one with ``10 <= pmod(hash, 1000) < 20``
      is delivered a second time as a *correction*: same key, a higher ``amount``
      (by 0.01 to 50.00) and ``ingested_at`` on ``d + 1`` between 12:00 and 13:00 UTC,
      later than every first delivery. About 2 % of events, half of each kind; the job
      must keep the latest line by ``ingested_at``.
    * **malformed lines**: each day gets ``malformed_per_day(rows_per_day)`` extra lines
      (``max(1, rows_per_day // 500)``, none below 100 rows a day), built from events of
      their own (slots after the day's good events, so their keys never collide with a
      good key). Malformed line ``k`` of day ``i`` is, when ``i + k`` is even, the JSON
      cut to its first ``length // 2`` characters, and otherwise whole JSON with
      ``"amount":"twelve"``. Malformed lines replace nothing: each day still has
      exactly ``rows_per_day`` good events.

    Days already present under ``orders`` are replaced whole (dynamic partition
    overwrite); other days stay, so a later call with a later ``start`` can land "the
    next day". The report counts only this call's lines. Order numbers restart at 0 in
    every call, which is harmless because the key includes ``order_date``.

    :param spark: the session to generate and write with.
    :param landing_root: folder (or URI) of the landing zone; data goes to
        ``<landing_root>/orders/order_date=YYYY-MM-DD/``.
    :param days: number of consecutive order dates, from ``start``.
    :param rows_per_day: good events per order date.
    :param start: the first order date.
    :param seed: changes every drawn value; same seed, same lines.
    :return: a :class:`SeedReport` with exact line counts.

    Example::

        report = seed_orders(spark, str(tmp_path / "landing"), days=3, rows_per_day=200)
        assert report.lines_written == 600 + report.duplicate_lines + report.malformed_lines
    """
    if days < 1 or rows_per_day < 1:
        raise ValueError(
            f"seed_orders needs days >= 1 and rows_per_day >= 1; "
            f"got days={days}, rows_per_day={rows_per_day}"
        )
    path = f"{landing_root.rstrip('/')}/{ORDERS_FOLDER}"
    lines = order_lines(spark, days=days, rows_per_day=rows_per_day, start=start, seed=seed)
    # The counts are one aggregate over the generated frame, collected by the write
    # itself: exact, and no second pass over 10 million lines to get them.
    counts = Observation("seed_orders")
    (
        lines.observe(
            counts,
            F.count(F.lit(1)).alias("lines"),
            F.sum(F.col("kind").isin("copy", "correction").cast("long")).alias("duplicates"),
            F.sum((F.col("kind") == "malformed").cast("long")).alias("malformed"),
        )
        .select("value", "order_date")
        .write.partitionBy("order_date")
        .mode("overwrite")
        # Per-write option, so a session default of "static" cannot wipe other days.
        .option("partitionOverwriteMode", "dynamic")
        .text(path)
    )
    _drop_checksum_files(path)
    measured = counts.get
    return SeedReport(
        days=days,
        rows_per_day=rows_per_day,
        lines_written=int(measured["lines"]),
        duplicate_lines=int(measured["duplicates"] or 0),
        malformed_lines=int(measured["malformed"] or 0),
        path=path,
    )


def _drop_checksum_files(path: str) -> None:
    """Delete the hidden ``.<file>.crc`` files Hadoop's local file system writes beside
    each file, so that the landing files are plain files, as an exporter writes them:
    with a checksum file beside it, a file edited by hand fails every read of its date.
    Paths with a scheme (object storage) have none."""
    if "://" in path and not path.startswith("file:"):
        return
    for crc in Path(path.removeprefix("file:")).rglob(".*.crc"):
        crc.unlink()


def order_lines(
    spark: SparkSession,
    *,
    days: int,
    rows_per_day: int,
    start: datetime.date = SAMPLE_START,
    seed: int = 42,
) -> DataFrame:
    """The lines :func:`seed_orders` writes, without writing them.

    Columns: ``value`` (the JSON line), ``order_date`` (``YYYY-MM-DD``) and ``kind``:
    ``event`` (first delivery of a good event), ``copy``, ``correction`` or
    ``malformed``.
    """
    events = _events(spark, days=days, rows_per_day=rows_per_day, start=start, seed=seed)

    def draw(tag: str, modulus: int, key: str) -> Column:
        return _draw(seed, tag, modulus, F.col(key))

    redelivery = draw("redelivery", 1000, "id")
    deliveries = (
        events.withColumn(
            "redelivery",
            F.when(F.col("malformed"), F.lit(None).cast("string"))
            .when(redelivery < DUPLICATE_PER_MILLE, F.lit("copy"))
            .when(redelivery < 2 * DUPLICATE_PER_MILLE, F.lit("correction")),
        )
        # One row per delivery: a second row only for re-delivered events. Exploding
        # keeps generation a single narrow pass, no union re-reading the range.
        .withColumn(
            "delivery",
            F.explode(
                F.when(F.col("redelivery").isNull(), F.array(F.lit(0))).otherwise(
                    F.array(F.lit(0), F.lit(1))
                )
            ),
        )
        .withColumn(
            "kind",
            F.when(F.col("malformed"), F.lit("malformed"))
            .when(F.col("delivery") == 1, F.col("redelivery"))
            .otherwise(F.lit("event")),
        )
    )
    is_correction = F.col("kind") == "correction"
    export_hour = F.when(is_correction, _REDELIVERY_HOUR).otherwise(_FIRST_EXPORT_HOUR)
    # A copy is byte-identical, so the jitter is drawn per event, not per delivery.
    export_ms = export_hour * 3_600_000 + draw("export", 3_600_000, "id")
    export_day = F.date_add(F.col("order_date_d"), 1).cast("string")
    fields = {
        "source_id": F.col("source_id"),
        "order_date": F.col("order_date"),
        "event_type": F.col("event_type"),
        "event_ts": _clock(F.col("order_date"), F.col("event_ms"), F.col("offset")),
        "customer_id": F.col("customer_id"),
        "amount": _cents_to_amount(
            F.col("amount_cents")
            + F.when(is_correction, draw("correction", 5000, "id") + 1).otherwise(0)
        ),
        "currency": F.col("currency"),
        "ingested_at": _clock(export_day, export_ms, F.lit("Z")),
    }
    good_json = F.to_json(F.struct(*[c.alias(name) for name, c in fields.items()]))
    wrong_type_json = F.to_json(
        F.struct(
            *[
                (F.lit("twelve") if name == "amount" else c).alias(name)
                for name, c in fields.items()
            ]
        )
    )
    truncated = (F.col("day") + F.col("malformed_no")) % 2 == 0
    value = (
        F.when(~F.col("malformed"), good_json)
        .when(truncated, good_json.substr(F.lit(1), (F.length(good_json) / 2).cast("int")))
        .otherwise(wrong_type_json)
    )
    return deliveries.select(value.alias("value"), "order_date", "kind")


def _events(
    spark: SparkSession, *, days: int, rows_per_day: int, start: datetime.date, seed: int
) -> DataFrame:
    """One row per event slot: ``rows_per_day`` good slots then the malformed slots,
    per day, with every field of the event drawn but not yet formatted as JSON."""
    slots = rows_per_day + malformed_per_day(rows_per_day)
    orders_per_day = math.ceil(slots / EVENTS_PER_ORDER)
    # Partition count a multiple of `days` with equal sizes puts every range boundary
    # on a day boundary: each write task then feeds one order_date folder, and its
    # sort by partition column stays small and in memory.
    tasks_per_day = max(1, math.ceil(slots / _EVENTS_PER_TASK))
    ids = spark.range(0, days * slots, 1, days * tasks_per_day)

    def draw(tag: str, modulus: int, key: str) -> Column:
        return _draw(seed, tag, modulus, F.col(key))

    cancelled = draw("cancel", 10, "order_no") == 0
    created_ms = draw("created", _CREATED_WITHIN_MS, "order_no")
    gap_ms = 60_000 + draw("gap", _MAX_GAP_MS - 60_000, "order_no")
    return (
        # Casting a non-negative quotient to long is integer division.
        ids.withColumn("day", (F.col("id") / slots).cast("long"))
        .withColumn("slot_in_day", F.col("id") % slots)
        .withColumn(
            "order_no",
            F.col("day") * orders_per_day + (F.col("slot_in_day") / EVENTS_PER_ORDER).cast("long"),
        )
        .withColumn("event_slot", F.col("slot_in_day") % EVENTS_PER_ORDER)
        .withColumn("malformed", F.col("slot_in_day") >= rows_per_day)
        # k of "malformed line k of day i" in the docstring.
        .withColumn("malformed_no", F.col("slot_in_day") - rows_per_day)
        .withColumn("order_date_d", F.date_add(F.lit(start), F.col("day").cast("int")))
        .withColumn("order_date", F.col("order_date_d").cast("string"))
        .withColumn("source_id", F.concat(F.lit("ORD-"), _digits(F.col("order_no"), 10)))
        .withColumn(
            "event_type",
            F.when(F.col("event_slot") == 0, F.lit("created"))
            .when(F.col("event_slot") == 1, F.lit("paid"))
            .when(cancelled, F.lit("cancelled"))
            .otherwise(F.lit("shipped")),
        )
        .withColumn("event_ms", created_ms + F.col("event_slot") * gap_ms)
        .withColumn("offset", _pick(OFFSETS, draw("offset", len(OFFSETS), "order_no")))
        .withColumn(
            "customer_id",
            F.concat(F.lit("C-"), _digits(draw("customer", CUSTOMERS, "order_no"), 6)),
        )
        # 1.00 to 999.99, kept in whole cents until formatted.
        .withColumn("amount_cents", draw("amount", 99_900, "order_no") + 100)
        .withColumn("currency", _pick(CURRENCIES, draw("currency", len(CURRENCIES), "order_no")))
    )


def _draw(seed: int, tag: str, modulus: int, key: Column) -> Column:
    """A deterministic pseudo-random long in ``[0, modulus)`` for ``key``.

    ``xxhash64`` is specified by Spark (fixed seed 42, same on every executor and
    version), unlike ``rand()``, whose stream depends on partitioning. The tag keeps
    draws for different purposes independent.
    """
    return F.pmod(F.xxhash64(F.lit(seed).cast("long"), F.lit(tag), key), F.lit(modulus))


def _pick(options: Sequence[str], index: Column) -> Column:
    return F.element_at(F.array(*[F.lit(o) for o in options]), (index + 1).cast("int"))


def _cents_to_amount(cents: Column) -> Column:
    """Exact decimal arithmetic: a double would print 12.370000000000001 one day."""
    return (cents.cast(DecimalType(14, 0)) / F.lit(100)).cast(DecimalType(12, 2))


def _digits(number: Column, width: int) -> Column:
    """``number`` zero-padded to ``width`` digits (callers keep it below 10**width).

    ``lpad`` rather than ``format_string``: java.util.Formatter costs about a
    microsecond a call, which at four calls a line is a third of a 10-million-line run.
    """
    return F.lpad(number.cast("string"), width, "0")


def _clock(date: Column, ms_of_day: Column, suffix: Column) -> Column:
    """``YYYY-MM-DDTHH:MM:SS.mmm`` + suffix, built from integers so that neither the
    session time zone nor the JVM's locale can change a byte."""
    return F.concat(
        date,
        F.lit("T"),
        _digits((ms_of_day / 3_600_000).cast("long"), 2),
        F.lit(":"),
        _digits((ms_of_day / 60_000).cast("long") % 60, 2),
        F.lit(":"),
        _digits((ms_of_day / 1000).cast("long") % 60, 2),
        F.lit("."),
        _digits(ms_of_day % 1000, 3),
        suffix,
    )


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """``ninelives seed``: the example jobs' command (entry point group
    ``ninelives.commands``), which writes this module's sample landing data."""
    seed = commands.add_parser("seed", parents=[common], help="write sample landing data")
    seed.add_argument("--days", type=positive, default=7)
    seed.add_argument("--rows-per-day", type=positive, default=1000)
    seed.add_argument("--seed", type=int, default=42)
    seed.add_argument("--if-absent", action="store_true", help="do nothing if data exists")
    seed.set_defaults(handler=cmd_seed)


def cmd_seed(args: argparse.Namespace, config: Config, console: Console) -> int:
    lakehouse = Lakehouse(config.lakehouse)
    root = lakehouse.landing_path()
    if args.if_absent and os.path.isdir(lakehouse.landing_path(ORDERS_FOLDER)):
        console.print(f"sample landing data already present under {root}")
        return 0
    spark = get_or_create_session(config)
    seeded = seed_orders(
        spark, root, days=args.days, rows_per_day=args.rows_per_day, seed=args.seed
    )
    console.print(
        f"seeded {seeded.lines_written:,} lines ({seeded.duplicate_lines:,} re-delivered, "
        f"{seeded.malformed_lines:,} malformed) over {seeded.days} days under {seeded.path}"
    )
    return 0
