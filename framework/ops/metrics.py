"""Prometheus metrics of a run, pushed to a Pushgateway.

A nightly run is a batch job: it is not alive to be scraped, so its metrics are pushed
when it ends, grouped by ``job=<job name>`` (the Pushgateway adds that label to every
series). All are gauges describing the last run of the job:

=====================================================  ==================================
``ninelives_run_partitions{state}``                    partitions by state: planned,
                                                       complete, failed, healed, held,
                                                       skipped
``ninelives_run_rows_read`` / ``_rows_written``        rows in and out
``ninelives_run_rows_quarantined``                     rows sent to quarantine
``ninelives_run_duration_seconds``                     wall time of the run
``ninelives_run_succeeded``                            1 succeeded or nothing to do, else 0
``ninelives_run_info{run_id,outcome,host}``            always 1
``ninelives_last_run_timestamp_seconds``               when the last run finished
``ninelives_last_success_timestamp_seconds``           when the last successful run finished
=====================================================  ==================================

The push is a POST (``pushadd``): it replaces the metrics it carries and keeps the
others, so a failed run leaves ``ninelives_last_success_timestamp_seconds`` of the last
good run in place, the value to alert on (``time() - ... > 26 * 3600``).

Example::

    registry = run_registry(report)
    push_run_metrics("http://pushgateway:9091", report)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler

from framework.engine.runner import RunReport
from framework.ops.history import ABORTED, NOTHING_TO_DO, SUCCEEDED, RunRecord
from framework.ops.observers import Warn, safe_describe
from framework.state.ledger import PartitionState

PARTITION_STATES = ("planned", "complete", "failed", "healed", "held", "skipped")


def _timestamp(value: dt.datetime) -> float:
    return value.astimezone(dt.timezone.utc).timestamp()


def run_registry(report: RunReport, record: RunRecord | None = None) -> CollectorRegistry:
    """A fresh registry holding the metrics of one finished (or aborted) run."""
    record = record or RunRecord.from_report(report)
    registry = CollectorRegistry(auto_describe=True)

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(name, doc, registry=registry).set(value)

    partitions = Gauge(
        "ninelives_run_partitions",
        "Partitions of the last run, by state",
        ["state"],
        registry=registry,
    )
    counts = record.partition_counts()
    for state in PARTITION_STATES:
        partitions.labels(state=state).set(counts[state])
    gauge("ninelives_run_rows_read", "Rows read by the last run", record.rows_in)
    gauge("ninelives_run_rows_written", "Rows written by the last run", record.rows_out)
    gauge(
        "ninelives_run_rows_quarantined",
        "Rows the last run sent to quarantine",
        record.rows_quarantined,
    )
    gauge("ninelives_run_duration_seconds", "Wall time of the last run", record.duration_s)
    succeeded = record.outcome in (SUCCEEDED, NOTHING_TO_DO)
    gauge("ninelives_run_succeeded", "1 if the last run succeeded, else 0", float(succeeded))
    Gauge(
        "ninelives_run_info",
        "The last run: its id, outcome and host",
        ["run_id", "outcome", "host"],
        registry=registry,
    ).labels(run_id=record.run_id, outcome=record.outcome, host=record.host or "").set(1)
    finished = _timestamp(record.finished_at)
    gauge("ninelives_last_run_timestamp_seconds", "When the last run finished", finished)
    if succeeded:
        gauge(
            "ninelives_last_success_timestamp_seconds",
            "When the last successful run finished",
            finished,
        )
    return registry


def _handler(gateway: str) -> tuple[str, Callable[..., Any]]:
    """Move ``user:password@`` out of the URL into a basic-auth handler."""
    url = urlsplit(gateway)
    if not url.username:
        return gateway, default_handler
    host = url.hostname or ""
    netloc = f"{host}:{url.port}" if url.port else host
    bare = urlunsplit((url.scheme, netloc, url.path, url.query, url.fragment))
    username, password = url.username, url.password or ""

    def handler(url: str, method: str, timeout: float | None, headers: Any, data: bytes) -> Any:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    return bare, handler


def push_run_metrics(
    gateway: str, report: RunReport, record: RunRecord | None = None, *, timeout: float = 10.0
) -> CollectorRegistry:
    """Push the run's metrics to ``gateway`` (``http://host:9091``) under ``job=<job>``."""
    registry = run_registry(report, record)
    url, handler = _handler(gateway)
    pushadd_to_gateway(url, job=report.job, registry=registry, timeout=timeout, handler=handler)
    return registry


class MetricsObserver:
    """Pushes the run's metrics when it finishes (or aborts after planning).

    A failed push is one warning line; the gateway URL is not printed (it may carry
    credentials).
    """

    def __init__(self, gateway: str, warn: Warn, *, timeout: float = 10.0) -> None:
        self.gateway = gateway
        self.warn = warn
        self.timeout = timeout
        self.report: RunReport | None = None
        self.registry: CollectorRegistry | None = None

    def run_started(self, report: RunReport) -> None:
        self.report = report

    def transition(self, state: PartitionState, seconds: float | None) -> None:
        return None

    def run_finished(self, report: RunReport) -> None:
        self._push(report, None)

    def run_aborted(self, error: BaseException) -> None:
        if self.report is not None and self.registry is None:
            self._push(self.report, RunRecord.from_report(self.report, outcome=ABORTED))

    def _push(self, report: RunReport, record: RunRecord | None) -> None:
        try:
            self.registry = push_run_metrics(self.gateway, report, record, timeout=self.timeout)
        except Exception as error:
            self.warn(
                "could not push metrics to the Pushgateway: " + safe_describe(error, [self.gateway])
            )
