"""Fixtures for Shoal's end-to-end tests.

One real `shoal server` per test session (on a free loopback port, with a temporary data
dir), real clients against it: boto3, the AWS CLI, the `shoal` CLI and raw HTTP.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

import support
from support import SHOAL_BIN, ShoalServer


def _client(endpoint: str, **config):
    return boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name=support.REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 0}, read_timeout=60, connect_timeout=5,
                      **config),
    )


# tests/e2e/node_modules (npm ci) holds aws-lambda-ric, which the provided-node-ric fixture
# runs from there: isolated environments see only what the server exposes to them (read-only,
# at the same path). Harmless when environments are not isolated.
NODE_MODULES = support.REPO / "tests" / "e2e" / "node_modules"


def _session_flags() -> list[str]:
    return ["--sandbox-expose", str(NODE_MODULES)] if NODE_MODULES.is_dir() else []


def _start_server(tmp: Path, keep_alive: str = "30s") -> ShoalServer:
    return support.started(support.ShoalServer(data_dir=tmp / "data", log_dir=tmp / "logs",
                                               keep_alive=keep_alive,
                                               extra_args=_session_flags()))


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The session's shoal server: `.endpoint`, `.data_dir`, `.port`, `.restart()`."""
    if not SHOAL_BIN.exists():
        pytest.fail(f"shoal binary not found at {SHOAL_BIN}; build it or set SHOAL_BIN",
                    pytrace=False)
    srv = _start_server(tmp_path_factory.mktemp("shoal"))
    yield srv
    srv.stop()


@pytest.fixture
def own_server(tmp_path):
    """A server of this test's own (for tests that restart it)."""
    srv = _start_server(tmp_path)
    yield srv
    srv.stop()


@pytest.fixture
def server_factory(tmp_path):
    """server_factory(keep_alive="2s") -> a started server of this test's own."""
    started: list[ShoalServer] = []

    def start(keep_alive: str = "30s") -> ShoalServer:
        srv = _start_server(tmp_path / f"srv{len(started)}", keep_alive=keep_alive)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def endpoint(server) -> str:
    return server.endpoint


@pytest.fixture(scope="session")
def lam(server):
    """boto3 Lambda client against the session server."""
    return _client(server.endpoint)


@pytest.fixture(scope="session")
def lam_nv(server):
    """The same, without botocore's client-side parameter validation, so that values
    outside the model's ranges reach the server (which must reject them itself)."""
    return _client(server.endpoint, parameter_validation=False)


@pytest.fixture(scope="session")
def client_for():
    """Build a boto3 Lambda client for another server (e.g. `own_server`)."""
    return lambda srv, **config: _client(srv.endpoint, **config)


@pytest.fixture(scope="session")
def zip_dir():
    """zip_dir(path) -> bytes: zip a folder in memory, keeping the executable bit."""
    return support.zip_dir


@pytest.fixture(scope="session")
def unique_name():
    return support.unique_name


@pytest.fixture(scope="session")
def cli(server):
    """cli(*args) -> CompletedProcess of `shoal <args> --endpoint <endpoint>`."""

    def run(*args: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
        cmd = [str(SHOAL_BIN), *args, "--endpoint", server.endpoint]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=check, cwd=str(support.REPO), stdin=subprocess.DEVNULL)

    return run


def aws_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": support.REGION,
        "AWS_PAGER": "",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_RETRY_MODE": "standard",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/shoal-e2e-aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/shoal-e2e-aws-credentials",
    })
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    return env


@pytest.fixture(scope="session")
def aws(server):
    """aws(*args) -> CompletedProcess of `aws lambda <args> --endpoint-url ... --region us-east-1`."""

    def run(*args: str, timeout: float = 120, cwd: str | None = None) -> subprocess.CompletedProcess:
        cmd = ["aws", "lambda", *args, "--endpoint-url", server.endpoint,
               "--region", support.REGION, "--output", "json"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=aws_env(), cwd=cwd, stdin=subprocess.DEVNULL)

    return run


@pytest.fixture
def make_fn(lam):
    """make_fn(zip_bytes, runtime=..., handler=..., name=None, **extra) -> FunctionConfiguration.

    Creates a function on the session server and deletes it after the test (which also lets
    the server retire its environments, keeping the 2-core machine free).
    """
    maker = support.FunctionMaker(lam)
    yield maker.create
    maker.delete_all()


def fixture_dir(name: str) -> Path:
    path = support.FIXTURES / name
    if not path.is_dir():
        pytest.fail(f"test fixture function missing: {path}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def fixture_zip():
    """fixture_zip('py-echo') -> zip bytes of tests/fixtures/functions/py-echo."""
    cache: dict[str, bytes] = {}

    def get(name: str) -> bytes:
        if name not in cache:
            cache[name] = support.zip_dir(fixture_dir(name))
        return cache[name]

    return get


@pytest.fixture
def server_with(tmp_path):
    """server_with(keep_alive="2s", concurrency_limit=4, memory_capacity=512, env={...})
    -> a started server of this test's own; each keyword becomes a `--flag value` of
    `shoal server` (underscores as dashes), `env` adds environment variables."""
    started: list[ShoalServer] = []

    def start(keep_alive: str = "30s", env: dict[str, str] | None = None, **settings):
        srv = support.started(support.ShoalServer(
            data_dir=tmp_path / f"cfg{len(started)}" / "data",
            log_dir=tmp_path / f"cfg{len(started)}" / "logs",
            keep_alive=keep_alive, extra_args=support.settings_to_flags(settings),
            extra_env=env))
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def runtime_sdks(tmp_path_factory) -> Path:
    """The runtime SDKs `shoal sdk install` puts in a data folder (from PyPI and npm), once
    per test process: a `runtimes/sdk` folder to copy into a server's data folder
    (`support.with_sdks`)."""
    data = tmp_path_factory.mktemp("sdk-install") / "data"
    out = subprocess.run([str(SHOAL_BIN), "sdk", "install", "--data-dir", str(data)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"shoal sdk install failed:\n{out.stdout}\n{out.stderr}"
    assert "installed boto3" in out.stdout and "@aws-sdk/client-sqs" in out.stdout, out.stdout
    return data / "runtimes" / "sdk"
