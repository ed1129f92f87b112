"""Provisioned concurrency: environments initialised ahead of invocations for a version or
alias, kept regardless of the keep-alive."""

import time

import pytest
from botocore.exceptions import ClientError

import support
from support import (burst, create_scaling_fn, fetch_metrics, function_pids,
                     function_processes, invoke, wait_for)


def error_of(call, **kwargs) -> tuple[int, str]:
    with pytest.raises(ClientError) as e:
        call(**kwargs)
    response = e.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def report_line(log: str) -> str:
    lines = [line for line in log.splitlines() if line.startswith("REPORT RequestId:")]
    assert lines, f"no REPORT line in the tail:\n{log}"
    return lines[-1]


def test_provisioned_concurrency_needs_a_version_or_alias(lam, make_fn):
    name = make_fn(support.scaling_zip())["FunctionName"]
    lam.publish_version(FunctionName=name)
    assert error_of(lam.put_provisioned_concurrency_config, FunctionName=name,
                    Qualifier="$LATEST", ProvisionedConcurrentExecutions=1) == (
        400, "InvalidParameterValueException")
    assert error_of(lam.get_provisioned_concurrency_config, FunctionName=name,
                    Qualifier="1") == (404, "ProvisionedConcurrencyConfigNotFoundException")
    missing = support.unique_name("missing")
    assert error_of(lam.put_provisioned_concurrency_config, FunctionName=missing,
                    Qualifier="1", ProvisionedConcurrentExecutions=1) == (
        404, "ResourceNotFoundException")

    # On a version number (not only an alias).
    put = lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1",
                                                 ProvisionedConcurrentExecutions=1)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert put["Status"] in ("IN_PROGRESS", "READY")
    deleted = lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert error_of(lam.get_provisioned_concurrency_config, FunctionName=name,
                    Qualifier="1") == (404, "ProvisionedConcurrencyConfigNotFoundException")


def test_provisioned_environments_are_ready_warm_and_outlive_the_keep_alive(server_with,
                                                                            client_for):
    srv = server_with(keep_alive="2s")
    lam = client_for(srv, max_pool_connections=16)
    name = create_scaling_fn(lam)
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")

    put = lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live",
                                                 ProvisionedConcurrentExecutions=5)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert put["Status"] in ("IN_PROGRESS", "READY")
    assert put["RequestedProvisionedConcurrentExecutions"] == 5

    cfg = wait_for(lambda: lam.get_provisioned_concurrency_config(FunctionName=name,
                                                                  Qualifier="live"),
                   lambda c: c["Status"] == "READY", timeout=10, interval=0.1,
                   what="provisioned concurrency READY")
    assert cfg["RequestedProvisionedConcurrentExecutions"] == 5
    assert cfg["AllocatedProvisionedConcurrentExecutions"] == 5
    processes = function_processes(name)  # identity -> host pid
    provisioned = set(processes.values())
    assert len(provisioned) == 5, f"{len(provisioned)} environments for 5 provisioned"
    assert function_pids(name) == provisioned

    results, _ = burst(5, lambda i: invoke(lam, name, {"sleep": 0.3}, Qualifier="live",
                                           LogType="Tail"))
    for r in results:
        assert not isinstance(r, Exception), r
        assert r["StatusCode"] == 200 and "FunctionError" not in r, r["raw"]
        assert r["ExecutedVersion"] == "1"
        assert "Init Duration" not in report_line(r["log"]), \
            f"a provisioned environment initialised on invoke:\n{r['log']}"
        assert r["json"]["initType"] == "provisioned-concurrency"
    # The 5 invocations ran in the 5 provisioned environments, one each.
    assert len({r["json"]["env_id"] for r in results}) == 5
    assert {r["json"]["proc"] for r in results} == set(processes)

    time.sleep(4)  # twice the keep-alive: provisioned environments are not reaped
    assert function_pids(name) == provisioned
    r = invoke(lam, name, {}, Qualifier="live", LogType="Tail")
    assert "Init Duration" not in report_line(r["log"]), r["log"]
    assert r["json"]["env_id"] in {x["json"]["env_id"] for x in results}
    m = fetch_metrics(srv.endpoint)
    assert sum(m.value("shoal_environments", function=name, state=s)
               for s in ("initializing", "idle", "busy")) == 5

    deleted = lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert error_of(lam.get_provisioned_concurrency_config, FunctionName=name,
                    Qualifier="live") == (404, "ProvisionedConcurrencyConfigNotFoundException")


def test_unmeetable_provisioned_concurrency_is_refused_at_put(server_with, client_for):
    """Provisioned environments must fit in the memory capacity: a config that cannot be
    met is a 400 at Put time, not a warning on every maintenance tick."""
    srv = server_with(memory_capacity=1024)
    lam = client_for(srv)
    big = create_scaling_fn(lam, MemorySize=512)
    lam.publish_version(FunctionName=big)
    small = create_scaling_fn(lam, MemorySize=256)
    lam.publish_version(FunctionName=small)

    assert error_of(lam.put_provisioned_concurrency_config, FunctionName=big, Qualifier="1",
                    ProvisionedConcurrentExecutions=3) == (400, "InvalidParameterValueException")
    assert lam.put_provisioned_concurrency_config(
        FunctionName=big, Qualifier="1", ProvisionedConcurrentExecutions=2)["Status"]
    # The capacity is now taken: another function's config does not fit either...
    assert error_of(lam.put_provisioned_concurrency_config, FunctionName=small, Qualifier="1",
                    ProvisionedConcurrentExecutions=1) == (400, "InvalidParameterValueException")
    # ...until the first one shrinks (a config replaces its own earlier value).
    lam.put_provisioned_concurrency_config(FunctionName=big, Qualifier="1",
                                           ProvisionedConcurrentExecutions=1)
    lam.put_provisioned_concurrency_config(FunctionName=small, Qualifier="1",
                                           ProvisionedConcurrentExecutions=2)
    wait_for(lambda: lam.get_provisioned_concurrency_config(FunctionName=small,
                                                            Qualifier="1")["Status"],
             lambda status: status == "READY", timeout=20, what="small READY")
    # While the first function's surplus environment was still starting, the second's may
    # have waited a tick for memory: said once, not on every tick.
    time.sleep(1.5)
    assert srv.stderr_text(tail=10**6).count("no memory capacity left") <= 1
