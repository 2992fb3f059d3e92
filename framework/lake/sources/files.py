"""Sources of files Spark reads: Parquet, CSV, JSON, text and Avro, at any path layout.

A :class:`FileSource` locates one partition's files with a path template, the Python
format of the partition's date: a folder (``exports/{date:%Y/%m/%d}/``), a Hive-style
folder (``orders/dt={date}/``, ``{date}`` is ISO) or a glob
(``exports/{date:%Y%m%d}/*.csv.gz``, ``raw/{date:%Y/%m/%d}/**/part-*.parquet``).
A relative template is under the lakehouse's landing root; an absolute path or a URL
(``s3a://bucket/in/{date}/``) is used as it is. The files are listed through the
lakehouse's storage (:class:`~framework.lake.storage.Storage`, no Spark), and Spark
reads exactly the files listed, so that the read, the fingerprint and the chunks all
see the same files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StringType, StructField, StructType

from framework.core.errors import SchemaMismatchError, SourceMissingError, UsageError
from framework.core.names import checked_identifier
from framework.lake.sources.base import CORRUPT_COLUMN, same_file
from framework.lake.storage import InputFile
from framework.lake.storage import fingerprint as files_fingerprint
from framework.lake.tables import Lakehouse

FORMATS = ("parquet", "csv", "json", "text", "avro")
"""What :class:`FileSource` reads; ``avro`` needs Spark's ``spark-avro`` package."""
PARSED_FORMATS = ("csv", "json")
"""Formats Spark parses line by line: a row it cannot parse is quarantined."""
_GLOB = frozenset("*?[")
# Two dates that differ in year, month and day: a template that formats both alike
# does not depend on the date.
_PROBES = (dt.date(2001, 2, 3), dt.date(2012, 11, 24))

MALFORMED_REASONS = {
    "json": "malformed record: not valid JSON, or a value of the wrong type",
    "csv": "malformed record: not valid CSV for the schema (a wrong number of fields, "
    "or a value of the wrong type)",
}


