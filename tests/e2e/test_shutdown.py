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

