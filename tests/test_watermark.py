"""Watermark jobs: windows from the watermark on; behind it only with --force."""

from __future__ import annotations

import datetime as dt

import pytest

from framework.cli import main
from framework.core.errors import UsageError
from framework.engine.runner import watermark
from jobs.orders_incremental import JOB as INCREMENTAL
from tests.helpers import job_states, run

D1, D2, D3 = dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)


def mark(spark, config) -> dt.date:
    return watermark(INCREMENTAL, job_states(spark, config, INCREMENTAL.name))


def test_windows_advance_the_watermark_and_old_ones_need_force(spark, sample_config) -> None:
    assert mark(spark, sample_config) == D1
    first = run(spark, sample_config, INCREMENTAL, until=D2)
    assert [r.partition for r in first.results] == [D1, D2]
    assert mark(spark, sample_config) == D3

    with pytest.raises(UsageError, match="window 2024-01-01 is behind the watermark 2024-01-03"):
        run(spark, sample_config, INCREMENTAL, [D1])
    forced = run(spark, sample_config, INCREMENTAL, [D1], force=True)
    [again] = forced.results
    assert (again.attempt, again.rows_updated, again.rows_inserted) == (2, 0, 0)

    nxt = run(spark, sample_config, INCREMENTAL, until=D3)
    assert [r.partition for r in nxt.results] == [D3]
    assert mark(spark, sample_config) == D3 + dt.timedelta(days=1)
    assert run(spark, sample_config, INCREMENTAL, until=D3).results == []


def test_cli_refuses_an_old_window_with_one_line_and_exit_2(spark, sample_config, capsys):
    run(spark, sample_config, INCREMENTAL, until=D1)
    conf = sample_config.lakehouse.root + ".toml"
    with open(conf, "w") as f:
        f.write(f'[lakehouse]\nlanding = "{sample_config.lakehouse.landing}"\n')
    args = ["--lakehouse", sample_config.lakehouse.root, "--conf", conf]
    assert main(["run", "orders_incremental", "--date", "2024-01-01", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "is behind the watermark 2024-01-02" in err and len(err.splitlines()) == 1
    assert main(["run", "orders_incremental", "--to", "2024-01-02", *args]) == 0
    assert main(["status", "orders_incremental", *args]) == 0
    assert "orders_incremental watermark: 2024-01-03" in capsys.readouterr().out
