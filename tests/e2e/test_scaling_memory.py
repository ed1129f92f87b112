"""Memory capacity (--memory-capacity): the MemorySize of live environments never adds up to
more than it; idle environments are evicted least recently used first to make room, and
when everything is busy the invoke is throttled rather than queued."""

import time
from concurrent.futures import ThreadPoolExecutor

from support import (create_scaling_fn, function_pids, host_pid, invoke, invoke_http, metric,
                     pid_alive, wait_for, wait_pids_dead)


def run(lam, name: str) -> tuple[str, int]:
    """Invoke; (the environment's token, the host pid of its runtime)."""
    r = invoke(lam, name, {})
    assert r["StatusCode"] == 200 and "FunctionError" not in r, r["raw"]
    return r["json"]["env_id"], host_pid(name, r["json"]["proc"])


def live_environments(names) -> int:
    return sum(len(function_pids(n)) for n in names)


def test_memory_capacity_evicts_the_least_recently_used_idle_environment(server_with,
                                                                         client_for):
    srv = server_with(memory_capacity=512)
    lam = client_for(srv)
    f1, f2, f3, f4, f5 = names = [create_scaling_fn(lam, MemorySize=128) for _ in range(5)]
    env, pid = {}, {}
    for n in (f1, f2, f3, f4):  # 4 x 128 MB: full
        env[n], pid[n] = run(lam, n)
    assert run(lam, f1) == (env[f1], pid[f1])  # f1 used again: f2 is now the least recently used
    assert live_environments(names) == 4

    env[f5], pid[f5] = run(lam, f5)
    assert not wait_pids_dead({pid[f2]}, timeout=3), \
        "the least recently used idle environment (f2) was not evicted"
    assert all(pid_alive(pid[n]) for n in (f1, f3, f4)), "a more recently used one was evicted"
    assert live_environments(names) == 4

    again, _ = run(lam, f2)  # cold again; now f3 is the least recently used
    assert again != env[f2]
    assert not wait_pids_dead({pid[f3]}, timeout=3), \
        "the least recently used idle environment (f3) was not evicted"
    assert all(pid_alive(pid[n]) for n in (f1, f4, f5))
    assert live_environments(names) == 4

    assert metric(srv.endpoint, "shoal_environment_evictions_total") == 2


def test_memory_capacity_full_of_busy_environments_throttles(server_with, client_for):
    srv = server_with(memory_capacity=512)
    lam = client_for(srv)
    busy, other = create_scaling_fn(lam, MemorySize=128), create_scaling_fn(lam, MemorySize=128)

    with ThreadPoolExecutor(4) as pool:
        sleepers = [pool.submit(invoke_http, srv.endpoint, busy, {"sleep": 1.5}, timeout=10)
                    for _ in range(4)]
        wait_for(lambda: len(function_pids(busy)), lambda n: n == 4, timeout=3,
                 what="4 busy environments")
        extra = []
        for name in (other, busy):
            start = time.monotonic()
            r = invoke_http(srv.endpoint, name, {}, timeout=10)
            extra.append((r, time.monotonic() - start))
        results = [f.result(timeout=10) for f in sleepers]

    for r, took in extra:
        assert r.status == 429, f"a 5th 128 MB invoke with 512 MB all busy: {r}"
        assert r.headers.get("x-amzn-errortype", "").startswith("TooManyRequestsException"), r
        assert took < 1.0, f"the throttled invoke took {took:.2f}s (it waited for capacity)"
    assert [r.status for r in results] == [200] * 4, results

    # Once they are idle, one of them makes room for the other function (the evicted
    # environment is shut down in the background: SIGTERM, then SIGKILL after the grace).
    assert run(lam, other)
    wait_for(lambda: live_environments([busy, other]), lambda n: n <= 4, timeout=5,
             what="at most 4 live environments once one was evicted")
