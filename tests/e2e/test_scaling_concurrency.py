"""Concurrency: reserved concurrency (Put/Get/DeleteFunctionConcurrency), the account limit,
GetAccountSettings, and throttling (429 TooManyRequestsException with its Reason)."""

import json
import urllib.parse

import pytest
from botocore.exceptions import ClientError

import support
from support import burst, create_scaling_fn, http, invoke, invoke_http, metric, scaling_zip

RESERVED_REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_REASON = "ConcurrentInvocationLimitExceeded"


def error_code(r: support.HttpResult) -> str:
    return r.headers.get("x-amzn-errortype", "").split(":")[0]


def outcome(r) -> str:
    """A short description of one burst result, for failure messages."""
    if isinstance(r, Exception):
        return f"exception {r!r}"
    return f"{r.status} {error_code(r)} {r.body[:120]!r}"


def split(results):
    ok = [r for r in results if not isinstance(r, Exception) and r.status == 200]
    throttled = [r for r in results if not isinstance(r, Exception) and r.status == 429]
    return ok, throttled


def assert_throttle(r: support.HttpResult, reason: str) -> None:
    assert r.status == 429, r
    assert error_code(r) == "TooManyRequestsException", r
    assert r.json().get("Reason") == reason, r


def unreserved(lam) -> int:
    return lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]


def test_function_concurrency_put_get_delete(lam, make_fn):
    name = make_fn(scaling_zip())["FunctionName"]
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    before = lam.get_account_settings()["AccountLimit"]

    put = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert put["ReservedConcurrentExecutions"] == 5
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 5
    assert lam.get_function(FunctionName=name)["Concurrency"] == {
        "ReservedConcurrentExecutions": 5}
    after = lam.get_account_settings()["AccountLimit"]
    assert after["ConcurrentExecutions"] == before["ConcurrentExecutions"]
    assert after["UnreservedConcurrentExecutions"] == before["UnreservedConcurrentExecutions"] - 5

    # A second Put replaces the reservation.
    assert lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=7)[
        "ReservedConcurrentExecutions"] == 7
    assert unreserved(lam) == before["UnreservedConcurrentExecutions"] - 7

    deleted = lam.delete_function_concurrency(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    assert "ReservedConcurrentExecutions" not in lam.get_function(FunctionName=name).get(
        "Concurrency", {})
    assert unreserved(lam) == before["UnreservedConcurrentExecutions"]


def test_function_concurrency_wire_format(endpoint, make_fn):
    name = make_fn(scaling_zip())["FunctionName"]
    quoted = urllib.parse.quote(name)
    r = http(endpoint, "PUT", f"/2017-10-31/functions/{quoted}/concurrency",
             body=json.dumps({"ReservedConcurrentExecutions": 3}),
             headers={"Content-Type": "application/json"})
    assert r.status == 200, r
    assert r.json() == {"ReservedConcurrentExecutions": 3}
    r = http(endpoint, "GET", f"/2019-09-30/functions/{quoted}/concurrency")
    assert r.status == 200 and r.json() == {"ReservedConcurrentExecutions": 3}, r
    r = http(endpoint, "DELETE", f"/2017-10-31/functions/{quoted}/concurrency")
    assert r.status == 204, r
    r = http(endpoint, "GET", f"/2019-09-30/functions/{quoted}/concurrency")
    assert r.status == 200 and r.json() == {}, r


def test_function_concurrency_of_a_missing_function_is_not_found(lam):
    missing = support.unique_name("missing")
    for call in (lambda: lam.put_function_concurrency(FunctionName=missing,
                                                      ReservedConcurrentExecutions=1),
                 lambda: lam.get_function_concurrency(FunctionName=missing),
                 lambda: lam.delete_function_concurrency(FunctionName=missing)):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_reservations_leave_at_least_100_unreserved(server_with, client_for):
    srv = server_with(concurrency_limit=300)
    lam = client_for(srv)
    a, b = create_scaling_fn(lam), create_scaling_fn(lam)
    limits = lam.get_account_settings()["AccountLimit"]
    assert limits["ConcurrentExecutions"] == 300
    assert limits["UnreservedConcurrentExecutions"] == 300

    def rejected(name, n):
        with pytest.raises(ClientError) as e:
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=n)
        assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    rejected(a, 201)
    assert unreserved(lam) == 300
    lam.put_function_concurrency(FunctionName=a, ReservedConcurrentExecutions=200)
    assert unreserved(lam) == 100
    rejected(b, 1)
    # A function's own reservation does not count against a new value for it.
    lam.put_function_concurrency(FunctionName=a, ReservedConcurrentExecutions=150)
    lam.put_function_concurrency(FunctionName=b, ReservedConcurrentExecutions=50)
    assert unreserved(lam) == 100
    lam.delete_function_concurrency(FunctionName=a)
    assert unreserved(lam) == 250
    # Deleting a function releases its reservation.
    lam.delete_function(FunctionName=b)
    limits = lam.get_account_settings()["AccountLimit"]
    assert limits["ConcurrentExecutions"] == 300
    assert limits["UnreservedConcurrentExecutions"] == 300


