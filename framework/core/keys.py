"""Deterministic record keys and row hashes, as plain Spark SQL column expressions.

A **key** identifies a record: ``sha2-256`` (lowercase hex) over a canonical encoding
of the job's key columns, in the order they are declared. A **row hash** tells a
changed record from an unchanged one: the same hash over the payload columns. Both are
built from built-in Spark SQL functions only (no Python UDF), so they run inside the
JVM, survive Spark Connect, and give the same answer on every executor.

The encoding below is the contract behind the README's "Deterministic keys" guarantee:
a record's key is the same across runs, processes, Spark versions, session time zones,
executors and clusters, and distinct key tuples never collide. Changing it changes every
key of every table written so far; treat it like a file format.

Value encoding
--------------

Every non-null value is written as ``<tag><length>:<text>``, where ``<tag>`` is one
letter naming the type family, ``<length>`` is the number of characters (Unicode code
points) of ``<text>`` in decimal, and ``<text>`` is the canonical text of the value. A
null value of any type is the single character ``n``. The hash is taken over the UTF-8
bytes of the whole encoding.

=====================================  ===  =============================================
Spark type                             tag  text
=====================================  ===  =============================================
byte, short, int, long                 i    decimal digits, e.g. ``-42`` (int 1 == long 1)
string, char, varchar                  s    the raw text (collation dropped: a key is
                                            byte identity, not collation equality)
boolean                                b    ``true`` / ``false``
decimal(p, s)                          d    plain notation, never scientific; trailing
                                            fractional zeros and a trailing dot removed,
                                            so 1.50 == 1.5 == 1.500 and 0.00 -> ``0``
float, double                          f    cast to double first; ``NaN`` for every NaN,
                                            ``0`` for both 0.0 and -0.0 (Spark itself
                                            groups and joins them as equal),
                                            ``Infinity`` / ``-Infinity``, otherwise the
                                            exact hex form of Java's ``%a``
                                            (``0x1.8p1`` for 3.0): no rounding, no
                                            dependence on the JVM's decimal printer
date                                   D    ISO ``yyyy-MM-dd`` (``+12024-01-01`` and
                                            ``-0044-03-15`` outside years 0000-9999)
timestamp (an instant)                 T    microseconds since the epoch, decimal; it
                                            does not depend on the session time zone
timestamp_ntz (a wall-clock reading)   N    Spark's ISO text, e.g.
                                            ``2024-01-15 10:30:00.5`` (no zone involved)
binary                                 x    uppercase hex
null (any type, and the void type)     n    nothing: ``n`` alone, no length, no colon
array, map, struct, variant            j    ``to_json`` with UTC and microsecond
                                            timestamps -- **row hash only**
=====================================  ===  =============================================

Any other type (intervals, time, geospatial, user-defined) raises
:class:`~framework.core.errors.KeyColumnTypeError`; cast it or leave it out.

Why the concatenation is injective: reading left to right, a tag letter is followed
either by nothing (``n``) or by digits up to the first ``:`` (a tag is never a digit,
and the length never contains ``:``), and the length says exactly where the text ends.
So an encoding parses back into exactly one sequence of (tag, text) pairs, and the
text is injective per tag. That is what keeps null, ``""`` and ``"null"`` apart, keeps
``("ab", "c")`` from ``("a", "bc")`` and ``(a, null)`` from ``(null, a)``, and keeps
``1`` from ``"1"``. Values that look like the encoding (``"s1:"``) are just text.

Key
---

The encodings of the key columns concatenated in the declared order. Column names are
not part of the key: renaming a key column does not change keys, reordering does.

Row hash
--------

The payload columns sorted by name; each **non-null** column contributes
``<length of name>:<name>`` followed by the encoded value, and a null column
contributes nothing at all. So adding a column that is null everywhere leaves every
existing row hash unchanged, and the encoding stays injective because each name is
length-prefixed. Complex values are encoded with tag ``j`` and ``to_json`` text; that
text is Spark's JSON (it keeps map entry order and decimal scale, and prints nested
doubles in decimal), so a row hash of a complex column is stable across runs and
sessions but may change once after a Spark or JVM upgrade. For a row hash that only
costs a rewrite of unchanged rows, never a wrong key.

Example::

    from framework.core.keys import with_key, with_row_hash

    out = (
        df.transform(with_key(["order_id", "line_no"]))  # adds _key
        .transform(with_row_hash(exclude=["ingest_file"]))  # adds _row_hash
    )
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    ByteType,
    CharType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
    NullType,
    ShortType,
    StringType,
    StructType,
    TimestampNTZType,
    TimestampType,
    VarcharType,
    VariantType,
)

from framework.core.errors import KeyColumnTypeError, UsageError

KEY_COLUMN = "_key"
ROW_HASH_COLUMN = "_row_hash"

NULL_ENCODING = "n"

_INTEGRAL = (ByteType, ShortType, IntegerType, LongType)
_TEXT = (StringType, CharType, VarcharType)
_FLOATING = (FloatType, DoubleType)
_COMPLEX = (ArrayType, MapType, StructType, VariantType)

_KEY_TYPES_HELP = (
    "byte, short, int, long, string, char, varchar, boolean, decimal, float, double, "
    "date, timestamp, timestamp_ntz, binary"
)

# to_json's defaults depend on the session (time zone, spark.sql.jsonGenerator.
# ignoreNullFields) and its default timestamp pattern keeps only milliseconds, so two
# rows that differ by a microsecond inside a struct would hash the same. Pin them all.
_JSON_OPTIONS = {
    "timeZone": "UTC",
    "timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
    "timestampNTZFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSS",
    "dateFormat": "yyyy-MM-dd",
    "ignoreNullFields": "true",
}


def _quoted(name: str) -> Column:
    # Backticks let names with dots, spaces or backticks resolve as one column.
    return F.col("`" + name.replace("`", "``") + "`")


def _tag_and_text(name: str, data_type: DataType, *, allow_complex: bool) -> tuple[str, Column]:
    """The type tag and the canonical text of a non-null value of column ``name``."""
    col = _quoted(name)
    if isinstance(data_type, _INTEGRAL):
        return "i", col.cast("string")
    if isinstance(data_type, _TEXT):
        # Casting to the default string type drops a non-binary collation: two strings
        # a UTF8_LCASE collation calls equal are still different keys.
        return "s", col.cast(StringType())
    if isinstance(data_type, BooleanType):
        return "b", col.cast("string")
    if isinstance(data_type, DecimalType):
        # Spark prints decimals in plain notation with exactly `scale` fraction digits.
        # Dropping trailing fractional zeros (and then the dot) makes the text depend on
        # the value only, so decimal(10,2) 1.50 and decimal(5,1) 1.5 are one key.
        plain = col.cast("string")
        return "d", F.when(plain.contains("."), F.regexp_replace(plain, r"\.?0+$", "")).otherwise(
            plain
        )
    if isinstance(data_type, _FLOATING):
        # Decimal printing of doubles changed between JDK versions (JDK-4511638); the
        # hex form is exact and has not. NaN has many bit patterns and -0.0 == 0.0 in
        # Spark's grouping, so both are folded into one spelling each.
        as_double = col.cast("double")
        return "f", (
            F.when(F.isnan(as_double), F.lit("NaN"))
            .when(as_double == F.lit(0.0), F.lit("0"))
            .otherwise(F.format_string("%a", as_double))
        )
    if isinstance(data_type, DateType):
        return "D", col.cast("string")
    if isinstance(data_type, TimestampType):
        # An instant: its text would follow spark.sql.session.timeZone, its micros do not.
        return "T", F.unix_micros(col).cast("string")
    if isinstance(data_type, TimestampNTZType):
        return "N", col.cast("string")
    if isinstance(data_type, BinaryType):
        return "x", F.hex(col)
    if allow_complex and isinstance(data_type, _COMPLEX):
        return "j", F.to_json(col, _JSON_OPTIONS)
    if isinstance(data_type, _COMPLEX):
        raise KeyColumnTypeError(
            f"Key column {name!r} has type {data_type.simpleString()}, which cannot be part "
            f"of a key. Key columns must be one of: {_KEY_TYPES_HELP}. Key on the scalar "
            f"fields instead (e.g. {name}.field) by selecting them into columns first."
        )
    raise KeyColumnTypeError(
        f"Column {name!r} has type {data_type.simpleString()}, which has no canonical "
        f"encoding. Supported types: {_KEY_TYPES_HELP}"
        + (", array, map, struct, variant" if allow_complex else "")
        + ". Cast the column to one of them"
        + (" or exclude it from the row hash." if allow_complex else ".")
    )


def _encoded_value(name: str, data_type: DataType, *, allow_complex: bool) -> Column:
    """``<tag><length>:<text>`` for a non-null value, ``n`` for null."""
    if isinstance(data_type, NullType):
        return F.lit(NULL_ENCODING)
    tag, text = _tag_and_text(name, data_type, allow_complex=allow_complex)
    return F.when(_quoted(name).isNull(), F.lit(NULL_ENCODING)).otherwise(
        F.concat(F.lit(tag), F.length(text).cast("string"), F.lit(":"), text)
    )


def _check_column_list(columns: Sequence[str], what: str) -> list[str]:
    # A bare string is a Sequence[str] too; ["o","r","d","e","r"] is never what was meant.
    if isinstance(columns, str):
        raise UsageError(f"{what} must be a list of column names, got the string {columns!r}.")
    names = list(columns)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"{what} lists {', '.join(map(repr, duplicates))} more than once.")
    return names


def _fields(df_schema: StructType, columns: Sequence[str], what: str) -> list[tuple[str, DataType]]:
    """The (name, type) of each column, in the given order; names are matched exactly."""
    by_name = {field.name: field.dataType for field in df_schema.fields}
    missing = [name for name in columns if name not in by_name]
    if missing:
        raise UsageError(
            f"{what} {', '.join(map(repr, missing))} not found in the DataFrame. "
            f"Available columns: {', '.join(df_schema.fieldNames()) or '(none)'}."
        )
    return [(name, by_name[name]) for name in columns]


def canonical_encoding_expr(df_schema: StructType, columns: Sequence[str]) -> Column:
    """The canonical encoding of ``columns`` that :func:`key_expr` hashes.

    Exposed for tests and debugging: two rows get the same key exactly when they get the
    same encoding, and the encoding is readable.

    :param df_schema: schema of the DataFrame the expression will be used on.
    :param columns: key columns, in key order.
    :raises UsageError: empty list, duplicate name, or a column not in ``df_schema``.
    :raises KeyColumnTypeError: a column whose type has no key encoding.

    Example::

        df.select(canonical_encoding_expr(df.schema, ["id", "name"]))
        # id=7, name=None  ->  'i1:7n'
    """
    names = _check_column_list(columns, "Key columns")
    if not names:
        raise UsageError("Key columns must not be empty: a key needs at least one column.")
    fields = _fields(df_schema, names, "Key column(s)")
    return F.concat(*(_encoded_value(n, t, allow_complex=False) for n, t in fields))


def key_expr(df_schema: StructType, columns: Sequence[str]) -> Column:
    """``sha2-256`` hex of the canonical encoding of ``columns`` in the given order.

    :param df_schema: schema of the DataFrame the expression will be used on.
    :param columns: key columns, in key order (the order is part of the key).
    :raises UsageError: empty list, duplicate name, or a column not in ``df_schema``.
    :raises KeyColumnTypeError: an array, map, struct or otherwise unsupported column.

    Example::

        df.withColumn("_key", key_expr(df.schema, ["order_id", "line_no"]))
    """
    return F.sha2(canonical_encoding_expr(df_schema, columns), 256)


def row_encoding_expr(df_schema: StructType, columns: Sequence[str]) -> Column:
    """The encoding that :func:`row_hash_expr` hashes: non-null columns sorted by name.

    :param df_schema: schema of the DataFrame the expression will be used on.
    :param columns: payload columns, in any order; an empty list encodes as ``''``.
    :raises UsageError: duplicate name, or a column not in ``df_schema``.
    :raises KeyColumnTypeError: a column of an unsupported type (e.g. an interval).

    Example::

        df.select(row_encoding_expr(df.schema, ["qty", "name"]))
        # name='ab', qty=None  ->  '4:names2:ab'
    """
    names = _check_column_list(columns, "Row hash columns")
    fields = _fields(df_schema, sorted(names), "Row hash column(s)")
    parts = [
        F.when(_quoted(name).isNull(), F.lit("")).otherwise(
            F.concat(F.lit(f"{len(name)}:{name}"), _encoded_value(name, t, allow_complex=True))
        )
        for name, t in fields
        # A void column is null in every row, and null columns contribute nothing.
        if not isinstance(t, NullType)
    ]
    return F.concat(*parts) if parts else F.lit("")


def row_hash_expr(df_schema: StructType, columns: Sequence[str]) -> Column:
    """``sha2-256`` hex of the row encoding of ``columns`` (see the module docstring).

    Column order does not matter and null columns are skipped, so a column added later
    that is null in old rows leaves their hashes unchanged.

    :param df_schema: schema of the DataFrame the expression will be used on.
    :param columns: payload columns; arrays, maps, structs and variants are allowed.
    :raises UsageError: duplicate name, or a column not in ``df_schema``.
    :raises KeyColumnTypeError: a column of an unsupported type (e.g. an interval).

    Example::

        df.withColumn("_row_hash", row_hash_expr(df.schema, ["name", "qty", "tags"]))
    """
    return F.sha2(row_encoding_expr(df_schema, columns), 256)


def with_key(columns: Sequence[str], name: str = KEY_COLUMN) -> Callable[[DataFrame], DataFrame]:
    """A transform that adds the key of ``columns`` as column ``name``.

    The column list is checked now, the DataFrame's columns when the transform runs.

    :param columns: key columns, in key order.
    :param name: name of the new column.
    :raises UsageError: empty list, a bare string, duplicate or missing column.
    :raises KeyColumnTypeError: a key column of an array, map, struct or other type.

    Example::

        keyed = df.transform(with_key(["order_id", "line_no"]))
        keyed.select("_key").first()  # Row(_key='3f1c...')
    """
    names = _check_column_list(columns, "Key columns")
    if not names:
        raise UsageError("Key columns must not be empty: a key needs at least one column.")

    def add_key(df: DataFrame) -> DataFrame:
        return df.withColumn(name, key_expr(df.schema, names))

    return add_key


def with_row_hash(
    exclude: Sequence[str] = (), name: str = ROW_HASH_COLUMN
) -> Callable[[DataFrame], DataFrame]:
    """A transform that adds the row hash of the payload columns as column ``name``.

    The payload is every column except those in ``exclude``, the output column itself,
    and every column whose name starts with ``_`` -- the framework's own columns
    (``_key``, ``_row_hash``, ``_run_id``, ``_processed_at``), which change from run to
    run and must not make an unchanged row look changed.

    :param exclude: further columns to leave out; each must exist in the DataFrame.
    :param name: name of the new column.
    :raises UsageError: ``exclude`` names a column the DataFrame does not have (a typo
        would otherwise silently hash a column meant to be left out).
    :raises KeyColumnTypeError: a payload column of an unsupported type; exclude or cast it.

    Example::

        hashed = df.transform(with_row_hash(exclude=["ingest_file"]))
    """
    excluded = _check_column_list(exclude, "exclude")

    def add_row_hash(df: DataFrame) -> DataFrame:
        _fields(df.schema, excluded, "Excluded column(s)")
        payload = [
            column
            for column in df.columns
            if not column.startswith("_") and column not in excluded and column != name
        ]
        return df.withColumn(name, row_hash_expr(df.schema, payload))

    return add_row_hash
