"""Keys and row hashes: the encoding contract, its injectivity, and its stability.

The Python reference encoder below is written from the module docstring alone. Spark's
output is compared with it byte for byte, and the reference decoder proves that the
encoding parses back into the values it came from -- which is what makes it injective.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Sequence
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    ByteType,
    DateType,
    DayTimeIntervalType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
    ShortType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from framework.core.errors import KeyColumnTypeError, UsageError
from framework.core.keys import (
    KEY_COLUMN,
    ROW_HASH_COLUMN,
    canonical_encoding_expr,
    key_expr,
    row_encoding_expr,
    row_hash_expr,
    with_key,
    with_row_hash,
)

# ---------------------------------------------------------------- reference encoder


def enc(tag: str, text: str | None) -> str:
    """``<tag><length>:<text>``, or ``n`` for null: the documented value encoding."""
    return "n" if text is None else f"{tag}{len(text)}:{text}"


def sha(encoding: str) -> str:
    return hashlib.sha256(encoding.encode("utf-8")).hexdigest()


def java_hex(x: float) -> str:
    """Java's ``%a`` / ``Double.toHexString`` spelling of a finite, non-zero double."""
    mantissa, exponent = x.hex().split("p")
    whole, fraction = mantissa.split(".")
    return f"{whole}.{fraction.rstrip('0') or '0'}p{int(exponent)}"


def float_text(x: float | None) -> str | None:
    if x is None:
        return None
    if math.isnan(x):
        return "NaN"
    if x == 0.0:
        return "0"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return java_hex(x)


def decimal_text(d: Decimal | None) -> str | None:
    if d is None:
        return None
    return "0" if d == 0 else format(d.normalize(), "f")


def decode(encoding: str) -> list[tuple[str, str | None]]:
    """Parse a key encoding back into (tag, text) pairs; fails on anything malformed."""
    values: list[tuple[str, str | None]] = []
    i = 0
    while i < len(encoding):
        tag = encoding[i]
        assert tag.isalpha(), f"tag expected at {i} in {encoding!r}"
        if tag == "n":
            values.append(("n", None))
            i += 1
            continue
        colon = encoding.index(":", i + 1)
        assert encoding[i + 1 : colon].isdigit(), f"length expected after {tag!r} at {i}"
        length = int(encoding[i + 1 : colon])
        values.append((tag, encoding[colon + 1 : colon + 1 + length]))
        i = colon + 1 + length
    assert i == len(encoding)
    return values


def select_in_order(df: DataFrame, *exprs: Column | str, order: str = "i") -> list[Row]:
    """Rows of ``df.select(order, *exprs)`` in input order, without a sort job.

    A DataFrame made from a local list keeps the list's order through narrow
    transformations; asserting it is cheaper than ``orderBy``'s sampling and shuffle.
    """
    rows = df.select(order, *exprs).collect()
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    return rows


def values_in_order(df: DataFrame, *exprs: Column | str, order: str = "i") -> list[tuple[str, ...]]:
    return [tuple(r)[1:] for r in select_in_order(df, *exprs, order=order)]


def keys_of(df: DataFrame, *key_sets: list[str]) -> list[tuple[str, ...]]:
    """Per row, the key of each column list in ``key_sets``."""
    return values_in_order(df, *(key_expr(df.schema, cols) for cols in key_sets))


# ---------------------------------------------------------------- fixtures

ZONES = ("America/Los_Angeles", "Asia/Kolkata")


@pytest.fixture(scope="module")
def zoned_sessions(spark: SparkSession) -> list[SparkSession]:
    """Sessions sharing the test SparkContext, each with its own session time zone."""
    sessions = []
    for zone in ZONES:
        session = spark.newSession()
        session.conf.set("spark.sql.session.timeZone", zone)
        sessions.append(session)
    return sessions


# ---------------------------------------------------------------- 1. crafted collisions

