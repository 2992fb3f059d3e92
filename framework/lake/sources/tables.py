"""Sources that are tables: one day of a catalog table, a lakehouse table or a table at
a path, selected by a date predicate that Delta's partition pruning and data skipping
use."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StringType, TimestampNTZType, TimestampType

from framework.core.errors import SchemaMismatchError, SourceMissingError, UsageError
from framework.core.names import checked_identifier, checked_table_name
from framework.lake.storage import absolute, is_url
from framework.lake.tables import Lakehouse, TableRef

TABLE_FORMATS = ("delta", "parquet")
"""Formats of a table named by its path."""
# The prefix DeltaSource's fingerprints always had: kept, so that no complete partition
# turns stale when a job moves from DeltaSource to TableSource.
FINGERPRINT_PREFIX = "delta:"
# What reading a path that holds no table raises.
_NO_TABLE = frozenset({"PATH_NOT_FOUND", "DELTA_TABLE_NOT_FOUND", "UNABLE_TO_INFER_SCHEMA"})


def is_path(table: str) -> bool:
    """Whether ``table`` names a table by its location rather than by name."""
    return is_url(table) or table.startswith(("/", "./", "../", "file:"))


@dataclass(frozen=True)
class TableSource:
    """One day of a table, by a date predicate on one of its columns.

    :param table: ``catalog.schema.table`` (``spark_catalog.default.orders``,
        ``main.sales.orders``): a table of the session's catalogs; ``schema.table``
        (``silver.orders``): a table of the lakehouse (:meth:`Lakehouse.table`); a path
        or URL (``/data/orders``, ``s3a://bucket/orders``): the table there, of
        ``format``.
    :param date_column: the column that says a row's day: a DATE column equal to the
        partition, a TIMESTAMP (or TIMESTAMP_NTZ) column within the partition's day as
        the half-open range ``[day 00:00, next day 00:00)`` in the session time zone,
        or a STRING column of ISO dates equal to ``YYYY-MM-DD``. The table may be
        partitioned by it, by another column, or not at all: the predicate is a plain
        comparison with constants, so Delta prunes partitions and skips files by their
        statistics either way.
    :param format: the format of a table named by its path: ``delta`` or ``parquet``.

    The fingerprint is the sorted list of files the day's read would scan, planned from
    the Delta log (no data read): a commit that adds or rewrites a file holding rows of
    the day changes it. A parquet table's read lists all its files, so any change to it
    changes every day's fingerprint.

    Example::

        TableSource("main.sales.orders", date_column="order_ts")   # a TIMESTAMP column
        TableSource("silver.orders", date_column="order_date")     # a DATE column
    """

    table: str
    date_column: str
    format: str = "delta"
    _ref: str | tuple[str, str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checked_identifier(self.date_column, "date column")
        if self.format not in TABLE_FORMATS:
            raise UsageError(
                f"table source format {self.format!r} is not one of: {', '.join(TABLE_FORMATS)}"
            )
        if is_path(self.table):
            ref: str | tuple[str, str, str] = absolute(self.table)
        else:
            parts = self.table.split(".")
            if len(parts) == 2:
                checked_table_name(self.table)
                ref = self.table
            elif len(parts) == 3:
                catalog, schema, name = (checked_identifier(p, "table name part") for p in parts)
                ref = (catalog, schema, name)
            else:
                raise UsageError(
                    f"table source {self.table!r}: expected 'catalog.schema.table', a "
                    "lakehouse table 'schema.table', or a path"
                )
            if self.format != "delta":
                raise UsageError(
                    f"table source {self.table!r}: format applies to a table named by path"
                )
        object.__setattr__(self, "_ref", ref)

    def table_ref(self, lakehouse: Lakehouse) -> TableRef | None:
        """The table as a :class:`TableRef`; None for a parquet table at a path."""
        ref = self._ref
        if isinstance(ref, tuple):
            catalog, schema, name = ref
            return TableRef(schema, name, full_name=f"`{catalog}`.`{schema}`.`{name}`")
        if is_path(self.table):
            return TableRef("", "", path=ref) if self.format == "delta" else None
        return lakehouse.table(ref)

    def describe(self, lakehouse: Lakehouse) -> str:
        ref = self.table_ref(lakehouse)
        return str(ref) if ref is not None else f"{self.format} table at {self._ref}"

    def whole(self, spark: SparkSession, lakehouse: Lakehouse) -> DataFrame | None:
        """All of the table; None when it does not exist."""
        ref = self.table_ref(lakehouse)
        if ref is not None:
            return ref.read(spark) if ref.exists(spark) else None
        try:
            return spark.read.format(self.format).load(str(self._ref))
        except AnalysisException as error:
            if error.getCondition() in _NO_TABLE:
                return None
            raise

    def predicate(self, df: DataFrame, lakehouse: Lakehouse, partition: dt.date) -> Column:
        """``date_column`` within ``partition``, in the terms of its type."""
        fields = {f.name: f.dataType for f in df.schema.fields}
        column = F.col(self.date_column)
        kind = fields.get(self.date_column)
        if kind is None:
            raise SchemaMismatchError(
                f"{self.describe(lakehouse)} has no column {self.date_column} to select "
                f"{partition.isoformat()} by; its columns: {', '.join(fields)}"
            )
        if isinstance(kind, DateType):
            return column == F.lit(partition)
        if isinstance(kind, StringType):
            return column == F.lit(partition.isoformat())
        if isinstance(kind, (TimestampType, TimestampNTZType)):
            # Constants in the session's time zone, folded before Delta plans the scan.
            cast = "timestamp" if isinstance(kind, TimestampType) else "timestamp_ntz"
            start = F.lit(partition.isoformat()).cast(cast)
            end = F.lit((partition + dt.timedelta(days=1)).isoformat()).cast(cast)
            return (column >= start) & (column < end)
        raise SchemaMismatchError(
            f"{self.describe(lakehouse)}: column {self.date_column} is "
            f"{kind.simpleString()}; a table source selects a day by a date, timestamp "
            "or ISO date string column"
        )

    def read(
        self,
        spark: SparkSession,
        lakehouse: Lakehouse,
        partition: dt.date,
        *,
        skip: frozenset[str] = frozenset(),
    ) -> DataFrame:
        """``skip`` is ignored: a table's files are the table's, not to leave out."""
        df = self.whole(spark, lakehouse)
        if df is None:
            raise SourceMissingError(
                f"no source table for {partition.isoformat()}: "
                f"{self.describe(lakehouse)} does not exist"
            )
        return df.where(self.predicate(df, lakehouse, partition))

    def empty(self, spark: SparkSession, lakehouse: Lakehouse) -> DataFrame:
        df = self.whole(spark, lakehouse)
        if df is None:
            raise SourceMissingError(f"{self.describe(lakehouse)} does not exist")
        return df.limit(0)

    def fingerprint(
        self, spark: SparkSession, lakehouse: Lakehouse, partition: dt.date
    ) -> str | None:
        """sha256 of the sorted files the day's read scans, from the Delta log alone
        (partition pruning and data skipping, no data read): any commit that rewrites or
        adds rows there changes it. Deletes through deletion vectors alone do not.
        None when the table does not exist."""
        df = self.whole(spark, lakehouse)
        if df is None:
            return None
        files = df.where(self.predicate(df, lakehouse, partition)).inputFiles()
        return FINGERPRINT_PREFIX + hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()


@dataclass(frozen=True)
class DeltaSource:
    """One partition of another Delta table of the lakehouse, e.g. a silver table: a
    :class:`TableSource` of the logical name ``table`` by its ``partition_column``."""

    table: str
    partition_column: str
    _table: TableSource = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checked_identifier(self.partition_column, "partition column")
        checked_table_name(self.table)
        object.__setattr__(self, "_table", TableSource(self.table, self.partition_column))

    def describe(self, lakehouse: Lakehouse) -> str:
        return self._table.describe(lakehouse)

    def empty(self, spark: SparkSession, lakehouse: Lakehouse) -> DataFrame:
        return self._table.empty(spark, lakehouse)

    def fingerprint(
        self, spark: SparkSession, lakehouse: Lakehouse, partition: dt.date
    ) -> str | None:
        """:meth:`TableSource.fingerprint`: the files that hold the partition."""
        return self._table.fingerprint(spark, lakehouse, partition)

    def read(
        self,
        spark: SparkSession,
        lakehouse: Lakehouse,
        partition: dt.date,
        *,
        skip: frozenset[str] = frozenset(),
    ) -> DataFrame:
        """``skip`` is ignored: a Delta table's files are the table's, not to leave out."""
        return self._table.read(spark, lakehouse, partition)
