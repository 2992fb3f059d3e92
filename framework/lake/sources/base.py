"""What the runner needs of a source, and what every source shares."""

from __future__ import annotations

import datetime as dt
from typing import Protocol
from urllib.parse import urlsplit

from pyspark.sql import DataFrame, SparkSession

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
    #
    # Optional: ``malformed_reason: str``, the quarantine's reason for a row that comes
    # back with its raw text in CORRUPT_COLUMN (what "malformed" means for the format).


def same_file(uri: str) -> str:
    """``uri`` in one spelling, to match a listed file with the name a Spark error gives
    it: Spark says ``file:///x`` for a file it reads and ``file:/x`` for one whose footer
    it could not read; both, and ``/x``, are ``/x``. A URL of another scheme as it is."""
    return urlsplit(uri).path if uri.startswith("file:") else uri