TEXT_PAIRS = [
    (None, None),
    ("", None),
    (None, ""),
    ("", ""),
    ("null", None),
    (None, "null"),
    ("n", None),
    (None, "n"),
    ("a", None),
    (None, "a"),
    ("ab", "c"),
    ("a", "bc"),
    ("abc", ""),
    ("", "abc"),
    ("s1:", None),
    ("s1:a", "b"),
    ("s1:as1:", "b"),
    ("a", "s1:b"),
    ("1:a", "n"),
    ("n", "s0:"),
    ("ns0:", None),
    ("ß😀", ":"),
    ("ß", "😀:"),
]


def test_crafted_text_tuples_have_distinct_keys_and_documented_encoding(
    spark: SparkSession,
) -> None:
    schema = "i int, a string, b string"
    df = spark.createDataFrame([(i, a, b) for i, (a, b) in enumerate(TEXT_PAIRS)], schema)

    rows = select_in_order(
        df,
        canonical_encoding_expr(df.schema, ["a", "b"]).alias("enc"),
        key_expr(df.schema, ["a", "b"]).alias("key"),
        key_expr(df.schema, ["a"]).alias("key_a"),
    )

    assert [r.enc for r in rows] == [enc("s", a) + enc("s", b) for a, b in TEXT_PAIRS]
    assert [r.key for r in rows] == [sha(r.enc) for r in rows]
    assert len({r.key for r in rows}) == len(TEXT_PAIRS)
    # One column: null, "", "null" and "n" are four different keys.
    single = {a: r.key_a for (a, _), r in zip(TEXT_PAIRS, rows, strict=True)}
    assert len({single[None], single[""], single["null"], single["n"]}) == 4


def test_int_and_string_differ_but_all_integral_widths_agree(spark: SparkSession) -> None:
    schema = StructType(
        [StructField("i", IntegerType())]
        + [StructField(n, t) for n, t in [("b", ByteType()), ("h", ShortType())]]
        + [StructField("l", LongType()), StructField("s", StringType())]
    )
    df = spark.createDataFrame([(1, 1, 1, 1, "1"), (2, -7, -7, -7, "-7")], schema)

    rows = keys_of(df, ["i"], ["b"], ["h"], ["l"], ["s"])

    first, second = rows
    assert first[0] == first[1] == first[2] == first[3] == sha("i1:1")
    assert first[4] == sha("s1:1") != first[3]
    assert second[1] == second[2] == second[3] == sha("i2:-7") != second[4]


def test_decimal_keys_ignore_scale_and_never_use_scientific_notation(spark: SparkSession) -> None:
    schema = StructType(
        [
            StructField("i", IntegerType()),
            StructField("d2", DecimalType(10, 2)),
            StructField("d1", DecimalType(5, 1)),
            StructField("d3", DecimalType(10, 3)),
            StructField("tiny", DecimalType(38, 38)),
            StructField("big", DecimalType(38, 0)),
        ]
    )
    big = Decimal("12345678901234567890123456789012345678")
    df = spark.createDataFrame(
        [
            (0, Decimal("1.50"), Decimal("1.5"), Decimal("1.500"), Decimal("1E-38"), big),
            (1, Decimal("0.00"), Decimal("0.0"), Decimal("0.000"), Decimal("0"), Decimal(0)),
            (2, Decimal("100.00"), Decimal("100.0"), Decimal("100.000"), None, Decimal(100)),
            (3, Decimal("-0.10"), Decimal("-0.1"), Decimal("-0.100"), None, None),
        ],
        schema,
    )

    got = values_in_order(
        df, *(canonical_encoding_expr(df.schema, [c]) for c in ["d2", "d1", "d3", "tiny", "big"])
    )

    assert got == [
        ("d3:1.5", "d3:1.5", "d3:1.5", "d40:0." + "0" * 37 + "1", f"d38:{big}"),
        ("d1:0", "d1:0", "d1:0", "d1:0", "d1:0"),
        ("d3:100", "d3:100", "d3:100", "n", "d3:100"),
        ("d4:-0.1", "d4:-0.1", "d4:-0.1", "n", "n"),
    ]


