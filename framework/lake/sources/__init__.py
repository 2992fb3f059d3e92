"""Readers of one partition of a job's input.

A source returns the partition's raw rows. Rows it could not parse carry their raw
text in :data:`CORRUPT_COLUMN`; the runner sends those to quarantine with their parse
error instead of dropping them. A source with nothing at all for the partition raises
:class:`~framework.core.errors.SourceMissingError`, never "complete with 0 rows".

- :class:`FileSource` (:mod:`.files`): Parquet, CSV, JSON, text or Avro files located by
  a path template of the date; :class:`JsonLinesSource` is its Hive-style JSON case.
- :class:`TableSource` (:mod:`.tables`): one day of a table, by a date or timestamp
  column; :class:`DeltaSource` is its case of a lakehouse table's DATE column.

Example::

    FileSource("csv", "exports/{date:%Y/%m/%d}/*.csv.gz", schema=SCHEMA,
               options={"header": True}, date_column="order_date")
    JsonLinesSource("orders", schema=RAW_ORDER_SCHEMA, partition_column="order_date")
    TableSource("main.sales.orders", date_column="order_ts")
    DeltaSource("silver.orders", partition_column="order_date")
"""

from framework.lake.sources.base import CORRUPT_COLUMN, Source, same_file
from framework.lake.sources.files import FORMATS, FileSource, JsonLinesSource
from framework.lake.sources.tables import DeltaSource, TableSource

__all__ = [
    "CORRUPT_COLUMN",
    "FORMATS",
    "DeltaSource",
    "FileSource",
    "JsonLinesSource",
    "Source",
    "TableSource",
    "same_file",
]
