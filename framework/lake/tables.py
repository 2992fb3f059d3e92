"""Where a logical table name lives, and safe identifiers.

Jobs name tables logically, ``"silver.orders"``. A :class:`Lakehouse` turns that into a
:class:`TableRef`: the Delta table at ``<root>/silver/orders`` on a path lakehouse (a
local folder or an object-store URL), or the Unity Catalog table
``<catalog>.silver.orders`` on Databricks. Names are checked against :data:`IDENTIFIER`
and always back-quoted in SQL, so no name is ever interpolated into SQL unquoted.

Example::

    lake = Lakehouse(config.lakehouse)
    orders = lake.table("silver.orders")
    orders.read(spark).where("order_date = '2024-01-15'")

Every Delta operation here is Spark SQL (``MERGE INTO``, ``DESCRIBE HISTORY``,
``OPTIMIZE``, ``CREATE TABLE``) or a DataFrame read or write, never ``DeltaTable``: SQL
is served by Delta's session extension on a classic session and through Spark Connect
alike, where ``DeltaTable`` needs a server plugin (Delta Connect) that few servers have.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import delta.exceptions  # noqa: F401  (Delta's JVM errors arrive as its Python classes)
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, DataFrameWriter, SparkSession
from pyspark.sql.types import StructType

from framework.core.config import LakehouseConfig
from framework.core.names import checked_identifier, checked_table_name, quoted, sql_string
from framework.lake.storage import Storage, absolute, join

# What loading a path without a committed Delta version raises: no folder at all, or a
# folder whose log holds no commit.
_NO_TABLE = frozenset({"PATH_NOT_FOUND", "DELTA_TABLE_NOT_FOUND"})


@dataclass(frozen=True)
class TableRef:
    """One Delta table, by path (local) or by catalog name (Unity Catalog)."""

    schema: str
    name: str
    path: str | None = None
    full_name: str | None = None

    def __str__(self) -> str:
        return self.full_name or str(self.path)

    def exists(self, spark: SparkSession) -> bool:
        """Whether the table has a committed version.

        A folder that holds no commit is a table that does not exist yet: an empty
        ``_delta_log/``, one with only temporary files, or data files without a commit
        (what a kill inside the table's first commit leaves). The first :meth:`save`
        (or :meth:`create`) makes the table there; Delta ignores the leftovers, and
        VACUUM removes them later.

        A path table is asked by loading it, which reads its log afresh. Not by
        ``DeltaTable.isDeltaTable``: that answers from the JVM's cached log, and a log
        it first saw without a commit stays "no table" after another process commits
        version 0, so two runners that start on a fresh lakehouse both won a claim.
        """
        if self.path is None:
            return spark.catalog.tableExists(str(self.full_name))
        try:
            # .schema: through Spark Connect a plan is only analyzed when asked.
            spark.read.format("delta").load(self.path).schema  # noqa: B018
        except AnalysisException as error:
            if error.getCondition() in _NO_TABLE:
                return False
            raise
        return True

    @property
    def sql_name(self) -> str:
        """The table in SQL: ``delta.`<path>``` or its back-quoted catalog name."""
        if self.path is not None:
            return "delta.`{}`".format(self.path.replace("`", "``"))
        return str(self.full_name)

    def history(self, spark: SparkSession, limit: int | None = None) -> DataFrame:
        """The table's commits, newest first, the last ``limit`` of them if given
        (``DESCRIBE HISTORY``)."""
        last = "" if limit is None else f" LIMIT {int(limit)}"
        return spark.sql(f"DESCRIBE HISTORY {self.sql_name}{last}")

    def merge(
        self, spark: SparkSession, source: DataFrame, on: str, *clauses: str, evolve: bool = False
    ) -> None:
        """``MERGE INTO`` the table (alias ``t``) ``USING source`` (alias ``s``) ``ON on``,
        with ``clauses`` in SQL (``WHEN MATCHED AND ... THEN DELETE``, ...); ``evolve``
        adds the source's new columns to the table (``WITH SCHEMA EVOLUTION``).

        ``source`` is seen by the SQL as a temporary view of its session, which must be
        ``spark``, under a name of its own, dropped afterwards.
        """
        view = f"ninelives_merge_{uuid.uuid4().hex}"
        source.createOrReplaceTempView(view)
        evolution = "WITH SCHEMA EVOLUTION " if evolve else ""
        try:
            spark.sql(
                f"MERGE {evolution}INTO {self.sql_name} AS t USING `{view}` AS s ON {on} "
                + " ".join(clauses)
            )
        finally:
            spark.catalog.dropTempView(view)

    def optimize(self, spark: SparkSession, where: str) -> None:
        """Compact the files of the partitions ``where`` selects (``OPTIMIZE``)."""
        spark.sql(f"OPTIMIZE {self.sql_name} WHERE {where}")

    def read(self, spark: SparkSession) -> DataFrame:
        if self.path is not None:
            return spark.read.format("delta").load(self.path)
        return spark.read.table(str(self.full_name))

    def create(
        self,
        spark: SparkSession,
        schema: StructType,
        *,
        partition_by: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        """Create the empty table: one commit of ``schema``, partitioning and properties.

        For a table that must exist before its first write (the ledger that a MERGE
        claims into); :meth:`save` creates a table with its first rows instead. Call it
        when :meth:`exists` is false, under the table's write lock. A path table is made
        by an empty append, which, unlike ``CREATE TABLE`` (``DELTA_TABLE_NOT_FOUND``),
        also succeeds on a folder that a kill left without a commit. A catalog table is
        created by the catalog in one step (``CREATE TABLE IF NOT EXISTS``).

        Example::

            ref.create(spark, LEDGER_SCHEMA, partition_by="job",
                       properties={"delta.enableDeletionVectors": "true"})
        """
        if self.path is not None:
            self.save(
                spark,
                spark.createDataFrame([], schema).write.format("delta").mode("append"),
                schema,
                partition_by=partition_by,
                properties=properties,
            )
            return
        columns = ", ".join(
            f"{quoted(f.name)} {f.dataType.simpleString()}{'' if f.nullable else ' NOT NULL'}"
            for f in schema.fields
        )
        partitioned = f" PARTITIONED BY ({quoted(partition_by)})" if partition_by else ""
        tblproperties = ", ".join(
            f"{sql_string(k)} = {sql_string(v)}" for k, v in (properties or {}).items()
        )
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS {self.full_name} ({columns}) USING delta{partitioned}"
            + (f" TBLPROPERTIES ({tblproperties})" if tblproperties else "")
        )

    def save(
        self,
        spark: SparkSession,
        writer: DataFrameWriter,
        schema: StructType,
        *,
        partition_by: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        """Run ``writer`` (format, mode and options set) against the table; the first
        write creates it, partitioned by ``partition_by``, with ``properties``.

        A path table is created by that write's own commit: no empty commit before it,
        and a folder that a kill left without a commit is simply written over (Delta
        ignores the leftovers; VACUUM removes them later). A catalog table is created
        by the catalog first, with ``schema``. Call it under the table's write lock.
        """
        if not self.exists(spark):
            if self.path is None:
                self.create(spark, schema, partition_by=partition_by, properties=properties)
            else:
                writer = writer.options(**dict(properties or {}))
                if partition_by is not None:
                    writer = writer.partitionBy(partition_by)
        if self.path is not None:
            writer.save(self.path)
        else:
            writer.saveAsTable(str(self.full_name))


class Lakehouse:
    """Resolves logical names against one :class:`~framework.core.config.LakehouseConfig`."""

    def __init__(self, config: LakehouseConfig) -> None:
        self.config = config
        self.storage = Storage(config)

    @property
    def is_catalog(self) -> bool:
        return bool(self.config.catalog)

    @property
    def root(self) -> str:
        """The root as an absolute local path, or its URL (``s3a://bucket/lake``)."""
        return absolute(self.config.root)

    def table(self, logical_name: str) -> TableRef:
        """``"schema.table"`` -> :class:`TableRef`."""
        schema, name = checked_table_name(logical_name)
        if self.is_catalog:
            catalog = checked_identifier(self.config.catalog, "catalog name")
            return TableRef(schema, name, full_name=f"`{catalog}`.`{schema}`.`{name}`")
        return TableRef(schema, name, path=join(self.root, schema, name))

    def framework_table(self, name: str) -> TableRef:
        """A table of the framework's own (ledger, quarantine) in its own schema."""
        return self.table(f"{self.config.framework_schema}.{name}")

    def landing_path(self, *parts: str) -> str:
        """A folder under the landing root (absolute landing roots and URLs are used as
        is)."""
        return join(self.root, self.config.landing, *parts)
