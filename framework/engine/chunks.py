"""Resumable big partitions: a partition bigger than a work unit, in chunks of its files.

When one night of 10M records dies at 9M, the rerun processes the last 1M::

    list the partition's files -> manifest (files, sizes, times; chunks of them)
      -> ledger: running, with the manifest        (before the first chunk)
      -> for each chunk the target's log lacks:
           process_chunk (framework.engine.unit): quarantine commit, target commit, tagged
           (the lease renewer's next renewal records "n of N chunks committed")
      -> drop_duplicates: a key two chunks hold keeps one row, in one tagged commit
      -> the partition's accounting adds up -> complete

The manifest cuts the files, in name order, into chunks of at most the unit's size (a
bigger file is a chunk of its own). Chunk 0 replaces the partition in the target, so
nothing a complete run or an older manifest left survives it, vanished keys included;
every later chunk appends. A rerun resumes the newest attempt's manifest while each of
its files is still there, unchanged; it finds the committed chunks by their tags in the
target's log (as healing does), never by the ledger, and processes only the others.
Files that arrive after the manifest are not read: the partition completes with the
manifest's fingerprint, and is stale after it. A manifest file that changed or vanished
makes a new manifest, from chunk 0.

The same rows as one pass: each chunk dedupes within itself like a unit, and when every
chunk is in, the rows of a key that several chunks hold are cut down to the one a
one-pass dedupe keeps (the job's ``order_by``, then the row hash). The commit that
deletes the others counts them as duplicates, once. While the partition is running the
target holds its chunks so far (and a key twice across chunks); ``complete`` in the
ledger says it is whole.

Every chunk commit's transaction version is above the one before (``CommitTag.chunk``),
so a zombie attempt's late chunk is skipped as for any unit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from framework.core.crashpoints import crash_point, crash_points
from framework.core.errors import AccountingError
from framework.core.keys import KEY_COLUMN, ROW_HASH_COLUMN
from framework.core.names import quoted
from framework.engine.job import Job
from framework.engine.unit import Chunk, Counts, check_counts, process_chunk
from framework.lake.commits import (
    HISTORY_LOOKBACK,
    CommitResult,
    CommitTag,
    committed_by,
    find_commits,
    tagged_commit,
)
from framework.lake.locks import write_lock
from framework.lake.sinks import PROCESSED_AT_COLUMN, ReplaceSink
from framework.lake.storage import InputFile
from framework.lake.storage import fingerprint as files_fingerprint
from framework.lake.tables import Lakehouse, TableRef
from framework.state.ledger import COMPLETE, FAILED, RUNNING, PartitionState, utcnow


@dataclass(frozen=True)
class Manifest:
    """A partition's input files as one attempt found them, cut into chunks."""

    id: str
    """``<run id>/<attempt>`` of the attempt that made it; every chunk commit names it."""
    fingerprint: str
    files: tuple[InputFile, ...]
    chunks: tuple[tuple[int, int], ...]
    """``(start, stop)`` slices of ``files``."""

    @classmethod
    def new(cls, state: PartitionState, files: Sequence[InputFile], unit_bytes: int) -> Manifest:
        chunks = cut([f.size for f in files], unit_bytes)
        return cls(
            f"{state.run_id}/{state.attempt}", files_fingerprint(files), tuple(files), chunks
        )

    @property
    def of(self) -> int:
        return len(self.chunks)

    def chunk(self, index: int) -> Chunk:
        start, stop = self.chunks[index]
        files = self.files[start:stop]
        paths = tuple(f.path for f in files)
        return Chunk(index, self.of, paths, self.id, self.fingerprint, sum(f.size for f in files))

    def unchanged(self, files: Sequence[InputFile]) -> bool:
        """Every file of the manifest is still there with its size and time."""
        return set(self.files) <= set(files)

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "fingerprint": self.fingerprint,
                "files": [
                    [f.path, f.size, f.modified_ns, *([f.version] if f.version else [])]
                    for f in self.files
                ],
                "chunks": [list(c) for c in self.chunks],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        return cls(
            data["id"],
            data["fingerprint"],
            tuple(InputFile(p, int(s), int(m), *v) for p, s, m, *v in data["files"]),
            tuple((int(a), int(b)) for a, b in data["chunks"]),
        )


def cut(sizes: Sequence[int], unit_bytes: int) -> tuple[tuple[int, int], ...]:
    """``(start, stop)`` runs of consecutive files of at most ``unit_bytes`` each (a
    bigger file is a run of its own)."""
    chunks, start, size = [], 0, 0
    for i, n in enumerate(sizes):
        if i > start and size + n > unit_bytes:
            chunks.append((start, i))
            start, size = i, 0
        size += n
    chunks.append((start, len(sizes)))
    return tuple(chunks)


