"""A corpus of bad inputs, one test per case. Each asserts the exact outcome (quarantined,
dropped, failed with a named error, or retried then succeeded) and the accounting
invariant: read = written + quarantined + dropped + duplicates collapsed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import functions as F

from framework.cli import main
from framework.core.config import Config
from framework.core.errors import InvalidNameError
from framework.core.expectations import in_range, sql_rule
from framework.lake.quarantine import quarantine_table
from framework.lake.sinks import MergeSink
from framework.lake.tables import Lakehouse
from framework.state.ledger import COMPLETE, FAILED, PartitionState
from jobs.orders_daily import JOB as ORDERS
from tests.helpers import ledger_of, run, run_date

# The core suite: run again through Spark Connect (pytest --connect).
pytestmark = pytest.mark.connect

D, D2 = dt.date(2024, 1, 15), dt.date(2024, 1, 16)


def event(n: int = 1, day: dt.date = D, **fields: object) -> str:
    record: dict[str, object] = {
        "source_id": f"ORD-{n:010d}",
        "order_date": day.isoformat(),
        "event_type": "created",
        "event_ts": f"{day}T10:00:00+01:00",
        "customer_id": "C-000001",
        "amount": 10.5,
        "currency": "EUR",
        "ingested_at": f"{day + dt.timedelta(days=1)}T04:00:00Z",
    }
    record.update(fields)
    return json.dumps({k: v for k, v in record.items() if v is not ...})


@pytest.fixture
def lake(config: Config, tmp_path: Path) -> Config:
    landing = tmp_path / "landing"
    landing.mkdir()
    return dataclasses.replace(
        config, lakehouse=dataclasses.replace(config.lakehouse, landing=str(landing))
    )


def land(cfg: Config, lines: list[str], day: dt.date = D) -> None:
    folder = Path(cfg.lakehouse.landing) / "orders" / f"order_date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-00000.txt").write_text("".join(line + "\n" for line in lines))


def quarantined(spark, cfg: Config, job: str = "orders_daily") -> list[tuple[str, str]]:
    ref = quarantine_table(Lakehouse(cfg.lakehouse), job)
    if not ref.exists(spark):
        return []
    return sorted((r.raw, r.reason) for r in ref.read(spark).collect())


def silver(spark, cfg: Config):
    ref = Lakehouse(cfg.lakehouse).table("silver.orders")
    return ref.read(spark) if ref.exists(spark) else None


def assert_accounted(state: PartitionState) -> None:
    assert state.rows_read == (
        state.rows_written + state.rows_rejected + state.rows_dropped + state.rows_duplicate
    ), state


def assert_quarantined_one(spark, lake, reason_part: str) -> str:
    """One bad line among 19 good ones: quarantined with the reason; its raw text back."""
    state = run_date(spark, lake, ORDERS, D)
    assert (state.state, state.rows_read, state.rows_written, state.rows_rejected) == (
        COMPLETE,
        20,
        19,
        1,
    ), state.error_message
    assert_accounted(state)
    [(raw, reason)] = quarantined(spark, lake)
    assert reason_part in reason
    return raw


GOOD = [event(n) for n in range(1, 20)]
GOOD_D2 = [event(n, day=D2) for n in range(1, 20)]


def test_truncated_json_line_is_quarantined_with_its_text(spark, lake) -> None:
    bad = event(99)[:25]
    land(lake, [*GOOD, bad])
    assert assert_quarantined_one(spark, lake, "malformed record") == bad


def test_wrong_type_is_quarantined_as_malformed(spark, lake) -> None:
    bad = event(99, amount="twelve")
    land(lake, [*GOOD, bad])
    assert assert_quarantined_one(spark, lake, "malformed record") == bad


# One row per rule of orders_daily, each breaking only that rule: the rule's reason.
RULE_BREAKERS: dict[str, dict[str, Any]] = {
    "source_id is not null": {"source_id": ...},
    "currency in (EUR, USD, GBP)": {"currency": "XXX"},
    "event_type in (created, paid, shipped, cancelled)": {"event_type": "teleported"},
    "0 <= amount": {"amount": -5},
    "source_id matches ^ORD-[0-9]{10}$": {"source_id": "BAD-1"},
    "event_ts is not null": {"event_ts": "not a time"},
    "order_date 2024-01-14 is outside partition 2024-01-15": {"order_date": "2024-01-14"},
}


def test_each_broken_rule_quarantines_its_row_with_the_rule(spark, lake) -> None:
    """All rules in one partition, so one run: each bad row is quarantined (as JSON of
    its parsed fields) with the rule it broke in its reason; the good rows are written."""
    ids: dict[str, str | None] = {}  # rule -> source_id of its row (None: the row has none)
    lines = []
    for n, (rule, fields) in enumerate(RULE_BREAKERS.items()):
        ids[rule] = fields.get("source_id", f"ORD-{90 + n:010d}")
        lines.append(event(90 + n, **fields))
    land(lake, [*GOOD, *lines])
    state = run_date(spark, lake, dataclasses.replace(ORDERS, max_reject_ratio=1.0), D)
    assert (state.state, state.rows_read, state.rows_written, state.rows_rejected) == (
        COMPLETE,
        len(GOOD) + len(lines),
        len(GOOD),
        len(lines),
    ), state.error_message
    assert_accounted(state)
    reasons = {json.loads(raw).get("source_id"): reason for raw, reason in quarantined(spark, lake)}
    assert len(reasons) == len(lines), reasons
    for rule, source_id in ids.items():
        assert rule in reasons[None if source_id is ... else source_id], (rule, reasons)


def test_duplicates_collapse_to_the_latest_delivery(spark, lake) -> None:
    later = event(1, amount=99.0, ingested_at="2024-01-16T12:00:00Z")
    land(lake, [*GOOD, event(1), later])  # event 1 three times
    state = run_date(spark, lake, ORDERS, D)
    assert (state.rows_read, state.rows_written, state.rows_duplicate) == (21, 19, 2)
    assert_accounted(state)
    amount = silver(spark, lake).where(F.col("source_id") == "ORD-0000000001").first().amount
    assert float(amount) == 99.0


def test_drop_action_counts_dropped_rows_and_keeps_them_out(spark, lake) -> None:
    job = dataclasses.replace(ORDERS, expectations=(in_range("amount", 0, action="drop"),))
    land(lake, [*GOOD, event(99, amount=-1)])
    state = run_date(spark, lake, job, D)
    assert (state.state, state.rows_written, state.rows_dropped, state.rows_rejected) == (
        COMPLETE,
        19,
        1,
        0,
    )
    assert_accounted(state)
    assert quarantined(spark, lake) == []


def test_fail_action_fails_the_partition_naming_the_rule(spark, lake) -> None:
    rule = sql_rule("paid events have an amount", "event_type <> 'paid' OR amount > 0", "fail")
    job = dataclasses.replace(ORDERS, expectations=(rule,))
    land(lake, [*GOOD, event(99, event_type="paid", amount=0)])
    state = run_date(spark, lake, job, D)
    assert (state.state, state.error_class) == (FAILED, "ExpectationFailedError")
    assert "1 row(s) break the rule 'paid events have an amount'" in state.error_message
    assert silver(spark, lake) is None


def test_a_mostly_broken_export_fails_and_its_rejects_stay_visible(spark, lake) -> None:
    land(lake, [*GOOD[:10], *("{broken" for _ in range(10))])
    state = run_date(spark, lake, ORDERS, D)
    assert (state.state, state.error_class) == (FAILED, "RejectRatioError")
    assert "10 of 20 rows rejected (50%), above max_reject_ratio 5%" in state.error_message
    assert len(quarantined(spark, lake)) == 10
    assert silver(spark, lake) is None


def test_missing_source_fails_with_a_distinct_error(spark, lake) -> None:
    state = run_date(spark, lake, ORDERS, D)
    assert (state.state, state.error_class) == (FAILED, "SourceMissingError")
    assert state.error_message.startswith(f"no source files for {D} under ")


def test_empty_source_file_fails_unless_the_job_allows_empty(spark, lake) -> None:
    land(lake, [])
    state = run_date(spark, lake, ORDERS, D)
    assert (state.state, state.error_class) == (FAILED, "SourceMissingError")
    assert f"source has no rows for {D}" in state.error_message

    allowed = dataclasses.replace(ORDERS, allow_empty=True)
    state = run_date(spark, lake, allowed, D2)  # D2 has no folder at all
    assert (state.state, state.rows_read, state.rows_written) == (COMPLETE, 0, 0)


def _with_target(spark, lake) -> None:
    land(lake, GOOD_D2, day=D2)
    assert run_date(spark, lake, ORDERS, D2).state == COMPLETE
    land(lake, GOOD)


def test_drift_new_column_fails_by_default_then_evolves_or_is_ignored(spark, lake) -> None:
    _with_target(spark, lake)
    extra = dataclasses.replace(
        ORDERS, transform=lambda df: ORDERS.transform(df).withColumn("channel", F.lit("web"))
    )
    state = run_date(spark, lake, extra, D)
    assert (state.state, state.error_class) == (FAILED, "SchemaMismatchError")
    assert "new column(s) channel not in the target" in state.error_message

    ignored = run_date(spark, lake, dataclasses.replace(extra, schema_drift="ignore"), D)
    assert ignored.state == COMPLETE
    assert "channel" not in silver(spark, lake).columns

    evolve = dataclasses.replace(extra, schema_drift="evolve")
    evolved = run_date(spark, lake, evolve, D, force=True)
    assert evolved.state == COMPLETE, evolved.error_message
    channels = {r.channel for r in silver(spark, lake).where(F.col("order_date") == D).collect()}
    assert channels == {"web"}


def test_drift_missing_required_column_names_it_and_its_type(spark, lake) -> None:
    _with_target(spark, lake)
    job = dataclasses.replace(ORDERS, transform=lambda df: ORDERS.transform(df).drop("currency"))
    state = run_date(spark, lake, job, D)
    assert (state.state, state.error_class) == (FAILED, "SchemaMismatchError")
    assert "required column currency is missing: expected string, found none" in (
        state.error_message
    )


def test_drift_changed_type_names_expected_and_found(spark, lake) -> None:
    _with_target(spark, lake)
    job = dataclasses.replace(
        ORDERS,
        transform=lambda df: ORDERS.transform(df).withColumn(
            "amount", F.col("amount").cast("double")
        ),
    )
    state = run_date(spark, lake, job, D)
    assert (state.state, state.error_class) == (FAILED, "SchemaMismatchError")
    assert "column amount changed type: expected decimal(12,2), found double" in (
        state.error_message
    )


@dataclasses.dataclass
class FlakyStorage:
    """The landing source behind storage that resets the first connection."""

    inner: Any
    failures: int = 1

    def describe(self, lakehouse):
        return self.inner.describe(lakehouse)

    def empty(self, spark, lakehouse):
        return self.inner.empty(spark, lakehouse)

    def fingerprint(self, spark, lakehouse, partition):
        return self.inner.fingerprint(spark, lakehouse, partition)

    def read(self, spark, lakehouse, partition, **options):
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("connection reset by peer")
        return self.inner.read(spark, lakehouse, partition, **options)


def _attempts(spark, cfg: Config, day: dt.date = D) -> list[tuple[int, str]]:
    ledger = ledger_of(spark, cfg)
    rows = ledger.frame().where(F.col("partition") == day).where(F.col("seq") == 2).collect()
    return sorted((r.attempt, r.state) for r in rows)


def test_transient_failure_is_retried_then_succeeds(spark, lake) -> None:
    land(lake, GOOD)
    job = dataclasses.replace(ORDERS, source=FlakyStorage(ORDERS.source))
    state = run_date(spark, lake, job, D, retry_base_seconds=0.01)
    assert (state.state, state.attempt) == (COMPLETE, 2)
    assert _attempts(spark, lake) == [(1, FAILED), (2, COMPLETE)]
    first = ledger_of(spark, lake).frame().where("attempt = 1 AND state = 'failed'").first()
    assert first.error_class == "ConnectionResetError"
    # The message names the line that raised it, here FlakyStorage.read.
    assert first.error_message.startswith(f"connection reset by peer (at {__file__}:"), first
    assert first.error_message.endswith(", in read)"), first


def test_permanent_failure_is_not_retried(spark, lake) -> None:
    land(lake, [*GOOD[:10], *("{broken" for _ in range(10))])
    run_date(spark, lake, ORDERS, D, retry_base_seconds=0.01)
    assert _attempts(spark, lake) == [(1, FAILED)]


def test_only_failed_picks_up_exactly_the_failed_partitions(spark, lake) -> None:
    land(lake, GOOD_D2, day=D2)
    report = run(spark, lake, ORDERS, [D, D2])
    assert [r.state for r in report.results] == [FAILED, COMPLETE]
    land(lake, GOOD)
    again = run(spark, lake, ORDERS, only_failed=True)
    assert [(r.partition, r.state, r.attempt) for r in again.results] == [(D, COMPLETE, 2)]


def test_illegal_table_names_are_refused_before_any_sql() -> None:
    with pytest.raises(InvalidNameError, match="invalid table name part 'orders; DROP'"):
        dataclasses.replace(ORDERS, sink=MergeSink("silver.orders; DROP"))
    with pytest.raises(InvalidNameError, match="invalid column name"):
        dataclasses.replace(ORDERS, key=("source_id`) OR (1=1",))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lakehouse", "/etc/hostname/lake"], "lakehouse path /etc/hostname/lake is unusable"),
        (["--conf", "{bad_catalog}"], "config key 'lakehouse.catalog' in"),
    ],
    ids=["unusable_lakehouse", "illegal_catalog_name"],
)
def test_bad_cli_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys) -> None:
    bad_catalog = tmp_path / "bad.toml"
    bad_catalog.write_text('[lakehouse]\ncatalog = "main; DROP"\n')
    argv = [a.format(bad_catalog=bad_catalog) for a in argv]
    assert main(["status", "orders_daily", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_quarantine_command_shows_rows_and_reasons(spark, lake, capsys) -> None:
    land(lake, [*GOOD, event(99, currency="XXX")])
    run_date(spark, lake, ORDERS, D)
    conf = Path(lake.lakehouse.root).parent / "c.toml"
    conf.write_text(f'[lakehouse]\nlanding = "{lake.lakehouse.landing}"\n')
    code = main(
        [
            "quarantine",
            "orders_daily",
            "--date",
            str(D),
            "--lakehouse",
            lake.lakehouse.root,
            "--conf",
            str(conf),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "currency in (EUR, USD, GBP)" in out and "1 quarantined record(s)" in out
