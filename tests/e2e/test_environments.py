"""Execution environments: warm reuse, keep-alive reaping, retirement on change, shutdown.

An environment is told apart by the token its runtime makes once (`env_id`), and its host
processes are found by the function's name (support.function_pids) or by the identity the
runtime reports (`proc`, support.host_pid): in an isolated environment the pid a function
sees is one of its own PID namespace, not a host pid.
"""

import signal

import pytest

import support
from support import function_pids, host_pid, invoke, wait_pids_dead


@pytest.fixture
def counter(make_fn, fixture_zip):
    return make_fn(fixture_zip("py-echo"), handler="app.counter")["FunctionName"]


def test_delete_ends_the_environment(lam, counter):
    first = invoke(lam, counter, {})["json"]
    pids = function_pids(counter)
    assert pids and host_pid(counter, first["proc"]) in pids
    lam.delete_function(FunctionName=counter)
    left = wait_pids_dead(pids)
    assert not left, f"environment processes {left} outlived their function"


def test_configuration_change_retires_the_environment(lam, counter):
    first = invoke(lam, counter, {})["json"]
    old = function_pids(counter)
    assert host_pid(counter, first["proc"]) in old
    lam.update_function_configuration(FunctionName=counter, MemorySize=256)
    after = invoke(lam, counter, {})["json"]
    assert after["count"] == 1, "an environment with the old configuration served the call"
    assert after["env_id"] != first["env_id"]
    assert not wait_pids_dead(old), "the old environment outlived the configuration change"
    assert function_pids(counter) == {host_pid(counter, after["proc"])}


def test_code_change_retires_the_environment(lam, counter, fixture_zip):
    first = invoke(lam, counter, {})["json"]
    old = function_pids(counter)
    assert host_pid(counter, first["proc"]) in old
    lam.update_function_code(FunctionName=counter,
                             ZipFile=support.zip_dir(support.FIXTURES / "py-echo",
                                                     extra={"v2.txt": "2"}))
    after = invoke(lam, counter, {})["json"]
    assert after["count"] == 1
    assert after["env_id"] != first["env_id"]
    assert not wait_pids_dead(old), "the old environment outlived the code change"


def test_keep_alive_reaps_idle_environments(server_factory, client_for, fixture_zip):
    srv = server_factory(keep_alive="1s")
    lam = client_for(srv)
    name = support.unique_name("reap")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.counter",
                        Role=support.ROLE, Code={"ZipFile": fixture_zip("py-echo")})
    first = invoke(lam, name, {})["json"]
    pids = function_pids(name)
    assert pids and host_pid(name, first["proc"]) in pids
    second = invoke(lam, name, {})["json"]
    assert second["count"] == 2 and second["env_id"] == first["env_id"]  # warm
    assert not wait_pids_dead(pids, timeout=5), "idle environment not reaped after keep-alive"
    assert not function_pids(name)
    again = invoke(lam, name, {})["json"]
    assert again["count"] == 1 and again["env_id"] != first["env_id"]


def test_sigterm_stops_server_and_its_environments(server_factory, client_for, fixture_zip):
    srv = server_factory()
    lam = client_for(srv)
    name = support.unique_name("stop")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.counter",
                        Role=support.ROLE, Code={"ZipFile": fixture_zip("py-echo")})
    first = invoke(lam, name, {})["json"]
    pids = function_pids(name)
    assert pids and host_pid(name, first["proc"]) in pids
    proc = srv.proc
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=10)
        leftover = wait_pids_dead(pids, timeout=1)
    finally:
        srv.stop()  # ends the server's process group, whatever happened
    assert rc == 0, f"server exited {rc} on SIGTERM; stderr:\n{srv.stderr_text()}"
    assert not leftover, f"environment processes {leftover} outlived the server"
