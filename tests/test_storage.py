"""Locations, listing and fingerprints of framework.lake.storage on the local disk (the
same calls on s3a:// run in tests/test_s3_lakehouse.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from framework.core.config import LakehouseConfig
from framework.core.errors import ConfigError
from framework.lake.storage import (
    InputFile,
    Storage,
    absolute,
    fingerprint,
    is_url,
    join,
    scheme,
    spark_confs,
)
from framework.lake.tables import Lakehouse


def test_locations_local_and_urls() -> None:
    assert is_url("s3a://bucket/lake") and not is_url("/data/lake")
    assert not is_url("file:///data/lake")
    assert absolute("file:///data/lake") == "/data/lake"
    assert absolute("s3a://bucket/lake/") == "s3a://bucket/lake"
    assert absolute("rel") == str(Path("rel").resolve())
    assert join("s3a://b/lake", "silver", "orders") == "s3a://b/lake/silver/orders"
    assert join("s3a://b/lake", "/Volumes/main/raw", "x") == "/Volumes/main/raw/x"
    assert join("/lake", "abfss://c@a.dfs.core.windows.net/in") == (
        "abfss://c@a.dfs.core.windows.net/in"
    )
    assert scheme("s3a://b/x") == "s3a" and scheme("/x") == "file"


def test_a_lakehouse_on_s3_keeps_its_urls() -> None:
    lake = Lakehouse(LakehouseConfig(root="s3a://bucket/lake/", landing="landing"))
    assert lake.root == "s3a://bucket/lake"
    assert lake.table("silver.orders").path == "s3a://bucket/lake/silver/orders"
    assert lake.landing_path("orders", "d=1") == "s3a://bucket/lake/landing/orders/d=1"
    elsewhere = Lakehouse(LakehouseConfig(root="s3a://bucket/lake", landing="s3a://in/raw"))
    assert elsewhere.landing_path("orders") == "s3a://in/raw/orders"


def test_listing_keeps_data_files_in_name_order(tmp_path: Path) -> None:
    for name in ("b.json", "a.json", "_SUCCESS", ".a.json.crc"):
        (tmp_path / name).write_text(name)
    (tmp_path / "sub").mkdir()
    storage = Storage()
    files = storage.files(str(tmp_path))
    assert [Path(f.path).name for f in files] == ["a.json", "b.json"]
    assert files[0] == InputFile(
        str(tmp_path / "a.json"), 6, (tmp_path / "a.json").stat().st_mtime_ns
    )
    assert [Path(f.path).name for f in storage.files(f"{tmp_path}/b*")] == ["b.json"]
    assert storage.files(str(tmp_path / "missing")) == []
    assert storage.files(f"{tmp_path}/missing/*.json") == []


def test_a_local_fingerprint_hashes_what_it_always_did(tmp_path: Path) -> None:
    """Ledgers hold fingerprints of earlier runs: the same files must give the same
    digest, or every complete partition would turn stale."""
    path = tmp_path / "part-0.json"
    path.write_text("{}\n")
    stat = os.stat(path)
    before = hashlib.sha256(f"part-0.json\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    assert fingerprint(Storage().files(str(tmp_path))) == f"files:{before.hexdigest()}"
    versioned = InputFile("s3a://b/part-0.json", stat.st_size, stat.st_mtime_ns, "etag1")
    assert fingerprint([versioned]) != fingerprint([versioned.__class__("x/part-0.json", 3, 0)])
    assert fingerprint([versioned]) != fingerprint(
        [InputFile(versioned.path, versioned.size, versioned.modified_ns, "etag2")]
    )


def test_s3_settings_reach_spark_s3fs_and_delta_rs() -> None:
    config = LakehouseConfig(
        root="s3a://b/lake",
        s3_endpoint="http://127.0.0.1:9000",
        s3_path_style=True,
        s3_region="eu-west-1",
    )
    assert spark_confs(config) == {
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1",
        "spark.hadoop.fs.s3a.path.style.access": "true",
    }
    storage = Storage(config)
    assert storage.s3_options() == {
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
        "config_kwargs": {"s3": {"addressing_style": "path"}},
    }
    assert storage.delta_rs_options() == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "eu-west-1",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
    }
    assert spark_confs(LakehouseConfig()) == {}


def test_a_scheme_without_its_package_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"cannot list nope://x/y: nope:// needs"):
        Storage().files("nope://x/y")


def test_a_recursive_glob_skips_scratch_and_hidden_folders_as_spark_does(tmp_path: Path) -> None:
    for name in (
        "a/part-0.parquet",
        "a/_temporary/0/part-9.parquet",
        "a/.hidden/part-8.parquet",
        "a/_region=eu/part-1.parquet",
        "a/x/_SUCCESS",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    found = Storage().files(f"{tmp_path}/a/**/*")
    assert [Path(f.path).relative_to(tmp_path).as_posix() for f in found] == [
        "a/_region=eu/part-1.parquet",
        "a/part-0.parquet",
    ]
