"""A class-data-sharing archive of the classes a child run's JVM loads.

Every crash test starts real ``ninelives run`` children, and each child JVM spends
seconds of CPU loading and verifying the same Spark and Delta classes. One normal child
run with ``-XX:ArchiveClassesAtExit`` dumps them into a dynamic CDS archive;
:func:`framework.testing.child_env` then maps it into every child
(``-XX:SharedArchiveFile``). ``make test`` builds it once (``.cache/cds/``, rebuilt when
the jars or the venv change), in the background, while the tests that start no child
run; a child that starts before it is there waits for it
(:func:`framework.testing.children.wait_for_archive`)::

    python -m tests.jvm_archive [--background] .cache/cds/child.jsa

An archive that does not match the JVM (another JDK, other jars) is skipped by the JVM,
which then loads classes the usual way (its warning is switched off): it changes how
fast a child starts, never what it writes or when a kill lands.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from framework.testing import ChildJvm, child_env, write_conf
from framework.testing.children import archive_builder, archive_building
from jobs.landing import ORDERS_FOLDER

REPO = Path(__file__).resolve().parents[1]

DAYS = (dt.date(2024, 1, 1), dt.date(2024, 1, 2))


def land(landing: Path, day: dt.date) -> None:
    """A few order events of ``day``, a re-delivery and a malformed line: every path of a
    partition (dedupe, quarantine) loads its classes. Written without a JVM."""
    events = [
        {
            "source_id": f"ORD-{n:010d}",
            "order_date": day.isoformat(),
            "event_type": "created",
            "event_ts": f"{day}T10:00:00+01:00",
            "customer_id": "C-000001",
            "amount": 10.5 + n,
            "currency": "EUR",
            "ingested_at": f"{day + dt.timedelta(days=1)}T04:00:00Z",
        }
        for n in range(1, 21)
    ]
    lines = [json.dumps(e) for e in [*events, events[0]]] + ['{"source_id": "ORD-']
    folder = landing / ORDERS_FOLDER / f"order_date={day}"
    folder.mkdir(parents=True)
    (folder / "part-00000.json").write_text("".join(line + "\n" for line in lines))


def build(archive: Path) -> None:
    """Run ``orders_daily`` over two small days in a child that dumps the classes it
    loaded when it exits, and move the archive into place."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ninelives-cds-") as tmp:
        base = Path(tmp)
        for day in DAYS:
            land(base / "landing", day)
        conf = write_conf(base / "ninelives.toml", base / "landing")
        dumped = base / "child.jsa"
        env = child_env(jvm=dataclasses.replace(ChildJvm.from_environment(REPO), cds_archive=None))
        dump = f"-XX:ArchiveClassesAtExit={dumped}"
        env["JAVA_TOOL_OPTIONS"] = f"{env.get('JAVA_TOOL_OPTIONS', '')} {dump}".strip()
        run = [sys.executable, "-m", "framework.cli", "run", "orders_daily"]
        span = ["--from", str(DAYS[0]), "--to", str(DAYS[-1])]
        where = ["--lakehouse", str(base / "lakehouse"), "--conf", str(conf)]
        subprocess.run([*run, *span, *where], cwd=REPO, env=env, check=True, capture_output=True)
        # Copy beside the archive, then rename: a JVM given a half-written archive dies
        # (SIGBUS), so the archive's path only ever holds a whole one.
        partial = archive.with_name(archive.name + ".partial")
        shutil.copyfile(dumped, partial)
        os.replace(partial, archive)


def build_in_background(archive: Path) -> None:
    """Start a detached build of ``archive``, unless one is under way; its output goes to
    ``build.log`` beside it. The builder's pid is in :func:`archive_builder`'s file,
    which the builder removes when it ends."""
    if archive_building(archive):
        return
    archive.parent.mkdir(parents=True, exist_ok=True)
    with open(archive.with_name("build.log"), "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.jvm_archive", str(archive)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    archive_builder(archive).write_text(str(proc.pid))


def main(args: list[str]) -> None:
    if args[:1] == ["--background"] and len(args) == 2:
        return build_in_background(Path(args[1]))
    if len(args) != 1:
        sys.exit("usage: python -m tests.jvm_archive [--background] ARCHIVE")
    archive = Path(args[0])
    try:
        build(archive)
    except Exception as error:
        sys.exit(
            f"ninelives: no class-data-sharing archive for child JVMs ({error}); "
            "they start without one"
        )
    finally:
        builder = archive_builder(archive)
        if builder.is_file() and builder.read_text().strip() == str(os.getpid()):
            builder.unlink()


if __name__ == "__main__":
    main(sys.argv[1:])
