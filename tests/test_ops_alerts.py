"""Webhook alerts, received by a local HTTP server on 127.0.0.1 (the ``webhook`` fixture).

The webhook URL carries a secret path, as Slack's do: no warning or error may show it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import io
import shutil
from pathlib import Path

import pytest

from framework.cli.observe import observe_run
from framework.engine.runner import Plan, RunReport
from framework.ops.alerts import AlertObserver, build_alert
from framework.state.ledger import PartitionState
from jobs.orders_daily import JOB as ORDERS
from tests.helpers import SECRET_PATH, free_port, job_states, run

D1, D2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)


def without_landing(config, day: dt.date):
    shutil.rmtree(Path(config.lakehouse.landing) / "orders" / f"order_date={day}")


def test_a_failed_run_posts_a_slack_compatible_alert(spark, sample_config, webhook) -> None:
    without_landing(sample_config, D2)
    warnings: list[str] = []
    observer = AlertObserver(
        webhook.url, warnings.append, cli_options=" --lakehouse /lake", host="etl-7"
    )
    report = run(spark, sample_config, ORDERS, [D2], observers=[observer])
    assert report.exit_code == 1 and warnings == []
    [(path, content_type, payload)] = webhook.received
    assert (path, content_type) == (SECRET_PATH, "application/json")
    failed = job_states(spark, sample_config, ORDERS.name)[D2]
    text = payload["text"].splitlines()
    assert text[0] == (
        f":red_circle: ninelives orders_daily run {report.run_id} failed on etl-7: "
        "1 of 1 partition(s) failed, 0 complete, 0 skipped"
    )
    assert text[1].startswith(
        f"• SourceMissingError on 2024-01-02: {failed.error_message.splitlines()[0]} "
        "(the source has no data for the date."
    )
    assert text[2] == "To recover: `ninelives run orders_daily --date 2024-01-02 --lakehouse /lake`"
    facts = payload["ninelives"]
    assert (facts["severity"], facts["outcome"], facts["run_id"]) == (
        "error",
        "failed",
        report.run_id,
    )
    assert facts["failed"] == [
        {
            "partition": "2024-01-02",
            "attempt": failed.attempt,
            "error_class": failed.error_class,
            "error_message": failed.error_message.splitlines()[0],
        }
    ]


def test_quarantine_above_the_warning_ratio_alerts_and_below_does_not(
    spark, sample_config, webhook
) -> None:
    warnings: list[str] = []
    strict = AlertObserver(webhook.url, warnings.append, warn_ratio=0.001)
    lenient = AlertObserver(webhook.url, warnings.append, warn_ratio=0.5)
    report = run(spark, sample_config, ORDERS, [D1], observers=[strict, lenient])
    assert report.exit_code == 0 and warnings == []
    done = job_states(spark, sample_config, ORDERS.name)[D1]
    ratio = done.rows_rejected / done.rows_read
    assert 0.001 < ratio < 0.5  # the sample data has a few malformed lines per day
    [(_, _, payload)] = webhook.received  # the lenient observer sent nothing
    assert payload["text"].splitlines()[0] == (
        f":warning: ninelives orders_daily run {report.run_id} completed with {ratio:.1%} of "
        f"rows quarantined ({done.rows_rejected:,} of {done.rows_read:,}; warning above 0.1%)"
    )
    facts = payload["ninelives"]
    assert (facts["severity"], facts["outcome"], facts["recovery_command"]) == (
        "warning",
        "succeeded",
        None,
    )
    assert (facts["rows_read"], facts["rows_written"], facts["rows_quarantined"]) == (
        done.rows_read,
        done.rows_written,
        done.rows_rejected,
    )
    assert facts["quarantine_ratio"] == round(ratio, 6)
    assert lenient.sent is None and strict.sent == payload


def test_a_failing_webhook_is_one_warning_that_never_shows_the_url(
    spark, sample_config, webhook
) -> None:
    webhook.status = 500
    without_landing(sample_config, D2)
    stderr = io.StringIO()
    args = argparse.Namespace(command="run", job=ORDERS.name, date=D2, progress="off")
    with observe_run(
        args, sample_config, spark, env={"NINELIVES_WEBHOOK_URL": webhook.url}, stderr=stderr
    ) as observers:
        report = run(spark, sample_config, ORDERS, [D2], observers=observers)
    assert report.exit_code == 1
    assert len(webhook.received) == 1  # it was called ...
    # ... and its failure is one line, without the URL or any part of it.
    assert stderr.getvalue() == (
        "ninelives: warning: could not send the alert to the webhook: "
        "HTTP 500 Internal Server Error\n"
    )
    for secret in webhook.secrets():
        assert secret not in stderr.getvalue()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("closed-port", "could not send the alert to the webhook: ConnectionRefusedError"),
        (
            "ftp://hooks.example.com/services/s3cr3t",
            "could not send the alert to the webhook: ValueError: the alert webhook URL must "
            "start with http:// or https://",
        ),
        (
            "http://no-such-host.invalid/services/s3cr3t",
            "could not send the alert to the webhook: gaierror",
        ),
    ],
)
def test_network_errors_do_not_reveal_the_url(url: str, expected: str) -> None:
    if url == "closed-port":
        url = f"http://127.0.0.1:{free_port()}/services/s3cr3t"
    warnings: list[str] = []
    report = RunReport("orders_daily", "run-x", Plan(frozenset([D2]), frozenset(), False))
    observer = AlertObserver(url, warnings.append, timeout=5)
    observer.run_started(report)
    observer.run_finished(dataclasses.replace(report, finished_at=report.started_at))
    [warning] = warnings
    assert warning.startswith(expected)
    assert "s3cr3t" not in warning and url not in warning
    assert "hooks.example.com" not in warning and "no-such-host" not in warning
    assert "AlertObserver(url=<redacted>" in repr(observer)


def test_a_run_with_nothing_to_do_sends_nothing() -> None:
    done = PartitionState("orders_daily", D1, 1, "complete", "run-0", rows_read=10)
    report = RunReport(
        "orders_daily", "run-x", Plan(frozenset([D1]), frozenset([D1]), False), states={D1: done}
    )
    assert report.exit_code == 0
    assert build_alert(report) is None
    missing = RunReport("orders_daily", "run-y", Plan(frozenset([D1]), frozenset(), False))
    assert build_alert(missing) is not None  # requested, not complete, nothing recorded
