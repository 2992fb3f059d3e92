"""After a failed run: status with its runbook, run history, JSON logs, progress lines
and the HTML partition calendar, rendered by headless Chromium.

One failed run (2024-01-01 complete, 2024-01-02 failed: its landing folder is gone) is
shared by the tests of this module, which only read it; the last test restores the
folder and reruns. Expected values come from the ledger, never from the code under test.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import html
import io
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from rich.console import Console

from framework.cli.history import cmd_history
from framework.cli.observe import observe_run
from framework.cli.report import cmd_report
from framework.cli.status import cmd_status
from framework.core.config import Config
from framework.engine.runner import RunReport
from framework.lake.tables import Lakehouse
from framework.ops.history import RunHistory
from framework.ops.partition_calendar import STATE_COLOURS, render_calendar
from framework.ops.runbook import plan_recovery
from framework.state.leases import this_host
from framework.state.ledger import PartitionState
from jobs.orders_daily import JOB as ORDERS
from tests.conftest import TEST_SPARK
from tests.helpers import delta_version, job_states, ledger_of, run

D1, D2, D3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class Scenario:
    config: Config
    base: Path
    report: RunReport
    stderr: str
    log_file: Path

    @property
    def lake(self) -> str:
        return self.config.lakehouse.root

    def ledger_states(self, spark: SparkSession) -> dict[dt.date, PartitionState]:
        return job_states(spark, self.config, ORDERS.name)


def run_namespace(scenario_lake: str, start: dt.date, end: dt.date, **extra: object):
    return argparse.Namespace(
        command="run",
        job=ORDERS.name,
        date=None,
        start=start,
        end=end,
        force=False,
        dry_run=False,
        fail_fast=False,
        wait=False,
        only_failed=False,
        lakehouse=scenario_lake,
        **extra,
    )


def observed_run(spark, config: Config, dates: list[dt.date], args, stderr: io.StringIO):
    with observe_run(args, config, spark, env={}, stderr=stderr) as observers:
        return run(spark, config, ORDERS, dates, observers=observers)


@pytest.fixture(scope="module")
def scenario(spark, sample_landing, tmp_path_factory) -> Scenario:
    base = tmp_path_factory.mktemp("ops_runbook")
    landing = base / "landing"
    shutil.copytree(sample_landing, landing)
    shutil.rmtree(landing / "orders" / f"order_date={D2}")
    (base / "lakehouse").mkdir()
    config = Config(spark=TEST_SPARK).with_lakehouse_root(str(base / "lakehouse"))
    config = dataclasses.replace(
        config, lakehouse=dataclasses.replace(config.lakehouse, landing=str(landing))
    )
    log_file = base / "logs" / "run.jsonl"
    log_file.parent.mkdir()
    stderr = io.StringIO()
    args = run_namespace(config.lakehouse.root, D1, D2, log_file=str(log_file))
    report = observed_run(spark, config, [D1, D2], args, stderr)
    assert report.exit_code == 1
    return Scenario(config, base, report, stderr.getvalue(), log_file)


def status_args(scenario: Scenario, start=None, end=None, state=None, as_json=False):
    return argparse.Namespace(
        command="status",
        job=ORDERS.name,
        date=None,
        start=start,
        end=end,
        state=state,
        json=as_json,
        lakehouse=scenario.lake,
    )


def capture(command, args, config: Config) -> str:
    out = io.StringIO()
    assert command(args, config, Console(file=out, width=200, highlight=False)) == 0
    return out.getvalue()


def test_status_after_a_failure_explains_it_and_ends_with_the_command(spark, scenario) -> None:
    states = scenario.ledger_states(spark)
    out = capture(cmd_status, status_args(scenario, D1, D3), scenario.config)
    lines = [line.rstrip() for line in out.strip().splitlines()]
    lake = scenario.lake
    command = f"ninelives run orders_daily --from 2024-01-02 --to 2024-01-03 --lakehouse {lake}"
    assert lines[-1] == f"To recover: {command}"

    row = next(line for line in lines if line.startswith("│ 2024-01-01"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    done = states[D1]
    assert cells[:4] == ["2024-01-01", "complete", "1", f"{done.rows_read:,}"]
    assert cells[9] == f"{done.rows_rejected:,}"
    assert "1 complete, 1 failed, 1 missing" in lines

    runbook = lines[lines.index("What happened:") : -1]
    bad = states[D2]
    assert runbook == [
        "What happened:",
        "  1 failed with SourceMissingError: 2024-01-02",
        f"    e.g. 2024-01-02, attempt 1 of run {scenario.report.run_id} at "
        f"{bad.finished_at.astimezone(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}: "
        f"{bad.error_message.splitlines()[0]}",
        "    why: the source has no data for the date. Check that its delivery arrived (the "
        "path is in the message); a rerun reads it again",
        "  1 never run: 2024-01-03",
        f"What `{command}` does:",
        "  processes 2 partition(s), each as a new attempt: 2024-01-02..2024-01-03",
        "  does not touch the 1 complete partition(s) outside that range (2024-01-01)",
        "  each partition is one idempotent Delta commit: if the rerun is killed too, run the "
        "same command again",
    ]


def test_status_filters_by_state(spark, scenario) -> None:
    out = capture(
        cmd_status, status_args(scenario, D1, D3, state=["complete", "missing"]), scenario.config
    )
    shown = re.findall(r"^│ (\d{4}-\d\d-\d\d) │ (\w+)", out, flags=re.M)
    assert shown == [("2024-01-01", "complete"), ("2024-01-03", "missing")]
    assert out.rstrip().endswith(
        f"To recover: ninelives run orders_daily --date 2024-01-03 --lakehouse {scenario.lake}"
    )


def test_status_json_for_machines(spark, scenario) -> None:
    states = scenario.ledger_states(spark)
    out = capture(
        cmd_status, status_args(scenario, state=["failed"], as_json=True), scenario.config
    )
    document = json.loads(out)
    [partition] = document["partitions"]
    bad = states[D2]
    assert partition["partition"] == "2024-01-02"
    assert (partition["state"], partition["attempt"], partition["run_id"]) == (
        "failed",
        bad.attempt,
        bad.run_id,
    )
    assert (partition["error_class"], partition["error_message"]) == (
        bad.error_class,
        bad.error_message,
    )
    assert document["summary"] == {"failed": 1}
    assert document["recovery_commands"] == [
        f"ninelives run orders_daily --date 2024-01-02 --lakehouse {scenario.lake}"
    ]
    assert document["will_process"] == ["2024-01-02"]
    assert document["runbook"][1] == "  1 failed with SourceMissingError: 2024-01-02"


def test_history_has_one_row_with_the_ledger_counts(spark, scenario) -> None:
    states = scenario.ledger_states(spark)
    lakehouse = Lakehouse(scenario.config.lakehouse)
    [record] = RunHistory.of(spark, lakehouse).recent(ORDERS.name)
    assert delta_version(lakehouse.framework_table("run_history").path) == 0  # one commit
    report = scenario.report
    assert (record.run_id, record.job, record.outcome, record.exit_code) == (
        report.run_id,
        "orders_daily",
        "failed",
        1,
    )
    assert record.arguments == (
        f"run orders_daily --from 2024-01-01 --to 2024-01-02 --lakehouse {scenario.lake}"
    )
    assert (record.host, record.pid) == (this_host(), os.getpid())
    counts = (
        record.partitions_planned,
        record.partitions_complete,
        record.partitions_failed,
        record.partitions_healed,
        record.partitions_held,
        record.partitions_skipped,
    )
    assert counts == (2, 1, 1, 0, 0, 0)
    assert (record.rows_in, record.rows_out, record.rows_quarantined) == (
        states[D1].rows_read,
        states[D1].rows_written,
        states[D1].rows_rejected,
    )
    started = record.started_at.astimezone(dt.timezone.utc)
    finished = record.finished_at.astimezone(dt.timezone.utc)
    assert started <= states[D1].started_at.astimezone(dt.timezone.utc)
    assert finished >= states[D2].finished_at.astimezone(dt.timezone.utc)
    assert record.duration_s == pytest.approx((finished - started).total_seconds(), abs=1e-3)


def test_history_command_prints_a_table_and_json(spark, scenario) -> None:
    args = argparse.Namespace(
        command="history", job="orders_daily", limit=5, json=True, lakehouse=scenario.lake
    )
    [line] = capture(cmd_history, args, scenario.config).strip().splitlines()
    as_json = json.loads(line)
    assert (as_json["run_id"], as_json["outcome"]) == (scenario.report.run_id, "failed")
    assert as_json["started_at"].endswith("Z")
    args.json = False
    table = capture(cmd_history, args, scenario.config)
    assert scenario.report.run_id in table and "failed" in table
    assert "1 run(s) shown, 1 not successful" in table


def test_json_log_has_one_line_per_ledger_transition(spark, scenario) -> None:
    events = [json.loads(line) for line in scenario.log_file.read_text().splitlines()]
    assert [e["event"] for e in (events[0], events[-1])] == ["run_started", "run_finished"]
    transitions = [e for e in events if e["event"] == "transition"]
    run_id = scenario.report.run_id
    rows = (
        ledger_of(spark, scenario.config)
        .frame()
        .where(f"run_id = '{run_id}'")
        .select("partition", "attempt", "state", "rows_read", "rows_written", "error_class")
        .distinct()
        .collect()
    )
    expected = sorted(
        (str(r.partition), r.attempt, r.state, r.rows_read, r.rows_written, r.error_class)
        for r in rows
    )
    logged = sorted(
        (
            e["partition"],
            e["attempt"],
            e["state"],
            e["counts"]["rows_read"],
            e["counts"]["rows_written"],
            (e["error"] or {}).get("class"),
        )
        for e in transitions
    )
    assert logged == expected
    assert len(expected) == 4  # running + complete, running + failed
    assert {(e["job"], e["run_id"]) for e in transitions} == {("orders_daily", run_id)}
    failed = next(e for e in transitions if e["state"] == "failed")
    assert failed["error"]["message"].startswith("no source files for 2024-01-02")
    assert failed["duration_s"] == pytest.approx(scenario.report.seconds[D2], abs=1e-3)
    assert events[-1]["outcome"] == "failed"
    assert events[-1]["partitions"] == {
        "planned": 2,
        "complete": 1,
        "failed": 1,
        "healed": 0,
        "held": 0,
        "skipped": 0,
    }


def test_progress_without_a_terminal_is_plain_lines(spark, scenario) -> None:
    done = scenario.ledger_states(spark)[D1]
    lines = scenario.stderr.splitlines()
    assert len(lines) == 4, lines
    assert f"orders_daily run {scenario.report.run_id}: 2 partition(s) to process" in lines[0]
    assert (
        f"orders_daily 2024-01-01 attempt 1 complete: {done.rows_read:,} read, "
        f"{done.rows_written:,} written, {done.rows_rejected:,} quarantined in "
    ) in lines[1]
    assert "[1/2 done, " in lines[1]
    assert (
        "orders_daily 2024-01-02 attempt 1 FAILED: SourceMissingError: no source files"
        in (lines[2])
    )
    assert "[2/2 done, " in lines[2] and "ETA 0:00:00]" in lines[2]
    assert lines[3].endswith("1 complete, 1 failed, 0 held by another runner")


# -- the HTML calendar in a real browser ---------------------------------------------------

PROBE = """<script>
const cells = [...document.querySelectorAll('.cell[data-state]')];
const info = cells.map(c => {
  const r = c.getBoundingClientRect();
  return {date: c.dataset.date, state: c.dataset.state, title: c.title,
          background: getComputedStyle(c).backgroundColor,
          x: Math.round(r.left + r.width / 2), y: Math.round(r.top + r.height / 2)};
});
document.body.setAttribute('data-probe', JSON.stringify({
  cells: info,
  runbook: document.querySelector('pre.runbook').textContent,
  commands: [...document.querySelectorAll('code.cmd')].map(c => c.textContent)}));
