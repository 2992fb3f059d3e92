"""Readers of one partition of a job's input.

A source returns the partition's raw rows. Rows it could not parse carry their raw
text in :data:`CORRUPT_COLUMN`; the runner sends those to quarantine with their parse
error instead of dropping them. A source with nothing at all for the partition raises
:class:`~framework.core.errors.SourceMissingError`, never "complete with 0 rows".

Example::

    JsonLinesSource("orders", schema=RAW_ORDER_SCHEMA, partition_column="order_date")
    DeltaSource("silver.orders", partition_column="order_date")
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Protocol

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from framework.core.errors import SourceMissingError
from framework.core.names import checked_identifier
from framework.lake.storage import InputFile
from framework.lake.storage import fingerprint as files_fingerprint
from framework.lake.tables import Lakehouse

CORRUPT_COLUMN = "_corrupt_record"


class Source(Protocol):
    """What the runner needs of a source."""

    def read(
        self,
        spark: SparkSession,
        lakehouse: Lakehouse,
        partition: dt.date,
        *,
        skip: frozenset[str] = frozenset(),
    ) -> DataFrame:
        """The rows of ``partition``; raise SourceMissingError when there are none.

        ``skip``: files to leave out (their URIs as Spark names them in errors), for jobs
        that quarantine unreadable files; a source that cannot leave files out ignores
        it, and the partition then fails on the same file."""
        ...

    def describe(self, lakehouse: Lakehouse) -> str:
        """Where the source lives, for messages."""
        ...

    def empty(self, spark: SparkSession, lakehouse: Lakehouse) -> DataFrame:
        """No rows, with the schema ``read`` would give (for ``allow_empty`` jobs)."""
        ...

    def fingerprint(
        self, spark: SparkSession, lakehouse: Lakehouse, partition: dt.date
    ) -> str | None:
        """A cheap digest of the partition's input, without reading its data; None
        when there is no input. A changed digest marks a complete partition stale."""
        ...

    # Optional: ``size(spark, lakehouse, partition) -> int``, the bytes of the
    # partition's input, by which the runner packs dates into work units; a source
    # without it is packed by the number of dates alone.
    #
    # Optional: ``files(spark, lakehouse, partition) -> list[InputFile]`` and a ``files``
    # keyword of ``read`` (read only those): a partition bigger than a unit is then
    # processed in chunks of its files (:mod:`framework.engine.chunks`).
    #
    # Optional: ``listing_fingerprint(lakehouse, partition) -> str | None``, the same
    # digest as ``fingerprint`` without Spark: ``status`` and a run's plan then tell
    # stale partitions without starting a JVM (:mod:`framework.ops.native`).


@dataclass(frozen=True)
class JsonLinesSource:
    """JSON-lines files under ``<landing>/<folder>/<partition_column>=<YYYY-MM-DD>/``.

    Parsing is Spark's PERMISSIVE mode: a line that is not JSON or holds a value of the
    wrong type comes back with all fields null and its text in ``_corrupt_record``.
    """

    folder: str
    schema: StructType
    partition_column: str

    def __post_init__(self) -> None:
        checked_identifier(self.partition_column, "partition column")

    def partition_path(self, lakehouse: Lakehouse, partition: dt.date) -> str:
        return lakehouse.landing_path(
            self.folder, f"{self.partition_column}={partition.isoformat()}"
        )

    def describe(self, lakehouse: Lakehouse) -> str:
        return lakehouse.landing_path(self.folder)

    def empty(self, spark: SparkSession, lakehouse: Lakehouse) -> DataFrame:
        return spark.createDataFrame([], self.schema)

    def fingerprint(
        self, spark: SparkSession, lakehouse: Lakehouse, partition: dt.date
    ) -> str | None:
        """sha256 of the files' names, sizes and modification times: a late file, a
        re-export or a corrected file changes it."""
        return self.listing_fingerprint(lakehouse, partition)

    def listing_fingerprint(self, lakehouse: Lakehouse, partition: dt.date) -> str | None:
        """:meth:`fingerprint`, which is a file listing: no Spark needed."""
        folder = self.partition_path(lakehouse, partition)
        if not lakehouse.storage.is_dir(folder):
            return None
        return files_fingerprint(self.listed(lakehouse, partition))

    def size(self, spark: SparkSession, lakehouse: Lakehouse, partition: dt.date) -> int:
        """Bytes of the partition's files, for packing dates into work units."""
        return sum(f.size for f in self.files(spark, lakehouse, partition))

    def files(
        self, spark: SparkSession, lakehouse: Lakehouse, partition: dt.date
    ) -> list[InputFile]:
        """The partition's data files in name order, with their sizes and times."""
        return self.listed(lakehouse, partition)

    def listed(self, lakehouse: Lakehouse, partition: dt.date) -> list[InputFile]:
        """:meth:`files`, by a listing of the landing folder alone."""
        return lakehouse.storage.files(self.partition_path(lakehouse, partition))

    def read(
        self,
        spark: SparkSession,
        lakehouse: Lakehouse,
        partition: dt.date,
        *,
        skip: frozenset[str] = frozenset(),
        files: tuple[str, ...] | None = None,
    ) -> DataFrame:
        """``files``: read only these of the partition's files (a chunk of it)."""
        path = self.partition_path(lakehouse, partition)
        paths = list(files) if files is not None else None
        if paths is None:
            paths = [f.path for f in self.listed(lakehouse, partition)]
        if skip:  # Spark names a local file file:///…, unescaped
            paths = [f for f in paths if spark_uri(f) not in skip]
        if not paths:
            raise SourceMissingError(
                f"no source files for {partition.isoformat()} under {self.describe(lakehouse)}"
            )
        schema = StructType([*self.schema.fields, StructField(CORRUPT_COLUMN, StringType())])
        reader = (
            spark.read.schema(schema)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT_COLUMN)
        )
        if skip or files is not None:
            return reader.json(paths)
        return reader.json(path)


