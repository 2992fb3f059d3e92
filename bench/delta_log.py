"""The one way the benchmark reads a Delta table's log: its commit files,
``_delta_log/<version>.json``, as the Delta protocol writes them (no Spark, no JVM).

``deltalake.DeltaTable(path).history()`` gives each commit's ``commitInfo`` but not the
files it added, and the per-unit profile needs those: the ledger's commits are told
apart by the statistics (min/max of ``state``, ``unit``, ``partition``, ``attempt``) of
the rows each one added. So one reader gives both, and every figure the benchmark takes
from a Delta log (commit timestamps, operation metrics, ``userMetadata`` tags, added
files) comes from here.

Example::

    for commit in commits(lakehouse / "silver/orders"):
        print(commit["version"], commit["timestamp"], commit.get("operation"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def versions(table: Path) -> list[int]:
    """The versions of the Delta table at ``table`` that have a commit file, ascending
    (none where it has no log)."""
    return sorted(int(p.stem) for p in (table / "_delta_log").glob("*.json") if p.stem.isdigit())


def commits(table: Path, after: int | None = None) -> list[dict[str, Any]]:
    """Every commit of the Delta table at ``table`` (only those above version ``after``,
    if given), oldest first.

    Each is the commit's ``commitInfo`` (``timestamp`` in epoch ms, ``operation``,
    ``operationMetrics``, ``userMetadata``, ...) plus ``version``, ``added`` (the parsed
    statistics of each file it added that has them), ``add_actions`` and
    ``remove_actions`` (how many files it added and removed).
    """
    out = []
    for version in versions(table):
        if after is not None and version <= after:
            continue
        commit: dict[str, Any] = {"version": version, "added": []}
        adds = removes = 0
        with open(table / "_delta_log" / f"{version:020d}.json") as lines:
            for line in lines:
                action = json.loads(line)
                if "commitInfo" in action:
                    commit.update(action["commitInfo"])
                elif "add" in action:
                    adds += 1
                    if action["add"].get("stats"):
                        commit["added"].append(json.loads(action["add"]["stats"]))
                removes += "remove" in action
        commit.update(add_actions=adds, remove_actions=removes)
        out.append(commit)
    return out
