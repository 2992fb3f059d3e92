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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, DataFrameWriter, SparkSession
from pyspark.sql.types import StructType

from framework.core.config import LakehouseConfig
from framework.core.names import checked_identifier, checked_table_name
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
            spark.read.format("delta").load(self.path)
        except AnalysisException as error:
            if error.getCondition() in _NO_TABLE:
                return False
            raise
        return True

    def delta(self, spark: SparkSession) -> DeltaTable:
        if self.path is not None:
            return DeltaTable.forPath(spark, self.path)
        return DeltaTable.forName(spark, str(self.full_name))

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
        by an empty append, which, unlike ``DeltaTable.createIfNotExists``
        (``DELTA_TABLE_NOT_FOUND``), also succeeds on a folder that a kill left without a
        commit. A catalog table is created by the catalog in one step.

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
        builder = DeltaTable.createIfNotExists(spark).tableName(str(self.full_name))
        builder = builder.addColumns(schema)
        if partition_by is not None:
            builder = builder.partitionedBy(partition_by)
        for key, value in (properties or {}).items():
            builder = builder.property(key, value)
        builder.execute()

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
