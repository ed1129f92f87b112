"""A function turned against its own Runtime API, and local processes against another's.

- Connections: a function opening thousands of connections gets at most a handful
  served (the rest are closed at once); the server's file descriptors, the API and other
  functions are unaffected; a server out of file descriptors does not spin on accept.
- Memory: huge or unfinished request heads cost the server little and are dropped.
- Unisolated mode (`--isolation none`): the Runtime API listens on the host's loopback,
  where any process could connect; only the environment's own processes are served.

Each test uses a server of its own (its file descriptors, memory and CPU are measured).
"""

from __future__ import annotations

import http.client
import os
import resource
import threading
import time

import pytest

import support
from support import invoke, py_zip

# The cap of connections one environment's Runtime API serves at once
# (RUNTIME_API_MAX_CONNECTIONS in src/environment/mod.rs).
CONNECTION_CAP = 16

# A function that turns against its own Runtime API. Modes:
#   flood: open `attempts` connections, hold them `hold` s, report how many the server
#          kept open and how many it closed;
#   heads: `big` connections each sending an unfinished head of `big_bytes` bytes, then
#          `slow` connections sending a small unfinished head and nothing more; reports
#          how long the server took to close the slow ones.
HOSTILE = r'''
import os, resource, select, socket, time

def _api():
    host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
    return host, int(port)

def _closed(sock):
    """True when the server closed the connection (EOF or reset), after any answer it
    sent (a 431 for a head too large)."""
    try:
        sock.setblocking(False)
        while sock.recv(65536):
            pass
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True

def flood(event):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks, failed = [], 0
    for _ in range(event["attempts"]):
        try:
            socks.append(socket.create_connection(_api(), timeout=1))
        except OSError:
            failed += 1
    time.sleep(event.get("settle", 1.0))
    open_before_hold = sum(1 for s in socks if not _closed(s))
    time.sleep(event.get("hold", 0))
    still_open = sum(1 for s in socks if not _closed(s))
    for s in socks:
        s.close()
    return {"connected": len(socks), "failed": failed, "open": open_before_hold,
            "open_after_hold": still_open}

def heads(event):
    head = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\nX-Big: "
    chunk = b"a" * 65536
    big, sent_all = [], 0
    for _ in range(event["big"]):
        try:
            s = socket.create_connection(_api(), timeout=2)
        except OSError:
            continue
        big.append(s)
        try:
            s.sendall(head)
            sent = 0
            while sent < event["big_bytes"]:
                s.sendall(chunk[: event["big_bytes"] - sent])
                sent += len(chunk)
            sent_all += 1
        except OSError:
            pass
    time.sleep(event.get("hold", 0))
    big_open = sum(1 for s in big if not _closed(s))
    for s in big:
        s.close()
    time.sleep(0.5)
    slow = []
    for _ in range(event["slow"]):
        s = socket.create_connection(_api(), timeout=2)
        s.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    start = time.monotonic()
    closed_after = [None] * len(slow)
    while time.monotonic() - start < event["wait"] and None in closed_after:
        for i, s in enumerate(slow):
            if closed_after[i] is None and _closed(s):
                closed_after[i] = round(time.monotonic() - start, 2)
        time.sleep(0.1)
    for s in slow:
        s.close()
    return {"big": len(big), "big_sent_in_full": sent_all, "big_open": big_open,
            "slow_closed_after": closed_after}

def handler(event, context):
    return {"flood": flood, "heads": heads}[event["mode"]](event)
'''


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


class Sampler:
    """Samples probe() every `interval` s on a thread while the with-block runs."""

    def __init__(self, probe, interval: float = 0.05):
        self.probe, self.interval, self.values = probe, interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.values.append(self.probe())
            except OSError:
                pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def in_background(call):
    """Runs call() on a thread; returns a function that waits for its result."""
    box: dict = {}

    def run():
        try:
            box["value"] = call()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result(timeout: float = 90):
        thread.join(timeout)
        assert not thread.is_alive(), "the background call did not finish"
        if "error" in box:
            raise box["error"]
        return box["value"]

    return result


