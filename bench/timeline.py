"""Where a run's time goes, from the Delta logs it wrote (no Spark): per work unit of a
ninelives run (its commits are tagged with the unit), per date of the bare loop, and the
bulk run's one commit; and which dates a run's target commits cover.

Example::

    profile(work, runs)["ninelives"]["units"][0]["unit_s"]
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.job import JOB, TARGET
from framework.testing.delta_log import log_commits as commits


def _ms(commit: dict[str, Any], name: str) -> float:
    return int((commit.get("operationMetrics") or {}).get(name, 0)) / 1000


def _median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return round(values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2, 2)


def _user_metadata(commit: dict[str, Any]) -> dict[str, Any] | None:
    text = commit.get("userMetadata")
    try:
        meta = json.loads(text) if text else None
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


UnitKey = tuple[Any, ...]


def _unit_of(meta: dict[str, Any]) -> tuple[UnitKey, dict[str, dict[str, Any]]] | None:
    """(unit key, {date: what the tag says of it}) of a ninelives commit's userMetadata.

    The unit format is ``{"job", "run_id", "unit", "partitions": {date: {"attempt",
    counts...}}}``; the per-partition one from before work units (``{"job",
    "partition", "run_id", "attempt", ...}``) reads as a unit of one date, so that
    ``--report-only`` still profiles an old workdir."""
    if isinstance(meta.get("partitions"), dict) and meta.get("unit") is not None:
        return ("unit", int(meta["unit"])), meta["partitions"]
    if meta.get("partition"):
        return ("partition", meta["partition"], meta.get("attempt")), {meta["partition"]: meta}
    return None


Tag = tuple[dict[str, Any], UnitKey, dict[str, dict[str, Any]]]


def _tag(commit: dict[str, Any]) -> Tag | None:
    """(userMetadata, unit key, {date: ...}) of a ninelives commit; None for any other."""
    meta = _user_metadata(commit)
    if not meta:
        return None
    found = _unit_of(meta)
    return None if found is None else (meta, *found)


def _stat_range(files: list[dict[str, Any]], column: str) -> tuple[Any, Any]:
    """The lowest and highest ``column`` over ``files``' statistics; (None, None) when a
    file has none for it."""
    lows: list[Any] = [(f.get("minValues") or {}).get(column) for f in files]
    highs: list[Any] = [(f.get("maxValues") or {}).get(column) for f in files]
    if not files or None in lows or None in highs:
        return None, None
    return min(lows), max(highs)


def _ledger_commits(table: Path) -> tuple[float | None, dict[UnitKey, float]]:
    """The first claim (a commit of ``running`` rows only) and, per unit, the commit of
    its outcome rows (``complete``/``failed``), from the ledger's file statistics.

    A unit's outcome is one commit of its partitions' rows, which carry the unit number
    (the ``unit`` column); an old ledger without it has one commit per partition."""
    claim = None
    outcomes: dict[UnitKey, float] = {}
    for c in commits(table):
        files = c["added"]
        if not files:
            continue
        low_state, high_state = _stat_range(files, "state")
        if low_state == "running":
            if claim is None and high_state == "running":
                claim = c["timestamp"]
            continue
        if high_state not in ("complete", "failed"):
            continue
        low_unit, high_unit = _stat_range(files, "unit")
        if low_unit is not None and low_unit == high_unit:
            outcomes.setdefault(("unit", int(low_unit)), c["timestamp"])
        first, last = _stat_range(files, "partition")
        attempt, same = _stat_range(files, "attempt")
        if first is not None and first == last and attempt == same:
            outcomes.setdefault(("partition", first, attempt), c["timestamp"])
    return claim, outcomes


def _seconds(later: float | None, earlier: float | None) -> float | None:
    return round((later - earlier) / 1000, 2) if later is not None and earlier is not None else None


UNIT_STEPS = ("to_quarantine_commit_s", "to_target_commit_s", "target_to_ledger_s", "unit_s")


def unit_profile(lh: Path, run: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where a ninelives run's time goes, unit by unit, from its lakehouse's Delta logs.

    A unit is one target commit, one quarantine commit and one ledger commit of its
    partitions' outcomes, all tagged with its number (the target and quarantine
    commits in ``userMetadata``, the ledger rows in their ``unit`` column). Per unit,
    between consecutive commits: the previous unit's ledger commit (the run's claim of
    all its units, for the first) to the quarantine commit (fingerprints, read,
    validate, stage, count and the rejects' write); the target commit since the
    quarantine's, or since the previous ledger commit in a unit without rejects (the
    write, whose own ``executionTimeMs`` is given for a MERGE); the ledger's outcome
    commit since the target's. Only the first run that wrote the target is profiled (later runs of
    the same lakehouse, the no-op rerun and the ``--force`` rerun, are not). ``run``, the
    child's measurement, adds the time from its start to the claim (JVM start, ledger
    read, plan, sizing the dates) and from the last unit's ledger commit to its exit.
    """
    units: dict[UnitKey, dict[str, Any]] = {}
    run_id = None
    for c in commits(lh / TARGET):
        tag = _tag(c)
        if tag is None:
            continue
        meta, key, parts = tag
        if run_id is None:
            run_id = meta.get("run_id")
        if meta.get("run_id") != run_id:
            continue
        units.setdefault(key, {"commit": c, "dates": sorted(parts), "parts": parts})
    quarantine: dict[UnitKey, float] = {}
    for c in commits(lh / "_ninelives" / f"quarantine_{JOB}"):
        tag = _tag(c)
        if tag is not None:
            quarantine.setdefault(tag[1], c["timestamp"])
    claim, outcomes = _ledger_commits(lh / "_ninelives" / "ledger")
    rows: list[dict[str, Any]] = []
    previous = claim
    for key, unit in sorted(units.items(), key=lambda kv: kv[1]["commit"]["timestamp"]):
        commit = unit["commit"]
        target, q, done = commit["timestamp"], quarantine.get(key), outcomes.get(key)
        entry: dict[str, Any] = {
            "unit": key[1] if key[0] == "unit" else None,
            "first": unit["dates"][0],
            "last": unit["dates"][-1],
            "dates": len(unit["dates"]),
            "rows_written": sum(
                int(p.get("rows_written") or 0)
                for p in unit["parts"].values()
                if isinstance(p, dict)
            ),
            "operation": commit.get("operation"),
            "merge_s": (
                _ms(commit, "executionTimeMs") if commit.get("operation") == "MERGE" else None
            ),
            "to_quarantine_commit_s": _seconds(q, previous),
            "to_target_commit_s": _seconds(target, q if q is not None else previous),
            "target_to_ledger_s": _seconds(done, target),
            "unit_s": _seconds(done, previous),
        }
        entry["s_per_date"] = (
            round(entry["unit_s"] / entry["dates"], 3) if entry["unit_s"] else None
        )
        rows.append(entry)
        previous = done if done is not None else previous
    out: dict[str, Any] = {
        "run_id": run_id,
        "units": rows,
        "dates": sum(r["dates"] for r in rows),
        "totals": {
            step: round(sum(r[step] for r in rows if r[step] is not None), 2) for step in UNIT_STEPS
        },
    }
    if run and run.get("started_epoch") and claim is not None:
        started = run["started_epoch"] * 1000
        out["start_to_claim_s"] = _seconds(claim, started)
        out["after_last_unit_s"] = _seconds(started + run["seconds"] * 1000, previous)
    return out