@dataclass(frozen=True)
class FileSource:
    """One partition's files, located by a path template, read by Spark.

    :param format: ``parquet``, ``csv``, ``json`` (JSON lines; ``multiLine`` in options
        for whole-file JSON), ``text`` (one ``value`` string per line) or ``avro``.
    :param path: the template: ``{date}`` is the partition's date in ISO form,
        ``{date:%Y/%m/%d}`` any strftime form; it must depend on the date. A folder
        (its direct data files), or a glob (``*``, ``?``, ``[...]``, ``**``). Relative:
        under the landing root; absolute paths and URLs as they are.
    :param schema: the rows' schema. Required for ``csv`` and ``json``, whose inferred
        types would follow each night's data (and whose malformed rows are told by it);
        ``parquet`` and ``avro`` read the files' own schema when it is None (then an
        ``allow_empty`` job cannot make an empty partition); ``text`` has its own.
    :param options: Spark reader options, e.g. ``{"header": True, "delimiter": ";"}``.
        ``.gz`` and other compressed files are read by their extension.
    :param date_column: a DATE column of this name, holding the partition's date, added
        to every row: for files that carry their date only in their path.

    Malformed rows (``csv``, ``json``) are read in Spark's PERMISSIVE mode: a row with a
    value of the wrong type, or for csv a wrong number of fields, comes back with its raw
    text in ``_corrupt_record`` and goes to the quarantine with a reason. A file Spark
    cannot read at all (truncated, a bad gzip) fails the partition naming the file, or
    is quarantined whole with ``Job(corrupt_files="quarantine")``.

    Example::

        FileSource("csv", "exports/{date:%Y/%m/%d}/*.csv.gz", schema=ORDER_SCHEMA,
                   options={"header": True}, date_column="order_date")
        FileSource("parquet", "s3a://partner/orders/dt={date}/")
    """

    format: str
    path: str
    schema: StructType | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    date_column: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise UsageError(
                f"file source format {self.format!r} is not one of: {', '.join(FORMATS)}"
            )
        try:
            probes = {self.path.format(date=d) for d in _PROBES}
        except (KeyError, IndexError, ValueError, AttributeError) as error:
            raise UsageError(
                f"file source path {self.path!r} is not a template of the date "
                f"({type(error).__name__}: {error}): use {{date}} or {{date:%Y/%m/%d}}"
            ) from None
        if len(probes) == 1:
            raise UsageError(
                f"file source path {self.path!r} does not depend on the date: every "
                "partition would read the same files; put {date} or {date:%Y%m%d} in it "
                "(or read a table with a date column through TableSource)"
            )
        if self.format in PARSED_FORMATS and self.schema is None:
            raise UsageError(
                f"a {self.format} file source needs a schema: inferred types change with "
                "each night's data, and malformed rows are told by the schema"
            )
        if self.format == "text" and self.schema is not None:
            raise UsageError("a text file source has its own schema: one 'value' string")
        if "columnNameOfCorruptRecord" in self.options:
            raise UsageError(
                f"a file source names its corrupt-record column {CORRUPT_COLUMN} itself"
            )
        if self.date_column is not None:
            checked_identifier(self.date_column, "date column")

    @property
    def malformed_reason(self) -> str:
        return MALFORMED_REASONS.get(self.format, "malformed record")

    def location(self, lakehouse: Lakehouse, partition: dt.date) -> str:
        """The folder or glob of ``partition``'s files."""
        return lakehouse.landing_path(self.path.format(date=partition))

    def describe(self, lakehouse: Lakehouse) -> str:
        return f"{self.format} files at {lakehouse.landing_path(self.path)}"

    def fingerprint(
        self, spark: SparkSession, lakehouse: Lakehouse, partition: dt.date
    ) -> str | None:
        """sha256 of the files' names, sizes and modification times: a late file, a
        re-export or a corrected file changes it."""
        return self.listing_fingerprint(lakehouse, partition)

    def listing_fingerprint(self, lakehouse: Lakehouse, partition: dt.date) -> str | None:
        """:meth:`fingerprint`, which is a file listing: no Spark needed. None when the
        folder does not exist or the glob matches nothing."""
        location = self.location(lakehouse, partition)
        files = self.listed(lakehouse, partition)
        if not files and (_is_glob(location) or not lakehouse.storage.is_dir(location)):
            return None
        return files_fingerprint(files)

    def size(self, spark: SparkSession, lakehouse: Lakehouse, partition: dt.date) -> int:
        """Bytes of the partition's files, for packing dates into work units."""
        return sum(f.size for f in self.listed(lakehouse, partition))

    def files(
        self, spark: SparkSession, lakehouse: Lakehouse, partition: dt.date
    ) -> list[InputFile]:
        """The partition's data files in name order, with their sizes and times."""
        return self.listed(lakehouse, partition)

    def listed(self, lakehouse: Lakehouse, partition: dt.date) -> list[InputFile]:
        """:meth:`files`, by a listing of the storage alone."""
        return lakehouse.storage.files(self.location(lakehouse, partition))

    def row_schema(self) -> StructType | None:
        """The schema of the rows :meth:`read` returns (None: the files' own)."""
        if self.format == "text":
            schema: StructType | None = StructType([StructField("value", StringType())])
        else:
            schema = self.schema
        if schema is not None and self.date_column is not None:
            schema = StructType([*schema.fields, StructField(self.date_column, DateType())])
        return schema

    def empty(self, spark: SparkSession, lakehouse: Lakehouse) -> DataFrame:
        schema = self.row_schema()
        if schema is None:
            raise SourceMissingError(
                f"no rows to make an empty partition of from {self.describe(lakehouse)}: "
                "declare the source's schema for an allow_empty job"
            )
        return spark.createDataFrame([], schema)

    def read(
        self,
        spark: SparkSession,
        lakehouse: Lakehouse,
        partition: dt.date,
        *,
        skip: frozenset[str] = frozenset(),
        files: tuple[str, ...] | None = None,
    ) -> DataFrame:
        """The listed files of ``partition``, less ``skip``; ``files``: only these (a
        chunk of it)."""
        paths = list(files) if files is not None else None
        if paths is None:
            paths = [f.path for f in self.listed(lakehouse, partition)]
        if skip:
            left_out = {same_file(f) for f in skip}
            paths = [f for f in paths if same_file(f) not in left_out]
        if not paths:
            raise SourceMissingError(
                f"no source files for {partition.isoformat()} at "
                f"{self.location(lakehouse, partition)}"
            )
        reader = spark.read.format(self.format)
        if self.schema is not None:
            schema = self.schema
            if self.format in PARSED_FORMATS:
                schema = StructType([*schema.fields, StructField(CORRUPT_COLUMN, StringType())])
            reader = reader.schema(schema)
        if self.format in PARSED_FORMATS:
            reader = reader.option("mode", "PERMISSIVE").option(
                "columnNameOfCorruptRecord", CORRUPT_COLUMN
            )
        df = reader.options(**self.options).load(paths)
        if self.date_column is not None:
            if self.date_column in df.columns:
                raise SchemaMismatchError(
                    f"{self.describe(lakehouse)}: the files already have a column "
                    f"{self.date_column}, the source's date_column; drop date_column"
                )
            df = df.withColumn(self.date_column, F.lit(partition))
        return df