@pytest.fixture
def private(server_with, client_for):
    """private(**settings) -> (server, boto3 client, FunctionMaker) on a server of its own."""
    makers = []

    def start(**settings):
        srv = server_with(**settings)
        lam = client_for(srv)
        maker = support.FunctionMaker(lam, prefix="hostile")
        makers.append(maker)
        return srv, lam, maker

    yield start
    for maker in makers:
        maker.delete_all()


def hostile_fn(maker, **extra) -> str:
    return maker.create(py_zip(HOSTILE), MemorySize=512, Timeout=60, **extra)["FunctionName"]


def test_connection_flood_is_capped_and_harms_no_one(private, fixture_zip):
    srv, lam, maker = private()
    pid = srv.proc.pid
    name = hostile_fn(maker)
    other = maker.create(fixture_zip("py-echo"))["FunctionName"]
    warm = invoke(lam, name, {"mode": "flood", "attempts": 0})
    assert "FunctionError" not in warm, warm["raw"]
    baseline_fds = fd_count(pid)

    with Sampler(lambda: fd_count(pid)) as fds:
        flood = in_background(lambda: invoke(lam, name, {"mode": "flood", "attempts": 5000,
                                                         "settle": 1.0, "hold": 3.0}))
        time.sleep(1.5)  # the function is connecting or holding its connections
        t0 = time.monotonic()
        assert support.health_ok(srv.endpoint)
        health_s = time.monotonic() - t0
        t0 = time.monotonic()
        echoed = invoke(lam, other, {"during": "flood"})
        other_s = time.monotonic() - t0
        resp = flood()

    assert "FunctionError" not in resp, resp["raw"]
    report = resp["json"]
    assert report["connected"] + report["failed"] == 5000, report
    # Beyond the cap (one slot is the runtime's own connection) connections are closed.
    assert report["open"] <= CONNECTION_CAP, report
    assert report["open_after_hold"] <= CONNECTION_CAP, report
    assert report["connected"] - report["open"] >= 4000, report
    # The API and another function answered promptly meanwhile.
    assert health_s < 1.0, health_s
    assert "FunctionError" not in echoed, echoed["raw"]
    assert other_s < 10.0, other_s
    # The server's file descriptors stayed bounded (the other function's environment
    # and the API connections take a few).
    assert max(fds.values) - baseline_fds < 100, (baseline_fds, max(fds.values))
    # And it is idle again afterwards.
    before = cpu_seconds(pid)
    time.sleep(2)
    assert cpu_seconds(pid) - before < 0.3


def test_out_of_file_descriptors_the_accept_loop_does_not_spin(private):
    # A server left with a few file descriptors: the function's connections take them all,
    # so accepting its further connections fails (EMFILE) for as long as it holds them.
    # (100 connections: fewer than the listen backlog, so that none waits to connect.)
    srv, lam, maker = private(spare_sandboxes=0)
    pid = srv.proc.pid
    name = hostile_fn(maker)
    warm = invoke(lam, name, {"mode": "flood", "attempts": 0})
    assert "FunctionError" not in warm, warm["raw"]
    time.sleep(0.5)
    limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    room = fd_count(pid) + 6
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (room, limits[1]))
    try:
        flood = in_background(lambda: invoke(lam, name, {"mode": "flood", "attempts": 100,
                                                         "settle": 0.5, "hold": 4.0}))
        time.sleep(1.5)  # connected; held for 4 s while accept keeps failing
        before = cpu_seconds(pid)
        time.sleep(2.0)
        spent = cpu_seconds(pid) - before
        fds_at_limit = fd_count(pid)
        resp = flood()
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
    assert fds_at_limit >= room - 1, (fds_at_limit, room)  # the limit was indeed reached
    assert spent < 0.3, f"the server used {spent:.2f} s of CPU in 2 s while out of fds"
    assert "FunctionError" not in resp, resp["raw"]
    assert support.health_ok(srv.endpoint)
    assert "FunctionError" not in invoke(lam, name, {"mode": "flood", "attempts": 0})