def profile(work: Path, runs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Where the time goes, from the Delta logs the runs wrote (no Spark).

    ninelives (runs a and j): per unit, :func:`unit_profile`. A per-date split of
    ninelives' time is gone with work units: the dates of a unit share its commits.
    Bare loop, per date of run d: its write (a MERGE's source materialization is the
    read and dedupe) and the rest, medians over the dates, the first date excluded (JVM
    warm-up). Bulk (run i): its one commit, and when it came.
    """
    runs = runs or {}

    def latest(pattern: str) -> dict[str, Any] | None:
        # With --repeat the lakehouse is the last repeat's.
        found = [m for n, m in runs.items() if re.fullmatch(pattern, n)]
        return max(found, key=lambda m: m.get("started_epoch") or 0) if found else None

    out: dict[str, Any] = {}
    for label, folder, run in (
        ("ninelives", "lh_a", latest(r"a_full(_\d+)?")),
        *(
            (f"dates_{n}", f"lh_j{n}", runs[f"j_dates{n}"])
            for n in sorted(int(x[7:]) for x in runs if re.fullmatch(r"j_dates\d+", x))
        ),
    ):
        if (work / folder / TARGET / "_delta_log").is_dir():
            out[label] = unit_profile(work / folder, run)
    bare: dict[str, list[float]] = defaultdict(list)
    log = work / "logs" / "d_bare.log"
    totals = (
        [float(x) for x in re.findall(r"bare \S+ done in ([\d.]+)s", log.read_text())]
        if log.is_file()
        else []
    )
    bare_writes = [
        c for c in commits(work / "lh_d" / TARGET) if c.get("operation") in ("WRITE", "MERGE")
    ]
    # A killed or unfinished loop has fewer writes than dates: pair what is there.
    for total, write in list(zip(totals, bare_writes, strict=False))[1:]:
        bare["partition"].append(total)
        if write.get("operation") == "MERGE":
            bare["MERGE"].append(_ms(write, "executionTimeMs"))
            bare["  of which materialize source"].append(_ms(write, "materializeSourceTimeMs"))
            bare["  of which scan for matches"].append(_ms(write, "scanTimeMs"))
            bare["  of which write"].append(_ms(write, "rewriteTimeMs"))
            bare["before the MERGE"].append(total - _ms(write, "executionTimeMs"))
    out["bare"] = {k: _median(v) for k, v in bare.items()}
    out["bare_dates"] = len(bare["partition"])
    writes = [c for c in commits(work / "lh_i" / TARGET) if c.get("operation") == "WRITE"]
    if writes:
        commit, run = writes[-1], latest(r"i_bulk(_\d+)?")
        metrics = commit.get("operationMetrics") or {}
        started = run["started_epoch"] * 1000 if run and run.get("started_epoch") else None
        out["bulk"] = {
            "operation": commit.get("operation"),
            "rows": int(metrics.get("numOutputRows", 0)),
            "files": int(metrics.get("numFiles", 0)),
            "start_to_commit_s": _seconds(commit["timestamp"], started),
            "after_commit_s": _seconds(started + run["seconds"] * 1000, commit["timestamp"])
            if started is not None and run
            else None,
        }
    return out


def committed_dates(table: Path) -> dict[str, list[str]]:
    """Per run (``run_id``, in commit order), the dates its ninelives commits of the
    target cover (their userMetadata)."""
    dates: dict[str, set[str]] = {}
    for c in commits(table):
        tag = _tag(c)
        if tag is not None:
            dates.setdefault(str(tag[0].get("run_id")), set()).update(tag[2])
    return {run: sorted(days) for run, days in dates.items()}
