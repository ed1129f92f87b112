"""How a server ends, and what it leaves behind.

- `kill -9` of the server: its environments die with it (isolated: the sandbox init sees its
  control socket close; unisolated: the process watchdog kills their process groups), their
  loop devices are released;
- SIGTERM: a bounded drain (`--shutdown-timeout`): in-flight synchronous invocations finish
  or are ended with an answer, claimed async events go back to the queue, nothing is lost;
- an environment whose cgroup could not be removed at once (hundreds of processes) has it
  removed in the background.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import support
from support import function_pids

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="isolated environments need root")

BUSY = support.py_zip(
    "import subprocess\n"
    "def handler(event, context):\n"
    "    for _ in range(event.get('children', 0)):\n"
    "        subprocess.Popen(['sleep', '300'])\n"
    "    while True:\n"
    "        pass\n")


def _loop_devices_of(data_dir: Path) -> set[str]:
    """Loop devices whose backing file is under `data_dir`."""
    found = set()
    root = Path("/sys/block")
    for dev in root.glob("loop*"):
        try:
            backing = (dev / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(str(data_dir.resolve())):
            found.add(dev.name)
    return found


def _watchdogs_of(server_pid: int) -> set[int]:
    return support.children_running(server_pid, b"__process-watchdog")


@pytest.mark.parametrize("isolation", [
    pytest.param("namespaces", marks=needs_root),
    "none",
])
def test_environments_die_with_a_killed_server(server_with, client_for, isolation):
    srv = server_with(isolation=isolation)
    lam = client_for(srv)
    name = support.unique_name("orphan")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": BUSY}, Timeout=60)
    watchdogs = _watchdogs_of(srv.proc.pid)
    caller = threading.Thread(target=lambda: _quietly(
        lambda: support.invoke_http(srv.endpoint, name, {"children": 3}, timeout=60)),
        daemon=True)
    caller.start()
    # The runtime busy in its loop, and its three children.
    pids = support.wait_for(lambda: function_pids(name), lambda p: len(p) >= 4, timeout=15,
                            what="the busy invocation and its children")
    loops = _loop_devices_of(srv.data_dir)
    groups: set[Path] = set()
    if isolation == "namespaces":
        assert loops, "an isolated environment has a loop-mounted /tmp here"
        groups = set().union(*(_cgroup_dirs(p) for p in pids))
        assert groups, "the environment's processes are in cgroups of the server's"
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(timeout=5)
    srv.proc = None
    left = support.wait_pids_dead(pids, timeout=3)
    assert not left, f"processes of the environment outlived the server: {sorted(left)}"
    assert not function_pids(name), function_pids(name)
    # Nothing at all is left in the environment's cgroups (its sandbox init included).
    def left_in_groups():
        return {str(g): (g / "cgroup.procs").read_text().split() for g in groups
                if (g / "cgroup.procs").exists()}
    support.wait_for(left_in_groups, lambda procs: not any(procs.values()), timeout=3,
                     what="the environment's cgroups to be empty")
    support.wait_for(lambda: _loop_devices_of(srv.data_dir), lambda l: not l, timeout=3,
                     what="the environment's loop device to be released")
    assert not support.wait_pids_dead(watchdogs, timeout=3), "the watchdog outlived the server"


# --------------------------------------------------------------------------- SIGTERM

GRACE_S = 5
SLEEPER = support.py_zip(
    "import time\n"
    "def handler(event, context):\n"
    "    time.sleep(event['s'])\n"
    "    return {'slept': event['s']}\n")
# Async events {"i": n}: the first LONG_EVENTS outlast the grace, the others are quick.
LONG_EVENTS = 8
COUNTED = support.py_zip(
    "import time\n"
    f"def handler(event, context):\n"
    f"    time.sleep(12 if event['i'] < {LONG_EVENTS} else 0.2)\n"
    "    return {'i': event['i']}\n")
QUEUE = "shutdown-done"
QUEUE_ARN = f"arn:aws:sqs:{support.REGION}:{support.ACCOUNT}:{QUEUE}"


def _outcome(result) -> str:
    """'result', 'shutdown error', 'connection error', or what else the caller got."""
    if isinstance(result, OSError):
        return "connection error"
    if isinstance(result, support.HttpResult) and result.status == 200:
        body = result.json()
        if "x-amz-function-error" not in result.headers and "slept" in body:
            return "result"
        if (body.get("errorType") == "Sandbox.Timedout"
                and "the server is shutting down" in body.get("errorMessage", "")):
            return "shutdown error"
    return f"unexpected: {result!r}"


def _leased(data_dir: Path) -> tuple[int, int, int]:
    """(events, events under a lease, events with a counted attempt) in the stopped
    server's queue."""
    with sqlite3.connect(data_dir / "shoal.db") as db:
        return db.execute(
            "SELECT COUNT(*), COALESCE(SUM(leased_until_ms > 0), 0), "
            "COALESCE(SUM(attempts > 0), 0) FROM async_events").fetchone()


