"""Prometheus metrics pushed to a real Pushgateway, started by the test on 127.0.0.1.

The Pushgateway is the Debian package ``prometheus-pushgateway`` (``make setup``
installs it); the tests skip, saying so, only where its binary is absent. Values are
read back from the gateway's own ``/metrics`` page and compared with the ledger.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from framework.engine.runner import Plan, RunReport
from framework.ops.metrics import MetricsObserver
from jobs.orders_daily import JOB as ORDERS
from tests.helpers import free_port, job_states, run

PUSHGATEWAY = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"
D1, D2 = dt.date(2024, 1, 1), dt.date(2024, 1, 2)


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory) -> Iterator[str]:
    if not os.access(PUSHGATEWAY, os.X_OK):
        pytest.skip(
            "prometheus-pushgateway is not installed (Debian package prometheus-pushgateway; "
            "`make setup` installs it)"
        )
    port = free_port()
    log = tmp_path_factory.mktemp("pushgateway") / "pushgateway.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pushgateway did not start: {log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def scrape(url: str, job: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every ``ninelives_*`` sample the gateway exposes for ``job``, without its own labels."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("ninelives_") and sample.labels.get("job") == job:
                labels = {k: v for k, v in sample.labels.items() if k not in ("job", "instance")}
                samples[(sample.name, frozenset(labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_run_metrics_reach_the_pushgateway_and_keep_the_last_success(
    spark, sample_config, pushgateway
) -> None:
    warnings: list[str] = []
    observers = [MetricsObserver(pushgateway, warnings.append)]
    good = run(spark, sample_config, ORDERS, [D1], observers=observers)
    assert good.exit_code == 0 and warnings == []
    done = job_states(spark, sample_config, ORDERS.name)[D1]
    samples = scrape(pushgateway, ORDERS.name)
    assert {
        state: value(samples, "ninelives_run_partitions", state=state)
        for state in ("planned", "complete", "failed", "healed", "held", "skipped")
    } == {"planned": 1, "complete": 1, "failed": 0, "healed": 0, "held": 0, "skipped": 0}
    assert value(samples, "ninelives_run_rows_read") == done.rows_read > 0
    assert value(samples, "ninelives_run_rows_written") == done.rows_written > 0
    assert value(samples, "ninelives_run_rows_quarantined") == done.rows_rejected > 0
    assert good.finished_at is not None
    duration = (good.finished_at - good.started_at).total_seconds()
    assert value(samples, "ninelives_run_duration_seconds") == pytest.approx(duration, abs=1e-6)
    assert value(samples, "ninelives_run_succeeded") == 1
    last_success = good.finished_at.timestamp()
    assert value(samples, "ninelives_last_success_timestamp_seconds") == pytest.approx(last_success)
    assert value(samples, "ninelives_last_run_timestamp_seconds") == pytest.approx(last_success)
    [(_, info)] = [key for key in samples if key[0] == "ninelives_run_info"]
    assert dict(info)["run_id"] == good.run_id and dict(info)["outcome"] == "succeeded"

    # A failed run replaces the run's figures but leaves the last success in place.
    shutil.rmtree(Path(sample_config.lakehouse.landing) / "orders" / f"order_date={D2}")
    observers = [MetricsObserver(pushgateway, warnings.append)]
    bad = run(spark, sample_config, ORDERS, [D1, D2], observers=observers)
    assert bad.exit_code == 1 and warnings == []
    samples = scrape(pushgateway, ORDERS.name)
    assert {
        state: value(samples, "ninelives_run_partitions", state=state)
        for state in ("planned", "complete", "failed", "skipped")
    } == {"planned": 1, "complete": 0, "failed": 1, "skipped": 1}
    assert value(samples, "ninelives_run_rows_written") == 0
    assert value(samples, "ninelives_run_succeeded") == 0
    assert value(samples, "ninelives_last_success_timestamp_seconds") == pytest.approx(last_success)
    assert bad.finished_at is not None
    assert value(samples, "ninelives_last_run_timestamp_seconds") == pytest.approx(
        bad.finished_at.timestamp()
    )
    [(_, info)] = [key for key in samples if key[0] == "ninelives_run_info"]
    assert dict(info)["run_id"] == bad.run_id and dict(info)["outcome"] == "failed"


def test_an_unreachable_pushgateway_is_one_warning_without_credentials() -> None:
    port = free_port()  # nothing listens there any more
    gateway = f"http://metrics-user:hunter2secret@127.0.0.1:{port}/prefix"
    warnings: list[str] = []
    observer = MetricsObserver(gateway, warnings.append, timeout=2)
    report = RunReport("orders_daily", "run-x", Plan(frozenset([D1]), frozenset([D1]), False))
    report = dataclasses.replace(report, finished_at=report.started_at)
    observer.run_started(report)
    observer.run_finished(report)  # must not raise
    [warning] = warnings
    assert warning.startswith("could not push metrics to the Pushgateway: ConnectionRefusedError")
    assert "hunter2secret" not in warning and "metrics-user" not in warning
    assert str(port) not in warning
