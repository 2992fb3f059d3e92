"""An S3 emulator for the tests: moto's S3 server as a real process on 127.0.0.1.

It answers S3's REST API (conditional PUTs with ``If-None-Match: *`` included, refused
with 412) on a free port, accepts any credentials and keeps everything in memory, so a
test run leaves nothing behind. Buckets are made on demand; their names must be
DNS-like (``lake-one``, not ``b1``).
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import free_port

ACCESS_KEY = "ninelives-test"
SECRET_KEY = "ninelives-test-secret"
REGION = "us-east-1"


class S3Emulator:
    """``moto_server`` started on 127.0.0.1; :meth:`stop` ends it."""

    def __init__(self, start_timeout: float = 30.0) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        server = Path(sys.executable).with_name("moto_server")
        self.process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.buckets: set[str] = set()
        self._client: Any = None
        self._wait_until_it_answers(start_timeout)

    def _wait_until_it_answers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(self.endpoint, timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError) as e:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not answer on {self.endpoint}") from e
                time.sleep(0.1)

    @property
    def client(self) -> Any:
        """A boto3 S3 client of the emulator, for looking at what a test wrote."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=REGION,
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
            )
        return self._client

    def bucket(self, name: str) -> str:
        """The URL ``s3a://name`` of a bucket, made if it is new."""
        if name not in self.buckets:
            self.client.create_bucket(Bucket=name)
            self.buckets.add(name)
        return f"s3a://{name}"

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The object keys under ``prefix`` in ``bucket``."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    @property
    def hadoop_confs(self) -> dict[str, str]:
        """The ``spark.hadoop.*`` settings that point S3A at the emulator."""
        return {f"spark.hadoop.{k}": v for k, v in self.s3a_settings.items()}

    @property
    def s3a_settings(self) -> dict[str, str]:
        """The same as Hadoop settings, for a running session's Hadoop configuration."""
        return {
            "fs.s3a.endpoint": self.endpoint,
            "fs.s3a.endpoint.region": REGION,
            "fs.s3a.path.style.access": "true",
            "fs.s3a.connection.ssl.enabled": "false",
            "fs.s3a.access.key": ACCESS_KEY,
            "fs.s3a.secret.key": SECRET_KEY,
            "fs.s3a.aws.credentials.provider": (
                "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
            ),
        }

    @property
    def env(self) -> dict[str, str]:
        """AWS_* variables for Python-side clients (boto3, s3fs)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
