"""Frozen, typed configuration loaded from a TOML file.

The files in ``conf/`` are the documentation of every key. An unknown key or a value of
the wrong type is a :class:`ConfigError` that names the key and the file, raised before
any Spark session exists.

Example::

    config = load_config("conf/local.toml", lakehouse="/tmp/lh")
    config.lakehouse.root   # '/tmp/lh'
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framework.core.errors import ConfigError
from framework.core.names import IDENTIFIER

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class LakehouseConfig:
    """Where tables live.

    ``root`` is a directory or an object-store URL (``s3a://bucket/lake``) and table
    ``schema.name`` is the Delta table at ``<root>/<schema>/<name>``. With ``catalog`` set
    (Databricks Unity Catalog), tables are the three-part names
    ``<catalog>.<schema>.<name>`` and ``root`` is unused.
    """

    root: str = "./lakehouse"
    catalog: str = ""
    framework_schema: str = "_ninelives"
    landing: str = "landing"
    """Root of the landing files, relative to ``root`` unless absolute (a UC volume path)."""
    s3_endpoint: str = ""
    """S3 (``s3a://``) only: an endpoint other than AWS's, e.g. ``http://127.0.0.1:9000``."""
    s3_path_style: bool = False
    """S3 only: ``https://endpoint/bucket/key`` addressing (most S3-compatible stores)."""
    s3_region: str = ""
    """S3 only: the buckets' region, where the endpoint needs one."""


@dataclass(frozen=True)
class SparkConfig:
    """How a local session is built. Ignored where a session is already active."""

    master: str = "local[*]"
    app_name: str = "ninelives"
    shuffle_partitions: int = 4
    delta_jars_dir: str = ".cache/jars"
    """Folder of Delta jars filled by ``make setup``; when it holds no jar the session
    asks ``configure_spark_with_delta_pip`` to resolve them from Maven instead."""
    driver_memory: str = "2g"
    quiet: bool = True
    """Hide the JVM's start-up notices and Spark's warnings; errors still show.
    ``ninelives --verbose`` (or ``quiet = false``) shows Spark's log as Spark sets it."""
    extra: Mapping[str, str] = field(default_factory=dict)
    remote: str = ""
    """A Spark Connect server to run through (``sc://host:15002``) instead of a local
    session; ``SPARK_REMOTE`` in the environment does the same. The server brings Delta
    and the storage settings: ``master``, ``extra`` and the jars are not used."""


@dataclass(frozen=True)
class RunConfig:
    fail_fast: bool = False
    lease_seconds: int = 600
    """How long a partition's lease lasts without renewal; renewed every third of it."""
    include_stale: bool = False
    """Every run also reprocesses complete partitions whose input changed (late data)."""
    unit_size: str = "1GB"
    """A work unit's input at most: consecutive dates are processed in one Spark pass
    and one commit per table up to this many bytes of source files (``512MB``, ``2GB``)."""
    max_partitions_per_unit: int = 31
    """A work unit's dates at most (1: every date is a unit of its own)."""

    @property
    def unit_bytes(self) -> int:
        return parse_size(self.unit_size)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?B?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes of a size such as ``512MB``, ``2GB`` or ``1048576`` (binary multiples)."""
    found = _SIZE.match(str(text))
    if not found:
        raise ValueError(f"not a size: {text!r} (e.g. 512MB, 2GB)")
    number, unit = found.groups()
    size = int(float(number) * _UNITS[unit.upper().rstrip("B")])
    if size < 1:
        raise ValueError(f"not a size: {text!r} (must be at least 1 byte)")
    return size


@dataclass(frozen=True)
class Config:
    lakehouse: LakehouseConfig = field(default_factory=LakehouseConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    run: RunConfig = field(default_factory=RunConfig)
    source: str = "<defaults>"
    """The file this config came from, for error messages."""

    def with_lakehouse_root(self, root: str) -> Config:
        return self.with_lakehouse(root=root)

    def with_lakehouse(self, **changes: Any) -> Config:
        return dataclasses.replace(self, lakehouse=dataclasses.replace(self.lakehouse, **changes))

    def with_spark(self, **changes: Any) -> Config:
        return dataclasses.replace(self, spark=dataclasses.replace(self.spark, **changes))


_SECTIONS: dict[str, type] = {
    "lakehouse": LakehouseConfig,
    "spark": SparkConfig,
    "run": RunConfig,
}


def _build_section(cls: type, values: Mapping[str, Any], section: str, source: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"unknown config key '{section}.{key}' in {source}; "
                f"expected one of: {', '.join(sorted(fields))}"
            )
        default = fields[key].default
        expected: type = dict if default is dataclasses.MISSING else type(default)
        if expected is bool and not isinstance(value, bool):
            raise ConfigError(f"config key '{section}.{key}' in {source} must be true or false")
        if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"config key '{section}.{key}' in {source} must be an integer")
        if expected is str and not isinstance(value, str):
            raise ConfigError(f"config key '{section}.{key}' in {source} must be a string")
        if expected is dict:
            if not isinstance(value, dict) or not all(
                isinstance(v, (str, int, float, bool)) for v in value.values()
            ):
                raise ConfigError(
                    f"config key '{section}.{key}' in {source} must be a table of plain values"
                )
            value = {
                str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()
            }
        kwargs[key] = value
    return cls(**kwargs)


def config_from_mapping(data: Mapping[str, Any], source: str = "<mapping>") -> Config:
    """Build a :class:`Config` from parsed TOML, rejecting unknown keys."""
    sections: dict[str, Any] = {}
    for name, values in data.items():
        if name not in _SECTIONS:
            raise ConfigError(
                f"unknown config section '{name}' in {source}; "
                f"expected one of: {', '.join(sorted(_SECTIONS))}"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"config section '{name}' in {source} must be a table")
        sections[name] = _build_section(_SECTIONS[name], values, name, source)
    config = Config(**sections, source=source)
    if config.spark.shuffle_partitions < 1:
        raise ConfigError(f"config key 'spark.shuffle_partitions' in {source} must be >= 1")
    for key in ("catalog", "framework_schema"):
        value = getattr(config.lakehouse, key)
        if value and not IDENTIFIER.match(value):
            raise ConfigError(
                f"config key 'lakehouse.{key}' in {source} is not a plain name: {value!r} "
                "(letters, digits and underscores)"
            )
    if config.run.lease_seconds < 3:
        raise ConfigError(f"config key 'run.lease_seconds' in {source} must be >= 3")
    try:
        parse_size(config.run.unit_size)
    except ValueError as e:
        raise ConfigError(f"config key 'run.unit_size' in {source}: {e}") from None
    if config.run.max_partitions_per_unit < 1:
        raise ConfigError(f"config key 'run.max_partitions_per_unit' in {source} must be >= 1")
    return config


def load_config(path: str | Path | None = None, *, lakehouse: str | None = None) -> Config:
    """Load ``path`` (or the built-in defaults, which equal ``conf/local.toml``).

    :param path: a TOML file; ``None`` for the defaults.
    :param lakehouse: overrides ``lakehouse.root`` (the CLI's ``--lakehouse``).
    """
    if path is None:
        config = Config()
    else:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read config file {p}: {e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"invalid TOML in {p}: {e}") from None
        config = config_from_mapping(data, source=str(p))
    if lakehouse:
        config = config.with_lakehouse_root(lakehouse)
    return config