</script>"""

WINDOW = (1200, 1000)


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def png_pixel(path: Path, x: int, y: int) -> tuple[int, int, int]:
    """The RGB of one pixel of an 8-bit, non-interlaced RGB(A) PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert header is not None
    width, _, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    previous = bytearray(stride)
    for row in range(y + 1):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = previous[i]
            c = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + predictor) & 0xFF
        previous = line
    r, g, b = previous[x * channels : x * channels + 3]
    return r, g, b


def rgb(hex_colour: str) -> str:
    value = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(value[i : i + 2], 16) for i in (0, 2, 4)))


@pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason="chromium is not installed (Debian package chromium; `make setup` installs it)",
)
def test_report_calendar_renders_in_headless_chromium(spark, scenario, capsys) -> None:
    states = scenario.ledger_states(spark)
    output = scenario.base / "report" / "report.html"
    args = argparse.Namespace(
        command="report",
        job="orders_daily",
        output=str(output),
        date=None,
        start=D1,
        end=D3,
        lakehouse=scenario.lake,
    )
    printed = capture(cmd_report, args, scenario.config)
    assert printed.strip() == f"wrote {output}: 1 complete, 1 failed, 1 missing"
    page = output.read_text()
    assert "<script" not in page.lower() and "http" not in page  # static, no network

    probe = scenario.base / "report" / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    profile = scenario.base / "chromium-profile"
    dom = chromium(["--dump-dom", probe.as_uri()], profile).stdout
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, dom[:2000]
    rendered = json.loads(html.unescape(found.group(1)))
    cells = {c["date"]: c for c in rendered["cells"]}
    assert len(rendered["cells"]) == 3
    assert {d: c["state"] for d, c in cells.items()} == {
        "2024-01-01": "complete",
        "2024-01-02": "failed",
        "2024-01-03": "missing",
    }
    assert cells["2024-01-02"]["background"] == rgb(STATE_COLOURS["failed"]) == "rgb(198, 40, 40)"
    assert cells["2024-01-01"]["background"] == rgb(STATE_COLOURS["complete"])
    bad, done = states[D2], states[D1]
    tip = cells["2024-01-02"]["title"]
    assert f"attempts: {bad.attempt} (last run {bad.run_id})" in tip
    assert f"last error: SourceMissingError: {bad.error_message.splitlines()[0]}" in tip
    assert f"read {done.rows_read:,}, written {done.rows_written:,}" in cells["2024-01-01"]["title"]
    command = (
        f"ninelives run orders_daily --from 2024-01-02 --to 2024-01-03 --lakehouse {scenario.lake}"
    )
    assert rendered["commands"] == [command]
    assert "1 failed with SourceMissingError: 2024-01-02" in rendered["runbook"]

    screenshot = REPO / "test-artifacts" / "report.png"
    screenshot.parent.mkdir(exist_ok=True)
    screenshot.unlink(missing_ok=True)
    chromium([f"--screenshot={screenshot}", output.as_uri()], profile)
    # The failed cell, where the browser laid it out, is painted in the failed colour.
    x, y = cells["2024-01-02"]["x"], cells["2024-01-02"]["y"]
    assert png_pixel(screenshot, x + 8, y) == (198, 40, 40)
    assert png_pixel(screenshot, cells["2024-01-01"]["x"] + 8, y) == (46, 125, 50)
    with capsys.disabled():
        print(f"\nreport screenshot: {screenshot}")


