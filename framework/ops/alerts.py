"""Chat alerts: a JSON POST to a webhook when a run fails or quarantines too much.

The payload has a Slack-compatible ``text`` field (Slack, Mattermost, Rocket.Chat and
Teams workflows read it) and the same facts as structured JSON under ``ninelives``::

    {"text": ":red_circle: ninelives orders_daily run 2024...-ab12cd34 failed on host1: ...",
     "ninelives": {"job": "orders_daily", "severity": "error", "outcome": "failed",
                   "failed": [{"partition": "2024-01-02", "error_class": "...", ...}],
                   "rows_read": 300, "rows_quarantined": 6, "quarantine_ratio": 0.02,
                   "recovery_command": "ninelives run orders_daily --date 2024-01-02"}}

An alert is sent when the run failed (``severity: error``), aborted, or completed with
``rows_quarantined / rows_read`` above ``warn_ratio`` (``severity: warning``). The webhook
URL is a secret (it authorises posting): it is never printed, and errors about it are
described by class and HTTP status only, with the URL redacted from any text.

Example::

    payload = build_alert(report, warn_ratio=0.01)
    if payload:
        post_webhook(webhook_url, payload)
"""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlsplit

from framework.engine.runner import RunReport
from framework.ops.history import ABORTED, FAILED_RUN, RunRecord
from framework.ops.observers import Warn, safe_describe
from framework.ops.runbook import dates_text, error_hint, recovery_command
from framework.state.ledger import PartitionState

DEFAULT_WARN_RATIO = 0.01
"""Quarantined / read above this (1%) makes a completed run send a warning."""

_MAX_LISTED = 10


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:300] if lines else ""


def build_alert(
    report: RunReport,
    *,
    warn_ratio: float = DEFAULT_WARN_RATIO,
    cli_options: str = "",
    host: str | None = None,
    record: RunRecord | None = None,
    error: BaseException | None = None,
) -> dict[str, object] | None:
    """The webhook payload for ``report``, or None when the run needs no attention."""
    record = record or RunRecord.from_report(report, host=host)
    ratio = record.rows_quarantined / record.rows_in if record.rows_in else 0.0
    failing = record.outcome in (FAILED_RUN, ABORTED)
    if not failing and ratio <= warn_ratio:
        return None
    where = f" on {record.host}" if record.host else ""
    head = f"ninelives {report.job} run {report.run_id}"
    lines: list[str]
    if record.outcome == ABORTED:
        what = f"{type(error).__name__}: {_first_line(str(error))}" if error else "an error"
        lines = [f":red_circle: {head} aborted{where}: {what}"]
    elif failing:
        lines = [
            f":red_circle: {head} failed{where}: {record.partitions_failed} of "
            f"{record.partitions_planned} partition(s) failed, "
            f"{record.partitions_complete} complete, {record.partitions_skipped} skipped"
        ]
    else:
        lines = [
            f":warning: {head} completed{where} with {ratio:.1%} of rows quarantined "
            f"({record.rows_quarantined:,} of {record.rows_in:,}; warning above {warn_ratio:.1%})"
        ]
    by_class: dict[str, list[PartitionState]] = {}
    for state in report.failed:
        by_class.setdefault(state.error_class or "unknown error", []).append(state)
    for error_class, group in by_class.items():
        lines.append(
            f"• {error_class} on {dates_text((s.partition for s in group), _MAX_LISTED)}: "
            f"{_first_line(group[0].error_message)} "
            f"({error_hint(error_class, group[0].error_message)})"
        )
    command = (
        recovery_command(report.job, report.incomplete, cli_options) if report.incomplete else None
    )
    if command:
        lines.append(f"To recover: `{command}`")
    lines.append(f"Details: `ninelives status {report.job}{cli_options}`")
    return {
        "text": "\n".join(lines),
        "ninelives": {
            "job": report.job,
            "run_id": report.run_id,
            "host": record.host,
            "severity": "error" if failing else "warning",
            "outcome": record.outcome,
            "partitions": record.partition_counts(),
            "failed": [
                {
                    "partition": s.partition.isoformat(),
                    "attempt": s.attempt,
                    "error_class": s.error_class,
                    "error_message": _first_line(s.error_message),
                }
                for s in report.failed
            ],
            "rows_read": record.rows_in,
            "rows_written": record.rows_out,
            "rows_quarantined": record.rows_quarantined,
            "quarantine_ratio": round(ratio, 6),
            "warn_ratio": warn_ratio,
            "recovery_command": command,
        },
    }


def post_webhook(url: str, payload: dict[str, object], *, timeout: float = 10.0) -> int:
    """POST ``payload`` as JSON; return the HTTP status. Raises on a non-2xx answer."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("the alert webhook URL must start with http:// or https://")
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "ninelives"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


class AlertObserver:
    """Sends :func:`build_alert`'s payload, if any, when the run finishes or aborts.

    A failed POST is one warning line naming the HTTP status or the network error,
    never the URL.
    """

    def __init__(
        self,
        url: str,
        warn: Warn,
        *,
        warn_ratio: float = DEFAULT_WARN_RATIO,
        cli_options: str = "",
        host: str | None = None,
        job: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._url = url
        self.warn = warn
        self.warn_ratio = warn_ratio
        self.cli_options = cli_options
        self.host = host
        self.job = job
        self.timeout = timeout
        self.report: RunReport | None = None
        self.sent: dict[str, object] | None = None

    def __repr__(self) -> str:  # keeps the URL out of any debug output
        return f"AlertObserver(url=<redacted>, warn_ratio={self.warn_ratio})"

    def run_started(self, report: RunReport) -> None:
        self.report = report

    def transition(self, state: PartitionState, seconds: float | None) -> None:
        return None

    def run_finished(self, report: RunReport) -> None:
        payload = build_alert(
            report, warn_ratio=self.warn_ratio, cli_options=self.cli_options, host=self.host
        )
        if payload is not None:
            self._send(payload)

    def run_aborted(self, error: BaseException) -> None:
        if self.sent is not None:
            return
        if self.report is not None:
            record = RunRecord.from_report(self.report, host=self.host, outcome=ABORTED)
            payload = build_alert(
                self.report, cli_options=self.cli_options, record=record, error=error
            )
        else:
            text = (
                f":red_circle: ninelives {self.job or 'job'} run aborted before planning"
                f"{' on ' + self.host if self.host else ''}: {type(error).__name__}: "
                f"{_first_line(str(error))}"
            )
            payload = {
                "text": text,
                "ninelives": {"job": self.job, "severity": "error", "outcome": ABORTED},
            }
        if payload is not None:
            self._send(payload)

    def _send(self, payload: dict[str, object]) -> None:
        self.sent = payload
        try:
            post_webhook(self._url, payload, timeout=self.timeout)
        except Exception as error:
            self.warn(
                f"could not send the alert to the webhook: {safe_describe(error, [self._url])}"
            )
