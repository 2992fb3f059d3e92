"""Every notebook runs locally against the test session and does what it says."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from framework.core.errors import PartitionError, UsageError
from framework.lake.tables import Lakehouse
from framework.state.ledger import Ledger
from framework.testing.notebooks import CELL_SEPARATOR, HEADER, cells, run_notebook
from tests.helpers import table

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = {"run_job", "partition_status", "reprocess_date"}


def notebook(name: str) -> Path:
    return NOTEBOOKS / f"{name}.py"


def test_the_notebooks_exist() -> None:
    found = {p.stem for p in NOTEBOOKS.glob("*.py")}
    assert found, f"no notebook found in {NOTEBOOKS}"
    assert found == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebooks_are_thin_databricks_source(name: str) -> None:
    path = notebook(name)
    text = path.read_text()
    assert text.splitlines()[0] == HEADER
    assert CELL_SEPARATOR in text
    code_cells = [
        c for c in cells(path) if not all(line.startswith("# MAGIC") for line in c.splitlines())
    ]
    # Widgets first: the first code cell declares widgets and nothing else.
    first = ast.parse(code_cells[0])
    assert all(ast.unparse(stmt).startswith("dbutils.widgets.") for stmt in first.body)
    # No logic of their own: imports from the installed package, calls, assignments.
    for source in code_cells:
        for stmt in ast.parse(source).body:
            assert isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Expr, ast.Assign)), (
                f"{name}: {ast.unparse(stmt)[:60]}"
            )
            if isinstance(stmt, ast.ImportFrom):
                assert stmt.module.startswith("framework")
    assert "sys.path" not in text and "%cd" not in text


def widgets(config, conf_file, **values: str) -> dict[str, str]:
    return {"lakehouse": config.lakehouse.root, "conf": str(conf_file), **values}


@pytest.fixture
def conf_file(sample_config, tmp_path) -> Path:
    path = tmp_path / "notebook.toml"
    path.write_text(f'[lakehouse]\nlanding = "{sample_config.lakehouse.landing}"\n')
    return path


def attempts(spark, config) -> dict:
    ledger = Ledger(spark, Lakehouse(config.lakehouse).framework_table("ledger"))
    return {d: s.attempt for d, s in ledger.states("orders_daily")["orders_daily"].items()}


def test_run_job_runs_a_range_then_forces_a_date(spark, sample_config, conf_file) -> None:
    w = widgets(sample_config, conf_file, date="", **{"from": "2024-01-01", "to": "2024-01-02"})
    run = run_notebook(notebook("run_job"), spark, w)
    [shown] = run.displayed
    assert sorted((str(r.partition), r.state) for r in shown.collect()) == [
        ("2024-01-01", "complete"),
        ("2024-01-02", "complete"),
    ]
    assert table(spark, sample_config, "silver.orders").count() == 200

    run_notebook(
        notebook("run_job"),
        spark,
        widgets(sample_config, conf_file, date="2024-01-02", mode="force"),
    )
    assert attempts(spark, sample_config) == {
        __import__("datetime").date(2024, 1, 1): 1,
        __import__("datetime").date(2024, 1, 2): 2,
    }


def test_run_job_fails_the_notebook_when_a_partition_fails(spark, sample_config, conf_file):
    with pytest.raises(PartitionError, match="1 partition\\(s\\) not complete: 2024-02-01"):
        run_notebook(
            notebook("run_job"), spark, widgets(sample_config, conf_file, date="2024-02-01")
        )


def test_partition_status_shows_the_runbook_and_the_ledger(
    spark, sample_config, conf_file, capsys
) -> None:
    with pytest.raises(PartitionError):
        run_notebook(
            notebook("run_job"),
            spark,
            widgets(
                sample_config, conf_file, date="", **{"from": "2024-01-03", "to": "2024-01-04"}
            ),
        )
    capsys.readouterr()
    run = run_notebook(notebook("partition_status"), spark, widgets(sample_config, conf_file))
    out = capsys.readouterr().out
    assert "2024-01-04" in out and "SourceMissingError" in out
    assert "ninelives run orders_daily --date 2024-01-04" in out
    [ledger_rows] = run.displayed
    assert {(str(r.partition), r.state) for r in ledger_rows.collect()} >= {
        ("2024-01-03", "complete"),
        ("2024-01-04", "failed"),
    }


def test_reprocess_date_needs_confirmation_then_rewrites_idempotently(
    spark, sample_config, conf_file
) -> None:
    run_notebook(notebook("run_job"), spark, widgets(sample_config, conf_file, date="2024-01-01"))
    before = table(spark, sample_config, "silver.orders").drop("_run_id", "_processed_at")
    before = spark.createDataFrame(before.collect(), before.schema)

    with pytest.raises(UsageError, match="set the confirm widget to YES"):
        run_notebook(
            notebook("reprocess_date"), spark, widgets(sample_config, conf_file, date="2024-01-01")
        )
    assert list(attempts(spark, sample_config).values()) == [1]

    run = run_notebook(
        notebook("reprocess_date"),
        spark,
        widgets(sample_config, conf_file, date="2024-01-01", confirm="YES"),
    )
    [shown] = run.displayed
    [row] = shown.collect()
    assert (row.state, row.attempt, row.rows_updated, row.rows_inserted) == ("complete", 2, 0, 0)
    from framework.testing import assert_same_rows

    assert_same_rows(table(spark, sample_config, "silver.orders"), before)