def test_float_keys_fold_nan_and_signed_zero_and_keep_exact_values(spark: SparkSession) -> None:
    # NaN == NaN and -0.0 == 0.0 is the documented choice: it is how Spark itself groups
    # and joins floating point values, so a key must not split what GROUP BY merges.
    schema = StructType(
        [
            StructField("i", IntegerType()),
            StructField("d", DoubleType()),
            StructField("f", FloatType()),
        ]
    )
    values = [
        (float("nan"), float("nan")),
        (-0.0, -0.0),
        (0.0, 0.0),
        (1.5, 1.5),
        (float("inf"), float("inf")),
        (float("-inf"), float("-inf")),
        (5e-324, None),
        (0.1, 0.1),
    ]
    df = spark.createDataFrame([(i, d, f) for i, (d, f) in enumerate(values)], schema)
    df = df.withColumn("nan2", F.sqrt(F.lit(-1.0)))  # a NaN Spark computed itself

    encodings = values_in_order(
        df, *(canonical_encoding_expr(df.schema, [c]) for c in ["d", "f", "nan2"])
    )

    d_enc = [e[0] for e in encodings]
    f_enc = [e[1] for e in encodings]
    assert d_enc == [
        "f3:NaN",
        "f1:0",
        "f1:0",
        "f7:0x1.8p0",
        "f8:Infinity",
        "f9:-Infinity",
        "f23:0x0.0000000000001p-1022",
        "f20:0x1.999999999999ap-4",
    ]
    assert encodings[0][2] == d_enc[0]  # all NaNs are one key
    # float and double agree wherever the float is exact; float 0.1 is not double 0.1.
    assert f_enc[:6] == d_enc[:6]
    assert f_enc[7] == "f13:0x1.99999ap-4" != d_enc[7]


# ---------------------------------------------------------------- 2. properties

KEY_TEXT = st.text(
    alphabet=st.one_of(st.sampled_from("n:0123456789sifdDTNxj"), st.characters(codec="utf-8")),
    max_size=6,
)
KEY_INT = st.one_of(st.integers(-12, 12), st.integers(-(2**63), 2**63 - 1))
KEY_TUPLES = st.lists(
    st.tuples(st.none() | KEY_TEXT, st.none() | KEY_INT), min_size=1, max_size=30
).map(lambda rows: rows + rows[::3])  # guarantee some equal tuples in every example

PROPERTY_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(tuples=KEY_TUPLES)
def test_keys_are_injective_and_deterministic(
    spark: SparkSession, tuples: list[tuple[str | None, int | None]]
) -> None:
    df = spark.createDataFrame(
        [(i, s, n) for i, (s, n) in enumerate(tuples)], "i int, s string, n long"
    )
    rows = select_in_order(
        df,
        canonical_encoding_expr(df.schema, ["s", "n"]).alias("enc"),
        key_expr(df.schema, ["s", "n"]).alias("key"),
    )

    key_by_tuple: dict[tuple[str | None, int | None], str] = {}
    for (s, n), row in zip(tuples, rows, strict=True):
        n_text = None if n is None else str(n)
        expected = enc("s", s) + enc("i", n_text)
        assert row.enc == expected
        # The encoding parses back into the tuple: that is injectivity, hash aside.
        assert decode(row.enc) == [
            ("s", s) if s is not None else ("n", None),
            ("i", n_text) if n_text is not None else ("n", None),
        ]
        assert row.key == sha(expected)
        # Equal tuples => equal keys.
        assert key_by_tuple.setdefault((s, n), row.key) == row.key
    # Distinct tuples => distinct keys (and distinct encodings).
    assert len(set(key_by_tuple.values())) == len(key_by_tuple)
    assert len({r.enc for r in rows}) == len(key_by_tuple)


