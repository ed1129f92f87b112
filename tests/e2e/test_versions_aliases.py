"""Aliases: Create/Get/Update/Delete/ListAliases, invoking by alias, weighted routing."""

import json
from collections import Counter

import pytest
from botocore.exceptions import ClientError

from support import function_arn, invoke, scaling_zip

ALIAS_FIELDS = ("AliasArn", "Name", "FunctionVersion", "Description", "RoutingConfig",
                "RevisionId")


@pytest.fixture
def two_versions(lam, make_fn):
    """A function with version 1 (marker v1) and version 2 (marker v2) published."""
    name = make_fn(scaling_zip("v1"))["FunctionName"]
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    lam.update_function_code(FunctionName=name, ZipFile=scaling_zip("v2"))
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    return name


def weights(alias: dict) -> dict:
    return (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}


def error_of(call, **kwargs) -> tuple[int, str]:
    with pytest.raises(ClientError) as e:
        call(**kwargs)
    response = e.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def test_create_get_update_list_delete_alias(lam, two_versions):
    name = two_versions
    created = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                               Description="the live one",
                               RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AliasArn"] == function_arn(name) + ":live"
    assert created["Name"] == "live"
    assert created["FunctionVersion"] == "1"
    assert created["Description"] == "the live one"
    assert created["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.1}}
    assert created["RevisionId"]

    got = lam.get_alias(FunctionName=name, Name="live")
    assert {k: got.get(k) for k in ALIAS_FIELDS} == {k: created.get(k) for k in ALIAS_FIELDS}

    updated = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                               RoutingConfig={"AdditionalVersionWeights": {}})
    assert updated["FunctionVersion"] == "2"
    assert updated["Description"] == "the live one"  # not given: kept
    assert weights(updated) == {}
    assert updated["RevisionId"] and updated["RevisionId"] != created["RevisionId"]
    described = lam.update_alias(FunctionName=name, Name="live", Description="now 2")
    assert (described["FunctionVersion"], described["Description"]) == ("2", "now 2")
    assert lam.get_alias(FunctionName=name, Name="live")["Description"] == "now 2"

    lam.create_alias(FunctionName=name, Name="old", FunctionVersion="1")
    listed = lam.list_aliases(FunctionName=name)["Aliases"]
    assert sorted(a["Name"] for a in listed) == ["live", "old"]
    assert {a["Name"]: a["AliasArn"] for a in listed}["old"] == function_arn(name) + ":old"
    by_version = lam.list_aliases(FunctionName=name, FunctionVersion="1")["Aliases"]
    assert [a["Name"] for a in by_version] == ["old"]

    deleted = lam.delete_alias(FunctionName=name, Name="live")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert error_of(lam.get_alias, FunctionName=name, Name="live") == (
        404, "ResourceNotFoundException")
    assert [a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]] == ["old"]


def test_invoke_by_alias_runs_the_aliased_version(lam, two_versions):
    name = two_versions
    lam.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")
    for fn, kwargs in ((f"{name}:prod", {}), (name, {"Qualifier": "prod"})):
        r = invoke(lam, fn, {}, **kwargs)
        assert r["StatusCode"] == 200 and "FunctionError" not in r, r["raw"]
        assert r["ExecutedVersion"] == "1"
        assert (r["json"]["version"], r["json"]["marker"]) == ("1", "v1")

    lam.update_alias(FunctionName=name, Name="prod", FunctionVersion="2")
    r = invoke(lam, name, {}, Qualifier="prod")
    assert r["ExecutedVersion"] == "2"
    assert (r["json"]["version"], r["json"]["marker"]) == ("2", "v2")

    assert error_of(lam.invoke, FunctionName=name, Qualifier="nope", Payload=b"{}") == (
        404, "ResourceNotFoundException")


def test_weighted_alias_splits_invocations_between_versions(lam, two_versions):
    name = two_versions
    lam.create_alias(FunctionName=name, Name="canary", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    counts: Counter = Counter()
    mismatches = []
    for _ in range(1000):
        r = lam.invoke(FunctionName=name, Qualifier="canary", Payload=b"{}")
        executed = r["ExecutedVersion"]
        body = json.loads(r["Payload"].read())
        counts[executed] += 1
        if body.get("version") != executed or body.get("marker") != f"v{executed}":
            mismatches.append((executed, body))
    assert not mismatches, f"{len(mismatches)} invocations ran another version than the " \
                           f"X-Amz-Executed-Version they reported: {mismatches[:3]}"
    assert set(counts) <= {"1", "2"}, counts
    # Binomial(1000, 0.1): mean 100, sd ~9.5; 60..140 is more than 4 sd each way.
    assert 60 <= counts["2"] <= 140, f"90/10 alias split as {dict(counts)}"


def test_alias_errors(lam_nv, two_versions):
    lam, name = lam_nv, two_versions
    status, code = error_of(lam.create_alias, FunctionName=name, Name="ghost",
                            FunctionVersion="9")
    assert (status, code) in {(404, "ResourceNotFoundException"),
                              (400, "InvalidParameterValueException")}, (status, code)
    status, _ = error_of(lam.create_alias, FunctionName=name, Name="7", FunctionVersion="1")
    assert status == 400, "an alias named like a version number was accepted"
    status, _ = error_of(lam.create_alias, FunctionName=name, Name="heavy", FunctionVersion="1",
                         RoutingConfig={"AdditionalVersionWeights": {"2": 1.5}})
    assert status == 400, "a routing weight above 1 was accepted"

    lam.create_alias(FunctionName=name, Name="dup", FunctionVersion="1")
    assert error_of(lam.create_alias, FunctionName=name, Name="dup", FunctionVersion="2") == (
        409, "ResourceConflictException")
    assert lam.get_alias(FunctionName=name, Name="dup")["FunctionVersion"] == "1"

    names = [a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]]
    assert names == ["dup"], f"rejected aliases were created: {names}"
    assert error_of(lam.get_alias, FunctionName=name, Name="nope") == (
        404, "ResourceNotFoundException")
