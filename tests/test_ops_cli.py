"""The operations commands through ``ninelives`` itself (framework.cli.main):
a failed run with JSON logs and an alert, then status, history and report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from framework.cli import main
from tests.helpers import SECRET_PATH, job_states

D2 = "2024-01-02"


def test_failed_run_then_status_history_and_report(
    spark, sample_config, tmp_path, webhook, monkeypatch, capsys
) -> None:
    lake = sample_config.lakehouse.root
    conf = tmp_path / "sample.toml"
    conf.write_text(f'[lakehouse]\nlanding = "{sample_config.lakehouse.landing}"\n')
    where = ["--lakehouse", lake, "--conf", str(conf)]
    monkeypatch.setenv("NINELIVES_WEBHOOK_URL", webhook.url)
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)

    # A dry run plans only: no history, no alert.
    assert main(["run", "orders_daily", "--date", D2, "--dry-run", *where]) == 0
    capsys.readouterr()
    assert main(["history", "orders_daily", *where]) == 0
    assert capsys.readouterr().out.strip() == "no runs of orders_daily recorded in this lakehouse"

    shutil.rmtree(Path(sample_config.lakehouse.landing) / "orders" / f"order_date={D2}")
    log_file = tmp_path / "logs.jsonl"
    argv = [
        "run",
        "orders_daily",
        "--date",
        D2,
        "--log-format",
        "json",
        "--log-file",
        str(log_file),
    ]
    assert main([*argv, *where]) == 1
    out, err = capsys.readouterr()
    assert f"To recover: ninelives run orders_daily --date {D2} --lakehouse {lake}" in out
    assert webhook.url not in out + err and SECRET_PATH not in out + err

    # --log-format json: the same JSON lines on stderr as in the log file.
    def without_ts(text: str) -> list[dict]:
        return [{k: v for k, v in json.loads(x).items() if k != "ts"} for x in text.splitlines()]

    assert without_ts(err) == without_ts(log_file.read_text())
    events = without_ts(err)
    assert [(e["event"], e.get("state")) for e in events] == [
        ("run_started", None),
        ("transition", "running"),
        ("transition", "failed"),
        ("run_finished", None),
    ]
    [state] = job_states(spark, sample_config, "orders_daily").values()
    assert events[2]["error"] == {"class": state.error_class, "message": state.error_message}
    assert events[2]["run_id"] == state.run_id

    [(path, _, payload)] = webhook.received
    assert path == SECRET_PATH
    assert payload["ninelives"]["run_id"] == state.run_id
    assert (
        f"To recover: `ninelives run orders_daily --date {D2} --lakehouse {lake} --conf"
        in (payload["text"])
    )

    assert main(["status", "orders_daily", "--lakehouse", lake]) == 0
    out = capsys.readouterr().out
    assert "1 failed with SourceMissingError: 2024-01-02" in out
    assert out.rstrip().endswith(
        f"To recover: ninelives run orders_daily --date {D2} --lakehouse {lake}"
    )
    assert main(["status", "orders_daily", "--state", "complete", "--json", *where]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["partitions"], document["recovery_commands"]) == ([], [])

    assert main(["history", "orders_daily", "--json", *where]) == 0
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (record["run_id"], record["outcome"], record["partitions_failed"]) == (
        state.run_id,
        "failed",
        1,
    )
    assert record["arguments"] == (f"run orders_daily --date {D2} --lakehouse {lake} --conf {conf}")

    report = tmp_path / "out" / "report.html"
    assert main(["report", "orders_daily", "-o", str(report), *where]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {report}: 1 failed"
    page = report.read_text()
    assert page.count('data-state="failed"') == 1 and page.count("data-state=") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "orders_daily", "--state", "broken"], "invalid choice: 'broken'"),
        (["history"], "the following arguments are required: job"),
        (["history", "orders_daily", "--limit", "0"], "expected a positive integer, got '0'"),
        (
            ["run", "orders_daily", "--date", "2024-01-01", "--alert-quarantine-ratio", "2"],
            "expected a ratio between 0 and 1, got '2'",
        ),
        (["run", "orders_daily", "--date", "2024-01-01", "--progress", "fancy"], "invalid choice"),
        (["history", "orders-daily"], "invalid job name 'orders-daily'"),
    ],
)
def test_operations_usage_errors_exit_2_with_one_line(argv, message, config, capsys) -> None:
    code: object
    try:
        code = main([*argv, "--lakehouse", config.lakehouse.root])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