NUMERIC_ROWS = st.lists(
    st.tuples(
        st.none() | st.floats(),
        st.none() | st.floats(width=32),
        st.none() | st.decimals(min_value=-(10**13), max_value=10**13, places=6, allow_nan=False),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=NUMERIC_ROWS)
def test_numeric_encoding_matches_the_documented_text(
    spark: SparkSession, rows: list[tuple[float | None, float | None, Decimal | None]]
) -> None:
    schema = StructType(
        [
            StructField("i", IntegerType()),
            StructField("d", DoubleType()),
            StructField("f", FloatType()),
            StructField("m", DecimalType(20, 6)),
        ]
    )
    df = spark.createDataFrame([(i, *r) for i, r in enumerate(rows)], schema)

    got = values_in_order(df, *(canonical_encoding_expr(df.schema, [c]) for c in ["d", "f", "m"]))

    expected = [
        (enc("f", float_text(d)), enc("f", float_text(f)), enc("d", decimal_text(m)))
        for d, f, m in rows
    ]
    assert got == expected
    for d, _, _ in rows:
        text = float_text(d)
        if d is not None and math.isfinite(d) and d != 0.0:
            assert text is not None and float.fromhex(text) == d  # %a is exact


# ---------------------------------------------------------------- 3. stability

TS_SCHEMA = StructType(
    [
        StructField("i", IntegerType()),
        StructField("id", StringType()),
        StructField("ts", TimestampType()),
        StructField("day", DateType()),
        StructField("wall", TimestampNTZType()),
    ]
)
TS_ROWS = [
    (
        0,
        "A-1",
        dt.datetime(2024, 1, 15, 23, 30, 0, 123456, tzinfo=dt.timezone.utc),
        dt.date(2024, 1, 15),
        dt.datetime(2024, 1, 15, 23, 30, 0, 500000),
    ),
    (1, "A-2", dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc), None, None),
]
TS_KEY = ["id", "ts", "day", "wall"]


def test_keys_do_not_depend_on_the_session_time_zone(
    zoned_sessions: list[SparkSession],
) -> None:
    frames = []
    for session in zoned_sessions:
        df = session.createDataFrame(TS_ROWS, TS_SCHEMA)
        frames.append(
            df.select(
                "i",
                key_expr(df.schema, TS_KEY).alias(KEY_COLUMN),
                canonical_encoding_expr(df.schema, TS_KEY).alias("enc"),
                F.col("ts").cast("string").alias("ts_text"),
            )
        )
    la, kolkata = frames

    assert_df_equality(
        la.drop("ts_text"), kolkata.drop("ts_text"), ignore_row_order=True, ignore_nullable=True
    )
    la_rows = select_in_order(la, "enc", "ts_text")
    kolkata_rows = select_in_order(kolkata, "ts_text")
    # The test can fail: the same instants print differently in the two sessions.
    assert la_rows[0].ts_text != kolkata_rows[0].ts_text
    assert [r.enc for r in la_rows] == [
        "s3:A-1T16:1705361400123456D10:2024-01-15N21:2024-01-15 23:30:00.5",
        "s3:A-2T2:-1nn",
    ]


def test_golden_key_is_sha256_of_the_documented_encoding(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("A-1", 42, dt.date(2024, 1, 15))], "order_id string, qty int, day date"
    )

    got = df.transform(with_key(["order_id", "qty", "day"])).first()

    assert got is not None
    encoding = "s3:A-1" + "i2:42" + "D10:2024-01-15"
    assert got[KEY_COLUMN] == hashlib.sha256(encoding.encode("utf-8")).hexdigest()
    # Pinned literally: if this changes, every key ever written changes with it.
    assert got[KEY_COLUMN] == "399c60ae4c5b8c0a4f40d5b50db75835990f842f0b0f604f34420d7516a493db"


# ---------------------------------------------------------------- 4. row hash

