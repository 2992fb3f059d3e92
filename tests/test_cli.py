"""The ninelives command: exit codes, one-line errors, options before and after."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from framework.cli import main
from framework.core import logs
from framework.core.config import Config


def lake_args(config: Config) -> list[str]:
    return ["--lakehouse", config.lakehouse.root]


@pytest.fixture
def conf_file(sample_config: Config, tmp_path: Path) -> Path:
    path = tmp_path / "sample.toml"
    path.write_text(f'[lakehouse]\nlanding = "{sample_config.lakehouse.landing}"\n')
    return path


def test_run_status_and_rerun(spark, sample_config, conf_file, capsys) -> None:
    lake = sample_config.lakehouse.root
    # --lakehouse/--conf before the subcommand ...
    code = main(
        [
            "--lakehouse",
            lake,
            "--conf",
            str(conf_file),
            "run",
            "orders_daily",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-02",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "2 partition(s) planned, 2 complete, 0 failed" in out

    # ... and after its arguments.
    assert (
        main(
            [
                "run",
                "orders_daily",
                "--date",
                "2024-01-02",
                "--lakehouse",
                lake,
                "--conf",
                str(conf_file),
            ]
        )
        == 0
    )
    assert "0 partition(s) planned" in capsys.readouterr().out

    assert (
        main(
            [
                "status",
                "orders_daily",
                "--from",
                "2024-01-01",
                "--to",
                "2024-01-04",
                "--lakehouse",
                lake,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2024-01-03" in out and "missing" in out
    assert out.rstrip().endswith(
        "To recover: ninelives run orders_daily --from 2024-01-03 --to 2024-01-04"
        f" --lakehouse {lake}"
    )


def test_a_failed_partition_exits_1_and_names_the_fix(spark, sample_config, conf_file, capsys):
    shutil.rmtree(Path(sample_config.lakehouse.landing) / "orders" / "order_date=2024-01-03")
    code = main(
        [
            "run",
            "orders_daily",
            "--date",
            "2024-01-03",
            "--conf",
            str(conf_file),
            *lake_args(sample_config),
        ]
    )
    assert code == 1
    out = capsys.readouterr().out
    assert "SourceMissingError: no source files for 2024-01-03" in out
    assert "To recover: ninelives run orders_daily --date 2024-01-03" in out

    # A job run by its import path is recovered by the same path: its name alone is
    # not registered where the person's own jobs live.
    options = ["--date", "2024-01-03", "--conf", str(conf_file), *lake_args(sample_config)]
    assert main(["run", "jobs.orders_daily:JOB", *options]) == 1
    assert "To recover: ninelives run jobs.orders_daily:JOB --date 2024-01-03" in (
        capsys.readouterr().out
    )
    assert main(["status", "jobs.orders_daily:JOB", *options]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("To recover: ninelives run jobs.orders_daily:JOB --date 2024-01-03")
    assert main(["history", "jobs.orders_daily:JOB", *lake_args(sample_config)]) == 0
    assert "2 run(s) shown, 2 not successful" in capsys.readouterr().out


def test_dry_run_plans_without_processing(spark, sample_config, conf_file, capsys) -> None:
    code = main(
        [
            "run",
            "orders_daily",
            "--date",
            "2024-01-01",
            "--dry-run",
            "--conf",
            str(conf_file),
            *lake_args(sample_config),
        ]
    )
    assert code == 0
    assert "would process 2024-01-01" in capsys.readouterr().out
    assert not (Path(sample_config.lakehouse.root) / "silver").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "orders_daily", "--date", "2024-13-01"], "invalid date '2024-13-01'"),
        (
            ["run", "orders_daily", "--from", "2024-01-05", "--to", "2024-01-01"],
            "--from 2024-01-05 is after --to 2024-01-01",
        ),
        (["run", "orders_daily"], "give --date D or --from D --to D"),
        (["run", "no_such_job", "--date", "2024-01-01"], "unknown job 'no_such_job'"),
        (["status"], "the following arguments are required: job"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, message, config, capsys) -> None:
    code: object
    try:
        code = main([*argv, *lake_args(config)])
    except SystemExit as exit_:  # argparse exits itself for parse errors
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    ("lakehouse", "message"),
    [
        ("/proc/nope", "lakehouse path /proc/nope is unusable: cannot create a folder in /proc"),
        ("/dev/null/lake", "lakehouse path /dev/null/lake is unusable: /dev/null is not a dir"),
    ],
)
def test_an_unusable_lakehouse_path_exits_2_with_one_line(lakehouse, message, capsys) -> None:
    argv = ["run", "orders_daily", "--date", "2024-01-01", "--lakehouse", lakehouse]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ninelives: {message}") and len(err.splitlines()) == 1, err


def test_help_is_plain_text(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and "survive kill -9" in out and "Exit codes: 0" in out


def test_unknown_config_key_exits_2_naming_key_and_file(config, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[spark]\nshuffle_partitons = 4\n")
    assert main(["status", "orders_daily", "--conf", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ninelives: unknown config key 'spark.shuffle_partitons' in {bad}")
    assert len(err.splitlines()) == 1


def test_the_command_prints_the_librarys_warnings_as_one_line_and_no_run_events(capsys) -> None:
    """What ``main`` does with the ``framework`` logger: a warning is one
    ``ninelives: ...`` line on the stderr of the moment; run events (INFO) are not
    printed there, and a second call adds no second handler."""
    logs.to_stderr()
    logs.to_stderr()
    logging.getLogger("framework.ops.native").warning("%s; reading it with Spark", "why")
    logging.getLogger(logs.EVENTS).info("transition", extra={"fields": {"state": "complete"}})
    assert capsys.readouterr().err == "ninelives: why; reading it with Spark\n"