def resumable(previous: PartitionState | None, files: Sequence[InputFile]) -> Manifest | None:
    """The manifest of the partition's last attempt, if that attempt did not complete
    and every file of it is still there, unchanged."""
    if previous is None or previous.manifest is None or previous.state not in (RUNNING, FAILED):
        return None
    manifest = Manifest.from_json(previous.manifest)
    return manifest if manifest.unchanged(files) else None


def chunked_input(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    partition: dt.date,
    previous: PartitionState | None,
    unit_bytes: int,
) -> list[InputFile] | None:
    """The partition's files when it is processed in chunks: its last attempt left a
    manifest to resume, or its input is bigger than a unit and has more than one file.
    None for jobs that need a partition whole: ``ReplaceSink`` jobs, ``Job.chunks``
    False, or a source that cannot list its files."""
    listing = getattr(job.source, "files", None)
    if listing is None or not job.chunks or isinstance(job.sink, ReplaceSink):
        return None
    files: list[InputFile] = listing(spark, lakehouse, partition)
    if resumable(previous, files) is not None:
        return files
    return files if len(files) > 1 and sum(f.size for f in files) > unit_bytes else None


def process_chunked(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    running: PartitionState,
    previous: PartitionState | None,
    files: Sequence[InputFile],
    unit_bytes: int,
    record: Callable[[PartitionState], PartitionState],
    hold: Callable[[PartitionState], None],
) -> PartitionState | Exception:
    """One attempt at a partition in chunks: its ``complete`` state, or the error that
    failed it. ``record`` writes the ``running`` state with the manifest to the ledger
    before the first chunk; ``hold`` hands each chunk's progress to the lease renewer,
    whose next renewal writes it (a ledger commit per chunk would cost ~1 s each, and
    the target's log, not the ledger, is what a resume and ``status`` count chunks by)."""
    partition = running.partition
    manifest = resumable(previous, files) or Manifest.new(running, files, unit_bytes)
    target = lakehouse.table(job.sink.table)
    done = {
        i: c
        for i, c in committed_chunks(spark, target, job.name, partition, manifest).items()
        if i < manifest.of
    }
    state = record(
        dataclasses.replace(
            running, manifest=manifest.to_json(), chunks_committed=len(done), recorded_at=None
        )
    )
    for index in range(manifest.of):
        if index in done:
            continue
        result = process_chunk(spark, lakehouse, job, state, previous, manifest.chunk(index))
        if isinstance(result, Exception):
            return result
        done[index] = result
        crash_point("after_chunk_commit", partition, len(done))
        state = dataclasses.replace(state, chunks_committed=len(done), recorded_at=None)
        hold(state)
    crash_points("after_last_chunk", (partition,))
    attempt = {partition: state.attempt}
    tag = CommitTag(job.name, state.run_id, state.unit or 0, attempt, chunk=manifest.of)
    written = drop_duplicates(spark, target, job, partition, manifest, tag)
    crash_points("before_complete", (partition,))
    return _complete(spark, lakehouse, job, state, manifest, written)


def committed_chunks(
    spark: SparkSession, ref: TableRef, job: str, partition: dt.date, manifest: Manifest
) -> dict[int, CommitResult]:
    """The manifest's chunks the target's log holds, by chunk index (the newest commit of
    each), and its duplicate drops under index ``manifest.of``."""
    found: dict[int, CommitResult] = {}
    lookback = HISTORY_LOOKBACK + 2 * (manifest.of + 1)
    for commit in find_commits(spark, ref, job, lookback):
        info = commit.partition(partition) or {}
        if info.get("manifest") == manifest.id and "chunk" in commit.metadata:
            found.setdefault(int(commit.metadata["chunk"]), commit)
    return found


def with_chunks_committed(
    spark: SparkSession, lakehouse: Lakehouse, job: Job, states: dict[dt.date, PartitionState]
) -> dict[dt.date, PartitionState]:
    """``states`` with the chunks each unfinished attempt in chunks has in the target's
    log: the ledger's count lags when a runner died between a chunk's commit and its
    progress row, and the log is what a resume goes by."""
    target = lakehouse.table(job.sink.table)
    fixed = dict(states)
    for partition, state in states.items():
        if state.manifest is None or state.state == COMPLETE:
            continue
        manifest = Manifest.from_json(state.manifest)
        found = committed_chunks(spark, target, job.name, partition, manifest)
        done = sum(1 for i in found if i < manifest.of)
        fixed[partition] = dataclasses.replace(state, chunks_committed=done)
    return fixed


