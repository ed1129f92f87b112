"""GET /metrics: Prometheus text exposition of invocations, errors, throttles, cold starts,
concurrency and environments."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

import support
from support import Metrics, create_scaling_fn, fetch_metrics, invoke, scaling_zip, wait_for

PER_FUNCTION = {
    "shoal_invocations_total": "counter",
    "shoal_invocation_errors_total": "counter",
    "shoal_throttles_total": "counter",
    "shoal_cold_starts_total": "counter",
    "shoal_concurrent_executions": "gauge",
    "shoal_environments": "gauge",
}
ACCOUNT_WIDE = {
    "shoal_account_concurrent_executions": "gauge",
    "shoal_environment_evictions_total": "counter",
    "shoal_environments_reaped_total": "counter",
}
STATES = ("initializing", "idle", "busy")


def declared_type(m: Metrics, name: str) -> str | None:
    """The # TYPE of a family (a counter may be declared without its _total suffix)."""
    if name in m.types:
        return m.types[name]
    if name.endswith("_total"):
        return m.types.get(name[: -len("_total")])
    return None


def snapshot(m: Metrics, name: str) -> dict:
    out = {k: m.value(k, function=name) for k in (
        "shoal_invocations_total", "shoal_invocation_errors_total",
        "shoal_cold_starts_total", "shoal_concurrent_executions")}
    out.update({s: m.value("shoal_environments", function=name, state=s) for s in STATES})
    return out


def test_metrics_endpoint_serves_prometheus_text(lam, endpoint, make_fn):
    name = make_fn(scaling_zip())["FunctionName"]
    assert "FunctionError" not in invoke(lam, name, {})
    assert invoke(lam, name, {"fail": True})["FunctionError"] == "Unhandled"
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError):
        lam.invoke(FunctionName=name, Payload=b"{}")
    lam.delete_function_concurrency(FunctionName=name)

    r = support.http(endpoint, "GET", "/metrics")
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("text/plain; version=0.0.4"), r.headers
    m = Metrics(r.body.decode())  # every line parses

    missing = [f for f in PER_FUNCTION if not m.has(f, function=name)]
    missing += [f for f in ACCOUNT_WIDE if not m.has(f)]
    assert not missing, f"families without a series (for {name}): {missing}"
    assert m.has("shoal_throttles_total", function=name,
                 reason="ReservedFunctionConcurrentInvocationLimitExceeded")
    assert m.has("shoal_environments", function=name, state="idle")
    for family, kind in {**PER_FUNCTION, **ACCOUNT_WIDE}.items():
        declared = declared_type(m, family)
        assert declared in (None, kind), f"{family} is declared a {declared}, not a {kind}"
    negative = [(n, lab, v) for n, lab, v in m.samples if n.startswith("shoal_") and v < 0]
    assert not negative, negative
    states = {lab.get("state") for lab, _ in m.series("shoal_environments")}
    assert states <= set(STATES), f"unexpected environment states: {states}"


def test_invocation_counters_count_exactly(lam, endpoint, make_fn):
    name = make_fn(scaling_zip())["FunctionName"]
    for _ in range(10):
        assert "FunctionError" not in invoke(lam, name, {})
    expected = {"shoal_invocations_total": 10, "shoal_invocation_errors_total": 0,
                "shoal_cold_starts_total": 1, "shoal_concurrent_executions": 0,
                "initializing": 0, "idle": 1, "busy": 0}
    wait_for(lambda: snapshot(fetch_metrics(endpoint), name), lambda s: s == expected,
             timeout=2, what=f"metrics of {name} == {expected}")

    for _ in range(3):
        assert invoke(lam, name, {"fail": True})["FunctionError"] == "Unhandled"
    for _ in range(2):
        assert "FunctionError" not in invoke(lam, name, {})
    wait_for(lambda: snapshot(fetch_metrics(endpoint), name),
             lambda s: (s["shoal_invocations_total"], s["shoal_invocation_errors_total"],
                        s["shoal_concurrent_executions"]) == (15, 3, 0),
             timeout=2, what="15 invocations, 3 errors, none in flight")


def test_concurrency_and_environment_gauges_follow_invocations(server_with, client_for):
    srv = server_with()  # of its own: the account-wide gauge counts only this test's work
    lam = client_for(srv, max_pool_connections=8)
    name = create_scaling_fn(lam, Environment={"Variables": {"INIT_SLEEP": "1.0"}})

    def gauges():
        m = fetch_metrics(srv.endpoint)
        s = snapshot(m, name)
        return (s["shoal_concurrent_executions"],
                m.value("shoal_account_concurrent_executions"),
                s["initializing"], s["idle"], s["busy"])

    with ThreadPoolExecutor(3) as pool:
        calls = [pool.submit(invoke, lam, name, {"sleep": 1.0}) for _ in range(3)]
        # in flight, (concurrent, account, initializing, idle, busy)
        wait_for(gauges, lambda g: g == (3, 3, 3, 0, 0), timeout=0.9,
                 what="3 invocations in flight, 3 environments initializing")
        wait_for(gauges, lambda g: g == (3, 3, 0, 0, 3), timeout=1.5,
                 what="3 invocations in flight, 3 environments busy")
        results = [c.result(timeout=10) for c in calls]
    assert all("FunctionError" not in r for r in results), [r["raw"] for r in results]
    wait_for(gauges, lambda g: g == (0, 0, 0, 3, 0), timeout=1,
             what="nothing in flight, 3 environments idle")
    assert fetch_metrics(srv.endpoint).value("shoal_cold_starts_total", function=name) == 3