def test_sigterm_drains_within_the_timeout_and_loses_no_event(server_with, client_for,
                                                              capsys):
    from test_async import accept_burst
    from test_async_durability import pending, sqs_client

    def report(text: str) -> None:
        with capsys.disabled():
            print(f"\n[test_shutdown] {text}", flush=True)

    srv = server_with(shutdown_timeout=f"{GRACE_S}s", async_concurrency=16)
    lam = client_for(srv)
    sqs = sqs_client(srv.endpoint)
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    sync_fn, async_fn = support.unique_name("drain"), support.unique_name("queued")
    for name, code in ((sync_fn, SLEEPER), (async_fn, COUNTED)):
        lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME,
                            Handler="app.handler", Role=support.ROLE, Code={"ZipFile": code},
                            Timeout=60)
    lam.put_function_event_invoke_config(
        FunctionName=async_fn, DestinationConfig={"OnSuccess": {"Destination": QUEUE_ARN}})
    # Held while the 500 events are accepted.
    lam.put_function_concurrency(FunctionName=async_fn, ReservedConcurrentExecutions=0)
    results, _ = accept_burst(srv.endpoint, async_fn, 500, threads=16)
    acked = {i for i, r in enumerate(results) if isinstance(r, tuple) and r[0] == 202}
    assert len(acked) == 500, [r for r in results if not isinstance(r, tuple)][:3]

    # 50 synchronous invocations: half finish within the grace, half would not.
    sleeps = [1 if k % 2 else 30 for k in range(50)]
    calls = ThreadPoolExecutor(max_workers=50)
    futures = [calls.submit(_quietly, lambda s=s: support.invoke_http(
        srv.endpoint, sync_fn, {"s": s}, timeout=90)) for s in sleeps]
    lam.delete_function_concurrency(FunctionName=async_fn)
    support.wait_for(lambda: len(function_pids(sync_fn)), lambda n: n >= 40, timeout=60,
                     interval=0.2, what="40 synchronous invocations running")
    support.wait_for(lambda: len(function_pids(async_fn)), lambda n: n >= LONG_EVENTS,
                     timeout=30, interval=0.2, what="the long async events running")
    pending_at_term = pending(srv.endpoint, async_fn)
    # Five more, surely in flight at the signal (2 s), which the drain lets finish (5 s:
    # a 128 MB function has 7% of a CPU, so even a quick one is slow on a busy host).
    late_calls = ThreadPoolExecutor(max_workers=5)
    late = [late_calls.submit(_timed, lambda: support.invoke_http(
        srv.endpoint, sync_fn, {"s": 2}, timeout=90)) for _ in range(5)]
    time.sleep(0.5)

    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    rc = srv.proc.wait(timeout=60)
    took = time.monotonic() - t0
    outcomes = [_outcome(f.result(timeout=30)) for f in futures]
    late_results = [f.result(timeout=30) for f in late]
    late_outcomes = [(_outcome(r), at - t0) for r, at in late_results]
    calls.shutdown()
    late_calls.shutdown()
    counts = {o: outcomes.count(o) for o in set(outcomes)}
    events, leased, counted = _leased(srv.data_dir)
    report(f"SIGTERM with {pending_at_term} async events pending and 50 synchronous calls: "
           f"exit {rc} after {took:.2f}s (grace {GRACE_S}s); callers got {counts}; "
           f"{events} events left in the queue, {leased} leased; the 5 calls made just "
           f"before the signal: {late_outcomes}")
    srv.proc = None
    assert rc == 0, srv.stderr_text()
    assert took < GRACE_S + 5, f"shutdown took {took:.1f}s with a {GRACE_S}s timeout"
    assert all(o in ("result", "shutdown error", "connection error") for o in outcomes), \
        [o for o in outcomes if o.startswith("unexpected")][:3]
    assert counts.get("shutdown error", 0) >= 10, counts  # the long ones in flight
    assert counts.get("result", 0) >= 10, counts
    assert all(o == "result" and after > 0 for o, after in late_outcomes), late_outcomes
    assert leased == 0, f"{leased} async events are still leased after the shutdown"
    assert counted == 0, f"{counted} events ended by the shutdown counted as failed attempts"
    assert events >= LONG_EVENTS, events

    # A restart runs every event left, at once (no lease to wait for).
    restarted = time.monotonic()
    srv.start()
    support.wait_for(lambda: pending(srv.endpoint, async_fn), lambda p: p == 0, timeout=90,
                     interval=0.5, what="the async queue to drain after the restart")
    report(f"the {events} events left ran {time.monotonic() - restarted:.1f}s after the "
           f"restart")
    sqs = sqs_client(srv.endpoint)
    seen: dict[int, int] = {}
    empty = 0
    while empty < 2:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                   WaitTimeSeconds=1).get("Messages", [])
        if not msgs:
            empty += 1
            continue
        empty = 0
        for m in msgs:
            i = json.loads(m["Body"])["responsePayload"]["i"]
            seen[i] = seen.get(i, 0) + 1
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(msgs)])
    lost = sorted(acked - set(seen))
    report(f"{len(seen)} of 500 events recorded as successes, "
           f"{sum(c - 1 for c in seen.values())} twice")
    assert not lost, f"{len(lost)} events lost: {lost[:20]}"


