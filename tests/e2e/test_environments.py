"""Execution environments: warm reuse, keep-alive reaping, retirement on change, shutdown."""

import os
import signal
import time

import pytest

import support
from support import invoke


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_dead(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def counter(make_fn, fixture_zip):
    return make_fn(fixture_zip("py-echo"), handler="app.counter")["FunctionName"]


def test_delete_ends_the_environment(lam, counter):
    pid = invoke(lam, counter, {})["json"]["pid"]
    assert alive(pid)
    lam.delete_function(FunctionName=counter)
    assert wait_dead(pid), f"environment process {pid} outlived its function"


def test_configuration_change_retires_the_environment(lam, counter):
    first = invoke(lam, counter, {})["json"]
    lam.update_function_configuration(FunctionName=counter, MemorySize=256)
    after = invoke(lam, counter, {})["json"]
    assert after["count"] == 1, "an environment with the old configuration served the call"
    assert after["pid"] != first["pid"]
    assert wait_dead(first["pid"])


def test_code_change_retires_the_environment(lam, counter, fixture_zip):
    first = invoke(lam, counter, {})["json"]
    lam.update_function_code(FunctionName=counter,
                             ZipFile=support.zip_dir(support.FIXTURES / "py-echo",
                                                     extra={"v2.txt": "2"}))
    after = invoke(lam, counter, {})["json"]
    assert after["count"] == 1
    assert wait_dead(first["pid"])


def test_keep_alive_reaps_idle_environments(server_factory, client_for, fixture_zip):
    srv = server_factory(keep_alive="1s")
    lam = client_for(srv)
    name = support.unique_name("reap")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.counter",
                        Role=support.ROLE, Code={"ZipFile": fixture_zip("py-echo")})
    first = invoke(lam, name, {})["json"]
    assert invoke(lam, name, {})["json"]["count"] == 2  # warm within keep-alive
    assert wait_dead(first["pid"], timeout=5), "idle environment not reaped after keep-alive"
    again = invoke(lam, name, {})["json"]
    assert again["count"] == 1 and again["pid"] != first["pid"]


def test_sigterm_stops_server_and_its_environments(server_factory, client_for, fixture_zip):
    srv = server_factory()
    lam = client_for(srv)
    name = support.unique_name("stop")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.counter",
                        Role=support.ROLE, Code={"ZipFile": fixture_zip("py-echo")})
    pid = invoke(lam, name, {})["json"]["pid"]
    proc = srv.proc
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=10)
        leftover = not wait_dead(pid, timeout=1)
    finally:
        srv.stop()  # ends the server's process group, whatever happened
    assert rc == 0, f"server exited {rc} on SIGTERM; stderr:\n{srv.stderr_text()}"
    assert not leftover, f"environment process {pid} outlived the server"