def test_calendar_escapes_error_text() -> None:
    day = dt.date(2024, 2, 29)
    state = PartitionState(
        "orders_daily",
        day,
        3,
        "failed",
        "r1",
        error_class="SchemaMismatchError",
        error_message='column "<img src=x onerror=alert(1)>" & more',
    )
    page = render_calendar(
        "orders_daily", [day], {day: state}, plan_recovery("orders_daily", [day], {day: state})
    )
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count('data-state="failed"') == 1 and "February 2024" in page


# -- keep last: it changes the shared lakehouse ----------------------------------------------


def test_rerun_after_the_source_arrives_is_recorded_and_status_is_clean(
    spark, scenario, sample_landing
) -> None:
    landing = Path(scenario.config.lakehouse.landing) / "orders" / f"order_date={D2}"
    shutil.copytree(sample_landing / "orders" / f"order_date={D2}", landing)
    args = run_namespace(scenario.lake, D1, D2, log_file=str(scenario.log_file))
    second = observed_run(spark, scenario.config, [D1, D2], args, io.StringIO())
    third = observed_run(spark, scenario.config, [D1, D2], args, io.StringIO())
    assert (second.exit_code, third.exit_code) == (0, 0)

    states = scenario.ledger_states(spark)
    history = RunHistory.of(spark, Lakehouse(scenario.config.lakehouse)).recent(ORDERS.name)
    assert [r.run_id for r in history] == [third.run_id, second.run_id, scenario.report.run_id]
    assert [r.outcome for r in history] == ["nothing_to_do", "succeeded", "failed"]
    rerun = history[1]
    assert (rerun.partitions_planned, rerun.partitions_complete, rerun.partitions_skipped) == (
        1,
        1,
        1,
    )
    assert (rerun.rows_in, rerun.rows_out) == (states[D2].rows_read, states[D2].rows_written)
    assert states[D2].attempt == 2
    assert (history[0].partitions_planned, history[0].rows_in) == (0, 0)

    out = capture(cmd_status, status_args(scenario, D1, D2), scenario.config)
    assert out.rstrip().endswith("Nothing to recover: every partition shown is complete.")