def drop_duplicates(
    spark: SparkSession,
    ref: TableRef,
    job: Job,
    partition: dt.date,
    manifest: Manifest,
    tag: CommitTag,
) -> int:
    """Delete, in one tagged commit, every row of ``partition`` whose key another chunk's
    row beats (``order_by``, then the row hash: the row a one-pass dedupe keeps), and
    return how many rows the partition holds then. No commit when no key is held twice.
    One aggregation counts the rows and the 64-bit hashes of their keys held twice at
    once (distinct hashes mean distinct keys; grouping by a long, not a 64-character
    key, takes a third less time at 10M rows); only rows whose hash is held twice are
    ranked by key. A row is named by its key, row hash and ``_processed_at``, one
    instant per chunk's write."""
    pc = job.partition_column
    rows = ref.read(spark).where(F.col(pc) == F.lit(partition))
    hashed = rows.withColumn("_key_hash", F.xxhash64(KEY_COLUMN))
    per_hash = hashed.groupBy("_key_hash").count()
    held = per_hash.agg(
        F.coalesce(F.sum("count"), F.lit(0)).alias("rows"),
        F.count(F.when(F.col("count") > 1, True)).alias("twice"),
    ).first()
    assert held is not None  # a global aggregation has one row
    if held["twice"] == 0:
        return int(held["rows"])
    order = [F.col(c).desc_nulls_last() for c in job.order_by]
    window = Window.partitionBy(KEY_COLUMN).orderBy(
        *order, F.col(ROW_HASH_COLUMN).desc(), F.col(PROCESSED_AT_COLUMN).desc()
    )
    who = (pc, KEY_COLUMN, ROW_HASH_COLUMN, PROCESSED_AT_COLUMN)
    # Ranked by key among the rows whose hash is held twice: a key held once ranks 1.
    losers = (
        hashed.join(per_hash.where(F.col("count") > 1), "_key_hash", "left_semi")
        .withColumn("_rank", F.row_number().over(window))
        .where(F.col("_rank") > 1)
        .select(*who)
        .localCheckpoint()
    )
    n = losers.count()
    if n == 0:  # hashes held twice, by different keys
        return int(held["rows"])
    tag = dataclasses.replace(
        tag,
        counts={
            partition: {
                "manifest": manifest.id,
                "chunks": manifest.of,
                "rows_duplicate": n,
                "rows_deleted": n,
            }
        },
    )
    on = " AND ".join(
        [f"t.{quoted(pc)} = DATE'{partition}'", *(f"t.{quoted(c)} = s.{quoted(c)}" for c in who)]
    )
    with write_lock(ref):
        with tagged_commit(spark, tag):
            ref.merge(spark, losers, on, "WHEN MATCHED THEN DELETE")
        commit = committed_by(spark, ref, tag)
    if commit.metric("numTargetRowsDeleted") != n:
        raise AccountingError(
            f"job {job.name}, partition {partition}: {n} rows lose to another chunk's row "
            f"of their key, but the commit deleted {commit.metric('numTargetRowsDeleted')}"
        )
    return int(held["rows"]) - n


def _complete(
    spark: SparkSession,
    lakehouse: Lakehouse,
    job: Job,
    state: PartitionState,
    manifest: Manifest,
    written: int,
) -> PartitionState | Exception:
    """The partition's complete state when every chunk is committed and its counts add
    up over them: rows read = ``written`` (the rows the target holds) + rejected +
    dropped + duplicates."""
    target = lakehouse.table(job.sink.table)
    found = committed_chunks(spark, target, job.name, state.partition, manifest)
    missing = [i + 1 for i in range(manifest.of) if i not in found]
    where = f"job {job.name}, partition {state.partition}"
    if missing:
        return AccountingError(
            f"{where}: chunk(s) {missing} of {manifest.of} are not in the target's log"
        )
    infos = [found[i].partition(state.partition) or {} for i in range(manifest.of)]

    def total(name: str) -> int:
        return sum(int(info.get(name, 0)) for info in infos)

    drops = found.get(manifest.of)  # the commit that cut keys held twice down to one row
    dropped_twice = (
        int((drops.partition(state.partition) or {}).get("rows_duplicate", 0)) if drops else 0
    )
    counts = Counts(
        read=total("rows_read"),
        rejected=total("rows_rejected"),
        dropped=total("rows_dropped"),
        duplicate=total("rows_duplicate") + dropped_twice,
    )
    try:
        check_counts(job, lakehouse, state.partition, counts)
    except Exception as error:
        return error
    if written != counts.accepted:
        return AccountingError(
            f"{where}: {counts.read} rows read over {manifest.of} chunks, {counts.rejected} "
            f"rejected, {counts.dropped} dropped, {counts.duplicate} duplicates, so "
            f"{counts.accepted} expected in the target, but it holds {written}"
        )
    last = max(found.values(), key=lambda c: c.version)
    return state.advance(
        COMPLETE,
        rows_read=counts.read,
        rows_written=written,
        rows_inserted=written,
        rows_updated=0,
        rows_deleted=0,
        rows_unchanged=0,
        rows_duplicate=counts.duplicate,
        rows_rejected=counts.rejected,
        rows_dropped=counts.dropped,
        fingerprint=manifest.fingerprint,
        chunks_committed=manifest.of,
        target_version=last.version,
        error_class=None,
        error_message=None,
        finished_at=utcnow(),
    )