ROW_SCHEMA = StructType(
    [
        StructField("id", IntegerType()),
        StructField("name", StringType()),
        StructField("qty", LongType()),
        StructField("note", StringType()),
        StructField("_run_id", StringType()),
        StructField("_key", StringType()),
    ]
)
ROW_DATA = [
    (1, "apple", 3, "x", "run-1", "k1"),
    (2, "pear", None, "y", "run-1", "k2"),
    (3, None, None, None, "run-1", "k3"),
]


def hashed(df: DataFrame, exclude: Sequence[str] = ()) -> DataFrame:
    return df.transform(with_row_hash(exclude=exclude)).select("id", ROW_HASH_COLUMN)


def test_row_hash_encodes_non_null_payload_sorted_by_name(spark: SparkSession) -> None:
    df = spark.createDataFrame(ROW_DATA, ROW_SCHEMA)

    got = values_in_order(
        df,
        row_encoding_expr(df.schema, ["qty", "name", "id"]),
        row_hash_expr(df.schema, ["qty", "name", "id"]),
        order="id",
    )

    assert [encoding for encoding, _ in got] == [
        "2:idi1:14:names5:apple3:qtyi1:3",
        "2:idi1:24:names4:pear",
        "2:idi1:3",
    ]
    assert [row_hash for _, row_hash in got] == [sha(encoding) for encoding, _ in got]


def test_row_hash_ignores_underscore_and_excluded_columns(spark: SparkSession) -> None:
    df = spark.createDataFrame(ROW_DATA, ROW_SCHEMA)
    other_run = df.withColumn("_run_id", F.lit("run-2")).withColumn("_key", F.lit("zzz"))
    other_note = df.withColumn("note", F.lit("changed"))

    base = hashed(df, exclude=["note"])

    assert_df_equality(base, hashed(other_run, exclude=["note"]), ignore_row_order=True)
    assert_df_equality(base, hashed(other_note, exclude=["note"]), ignore_row_order=True)
    # Without the exclusion the note is payload, so the same change shows.
    assert select_in_order(hashed(df), ROW_HASH_COLUMN, order="id") != select_in_order(
        hashed(other_note), ROW_HASH_COLUMN, order="id"
    )
    expected = df.select("id", row_hash_expr(df.schema, ["id", "name", "qty"]).alias("_row_hash"))
    assert_df_equality(base, expected, ignore_row_order=True, ignore_nullable=True)


def test_row_hash_ignores_column_order_and_all_null_new_columns(spark: SparkSession) -> None:
    df = spark.createDataFrame(ROW_DATA, ROW_SCHEMA)
    reordered = df.select("qty", "_key", "note", "name", "_run_id", "id")
    widened = df.withColumn("added", F.lit(None).cast("string")).withColumn("void", F.lit(None))

    base = hashed(df)

    assert_df_equality(base, hashed(reordered), ignore_row_order=True)
    assert_df_equality(base, hashed(widened), ignore_row_order=True)


def payload_and_hash(frame: DataFrame) -> dict[int, tuple[dict[str, object], str]]:
    """Per id: every column but the row hash, and the row hash."""
    result = {}
    for row in frame.transform(with_row_hash()).collect():
        values = row.asDict()
        result[row.id] = (values, values.pop(ROW_HASH_COLUMN))
    return result


def test_row_hash_changes_when_a_value_changes(spark: SparkSession) -> None:
    df = spark.createDataFrame(ROW_DATA, ROW_SCHEMA)
    changed = {
        "qty 3 -> 4": df.withColumn("qty", F.when(F.col("id") == 1, 4).otherwise(F.col("qty"))),
        "qty null -> 0": df.withColumn("qty", F.coalesce("qty", F.lit(0))),
        "name -> null": df.withColumn("name", F.lit(None).cast("string")),
        "name '' ": df.withColumn("name", F.coalesce("name", F.lit(""))),
    }
    before = payload_and_hash(df)
    for label, frame in changed.items():
        after = payload_and_hash(frame)
        value_changed = {i for i in before if before[i][0] != after[i][0]}
        hash_changed = {i for i in before if before[i][1] != after[i][1]}
        assert hash_changed == value_changed != set(), label