def test_huge_and_unfinished_request_heads_cost_little_and_are_dropped(private):
    srv, lam, maker = private()
    pid = srv.proc.pid
    name = hostile_fn(maker)
    warm = invoke(lam, name, {"mode": "flood", "attempts": 0})
    assert "FunctionError" not in warm, warm["raw"]
    baseline = rss_mb(pid)

    with Sampler(lambda: rss_mb(pid)) as rss:
        resp = invoke(lam, name, {"mode": "heads", "big": 600, "big_bytes": 1_900_000,
                                  "hold": 1.0, "slow": 8, "wait": 16})
    assert "FunctionError" not in resp, resp["raw"]
    report = resp["json"]
    grown = max(rss.values) - baseline
    assert grown < 100, f"the server grew by {grown:.0f} MB; report {report}"
    # Heads larger than the Runtime API's buffer are refused, the rest closed at once.
    assert report["big_open"] == 0, report
    # Unfinished heads are dropped after the header timeout (10 s), not kept.
    closed = report["slow_closed_after"]
    assert all(t is not None for t in closed), report
    assert all(5 <= t <= 15 for t in closed), report
    # The function's own runtime still answers afterwards.
    assert "FunctionError" not in invoke(lam, name, {"mode": "flood", "attempts": 0})


# --------------------------------------------------------------------------- unisolated

STEALABLE = r'''
import time

def handler(event, context):
    print("pending %s" % context.aws_request_id, flush=True)
    time.sleep(event.get("sleep", 0))
    return {"real": True, "id": context.aws_request_id, "event": event}
'''


def runtime_api_of(name: str) -> str:
    """AWS_LAMBDA_RUNTIME_API of function `name`'s live runtime, read from /proc."""
    for pid in support.function_pids(name):
        with open(f"/proc/{pid}/environ", "rb") as f:
            for entry in f.read().split(b"\0"):
                if entry.startswith(b"AWS_LAMBDA_RUNTIME_API="):
                    return entry.split(b"=", 1)[1].decode()
    raise AssertionError(f"no live process of {name}")


def raw_request(api: str, method: str, path: str, body: bytes | None = None,
                timeout: float = 3.0) -> int:
    host, _, port = api.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body)
        return conn.getresponse().status
    finally:
        conn.close()


def test_unisolated_runtime_api_serves_only_the_environments_processes(private):
    srv, lam, maker = private(isolation="none")
    name = maker.create(py_zip(STEALABLE), Timeout=30)["FunctionName"]
    first = invoke(lam, name, {"n": 0})
    assert first["json"]["real"] is True, first["raw"]
    api = runtime_api_of(name)
    assert api.startswith("127.0.0.1:"), api

    pending = in_background(lambda: invoke(lam, name, {"n": 1, "sleep": 3}))
    events = support.wait_for_logs(srv.endpoint, name, lambda ev: sum(
        e["message"].startswith("pending ") for e in ev) >= 2)
    request_id = [e["message"] for e in events if e["message"].startswith("pending ")][-1]
    request_id = request_id.split()[1]

    # This process is no process of the environment: it may neither post the pending
    # invocation's response, nor take the next event.
    t0 = time.monotonic()
    with pytest.raises(OSError):
        status = raw_request(api, "POST", f"/2018-06-01/runtime/invocation/{request_id}/response",
                             b'{"forged": true}')
        pytest.fail(f"a foreign process posted a response: HTTP {status}")
    with pytest.raises(OSError):
        status = raw_request(api, "GET", "/2018-06-01/runtime/invocation/next")
        pytest.fail(f"a foreign process called /next: HTTP {status}")
    assert time.monotonic() - t0 < 2.0  # refused at once, not left waiting

    resp = pending()
    assert "FunctionError" not in resp, resp["raw"]
    assert resp["json"] == {"real": True, "id": request_id, "event": {"n": 1, "sleep": 3}}
    # The next event goes to the function too.
    again = invoke(lam, name, {"n": 2})
    assert again["json"]["real"] is True and again["json"]["event"] == {"n": 2}, again["raw"]
    log = srv.stderr_text(200_000)
    assert "refused a Runtime API connection from outside the environment" in log, log[-3000:]
    assert "peer_port=" in log


