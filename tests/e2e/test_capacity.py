"""Capacity on the default settings: memory is admitted by declared MemorySize against
`--memory-capacity auto` (four times the host's memory), the host's real memory is guarded
by `--memory-floor`, and a backlog of async events runs as fast as its function can get
environments, whatever its memory size.

The no-op function is the `shoal` binary itself (its built-in minimal Runtime API loop,
`SHOAL_NOOP_RUNTIME=1`), so that the figures are the platform's, not an interpreter's.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.config import Config

import support
from support import ROLE, SHOAL_BIN

NOOP_ENV = {"Variables": {"SHOAL_NOOP_RUNTIME": "1"}}


@pytest.fixture(scope="module")
def noop_zip() -> bytes:
    return support.zip_files({"bootstrap": (SHOAL_BIN.read_bytes(), 0o755)})


def client(srv, pool: int = 32):
    return boto3.client(
        "lambda", endpoint_url=srv.endpoint, region_name=support.REGION,
        aws_access_key_id="x", aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 0}, read_timeout=60, connect_timeout=5,
                      max_pool_connections=pool))


def create_noop(lam, zip_bytes: bytes, memory: int) -> str:
    name = support.unique_name("noop")
    lam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="bootstrap",
                        Role=ROLE, Code={"ZipFile": zip_bytes}, MemorySize=memory,
                        Environment=NOOP_ENV)
    return name


def test_16_concurrent_invokes_of_a_2048_mb_function_run_on_the_default_settings(
        server_with, noop_zip):
    srv = server_with()
    lam = client(srv)
    name = create_noop(lam, noop_zip, 2048)
    barrier = threading.Barrier(16)

    def call(_):
        barrier.wait()
        out = lam.invoke(FunctionName=name, Payload=b'{"sleep_ms": 500}')
        return out["StatusCode"], out.get("FunctionError")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    assert results == [(200, None)] * 16
    assert support.metric(srv.endpoint, "shoal_throttles_total") == 0


def test_below_the_memory_floor_a_cold_start_is_throttled(server_with, noop_zip):
    # A floor above any host's memory: the host is always "low".
    srv = server_with(memory_floor=100_000_000)
    lam = client(srv)
    name = create_noop(lam, noop_zip, 128)
    r = support.invoke_http(srv.endpoint, name, {})
    assert r.status == 429, r
    body = r.json()
    assert body["Reason"] == "ConcurrentInvocationLimitExceeded"
    assert "memory" in body["message"]


def test_a_backlog_of_a_2048_mb_function_drains_once_the_senders_stop(server_with, noop_zip):
    srv = server_with()
    lam = client(srv)
    name = create_noop(lam, noop_zip, 2048)
    # The backlog builds while the function is held, as when senders outpace it.
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    events = 5000
    body = b"{}"

    def send(n):
        for _ in range(n):
            r = support.http(srv.endpoint, "POST",
                             f"/2015-03-31/functions/{name}/invocations", body,
                             {"X-Amz-Invocation-Type": "Event"})
            assert r.status == 202, r
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(send, [events // 16] * 16))
    sent = events // 16 * 16

    def pending():
        return support.http(srv.endpoint, "GET",
                            f"/shoal/v1/functions/{name}/async-events").json()["pending"]

    assert pending() == sent
    lam.delete_function_concurrency(FunctionName=name)
    start = time.monotonic()
    while pending():
        assert time.monotonic() - start < 60, f"{pending()} of {sent} events left after 60 s"
        time.sleep(0.02)
    rate = sent / (time.monotonic() - start)
    print(f"drained {sent} events in {time.monotonic() - start:.2f} s: {rate:.0f}/s")
    # Far above the tens per second a throttled backlog used to drain at; the benchmark
    # (`shoal bench`) reports the rate itself.
    assert rate > 1000, rate
    # Each event ran once, without an error, and none was dropped.
    assert support.metric(srv.endpoint, "shoal_invocations_total", function=name) == sent
    assert support.metric(srv.endpoint, "shoal_invocation_errors_total", function=name) == 0
    assert support.metric(srv.endpoint, "shoal_async_events_dropped_total") == 0