def spark_uri(path: str) -> str:
    """How Spark names the file ``path`` in its errors and ``input_file_name()``: a local
    one as ``file:///…``, unescaped; a URL as it is."""
    return path if "://" in path else f"file://{path}"


@dataclass(frozen=True)
class DeltaSource:
    """One partition of another Delta table of the lakehouse, e.g. a silver table."""

    table: str
    partition_column: str

    def __post_init__(self) -> None:
        checked_identifier(self.partition_column, "partition column")

    def describe(self, lakehouse: Lakehouse) -> str:
        return str(lakehouse.table(self.table))

    def empty(self, spark: SparkSession, lakehouse: Lakehouse) -> DataFrame:
        return lakehouse.table(self.table).read(spark).limit(0)

    def fingerprint(
        self, spark: SparkSession, lakehouse: Lakehouse, partition: dt.date
    ) -> str | None:
        """sha256 of the data files that hold the partition, from the Delta log alone
        (partition pruning, no data read): any commit that rewrites or adds rows there
        changes it. Deletes through deletion vectors alone do not."""
        ref = lakehouse.table(self.table)
        if not ref.exists(spark):
            return None
        files = self.read(spark, lakehouse, partition).inputFiles()
        return "delta:" + hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()

    def read(
        self,
        spark: SparkSession,
        lakehouse: Lakehouse,
        partition: dt.date,
        *,
        skip: frozenset[str] = frozenset(),
    ) -> DataFrame:
        """``skip`` is ignored: a Delta table's files are the table's, not to leave out."""
        ref = lakehouse.table(self.table)
        if not ref.exists(spark):
            raise SourceMissingError(
                f"no source table for {partition.isoformat()}: {ref} does not exist"
            )
        return ref.read(spark).where(F.col(self.partition_column) == F.lit(partition))
