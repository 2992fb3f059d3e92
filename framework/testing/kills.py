"""Crash-test a job in one call: kill it at every crash point it passes and at random
instants, rerun, and compare each lakehouse with an uninterrupted run.

:func:`crash_test` runs ``job`` once uninterrupted in this process, into a lakehouse of
its own (the reference), and records the named crash points it passes
(:func:`framework.core.crashpoints.recording`). Then, for each of those points and for
``random_kills`` random instants, it starts a real ``ninelives run`` child on a fresh
lakehouse, kills its whole process group with SIGKILL there, reruns the job in this
process, and checks that the lakehouse equals the reference
(:func:`framework.testing.compare.assert_recovered`). Every failure is collected and
raised as one AssertionError that names the case, its lakehouse and the random seed.

Example::

    def test_clicks_survive_kill_9(spark, tmp_path):
        write_landing(tmp_path / "landing")
        report = crash_test(spark, CLICKS, tmp_path / "landing", DATES, tmp_path / "crash")
        assert report.kills == len(report.cases)
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

from framework.core.crashpoints import RENEWAL_POINT, PassedPoint, recording
from framework.engine.job import Job
from framework.lake.storage import join
from framework.testing.children import KILLED, Child, ChildJvm, run_child, start_run
from framework.testing.compare import Reference, assert_recovered, reference_run, rerun
from framework.testing.lakes import Lake, job_reference, new_lake

log = logging.getLogger(__name__)

# Random kills land this far into a child's life when no crash-point child was timed:
# a child over a few tiny dates starts its JVM in a few seconds and ends in 15-40.
DEFAULT_KILL_WINDOW = (3.0, 25.0)


def named_points(passed: Iterable[PassedPoint]) -> list[str]:
    """The ``NINELIVES_CRASH_AT`` spec of each distinct point a run passed, in the
    order it passed them: every point of every work unit, every chunk commit. The lease
    renewal is left out: whether a run renews its lease depends on how long it takes,
    not on where it is (name it in ``points`` to kill there)."""
    specs: list[str] = []
    for point in passed:
        if point.point != RENEWAL_POINT and point.spec not in specs:
            specs.append(point.spec)
    return specs


@dataclass(frozen=True)
class CrashCase:
    """One crashed run and its rerun: where it was killed (a crash point's spec, or
    ``random@<seconds>``), whether the kill landed before the child ended on its own,
    how long the child ran, its lakehouse, and what did not recover (empty: it did)."""

    name: str
    killed: bool
    seconds: float
    lake: Lake
    problems: tuple[str, ...] = ()

    @property
    def recovered(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class CrashTestReport:
    """What :func:`crash_test` did: the reference, each case, and the random seed."""

    reference: Reference
    cases: tuple[CrashCase, ...]
    seed: int

    @property
    def kills(self) -> int:
        """Cases whose child was killed (a random instant can come after its end)."""
        return sum(case.killed for case in self.cases)

    @property
    def failures(self) -> tuple[CrashCase, ...]:
        return tuple(case for case in self.cases if not case.recovered)


def crash_test(
    spark: SparkSession,
    job: Job,
    landing: Path | str,
    dates: Sequence[dt.date],
    workdir: Path | str,
    *,
    points: Sequence[str] | None = None,
    random_kills: int = 2,
    seed: int | None = None,
    kill_window: tuple[float, float] | None = None,
    job_ref: str = "",
    jvm: ChildJvm | None = None,
    root: str | None = None,
    lakehouse: Mapping[str, str | bool] | None = None,
) -> CrashTestReport:
    """Kill ``job`` over ``dates`` at every crash point and at random instants; each
    rerun must equal an uninterrupted run. Raises AssertionError naming every case
    that did not recover.

    :param spark: a Delta-enabled session: the reference run and every rerun run in it.
    :param job: the job under test.
    :param landing: the landing folder its source reads (only read, never changed).
    :param dates: the partitions each run requests.
    :param workdir: an empty folder; each case gets a lakehouse of its own under it.
    :param points: ``NINELIVES_CRASH_AT`` specs to kill at; by default every point the
        uninterrupted run passed (:func:`named_points`).
    :param random_kills: how many children to SIGKILL at a random instant.
    :param seed: the random instants' seed (default ``NINELIVES_CRASH_SEED``, else a
        fresh one); the report and any failure name it, to replay.
    :param kill_window: seconds after a child's start within which random kills land;
        by default from the shortest crash-point child's life (it died at the first
        point) to a little past the longest one's.
    :param job_ref: how a child finds the job (a registered name or
        ``module:attribute``); by default :func:`job_reference`.
    :param jvm: how a child's JVM starts; by default :meth:`ChildJvm.from_environment`.
    :param root: lakehouses elsewhere than under ``workdir``: each case's (and the
        reference's) is ``<root>/<case>``, e.g. under ``s3a://bucket/crash``.
    :param lakehouse: other ``[lakehouse]`` keys of every case's config, e.g. the
        ``s3_endpoint`` of that root.

    Example::

        report = crash_test(spark, CLICKS, landing, [date(2024, 1, 1)], tmp_path)
        report.cases   # after_claim@2024-01-01, after_read@..., ..., random@7.3s, ...
    """
    workdir = Path(workdir)
    job_ref = job_ref or job_reference(job)
    jvm = jvm or ChildJvm.from_environment()
    if seed is None:
        seed = int(os.environ.get("NINELIVES_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)

    def lake_named(name: str) -> Lake:
        case_root = join(root, name) if root else None
        return new_lake(
            workdir / name, landing, job, job_ref=job_ref, root=case_root, lakehouse=lakehouse
        )

    with recording() as passed:
        reference = reference_run(spark, lake_named("reference").config, dates, job)
    specs = list(points) if points is not None else named_points(passed)
    assert specs or random_kills, f"{job.name} passed no crash point over {list(dates)}"
    log.info(
        "crash test of %s: points %s, %d random kill(s), seed %d",
        job.name,
        specs,
        random_kills,
        seed,
    )

    def lake_for(n: int, name: str) -> Lake:
        return lake_named(f"{n:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}")

    def recovered(name: str, lake: Lake, child: Child, killed: bool) -> CrashCase:
        problems: list[str] = []
        try:
            rerun(spark, lake, dates)
            assert_recovered(spark, lake, reference)
        except AssertionError as failure:
            problems.append(str(failure))
        case = CrashCase(name, killed, child.seconds, lake, tuple(problems))
        log.info(
            "%s: %s after %.1f s, %s",
            name,
            "killed" if killed else "ended",
            case.seconds,
            "recovered" if case.recovered else "NOT recovered",
        )
        return case

    cases: list[CrashCase] = []
    for spec in specs:
        lake = lake_for(len(cases) + 1, spec)
        child = run_child(lake, dates, crash_at=spec, jvm=jvm)
        if child.rc != KILLED:
            cases.append(
                CrashCase(
                    spec,
                    False,
                    child.seconds,
                    lake,
                    (f"the run never died at {spec}\n{child.describe()}",),
                )
            )
            continue
        cases.append(recovered(spec, lake, child, killed=True))

    # Between the first crash point's moment and a little after the last one's: before
    # the claim a child has written nothing, and a kill there proves little.
    lives = [case.seconds for case in cases if case.killed]
    window = kill_window or ((min(lives), max(lives) * 1.15) if lives else DEFAULT_KILL_WINDOW)
    for _ in range(random_kills):
        at = rng.uniform(*window)
        name = f"random@{at:.1f}s"
        lake = lake_for(len(cases) + 1, name)
        child = start_run(lake, dates, jvm=jvm)
        killed = child.kill_after(at)
        if not killed and child.rc != 0:
            cases.append(
                CrashCase(
                    name,
                    False,
                    child.seconds,
                    lake,
                    (f"the uninterrupted child failed\n{child.describe()}",),
                )
            )
            continue
        cases.append(recovered(name, lake, child, killed))

    report = CrashTestReport(reference, tuple(cases), seed)
    if report.failures:
        raise AssertionError(
            f"{len(report.failures)} of {len(cases)} crash case(s) of {job.name} did not "
            f"recover (replay the random instants with NINELIVES_CRASH_SEED={seed}):\n"
            + "\n".join(
                f"- {c.name} ({c.lake.root}):\n  {'; '.join(c.problems)}" for c in report.failures
            )
        )
    return report
