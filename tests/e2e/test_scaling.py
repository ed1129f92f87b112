"""Scaling: warm reuse, scale-out under concurrency, scale back to zero after the keep-alive,
draining on code and configuration changes, and SIGTERM-then-SIGKILL shutdown of environments."""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import support
from support import (burst, create_scaling_fn, fetch_metrics, function_pids, invoke,
                     pid_alive, scaling_zip, wait_for, wait_pids_dead)


def environments(m: support.Metrics, name: str) -> dict[str, float]:
    return {state: m.value("shoal_environments", function=name, state=state)
            for state in ("initializing", "idle", "busy")}


def test_sequential_invocations_reuse_one_environment(lam, endpoint, make_fn):
    name = make_fn(scaling_zip())["FunctionName"]
    pids = set()
    for _ in range(100):
        r = invoke(lam, name, {})
        assert r["StatusCode"] == 200 and "FunctionError" not in r, r["raw"]
        pids.add(r["json"]["pid"])
    assert len(pids) == 1, f"100 sequential invocations ran in {len(pids)} environments"
    assert function_pids(name) == pids

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
    pids = {r["json"]["pid"] for r in results}
    assert len(pids) == 20, f"20 concurrent invocations ran in {len(pids)} environments"
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
    old = {r["json"]["pid"] for r in results}
    assert len(old) == 2

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
        assert new["json"]["pid"] not in old
        finished = busy.result(timeout=10)

    # The invocation in flight finished, with the old code and configuration, in an old
    # environment...
    assert "FunctionError" not in finished, finished["raw"]
    assert what_ran(finished) == ("v1" if change == "code" else None)
    assert finished["json"]["pid"] in old
    # ...and then that environment went too.
    left = wait_pids_dead(old, timeout=3)
    assert not left, f"old environments {left} still alive after the {change} update"
    assert function_pids(name) == {new["json"]["pid"]}


def test_reaped_environment_gets_sigterm_then_sigkill_after_grace(server_with, client_for,
                                                                  tmp_path):
    srv = server_with(keep_alive="1s", shutdown_grace="1s")
    lam = client_for(srv)
    term_log = tmp_path / "term.log"
    # The function records SIGTERM and ignores it: only SIGKILL ends it.
    name = create_scaling_fn(lam, Environment={"Variables": {"TERM_LOG": str(term_log)}})
    pid = invoke(lam, name, {})["json"]["pid"]
    try:
        record = wait_for(lambda: term_log.read_text() if term_log.exists() else "",
                          lambda text: text.strip() != "", timeout=5,
                          what="SIGTERM delivered to the environment after the keep-alive")
        term_pid, term_at = record.split()[:2]
        assert int(term_pid) == pid
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
