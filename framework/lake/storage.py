"""Files on any storage, as the lakehouse names them: listing, sizes and fingerprints.

A location is a local path (``./lakehouse``, ``/Volumes/main/raw/x``) or a URL with a
scheme (``s3a://bucket/lake``, ``abfss://c@account.dfs.core.windows.net/lake``,
``gs://bucket/x``). Spark reads and writes them through Hadoop's file systems; the
framework lists them from Python through fsspec, so that a run's plan, ``status`` and
the input fingerprints work alike everywhere, with or without a JVM. ``s3a://`` and
``s3://`` go through s3fs (``pip install ninelives[s3]``); other schemes need their
fsspec package (adlfs for ``abfss://``, gcsfs for ``gs://``).

S3 is configured once, in ``[lakehouse]`` (:class:`~framework.core.config.LakehouseConfig`):
``s3_endpoint``, ``s3_path_style`` and ``s3_region`` reach Spark's S3A
(:func:`spark_confs`), the listing (s3fs) and delta-rs (:func:`delta_rs_options`).
Credentials come from where every AWS client looks: ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, a profile or an instance role.

Example::

    storage = Storage(config.lakehouse)
    storage.join("s3a://bucket/lake", "landing", "orders")  # 's3a://bucket/lake/landing/orders'
    storage.files("s3a://bucket/lake/landing/orders/order_date=2024-01-15")
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from framework.core.config import LakehouseConfig
from framework.core.errors import ConfigError

# fsspec's protocol for a URL scheme, where the names differ.
_PROTOCOLS = {"s3a": "s3", "s3n": "s3"}
_PACKAGES = {"s3": "s3fs (pip install 'ninelives[s3]')", "abfss": "adlfs", "gs": "gcsfs"}


@dataclass(frozen=True)
class InputFile:
    """One input file of a partition, as a manifest records it.

    ``version``: what changes when the file's content does, where the storage says it
    (an object's ETag); empty on local disks, whose modification time says it."""

    path: str
    size: int
    modified_ns: int
    version: str = ""


def is_url(location: str) -> bool:
    """Whether ``location`` names a scheme (``s3a://...``) rather than a local path."""
    return "://" in location and not location.startswith("file:")


def absolute(location: str) -> str:
    """A local path made absolute (``file:`` URLs to paths); URLs as they are."""
    if is_url(location):
        return location.rstrip("/")
    if location.startswith("file:"):
        location = urlsplit(location).path
    return str(Path(location).resolve())


def join(base: str, *parts: str) -> str:
    """``base`` and ``parts`` joined with ``/``; an absolute part or URL replaces what
    came before it, as :func:`os.path.join` does."""
    location = base
    for part in parts:
        if is_url(part) or part.startswith("/"):
            location = part
        else:
            location = f"{location.rstrip('/')}/{part}" if part else location
    return location


def scheme(location: str) -> str:
    """``s3a``, ``abfss``, ...; ``file`` for a local path."""
    return urlsplit(location).scheme if is_url(location) else "file"


def fingerprint(files: Iterable[InputFile]) -> str:
    """sha256 of the files' names, sizes, versions and modification times: a late file,
    a re-export or a corrected file changes it."""
    digest = hashlib.sha256()
    for f in files:
        name = posixpath.basename(f.path.rstrip("/"))
        version = f"\0{f.version}" if f.version else ""
        digest.update(f"{name}\0{f.size}\0{f.modified_ns}{version}\n".encode())
    return f"files:{digest.hexdigest()}"


def is_data_path(path: str) -> bool:
    """Whether the file at the relative ``path`` holds data, as Spark's own listing
    tells: no part of it hidden (``.``) or a marker or scratch folder (``_SUCCESS``,
    ``_temporary/``); a Hive-style ``_x=1`` folder is data."""
    return not any(
        part.startswith(".") or (part.startswith("_") and "=" not in part)
        for part in path.strip("/").split("/")
    )


class Storage:
    """Lists locations of one lakehouse's storage, local or remote, through fsspec."""

    def __init__(self, config: LakehouseConfig | None = None) -> None:
        self.config = config or LakehouseConfig()

    def filesystem(self, location: str) -> tuple[Any, str]:
        """The fsspec file system of ``location``, and the path to give it."""
        import fsspec

        name = scheme(location)
        if name == "file":
            return fsspec.filesystem("file"), absolute(location)
        protocol = _PROTOCOLS.get(name, name)
        options = self.s3_options() if protocol == "s3" else {}
        try:
            fs = fsspec.filesystem(protocol, **options)
        except (ImportError, ValueError) as error:
            package = _PACKAGES.get(protocol, f"the fsspec package for {name}://")
            raise ConfigError(
                f"cannot list {location}: {name}:// needs {package} ({error})"
            ) from None
        return fs, fs._strip_protocol(location)

    def s3_options(self) -> dict[str, Any]:
        """s3fs's settings from ``[lakehouse] s3_*``."""
        options: dict[str, Any] = {}
        if self.config.s3_endpoint:
            options["endpoint_url"] = self.config.s3_endpoint
        if self.config.s3_region:
            options["client_kwargs"] = {"region_name": self.config.s3_region}
        if self.config.s3_path_style:
            options["config_kwargs"] = {"s3": {"addressing_style": "path"}}
        return options

    def is_dir(self, location: str) -> bool:
        fs, path = self.filesystem(location)
        return bool(fs.isdir(path))

    def exists(self, location: str) -> bool:
        fs, path = self.filesystem(location)
        return bool(fs.exists(path))

    def files(self, location: str) -> list[InputFile]:
        """The data files in the folder ``location`` (its direct children), or those the
        glob ``location`` matches (``*``, ``?``, ``[...]``, ``**``), in name order; none
        when nothing is there."""
        fs, path = self.filesystem(location)
        glob = next((i for i, c in enumerate(path) if c in "*?["), None)
        if glob is not None:
            found = fs.glob(path, detail=True)
            base = path[: path.rfind("/", 0, glob) + 1]  # the folder the pattern starts in
        elif fs.isdir(path):
            found = {e["name"]: e for e in fs.ls(path, detail=True)}
            base = path.rstrip("/") + "/"
        else:
            return []
        return [
            self._input_file(location, name, entry)
            for name, entry in sorted(found.items())
            if entry.get("type") == "file" and is_data_path(name.removeprefix(base))
        ]

    def _input_file(self, location: str, name: str, entry: dict[str, Any]) -> InputFile:
        version = str(entry.get("ETag") or entry.get("etag") or "").strip('"')
        modified = entry.get("mtime") or entry.get("LastModified") or entry.get("last_modified")
        if isinstance(modified, datetime):
            modified_ns = int(modified.timestamp() * 1_000_000_000)
        elif isinstance(modified, (int, float)):
            modified_ns = int(modified * 1_000_000_000)
        else:
            modified_ns = 0
        if scheme(location) == "file":
            # the exact nanoseconds, as os.stat gives them
            modified_ns = Path(name).stat().st_mtime_ns
            uri = name
        else:
            uri = f"{scheme(location)}://{name}"
        return InputFile(uri, int(entry.get("size") or 0), modified_ns, version)

    def has_delta_commit(self, table: str) -> bool:
        """Whether the Delta table at ``table`` has a commit file in its log."""
        fs, path = self.filesystem(join(table, "_delta_log"))
        try:
            return bool(fs.glob(posixpath.join(path, "*.json")))
        except FileNotFoundError:
            return False

    def delta_rs_options(self) -> dict[str, str]:
        """delta-rs's ``storage_options`` for this lakehouse (S3 settings)."""
        options: dict[str, str] = {}
        if self.config.s3_endpoint:
            options["AWS_ENDPOINT_URL"] = self.config.s3_endpoint
            if self.config.s3_endpoint.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        if self.config.s3_region:
            options["AWS_REGION"] = self.config.s3_region
        if self.config.s3_path_style:
            options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
        return options


def spark_confs(config: LakehouseConfig) -> dict[str, str]:
    """Spark's S3A settings for ``[lakehouse] s3_*`` (a user's own [spark] extra wins)."""
    confs: dict[str, str] = {}
    if config.s3_endpoint:
        confs["spark.hadoop.fs.s3a.endpoint"] = config.s3_endpoint
        if config.s3_endpoint.startswith("http://"):
            confs["spark.hadoop.fs.s3a.connection.ssl.enabled"] = "false"
    if config.s3_region:
        confs["spark.hadoop.fs.s3a.endpoint.region"] = config.s3_region
    if config.s3_path_style:
        confs["spark.hadoop.fs.s3a.path.style.access"] = "true"
    return confs