def test_a_second_signal_ends_invocations_in_flight_at_once(server_with, client_for):
    srv = server_with(shutdown_timeout="60s", isolation="none")
    lam = client_for(srv)
    name = support.unique_name("second")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": SLEEPER}, Timeout=60)
    call = ThreadPoolExecutor(max_workers=1).submit(_quietly, lambda: support.invoke_http(
        srv.endpoint, name, {"s": 50}, timeout=90))
    pids = support.wait_for(lambda: function_pids(name), lambda p: len(p) >= 1, timeout=15,
                            what="the invocation running")
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert srv.proc.poll() is None, "the first signal waits for the invocation in flight"
    srv.proc.send_signal(signal.SIGINT)
    rc = srv.proc.wait(timeout=30)
    took = time.monotonic() - t0
    srv.proc = None
    assert rc == 0 and took < 5, (rc, took)
    result = call.result(timeout=10)
    assert _outcome(result) == "shutdown error", result
    assert result.headers.get("x-amz-function-error") == "Unhandled", result.headers
    assert not support.wait_pids_dead(pids, timeout=2)


def _timed(call):
    """(what _quietly(call) returns, when it returned)."""
    result = _quietly(call)
    return result, time.monotonic()


def _quietly(call):
    try:
        return call()
    except Exception as e:  # the server goes away under the caller
        return e


# --------------------------------------------------------------------------- cgroups

FORKS = support.py_zip(
    "import os, time\n"
    "def handler(event, context):\n"
    "    for _ in range(event['n']):\n"
    "        if os.fork() == 0:\n"
    "            time.sleep(600)\n"
    "            os._exit(0)\n"
    "    time.sleep(600)\n")


def _cgroup_dirs(pid: int) -> set[Path]:
    """The cgroup folders (on the host) made for host process `pid` (v1 and v2)."""
    out: set[Path] = set()
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "/shoal/" not in path:
                continue
            for c in (controllers.split(",") if controllers else [""]):
                base = Path("/sys/fs/cgroup") / c
                if (base / path.lstrip("/")).exists():
                    out.add(base / path.lstrip("/"))
    return out


@needs_root
def test_the_cgroup_of_a_timed_out_environment_of_hundreds_of_processes_goes(
        server_with, client_for):
    srv = server_with(isolation="namespaces", pids_limit=1024)
    lam = client_for(srv)
    name = support.unique_name("forks")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": FORKS}, MemorySize=128, Timeout=6)
    results = []
    caller = threading.Thread(target=lambda: results.append(
        support.invoke_http(srv.endpoint, name, {"n": 400}, timeout=60)))
    caller.start()
    pids = support.wait_for(lambda: function_pids(name), lambda p: len(p) >= 300, timeout=6,
                            what="300 processes of the function")
    groups = set().union(*(_cgroup_dirs(p) for p in list(pids)[:3]))
    assert groups, "the function's processes are in cgroups of the server's"
    caller.join(30)
    assert results and results[0].json()["errorType"] == "Sandbox.Timedout", results
    t0 = time.monotonic()
    left = support.wait_for(lambda: {g for g in groups if g.exists()}, lambda s: not s,
                            timeout=10, what="the environment's cgroup to be removed")
    print(f"\ncgroup of {len(pids)}+ processes removed {time.monotonic() - t0:.2f}s after "
          f"the timeout was answered")
    assert not left
    assert not support.wait_pids_dead(pids, timeout=3)