def test_account_settings_report_the_concurrency_limit(lam, server_with, client_for):
    assert lam.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 1000
    srv = server_with(env={"SHOAL_CONCURRENCY_LIMIT": "250"})
    limits = client_for(srv).get_account_settings()["AccountLimit"]
    assert limits["ConcurrentExecutions"] == 250
    assert limits["UnreservedConcurrentExecutions"] == 250


def test_reserved_concurrency_throttles_the_excess_of_a_burst(lam, endpoint, make_fn):
    name = make_fn(scaling_zip())["FunctionName"]
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)
    results, elapsed = burst(10, lambda i: invoke_http(endpoint, name, {"sleep": 1.0},
                                                        timeout=10))
    ok, throttled = split(results)
    summary = [outcome(r) for r in results]
    assert (len(ok), len(throttled)) == (3, 7), summary
    for r in throttled:
        assert_throttle(r, RESERVED_REASON)
    for r in ok:
        assert "x-amz-function-error" not in r.headers, r
    assert elapsed < 3.0, f"the burst took {elapsed:.2f}s"
    assert metric(endpoint, "shoal_throttles_total", function=name,
                  reason=RESERVED_REASON) == 7


def test_reserved_concurrency_zero_throttles_every_invoke(lam, endpoint, make_fn):
    name = make_fn(scaling_zip())["FunctionName"]
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    for _ in range(2):
        with pytest.raises(ClientError) as e:
            lam.invoke(FunctionName=name, Payload=b"{}")
        response = e.value.response
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert response["Error"]["Code"] == "TooManyRequestsException"
        assert response.get("Reason") == RESERVED_REASON, response
    assert_throttle(invoke_http(endpoint, name, {}), RESERVED_REASON)
    assert not support.function_pids(name), "a throttled invoke started an environment"
    assert metric(endpoint, "shoal_throttles_total", function=name,
                  reason=RESERVED_REASON) == 3

    lam.delete_function_concurrency(FunctionName=name)
    assert invoke(lam, name, {})["StatusCode"] == 200


def test_account_concurrency_limit_throttles_the_excess(server_with, client_for):
    srv = server_with(concurrency_limit=4)
    lam = client_for(srv)
    names = [create_scaling_fn(lam), create_scaling_fn(lam)]
    # 8 at once over two functions: the limit is the account's, not each function's.
    results, elapsed = burst(8, lambda i: invoke_http(srv.endpoint, names[i % 2],
                                                       {"sleep": 1.0}, timeout=10))
    ok, throttled = split(results)
    assert (len(ok), len(throttled)) == (4, 4), [outcome(r) for r in results]
    for r in throttled:
        assert_throttle(r, ACCOUNT_REASON)
    assert elapsed < 3.0, f"the burst took {elapsed:.2f}s"
    assert sum(metric(srv.endpoint, "shoal_throttles_total", function=n,
                      reason=ACCOUNT_REASON) for n in names) == 4