def _is_glob(location: str) -> bool:
    return not _GLOB.isdisjoint(location)


@dataclass(frozen=True)
class JsonLinesSource:
    """JSON-lines files under ``<landing>/<folder>/<partition_column>=<YYYY-MM-DD>/``:
    a :class:`FileSource` of ``json`` with that Hive-style template.

    Parsing is Spark's PERMISSIVE mode: a line that is not JSON or holds a value of the
    wrong type comes back with all fields null and its text in ``_corrupt_record``.
    """

    folder: str
    schema: StructType
    partition_column: str
    _files: FileSource = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checked_identifier(self.partition_column, "partition column")
        folder = self.folder.replace("{", "{{").replace("}", "}}")
        template = f"{folder}/{self.partition_column}={{date}}"
        object.__setattr__(self, "_files", FileSource("json", template, self.schema))

    @property
    def malformed_reason(self) -> str:
        return self._files.malformed_reason

    def partition_path(self, lakehouse: Lakehouse, partition: dt.date) -> str:
        return self._files.location(lakehouse, partition)

    def describe(self, lakehouse: Lakehouse) -> str:
        return lakehouse.landing_path(self.folder)

    def empty(self, spark: SparkSession, lakehouse: Lakehouse) -> DataFrame:
        return spark.createDataFrame([], self.schema)

    def fingerprint(
        self, spark: SparkSession, lakehouse: Lakehouse, partition: dt.date
    ) -> str | None:
        """sha256 of the files' names, sizes and modification times: a late file, a
        re-export or a corrected file changes it."""
        return self._files.listing_fingerprint(lakehouse, partition)

    def listing_fingerprint(self, lakehouse: Lakehouse, partition: dt.date) -> str | None:
        """:meth:`fingerprint`, which is a file listing: no Spark needed."""
        return self._files.listing_fingerprint(lakehouse, partition)

    def size(self, spark: SparkSession, lakehouse: Lakehouse, partition: dt.date) -> int:
        """Bytes of the partition's files, for packing dates into work units."""
        return self._files.size(spark, lakehouse, partition)

    def files(
        self, spark: SparkSession, lakehouse: Lakehouse, partition: dt.date
    ) -> list[InputFile]:
        """The partition's data files in name order, with their sizes and times."""
        return self._files.listed(lakehouse, partition)

    def listed(self, lakehouse: Lakehouse, partition: dt.date) -> list[InputFile]:
        """:meth:`files`, by a listing of the landing folder alone."""
        return self._files.listed(lakehouse, partition)

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
        try:
            return self._files.read(spark, lakehouse, partition, skip=skip, files=files)
        except SourceMissingError:
            raise SourceMissingError(
                f"no source files for {partition.isoformat()} under {self.describe(lakehouse)}"
            ) from None
