"""Progress display, observer guarding and operations settings: no Spark needed.

Partition states here are built by hand, as the runner would record them; the runs
that produce real ones are in test_ops_runbook.py, test_ops_metrics.py and
test_ops_alerts.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os

import pytest
from rich.console import Console

from framework.cli.observe import OpsSettings, command_line
from framework.core.errors import UsageError
from framework.engine.runner import Plan, RunReport
from framework.ops.observers import Guarded, ProgressObserver, progress_mode, redacted
from framework.state.ledger import COMPLETE, FAILED, RUNNING, PartitionState

JOB = "orders_daily"
DAYS = [dt.date(2024, 1, d) for d in range(1, 5)]


def report_for(days: list[dt.date], complete: tuple[dt.date, ...] = ()) -> RunReport:
    return RunReport(JOB, "run-1", Plan(frozenset(days), frozenset(complete), force=False))


def running(day: dt.date, attempt: int = 1) -> PartitionState:
    return PartitionState(JOB, day, attempt, RUNNING, "run-1", host="h", pid=1)


def complete(day: dt.date, rows: int, attempt: int = 1) -> PartitionState:
    return running(day, attempt).advance(
        COMPLETE, rows_read=rows, rows_written=rows - 2, rows_rejected=2
    )


def failed(
    day: dt.date, attempt: int = 1, error: str = "ConcurrentAppendException"
) -> PartitionState:
    return running(day, attempt).advance(
        FAILED, error_class=error, error_message="Files were added\nat line 2"
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_mode_bar_on_a_terminal_plain_elsewhere_and_on_databricks() -> None:
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            assert tty.isatty()
            assert progress_mode(tty, {}) == "bar"
            assert progress_mode(tty, {"DATABRICKS_RUNTIME_VERSION": "15.4"}) == "plain"
            assert progress_mode(tty, {}, "off") == "off"
    finally:
        os.close(leader)
        os.close(follower)
    assert progress_mode(io.StringIO(), {}) == "plain"
    assert progress_mode(io.StringIO(), {}, "bar") == "bar"


def test_progress_bar_shows_done_total_rows_per_second_and_eta() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system=None)
    clock = Clock()
    progress = ProgressObserver("bar", console=console, clock=clock)
    progress.run_started(report_for(DAYS))
    for day in DAYS:
        progress.transition(running(day), None)
    clock.now += 10
    progress.transition(complete(DAYS[0], 1500), 10.0)
    clock.now += 10
    progress.transition(failed(DAYS[1], error="SourceMissingError"), 10.0)
    # 2 of 4 done in 20 s: 1,500 rows read by complete partitions -> 75 rows/s, 20 s left.
    assert (progress.done, progress.failed, progress.rows) == (2, 1, 1500)
    assert progress.rows_per_second() == 75.0
    assert progress.eta_seconds() == 20.0
    progress.run_finished(report_for(DAYS))
    text = out.getvalue()
    assert "2/4" in text
    assert "75 rows/s" in text
    assert "ETA 0:00:20" in text
    assert "1 failed" in text
    assert JOB in text


def test_plain_progress_counts_a_retried_partition_once() -> None:
    out = io.StringIO()
    clock = Clock()
    progress = ProgressObserver("plain", out, clock=clock)
    progress.run_started(report_for(DAYS[:2], complete=()))
    progress.transition(running(DAYS[0]), None)
    progress.transition(running(DAYS[1]), None)
    clock.now += 4
    progress.transition(failed(DAYS[0]), 4.0)  # transient: the runner claims attempt 2
    progress.transition(running(DAYS[0], attempt=2), None)
    clock.now += 4
    progress.transition(complete(DAYS[0], 400, attempt=2), 8.0)
    clock.now += 2
    progress.transition(complete(DAYS[1], 100), 2.0)
    progress.run_finished(report_for(DAYS[:2]))
    lines = out.getvalue().splitlines()
    assert len(lines) == 6, lines
    assert lines[0].endswith(f"{JOB} run run-1: 2 partition(s) to process, 0 skipped as complete")
    assert lines[1].endswith(
        f"{JOB} 2024-01-01 attempt 1 FAILED: ConcurrentAppendException: Files were added "
        "in 4.0s [1/2 done, 0 rows/s, ETA 0:00:04]"
    )
    assert lines[2].endswith(
        f"{JOB} 2024-01-01 retrying as attempt 2 after ConcurrentAppendException: Files were added"
    )
    assert lines[3].endswith(
        f"{JOB} 2024-01-01 attempt 2 complete: 400 read, 398 written, 2 quarantined in 8.0s "
        "[1/2 done, 50 rows/s, ETA 0:00:08]"
    )
    assert lines[4].endswith("[2/2 done, 50 rows/s, ETA 0:00:00]")
    assert lines[5].endswith("finished in 10.0s: 2 complete, 0 failed, 0 held by another runner")
    # Every line starts with a UTC timestamp.
    assert all(dt.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")) for line in lines)


def test_healed_partition_is_reported_as_healed() -> None:
    out = io.StringIO()
    progress = ProgressObserver("plain", out, clock=Clock())
    progress.run_started(report_for(DAYS[:1]))
    progress.transition(complete(DAYS[0], 10), None)  # healed: no processing time
    assert "complete: 10 read, 8 written, 2 quarantined healed from its Delta commit" in (
        out.getvalue()
    )


class Exploding:
    def run_started(self, report: RunReport) -> None:
        raise RuntimeError("gateway http://user:pw@example.invalid/x said no\nsecond line")

    def transition(self, state: PartitionState, seconds: float | None) -> None:
        return None

    def run_finished(self, report: RunReport) -> None:
        return None

    def run_aborted(self, error: BaseException) -> None:
        raise RuntimeError("the observer broke")


def test_guarded_observer_turns_an_error_into_one_warning_line() -> None:
    warnings: list[str] = []
    guarded = Guarded(Exploding(), "metrics", warnings.append)
    guarded.run_started(report_for(DAYS))  # must not raise
    guarded.run_aborted(RuntimeError("x"))  # must not raise either
    assert warnings == [
        "metrics failed: RuntimeError: gateway http://user:pw@example.invalid/x said no",
        "metrics failed: RuntimeError: the observer broke",
    ]


def test_redacted_blanks_the_url_and_its_parts() -> None:
    url = "https://hooks.example.com/services/T0/B0/s3cr3t?token=abc123"
    text = f"POST {url} failed; host hooks.example.com path /services/T0/B0/s3cr3t"
    clean = redacted(text, [url])
    assert "s3cr3t" not in clean and "hooks.example.com" not in clean and "abc123" not in clean
    assert clean.startswith("POST <redacted> failed")


def run_args(**options: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "command": "run",
        "job": JOB,
        "date": None,
        "start": DAYS[0],
        "end": DAYS[2],
        "force": True,
        "dry_run": False,
        "fail_fast": False,
        "wait": False,
        "only_failed": False,
        "lakehouse": "/data/lake house",
        "webhook_url": "https://hooks.example.com/services/SECRET",
    }
    values.update(options)
    return argparse.Namespace(**values)


def test_history_arguments_are_the_canonical_command_without_secrets() -> None:
    line = command_line(run_args())
    assert line == (
        "run orders_daily --from 2024-01-01 --to 2024-01-03 --force --lakehouse '/data/lake house'"
    )
    assert "SECRET" not in line


def test_settings_options_win_over_environment_and_hide_the_webhook() -> None:
    env = {
        "NINELIVES_WEBHOOK_URL": "https://env.example.com/hook/ENVSECRET",
        "NINELIVES_PUSHGATEWAY": "http://pg:9091",
        "NINELIVES_LOG_FILE": "/tmp/from-env.jsonl",
        "NINELIVES_ALERT_QUARANTINE_RATIO": "0.2",
        "NINELIVES_PROGRESS": "plain",
    }
    settings = OpsSettings.resolve(run_args(log_file="/tmp/option.jsonl"), env)
    assert settings.webhook_url == "https://hooks.example.com/services/SECRET"
    assert settings.log_file == "/tmp/option.jsonl"
    assert (settings.pushgateway, settings.warn_ratio, settings.progress) == (
        "http://pg:9091",
        0.2,
        "plain",
    )
    assert "SECRET" not in repr(settings)
    defaults = OpsSettings.resolve(argparse.Namespace(command="run", job=JOB), {})
    assert (defaults.webhook_url, defaults.warn_ratio, defaults.progress) == (None, 0.01, "auto")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NINELIVES_ALERT_QUARANTINE_RATIO": "lots"}, "expected a ratio between 0 and 1"),
        ({"NINELIVES_LOG_FORMAT": "xml"}, "NINELIVES_LOG_FORMAT='xml'"),
        ({"NINELIVES_PROGRESS": "spinner"}, "NINELIVES_PROGRESS='spinner'"),
    ],
)
def test_bad_environment_settings_are_usage_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        OpsSettings.resolve(argparse.Namespace(command="run", job=JOB), env)
