"""Build or reuse the SparkSession. Nothing here runs at import time.

Where a session is active (Databricks, a notebook, a test fixture) it is reused as is:
Delta is already there. Otherwise a local Delta-enabled session is built from
:class:`~framework.core.config.SparkConfig`.

Example::

    spark = get_or_create_session(load_config())
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import SparkSession

from framework.core.config import Config, SparkConfig
from framework.core.errors import ServerUnreachableError
from framework.core.failures import describe
from framework.lake.storage import spark_confs

log = logging.getLogger(__name__)

DELTA_CONFS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"

# Local defaults that matter on a small machine: the Spark UI costs a port and a
# thread pool per session; Delta's snapshot state uses 50 partitions by default,
# which on two cores makes every small log read slower than the data it describes.
LOCAL_CONFS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.session.timeZone": "UTC",
}

# Delta tables on S3 (s3a://, and s3:// through S3A too, as on a cluster): Delta's default
# log store for S3 decides "is version N free?" by looking first, which two drivers
# writing one table can both pass, and one commit is then lost. The project's log store
# (framework/lake/jvm, in the jar folder) lets S3 decide with a conditional PUT instead.
# Only where the jar folder is used: the pip fallback has neither it nor S3A.
S3_LOG_STORE = "ninelives.storage.S3ConditionalLogStore"
S3_CONFS = {
    "spark.delta.logStore.s3a.impl": S3_LOG_STORE,
    "spark.delta.logStore.s3.impl": S3_LOG_STORE,
    "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
}


# The checkout an editable install runs from: a relative jar folder is looked for here
# too, so that ``ninelives`` works from any working directory.
PROJECT = Path(__file__).resolve().parents[2]


def delta_jars(spark_config: SparkConfig) -> list[str]:
    """Jars in the project's Delta jar folder (``NINELIVES_JARS_DIR`` wins over config),
    relative to the working directory or else to the checkout."""
    folder = Path(os.environ.get("NINELIVES_JARS_DIR") or spark_config.delta_jars_dir)
    for candidate in (folder, PROJECT / folder):
        jars = sorted(str(p.resolve()) for p in candidate.glob("*.jar"))
        if jars:
            return jars
    return []


def local_session_builder(
    spark_config: SparkConfig, defaults: Mapping[str, str] | None = None
) -> SparkSession.Builder:
    """A builder for a local Delta session; the caller calls ``getOrCreate()``.
    ``defaults``: settings of the lakehouse's storage (:func:`~framework.lake.storage.
    spark_confs`), under the config's own ``[spark] extra``."""
    builder = (
        SparkSession.builder.master(spark_config.master)
        .appName(spark_config.app_name)
        .config("spark.sql.shuffle.partitions", str(spark_config.shuffle_partitions))
        .config("spark.driver.memory", spark_config.driver_memory)
    )
    jars = delta_jars(spark_config)
    s3 = S3_CONFS if any(Path(j).name == "ninelives-storage.jar" for j in jars) else {}
    confs = {**DELTA_CONFS, **LOCAL_CONFS, **s3, **(defaults or {}), **spark_config.extra}
    if spark_config.quiet:
        # Beside the driver's own Java options from the config, not in their place, and
        # before them: a log4j2.configurationFile of the user's own comes last and wins.
        log_config = Path(__file__).with_name("log4j2.properties")
        quiet_log = f"-Dlog4j2.configurationFile={log_config.as_uri()}"
        confs[DRIVER_JAVA_OPTIONS] = f"{quiet_log} {confs.get(DRIVER_JAVA_OPTIONS, '')}".strip()
    for key, value in confs.items():
        builder = builder.config(key, value)
    if jars:
        return builder.config("spark.jars", ",".join(jars))
    from delta import configure_spark_with_delta_pip

    return configure_spark_with_delta_pip(builder)


def under_spark_submit() -> bool:
    """True when spark-submit launched this driver: it has already chosen the master,
    the jars and the driver's memory, which a local builder must not override."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def submitted_session_builder(
    spark_config: SparkConfig, defaults: Mapping[str, str] | None = None
) -> SparkSession.Builder:
    """A builder for a driver launched by spark-submit: only the SQL settings, and only
    those the command line did not give (``--conf`` and ``--name`` win).

    Delta itself comes from the cluster (Databricks) or from ``--packages`` /
    ``--jars`` on the spark-submit command line.
    """
    from pyspark import SparkConf

    submitted = dict(SparkConf().getAll())
    wanted = {
        **DELTA_CONFS,
        "spark.sql.shuffle.partitions": str(spark_config.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        **(defaults or {}),
        **spark_config.extra,
    }
    builder = SparkSession.builder
    for key, value in wanted.items():
        if key not in submitted:
            builder = builder.config(key, value)
    return builder


def get_or_create_session(config: Config) -> SparkSession:
    """The active session if there is one (Databricks, notebooks, tests); a Spark
    Connect session where ``[spark] remote`` or ``SPARK_REMOTE`` names a server; under
    spark-submit a session on the submitted master; else a new local Delta session."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    remote = config.spark.remote or os.environ.get("SPARK_REMOTE", "")
    if remote:
        return remote_session(remote)
    storage = spark_confs(config.lakehouse)
    if under_spark_submit():
        return submitted_session_builder(config.spark, storage).getOrCreate()
    builder = local_session_builder(config.spark, storage)
    if not config.spark.quiet:
        return builder.getOrCreate()
    with jvm_start_notices_hidden():
        spark = builder.getOrCreate()
    _no_traceback_when_the_jvm_dies(spark)
    return spark


def is_connect(spark: SparkSession) -> bool:
    """Whether ``spark`` is a Spark Connect client: no JVM in this process, every call a
    request to a server (Databricks standard access mode, serverless, Databricks
    Connect, ``sc://`` remotes)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


@contextmanager
def own_sessions(spark: SparkSession) -> Iterator[Callable[[], SparkSession]]:
    """Yields a maker of sessions beside ``spark``, each with SQL settings of its own,
    for threads that set some (a MERGE's transaction id and commit metadata are session
    settings). Classic: ``newSession()``, on the same SparkContext. Spark Connect has no
    ``newSession()``: a clone of ``spark``'s server-side session (``cloneSession()``),
    released when the block ends."""
    made: list[SparkSession] = []

    def new() -> SparkSession:
        if not is_connect(spark):
            return spark.newSession()
        clone = spark.cloneSession()  # type: ignore[attr-defined]
        made.append(clone)
        return clone

    try:
        yield new
    finally:
        for clone in made:
            _release(clone)


def _release(clone: SparkSession) -> None:
    """Let the server drop a cloned session and close its channel. Not ``stop()``: under
    a local Connect server (``remote("local")``) that stops the server too."""
    client = clone.client
    try:
        client.release_session()
        client.close()
    except Exception as error:  # best effort: the server drops idle sessions anyway
        log.debug("could not release a cloned Spark Connect session: %s", error)


_CACHING: weakref.WeakKeyDictionary[SparkSession, bool] = weakref.WeakKeyDictionary()


def caching_allowed(spark: SparkSession) -> bool:
    """Whether ``spark`` caches DataFrames, asked once per session by caching one row.
    Databricks serverless refuses ``persist`` (and says so in one log line here);
    classic sessions and Spark Connect on a cluster cache."""
    known = _CACHING.get(spark)
    if known is None:
        try:
            spark.range(1).persist().unpersist()
            known = True
        except Exception as error:
            log.warning(
                "warning: this session does not cache (%s); running without", describe(error)
            )
            known = False
        _CACHING[spark] = known
    return known


# A few quick retries (about 3 s in all) while a Spark Connect session is asked whether
# its server answers; the client's own (up to 10 minutes) serve the run once it has.
FIRST_CALL_RETRIES = 4


def remote_session(remote: str) -> SparkSession:
    """A Spark Connect session on ``remote`` (``sc://host:port``), whose server has
    answered: a server that is down or unknown is :class:`ServerUnreachableError` within
    seconds, not after the client's ten minutes of retries."""
    from pyspark.sql.connect.client.retries import DefaultPolicy

    spark = SparkSession.builder.remote(remote).getOrCreate()
    client = spark.client
    policies = client.get_retry_policies()
    client.set_retry_policies([DefaultPolicy(max_retries=FIRST_CALL_RETRIES)])
    # The client warns RETRIES_EXCEEDED beside its error, and again as it cannot release
    # the session: the error says it all.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            spark.version  # noqa: B018  (one request to the server)
        except Exception as error:
            spark.stop()
            raise ServerUnreachableError(
                f"cannot reach the Spark Connect server {remote} ([spark] remote or SPARK_REMOTE):"
                f" {_grpc_status(error) or describe(error)}"
            ) from None
        finally:
            client.set_retry_policies(policies)
    return spark


_GRPC_DETAILS = re.compile(r'details = "([^"]*)"')


def _grpc_status(error: BaseException) -> str | None:
    """``UNAVAILABLE: failed to connect to all addresses; ...`` of a gRPC error's text."""
    code = getattr(error, "getGrpcStatusCode", lambda: None)()
    details = _GRPC_DETAILS.search(str(error))
    if code is None or details is None:
        return None
    return f"{code.name}: {details.group(1)}"


def _no_traceback_when_the_jvm_dies(spark: SparkSession) -> None:
    """PySpark's accumulator server (a :mod:`socketserver`) prints a traceback when the
    JVM's connection to it ends mid-read (``EOFError``); the run says that the driver
    died in one line of its own. Other errors of the server stay visible, in one line."""
    server = getattr(spark.sparkContext, "_accumulatorServer", None)
    if server is None:
        return

    def handle_error(request: object, client_address: object) -> None:
        import sys

        error = sys.exc_info()[1]
        if not isinstance(error, (EOFError, ConnectionError)):
            log.warning("warning: accumulator update failed: %r", error)

    server.handle_error = handle_error


def driver_alive(spark: SparkSession) -> bool:
    """Whether the session's driver still works (its JVM may have died under us).

    A driver that wrote a fatal error, or whose SparkContext is stopped, counts as dead
    even while its JVM still answers: Spark exits the JVM on OutOfMemoryError, but runs
    its shutdown hooks first, and calls made meanwhile fail with unrelated errors.
    """
    if _fatal_line is not None:
        return False
    try:
        context = getattr(spark, "_sc", None)  # a classic session's; Spark Connect has none
        if context is not None:
            return not context._jsc.sc().isStopped()
        spark.conf.get("spark.app.name")
    except Exception:
        return False
    return True


# Printed by the JVM itself on every start, before any log configuration applies:
# Spark's launcher always adds the incubating Vector API module.
START_NOTICES = ("WARNING: Using incubator modules:",)
# What a JVM that is about to die says last (Spark exits the JVM on a fatal error).
_FATAL = re.compile(r"^java\.lang\.(OutOfMemoryError|StackOverflowError|InternalError)\b")
_fatal_line: str | None = None


def jvm_fatal_error(wait: float = 0.0) -> str | None:
    """The last fatal error line the local session's JVM wrote on stderr, if any, such as
    ``java.lang.OutOfMemoryError: Java heap space``; seen only while quiet (the default).
    ``wait``: seconds to give the thread that reads the JVM's stderr to see it."""
    deadline = time.monotonic() + wait
    while _fatal_line is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return _fatal_line


@contextmanager
def jvm_start_notices_hidden() -> Iterator[None]:
    """A JVM started in this block writes its stderr through a pipe, and a thread passes
    every line but :data:`START_NOTICES` on to this process's stderr, for the JVM's
    whole life. The pipe is the only way: the JVM prints them before reading any option.
    """
    import sys

    sys.stderr.flush()
    stderr = os.dup(2)
    read_end, write_end = os.pipe()
    threading.Thread(
        target=_pass_on, args=(read_end, stderr), name="ninelives-jvm-stderr", daemon=True
    ).start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(stderr, 2)


def _pass_on(read_end: int, stderr: int) -> None:
    global _fatal_line
    with os.fdopen(read_end, "rb") as lines:
        for line in lines:
            text = line.decode(errors="replace")
            if _FATAL.match(text):
                _fatal_line = text.strip()
            if not text.startswith(START_NOTICES):
                os.write(stderr, line)
