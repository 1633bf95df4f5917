"""Shared fixtures: an isolated stat cache per test, and a real S3 API server on 127.0.0.1
(moto in server mode, as s3fs's own suite does) for the S3 tests."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from clirunner import run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ARTIFACTKIT_CACHE_DIR", str(tmp_path / ".ak-cache"))
    monkeypatch.delenv("ARTIFACTKIT_STORE", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")


def _quiet_moto() -> None:
    """moto's server logs every request through werkzeug; failures are what a reader needs."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 for the whole session; yields its endpoint URL."""
    pytest.importorskip("moto.server")
    from moto.server import ThreadedMotoServer

    _quiet_moto()
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


class MotoServer:
    """A moto S3 server of one's own, to stop and start again mid-test. moto keeps its buckets in
    the process, so a restart on the same port finds them as they were."""

    def __init__(self):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = None

    def start(self) -> "MotoServer":
        from moto.server import ThreadedMotoServer

        _quiet_moto()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@pytest.fixture
def own_s3_server():
    """A dedicated moto server (for fault tests); stopped at the end whatever happened."""
    pytest.importorskip("moto.server")
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Standard AWS variables pointing at the local server, as a user would set them."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_server


@pytest.fixture
def s3_bucket(s3_env):
    """A fresh bucket; yields its s3:// URI."""
    import boto3

    name = f"ak-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_env).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture
def cli():
    return run_cli
