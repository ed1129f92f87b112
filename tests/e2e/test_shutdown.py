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
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == server_pid and b"__process-watchdog" in argv:
            found.add(int(entry))
    return found


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
    if isolation == "namespaces":
        assert loops, "an isolated environment has a loop-mounted /tmp here"
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(timeout=5)
    srv.proc = None
    left = support.wait_pids_dead(pids, timeout=3)
    assert not left, f"processes of the environment outlived the server: {sorted(left)}"
    assert not function_pids(name), function_pids(name)
    support.wait_for(lambda: _loop_devices_of(srv.data_dir), lambda l: not l, timeout=3,
                     what="the environment's loop device to be released")
    assert not support.wait_pids_dead(watchdogs, timeout=3), "the watchdog outlived the server"


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
                            timeout=5, what="the environment's cgroup to be removed")
    print(f"\ncgroup of {len(pids)}+ processes removed {time.monotonic() - t0:.2f}s after "
          f"the timeout was answered")
    assert not left
    assert not support.wait_pids_dead(pids, timeout=3)