def test_unisolated_peer_check_runs_once_per_connection(private):
    """The peer check runs when a connection is accepted: a runtime keeps its connection
    alive, so warm invokes pay nothing."""
    srv, lam, maker = private(isolation="none",
                              env={"SHOAL_LOG": "info,shoal::environment=debug"})
    name = maker.create(py_zip(STEALABLE))["FunctionName"]
    for n in range(30):
        resp = invoke(lam, name, {"n": n})
        assert resp["json"]["event"] == {"n": n}, resp["raw"]
    log = srv.stderr_text(1_000_000)
    admitted = [line for line in log.splitlines() if "admitted a Runtime API connection" in line]
    assert len(admitted) == 1, admitted
    assert "check_us=" in admitted[0]


# --------------------------------------------------------------------------- real clients

RIC_APP = r'''
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"slept": event.get("sleep", 0), "id": context.aws_request_id}

def fail(event, context):
    raise ValueError("x" * event["length"])
'''


def test_awslambdaric_within_the_limits(lam, make_fn):
    """The official Python client within the Runtime API's limits: a function error's
    X-Ray cause header (which carries the message) of hundreds of KB is read, and a
    handler running longer than the header timeout (its idle keep-alive connection is
    closed meanwhile) still delivers its response."""
    import importlib.util
    if importlib.util.find_spec("awslambdaric") is None:
        pytest.skip("the awslambdaric Python package is not installed (pip install awslambdaric)")
    bootstrap = '#!/bin/sh\nexec python3 -m awslambdaric "$_HANDLER"\n'
    code = support.zip_files({"bootstrap": (bootstrap, 0o755), "app.py": RIC_APP})
    failing = make_fn(code, runtime=support.PROVIDED_RUNTIME, handler="app.fail")
    resp = invoke(lam, failing["FunctionName"], {"length": 300_000})
    assert resp["FunctionError"] == "Unhandled", resp["raw"][:500]
    assert resp["json"]["errorType"] == "ValueError", resp["raw"][:500]
    assert resp["json"]["errorMessage"] == "x" * 300_000
    slow = make_fn(code, runtime=support.PROVIDED_RUNTIME, handler="app.handler", Timeout=30)
    for _ in range(2):
        resp = invoke(lam, slow["FunctionName"], {"sleep": 11})
        assert "FunctionError" not in resp, resp["raw"]
        assert resp["json"]["slept"] == 11


def test_node_ric_handler_longer_than_the_header_timeout(lam, make_fn):
    """The official Node.js client (aws-lambda-ric) delivers the response of a handler
    that ran longer than the header timeout (its idle connection was closed meanwhile)."""
    modules = support.REPO / "tests" / "e2e" / "node_modules"
    ric = modules / "aws-lambda-ric"
    if not ric.is_dir() or not any(ric.rglob("*.node")):
        pytest.skip(f"{ric} is missing or has no native addon (run `npm ci` in tests/e2e)")
    slow = ("export const handler = async (event) => {\n"
            "  await new Promise((r) => setTimeout(r, event.sleep * 1000));\n"
            "  return { slept: event.sleep };\n};\n")
    code = support.zip_dir(support.FIXTURES / "provided-node-ric", extra={"slow.mjs": slow})
    name = make_fn(code, runtime=support.PROVIDED_RUNTIME, handler="slow.handler", Timeout=30,
                   Environment={"Variables": {"SHOAL_TEST_NODE_MODULES": str(modules)}}
                   )["FunctionName"]
    for _ in range(2):
        resp = invoke(lam, name, {"sleep": 11})
        assert "FunctionError" not in resp, resp["raw"]
        assert resp["json"] == {"slept": 11}
