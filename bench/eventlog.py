"""Spark event logs, summed up: jobs, SQL executions and where the jobs' time went.

A run writes one only when the benchmark's config turns it on (``--eventlog``): it costs
about 4 MB of JSON per partition of ``orders_daily``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

_DIGITS = re.compile(r"\d+")


def eventlog_summary(folder: Path, watch: dict[str, str] | None = None) -> dict[str, Any]:
    """Spark jobs and SQL executions from an event-log folder.

    ``watch`` maps a label to a path: the number of SQL executions whose physical plan
    or description mentions that path (a scan of it) is reported per label.
    """
    jobs = 0
    job_start: dict[tuple[str, int], int] = {}
    job_desc: dict[tuple[str, int], str] = {}
    job_ms: dict[str, float] = defaultdict(float)
    job_count: dict[str, int] = defaultdict(int)
    sql = 0
    touching: dict[str, int] = {label: 0 for label in (watch or {})}
    app_ms = 0
    # Spark 4 writes a folder per application (eventlog_v2_*, rolling files) or one file.
    files = [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith((".", "appstatus"))
    ]
    for path in files if folder.is_dir() else []:
        app_start = app_end = last = 0
        with open(path, errors="replace") as lines:
            for line in lines:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(ev, dict):
                    continue
                kind = ev.get("Event", "")
                last = max(last, ev.get("Timestamp") or ev.get("time") or 0)
                if kind == "SparkListenerApplicationStart":
                    app_start = ev.get("Timestamp", 0)
                elif kind == "SparkListenerApplicationEnd":
                    app_end = ev.get("Timestamp", 0)
                elif kind == "SparkListenerJobStart":
                    jobs += 1
                    key = (path.name, ev["Job ID"])
                    job_start[key] = ev.get("Submission Time", 0)
                    props = ev.get("Properties") or {}
                    desc = props.get("spark.job.description") or ""
                    if not desc:
                        stages = ev.get("Stage Infos") or [{}]
                        desc = stages[-1].get("Stage Name", "?")
                    job_desc[key] = _DIGITS.sub("N", desc)[:90]
                    last = max(last, job_start[key])
                elif kind == "SparkListenerJobEnd":
                    key = (path.name, ev["Job ID"])
                    end = ev.get("Completion Time", 0)
                    last = max(last, end)
                    if key in job_start:
                        desc = job_desc[key]
                        job_ms[desc] += end - job_start[key]
                        job_count[desc] += 1
                elif kind.endswith("SparkListenerSQLExecutionStart"):
                    sql += 1
                    text = f"{ev.get('description', '')}\n{ev.get('physicalPlanDescription', '')}"
                    for label, watched in (watch or {}).items():
                        if watched in text:
                            touching[label] += 1
        if app_start:
            app_ms += (app_end or last) - app_start
    top = sorted(job_ms.items(), key=lambda kv: -kv[1])[:10]
    return {
        "spark_jobs": jobs,
        "sql_executions": sql,
        "job_seconds": round(sum(job_ms.values()) / 1000, 2),
        "app_seconds": round(app_ms / 1000, 2),
        "sql_touching": touching,
        "top_jobs": [
            {"job": desc, "count": job_count[desc], "seconds": round(ms / 1000, 2)}
            for desc, ms in top
        ],
    }
