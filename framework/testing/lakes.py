"""Lakehouses for crash tests: a folder, the TOML config a child run loads, and the job.

A child run is the real command line, so it finds its job the way ``ninelives run``
does: by its registered name, or by ``module:attribute``. :func:`job_reference` works
that out from the :class:`~framework.engine.job.Job` object a test holds.

Example::

    lake = new_lake(tmp_path / "a", landing, JOB)
    lake.target_path          # <tmp>/a/lakehouse/silver/clicks
    lake.states(spark)        # the ledger's newest state of each of JOB's partitions
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from pyspark.sql import SparkSession

from framework.core.config import Config, load_config
from framework.engine.job import Job
from framework.engine.registry import GROUP
from framework.engine.runner import watermark
from framework.lake.storage import absolute
from framework.lake.tables import Lakehouse
from framework.state.ledger import Ledger, PartitionState

# Crash tests move a few hundred rows, so Spark's per-query machinery costs more than
# the data. Each setting below changes how fast a query of that size runs, never what
# it returns or what is committed; production jobs keep Spark's and Delta's defaults.
# - interpreted expressions instead of generating and compiling Java per query shape
#   (factoryMode is Spark's own switch for tests; about 12 % of this project's suite's CPU);
# - no adaptive re-planning, and one partition per Delta log replay (sessions also
#   use one shuffle partition);
# - no post-commit .crc file (Delta's optional checksum of each version's state).
# Measured side by side in one session, 3 dates of orders_daily in-process (median of
# 3, 2026-12-01): 11.6 s with adaptive execution, two shuffle and log-replay partitions
# and .crc files; 9.6 s with these.
TINY_DATA_CONFS = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
    "spark.databricks.delta.snapshotPartitions": "1",
    "spark.databricks.delta.writeChecksumFile.enabled": "false",
}


def job_reference(job: Job) -> str:
    """What ``ninelives run`` is given to find ``job`` in a child process: its name
    when the ``ninelives.jobs`` entry point of that name is this job, else
    ``module:attribute`` of an imported module that holds it (the module of its
    transform first).

    Raises ValueError when neither exists (a job built inside a function): define it
    at module level, or pass ``job_ref`` yourself.
    """
    for ep in entry_points(group=GROUP):
        if ep.name == job.name:
            try:
                if ep.load() is job:
                    return job.name
            except Exception:  # a broken entry point of the same name: look on
                pass
    home = getattr(job.transform, "__module__", None)
    modules = sorted(
        (m for n, m in list(sys.modules.items()) if n != "__main__" and m is not None),
        key=lambda m: (m.__name__ != home, m.__name__),
    )
    for module in modules:
        for attribute, value in list(vars(module).items()):
            if value is job:
                return f"{module.__name__}:{attribute}"
    raise ValueError(
        f"job {job.name!r} is neither registered (entry point group {GROUP}) nor a "
        "module-level attribute of an imported module, so a child process cannot find "
        "it: define it at module level or pass job_ref='module:attribute'"
    )


def import_root(job_ref: str) -> Path | None:
    """The folder a child must have on its path to import ``module:attribute`` as this
    process did (None for a registered name, or a module without a file)."""
    module_name, colon, _ = job_ref.partition(":")
    module: ModuleType | None = sys.modules.get(module_name) if colon else None
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    depth = module_name.count(".") + (1 if path.stem == "__init__" else 0)
    return path.parents[depth]


@dataclass(frozen=True)
class Lake:
    """One lakehouse for child runs of ``job``: its root, its TOML config, a folder for
    the children's output, and what a child is told to run (``job_ref``; found from
    ``job`` when empty, :func:`job_reference`)."""

    root: Path | str
    conf: Path
    logs: Path
    job: Job
    job_ref: str = ""

    @property
    def job_argument(self) -> str:
        """The JOB argument of the child's ``ninelives run``."""
        return self.job_ref or job_reference(self.job)

    @property
    def config(self) -> Config:
        """The config a child run loads (``--conf`` + ``--lakehouse``), for in-process use."""
        return load_config(self.conf, lakehouse=str(self.root))

    @property
    def lakehouse(self) -> Lakehouse:
        return Lakehouse(self.config.lakehouse)

    def path(self, logical_name: str) -> Path:
        return Path(str(self.lakehouse.table(logical_name).path))

    @property
    def target_path(self) -> Path:
        return self.path(self.job.sink.table)

    def states(self, spark: SparkSession) -> dict[dt.date, PartitionState]:
        """The ledger's newest state of each of the job's partitions."""
        ledger = Ledger(spark, self.lakehouse.framework_table("ledger"))
        return ledger.states(self.job.name)[self.job.name]

    def watermark(self, spark: SparkSession) -> dt.date:
        """A watermark job's first window not yet complete, from the ledger."""
        return watermark(self.job, self.states(spark))

    @property
    def ledger_path(self) -> Path:
        return Path(str(self.lakehouse.framework_table("ledger").path))


def write_conf(
    path: Path, landing: Path | str, lakehouse: Mapping[str, str | bool] | None = None
) -> Path:
    """A child config: absolute landing folder (or URL), the other ``[lakehouse]`` keys
    given (e.g. ``s3_endpoint``), and a light one-core Spark session set up for tiny
    data (``TINY_DATA_CONFS``)."""
    tiny = ", ".join(f'"{k}" = "{v}"' for k, v in TINY_DATA_CONFS.items())
    keys = {"landing": absolute(str(landing)), **(lakehouse or {})}
    path.write_text(
        "[lakehouse]\n"
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
        + '\n[spark]\nmaster = "local[1]"\nshuffle_partitions = 1\n'
        f"extra = {{ {tiny} }}\n"
    )
    return path


def new_lake(
    base: Path,
    landing: Path | str,
    job: Job,
    *,
    template: Path | None = None,
    job_ref: str = "",
    root: str | None = None,
    lakehouse: Mapping[str, str | bool] | None = None,
) -> Lake:
    """A lakehouse for ``job`` under ``base`` reading ``landing``; a copy of
    ``template`` if given. ``root``: the lakehouse's root elsewhere, e.g. an empty
    ``s3a://`` prefix (``base`` then holds only the config and the logs);
    ``lakehouse``: other ``[lakehouse]`` keys of its config, e.g. ``s3_endpoint``.

    Copying a Delta table is safe: its log refers to data files by relative path.
    """
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    where: Path | str = root or base / "lakehouse"
    if isinstance(where, Path):
        if template is not None:
            shutil.copytree(template, where)
        else:
            where.mkdir()
    elif template is not None:
        raise ValueError("a template is copied only to a local lakehouse")
    logs = base / "logs"
    logs.mkdir(exist_ok=True)
    conf = write_conf(base / "ninelives.toml", landing, lakehouse)
    return Lake(where, conf, logs, job, job_ref)
