"""Scaling: warm reuse, scale-out under concurrency, scale back to zero after the keep-alive,
draining on code and configuration changes, and SIGTERM-then-SIGKILL shutdown of environments.

Environments are told apart by the token their runtime makes once (`env_id`); their host
processes are found through support.function_processes / host_pid (a pid a function
reports is one of its own PID namespace when environments are isolated)."""

import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import support
from support import (burst, create_scaling_fn, fetch_metrics, function_pids,
                     function_processes, host_pid, invoke, pid_alive, scaling_zip, wait_for,
                     wait_pids_dead)


def environments(m: support.Metrics, name: str) -> dict[str, float]:
    return {state: m.value("shoal_environments", function=name, state=state)
            for state in ("initializing", "idle", "busy")}


def test_sequential_invocations_reuse_one_environment(lam, endpoint, make_fn):
    name = make_fn(scaling_zip())["FunctionName"]
    envs, procs = set(), set()
    for _ in range(100):
        r = invoke(lam, name, {})
        assert r["StatusCode"] == 200 and "FunctionError" not in r, r["raw"]
        envs.add(r["json"]["env_id"])
        procs.add(r["json"]["proc"])
    assert len(envs) == 1, f"100 sequential invocations ran in {len(envs)} environments"
    assert set(function_processes(name)) == procs
    assert len(function_pids(name)) == 1

    m = wait_for(lambda: fetch_metrics(endpoint),
                 lambda m: environments(m, name)["idle"] == 1, timeout=2,
                 what=f"shoal_environments{{function={name},state=idle}} == 1")
    assert environments(m, name) == {"initializing": 0, "idle": 1, "busy": 0}
    assert m.value("shoal_cold_starts_total", function=name) == 1
    assert m.value("shoal_invocations_total", function=name) == 100


def test_concurrent_burst_scales_out_then_back_to_zero(server_with, client_for):
    srv = server_with(keep_alive="2s")
    lam = client_for(srv, max_pool_connections=32)
    name = create_scaling_fn(lam)

    results, elapsed = burst(20, lambda i: invoke(lam, name, {"sleep": 0.5}))
    failed = [r if isinstance(r, Exception) else (r["StatusCode"], r["raw"]) for r in results
              if isinstance(r, Exception) or r["StatusCode"] != 200 or "FunctionError" in r]
    assert not failed, f"{len(failed)} of 20 concurrent invocations failed: {failed[:3]}"
    done = time.monotonic()
    assert elapsed < 3.0, f"20 concurrent 500 ms invocations took {elapsed:.2f}s"
    envs = {r["json"]["env_id"] for r in results}
    assert len(envs) == 20, f"20 concurrent invocations ran in {len(envs)} environments"
    processes = function_processes(name)
    assert set(processes) == {r["json"]["proc"] for r in results}
    pids = set(processes.values())
    assert function_pids(name) == pids

    # Checked without stopping, so that the scale-to-zero part below is reported too.
    problems = []
    try:
        m = wait_for(lambda: fetch_metrics(srv.endpoint),
                     lambda m: environments(m, name)["idle"] == 20, timeout=1,
                     what=f"shoal_environments{{function={name},state=idle}} == 20")
        assert environments(m, name) == {"initializing": 0, "idle": 20, "busy": 0}
        reaped_before = m.value("shoal_environments_reaped_total")
    except AssertionError as e:
        problems.append(f"after the burst: {e}")
        reaped_before = None

    # Keep-alive 2 s: every environment is gone within ~5 s of the burst.
    left = wait_for(lambda: function_pids(name), lambda p: not p,
                    timeout=max(0.5, 6.0 - (time.monotonic() - done)),
                    what="no process of the function left after the keep-alive")
    assert not left
    assert not wait_pids_dead(pids, timeout=0.5)

    m = fetch_metrics(srv.endpoint)
    assert environments(m, name) == {"initializing": 0, "idle": 0, "busy": 0}
    if reaped_before is not None:
        assert m.value("shoal_environments_reaped_total") - reaped_before == 20
    assert not problems, problems


@pytest.mark.parametrize("change", ["code", "configuration"])
def test_update_drains_old_environments(lam, make_fn, change):
    name = make_fn(scaling_zip("v1"))["FunctionName"]
    results, _ = burst(2, lambda i: invoke(lam, name, {"sleep": 0.3}))
    old = {r["json"]["env_id"] for r in results}
    assert len(old) == 2
    old_pids = {host_pid(name, r["json"]["proc"]) for r in results}
    assert function_pids(name) == old_pids

    def what_ran(r):
        return r["json"]["marker"] if change == "code" else r["json"]["mark"]

    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(invoke, lam, name, {"sleep": 1.0})
        time.sleep(0.3)  # the invocation is running in one of the two old environments
        if change == "code":
            lam.update_function_code(FunctionName=name, ZipFile=scaling_zip("v2"))
        else:
            lam.update_function_configuration(FunctionName=name,
                                              Environment={"Variables": {"MARK": "v2"}})
        new = invoke(lam, name, {})
        assert what_ran(new) == "v2", f"the invoke after the {change} update ran the old one"
        assert new["json"]["env_id"] not in old
        new_pid = host_pid(name, new["json"]["proc"])
        finished = busy.result(timeout=10)

    # The invocation in flight finished, with the old code and configuration, in an old
    # environment...
    assert "FunctionError" not in finished, finished["raw"]
    assert what_ran(finished) == ("v1" if change == "code" else None)
    assert finished["json"]["env_id"] in old
    # ...and then that environment went too.
    left = wait_pids_dead(old_pids, timeout=3)
    assert not left, f"old environments {left} still alive after the {change} update"
    assert function_pids(name) == {new_pid}


def test_reaped_environment_gets_sigterm_then_sigkill_after_grace(server_with, client_for):
    srv = server_with(keep_alive="1s", shutdown_grace="1s")
    lam = client_for(srv)
    # The function records SIGTERM in a file of its /tmp and ignores it: only SIGKILL ends
    # it. The host reads that file through the process's root (/proc/PID/root), which is
    # the environment's own root when isolated and / when not, while the process lives.
    term_log = f"/tmp/shoal-e2e-term-{uuid.uuid4().hex}.log"
    name = create_scaling_fn(lam, Environment={"Variables": {"TERM_LOG": term_log}})
    ran = invoke(lam, name, {})["json"]
    pid = host_pid(name, ran["proc"])
    seen = f"/proc/{pid}/root{term_log}"

    def record() -> str:
        try:
            with open(seen) as f:
                return f.read()
        except OSError:
            return ""

    try:
        text = wait_for(record, lambda text: text.strip() != "", timeout=5, interval=0.02,
                        what="SIGTERM delivered to the environment after the keep-alive")
        term_env, term_at = text.split()[:2]
        assert term_env == ran["env_id"]
        left = wait_pids_dead({pid}, timeout=4)
        died_after = time.time() - float(term_at)
        assert not left, "an environment that ignores SIGTERM was not killed after the grace"
        assert died_after >= 0.7, \
            f"killed {died_after:.2f}s after SIGTERM; the shutdown grace is 1s"
        assert died_after <= 3.0, \
            f"killed {died_after:.2f}s after SIGTERM; the shutdown grace is 1s"
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        try:
            os.unlink(term_log)  # written on the host when environments are not isolated
        except FileNotFoundError:
            pass
