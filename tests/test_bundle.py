"""The Databricks Asset Bundle names entry points and parameters that exist."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from framework.cli import build_parser
from framework.core.config import tomllib
from framework.engine.registry import job_names

ROOT = Path(__file__).resolve().parents[1]


def load_bundle() -> dict:
    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    for pattern in bundle["include"]:
        for path in sorted(ROOT.glob(pattern)):
            resources = yaml.safe_load(path.read_text())["resources"]
            for kind, items in resources.items():
                bundle.setdefault("resources", {}).setdefault(kind, {}).update(items)
    return bundle


def tasks() -> list[dict]:
    return [t for job in load_bundle()["resources"]["jobs"].values() for t in job["tasks"]]


def test_the_nightly_job_has_a_schedule_retries_and_a_date_defaulting_to_yesterday() -> None:
    [job] = load_bundle()["resources"]["jobs"].values()
    assert job["schedule"]["quartz_cron_expression"]
    assert {p["name"]: p["default"] for p in job["parameters"]} == {"date": "yesterday"}
    assert all(t.get("max_retries", 0) >= 1 for t in job["tasks"])
    assert any("--only-failed" in t["python_wheel_task"]["parameters"] for t in job["tasks"])


@pytest.mark.parametrize("task", tasks(), ids=lambda t: t["task_key"])
def test_each_task_calls_an_existing_entry_point_with_valid_arguments(task) -> None:
    wheel = task["python_wheel_task"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert wheel["package_name"] == project["name"]
    assert wheel["entry_point"] in project["scripts"]
    args = [a.replace("{{job.parameters.date}}", "yesterday") for a in wheel["parameters"]]
    parsed = build_parser().parse_args(args)  # exits 2 on an unknown option
    assert parsed.job in job_names()
    conf = args[args.index("--conf") + 1]
    assert conf.endswith("conf/databricks.toml") and (ROOT / "conf" / "databricks.toml").exists()
