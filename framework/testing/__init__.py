"""Crash-test your own job: kill it with SIGKILL anywhere, rerun it, and check that the
lakehouse equals an uninterrupted run.

The few lines, in pytest (``spark`` is your Delta-enabled session fixture; the job is
defined at module level, so that a child process can import it)::

    import datetime as dt
    from framework.testing import crash_test

    DATES = [dt.date(2024, 1, 1), dt.date(2024, 1, 2)]

    def test_clicks_survive_kill_9(spark, tmp_path):
        landing = write_some_clicks(tmp_path / "landing", DATES)
        report = crash_test(spark, CLICKS, landing, DATES, tmp_path / "crash")
        assert report.kills >= 5

:func:`crash_test` runs the job uninterrupted in-process (the reference) and records
the named crash points it passes; then for each point, and for ``random_kills`` random
instants (``seed``), it runs ``ninelives run`` as a real child process on a fresh
lakehouse, SIGKILLs its whole process group there, reruns, and asserts the lakehouse
equals the reference: ledger complete with counts that add up, target equal in every
non-audit column, quarantine equal.

The parts, for tests of your own shape:

- lakehouses: :func:`new_lake`, :class:`Lake`, :func:`job_reference`;
- child processes and kills: :func:`run_child`, :func:`start_run`, :class:`Child`
  (``kill``, ``kill_after``), :func:`kill_when`, :func:`expect_exit`, :data:`KILLED`,
  :class:`ChildJvm`, :func:`child_env`;
- comparing: :func:`reference_run`, :func:`rerun`, :func:`assert_recovered`,
  :func:`diff_rows`, :func:`assert_same_rows`;
- the Delta log without Spark: :func:`committed_partitions`, :func:`commit_operations`,
  :func:`tagged_commits`, :func:`log_versions`.

Example::

    lake = new_lake(tmp_path / "a", landing, CLICKS)
    expect_exit(run_child(lake, DATES, crash_at="after_read@2024-01-02"), KILLED)
    rerun(spark, lake, DATES)
    assert_recovered(spark, lake, reference)

Needs the ``testing`` extra (``pip install 'ninelives[testing]'``, for chispa).
:mod:`framework.testing.notebooks` runs Databricks source-format notebooks locally.
"""

from framework.core.crashpoints import CHUNK_POINTS, POINTS, RENEWAL_POINT, recording
from framework.testing.children import (
    CHILD_TIMEOUT,
    JVM_POINTS,
    KILLED,
    Child,
    ChildJvm,
    child_env,
    expect_exit,
    kill_when,
    run_args,
    run_child,
    start_run,
    wait_group_gone,
)
from framework.testing.compare import (
    Reference,
    RowDiff,
    assert_recovered,
    assert_same_rows,
    diff_rows,
    ledger_problems,
    quarantine_problems,
    read_reference,
    reference_run,
    rerun,
    target_frame,
    without_audit,
)
from framework.testing.delta_log import (
    assert_log_has_no_gap,
    commit_operations,
    committed_partitions,
    files_under,
    log_versions,
    tagged_commits,
)
from framework.testing.kills import CrashCase, CrashTestReport, crash_test, named_points
from framework.testing.lakes import TINY_DATA_CONFS, Lake, job_reference, new_lake, write_conf

__all__ = [
    "CHILD_TIMEOUT",
    "CHUNK_POINTS",
    "JVM_POINTS",
    "KILLED",
    "POINTS",
    "RENEWAL_POINT",
    "TINY_DATA_CONFS",
    "Child",
    "ChildJvm",
    "CrashCase",
    "CrashTestReport",
    "Lake",
    "Reference",
    "RowDiff",
    "assert_log_has_no_gap",
    "assert_recovered",
    "assert_same_rows",
    "child_env",
    "commit_operations",
    "committed_partitions",
    "crash_test",
    "diff_rows",
    "expect_exit",
    "files_under",
    "job_reference",
    "kill_when",
    "ledger_problems",
    "log_versions",
    "named_points",
    "new_lake",
    "quarantine_problems",
    "read_reference",
    "recording",
    "reference_run",
    "rerun",
    "run_args",
    "run_child",
    "start_run",
    "tagged_commits",
    "target_frame",
    "wait_group_gone",
    "without_audit",
    "write_conf",
]