def test_row_hash_accepts_complex_columns_at_microsecond_precision(spark: SparkSession) -> None:
    schema = StructType(
        [
            StructField("id", IntegerType()),
            StructField("tags", ArrayType(StringType())),
            StructField("attrs", MapType(StringType(), LongType())),
            StructField("event", StructType([StructField("at", TimestampType())])),
        ]
    )
    at = dt.datetime(2024, 1, 15, 10, 30, 0, 123456, tzinfo=dt.timezone.utc)
    df = spark.createDataFrame(
        [
            (1, ["a", None], {"k": 1}, Row(at=at)),
            (2, ["a", None], {"k": 1}, Row(at=at + dt.timedelta(microseconds=1))),
        ],
        schema,
    )

    got = values_in_order(df, row_encoding_expr(df.schema, ["tags", "attrs", "event"]), order="id")

    assert got[0][0] == (
        '5:attrsj7:{"k":1}5:eventj36:{"at":"2024-01-15T10:30:00.123456Z"}4:tagsj10:["a",null]'
    )
    # Spark's default to_json pattern stops at milliseconds; these rows must still differ.
    assert got[0][0] != got[1][0]


def test_row_hash_output_column_is_not_its_own_payload(spark: SparkSession) -> None:
    df = spark.createDataFrame(ROW_DATA, ROW_SCHEMA)
    once = df.transform(with_row_hash(name="row_hash"))
    twice = once.transform(with_row_hash(name="row_hash"))

    assert_df_equality(once, twice, ignore_row_order=True)


# ---------------------------------------------------------------- 5. errors


def test_missing_key_column_names_it_and_lists_the_available_ones(spark: SparkSession) -> None:
    df = spark.createDataFrame(ROW_DATA, ROW_SCHEMA)

    with pytest.raises(UsageError) as err:
        df.transform(with_key(["id", "sku"]))

    assert "'sku'" in str(err.value)
    assert "id, name, qty, note, _run_id, _key" in str(err.value)


@pytest.mark.parametrize(
    ("data_type", "shown"),
    [
        (ArrayType(StringType()), "array<string>"),
        (MapType(StringType(), IntegerType()), "map<string,int>"),
        (StructType([StructField("x", IntegerType())]), "struct<x:int>"),
        (DayTimeIntervalType(), "interval day to second"),
    ],
)
def test_key_column_of_unsupported_type_is_rejected(
    spark: SparkSession, data_type: StructType, shown: str
) -> None:
    schema = StructType([StructField("id", IntegerType()), StructField("bad", data_type)])

    with pytest.raises(KeyColumnTypeError) as err:
        key_expr(schema, ["id", "bad"])

    assert "'bad'" in str(err.value) and shown in str(err.value)


def test_interval_payload_column_is_rejected_with_a_way_out(spark: SparkSession) -> None:
    schema = StructType([StructField("id", IntegerType()), StructField("d", DayTimeIntervalType())])

    with pytest.raises(KeyColumnTypeError, match=r"'d'.*exclude it"):
        row_hash_expr(schema, ["id", "d"])


@pytest.mark.parametrize("columns", [[], (), "id"])
def test_empty_or_bare_string_key_list_is_a_usage_error(columns: list[str]) -> None:
    with pytest.raises(UsageError):
        with_key(columns)
    with pytest.raises(UsageError):
        key_expr(StructType([StructField("id", IntegerType())]), columns)


def test_duplicate_key_column_and_unknown_exclude_are_usage_errors(spark: SparkSession) -> None:
    df = spark.createDataFrame(ROW_DATA, ROW_SCHEMA)

    with pytest.raises(UsageError, match="'id'"):
        with_key(["id", "id"])
    with pytest.raises(UsageError, match=r"'nots'.*Available columns"):
        df.transform(with_row_hash(exclude=["nots"]))
