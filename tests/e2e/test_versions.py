"""Versions: PublishVersion, ListVersionsByFunction, qualified Get/Invoke/Delete."""

import pytest
from botocore.exceptions import ClientError

import support
from support import function_arn, invoke, scaling_zip


def not_found(call, **kwargs) -> dict:
    with pytest.raises(ClientError) as e:
        call(**kwargs)
    response = e.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 404, response
    assert response["Error"]["Code"] == "ResourceNotFoundException", response
    return response


def publish(lam, name: str) -> dict:
    return lam.publish_version(FunctionName=name)


def test_publish_version_numbers_versions_from_1(lam, make_fn):
    name = make_fn(scaling_zip("v1"))["FunctionName"]
    v1 = publish(lam, name)
    assert v1["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert v1["Version"] == "1"
    assert v1["FunctionName"] == name
    assert v1["FunctionArn"] == function_arn(name) + ":1"
    assert v1["CodeSha256"] == support.b64sha256(scaling_zip("v1"))

    lam.update_function_code(FunctionName=name, ZipFile=scaling_zip("v2"))
    v2 = publish(lam, name)
    assert v2["Version"] == "2"
    assert v2["FunctionArn"] == function_arn(name) + ":2"
    assert v2["CodeSha256"] == support.b64sha256(scaling_zip("v2"))

    # A configuration change is a change too.
    lam.update_function_configuration(FunctionName=name,
                                      Environment={"Variables": {"MARK": "c"}})
    assert publish(lam, name)["Version"] == "3"


def test_publish_without_changes_returns_the_latest_version(lam, make_fn):
    name = make_fn(scaling_zip("v1"))["FunctionName"]
    assert publish(lam, name)["Version"] == "1"
    again = publish(lam, name)
    assert again["Version"] == "1"
    assert again["FunctionArn"] == function_arn(name) + ":1"
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1"]


def test_list_versions_by_function_pages_in_order(lam, make_fn):
    name = make_fn(scaling_zip("v1"))["FunctionName"]
    publish(lam, name)
    lam.update_function_code(FunctionName=name, ZipFile=scaling_zip("v2"))
    publish(lam, name)

    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert versions[1]["FunctionArn"] == function_arn(name) + ":1"
    assert versions[2]["CodeSha256"] == support.b64sha256(scaling_zip("v2"))

    seen, marker, pages = [], None, 0
    while pages < 10:
        kwargs = {"Marker": marker} if marker else {}
        page = lam.list_versions_by_function(FunctionName=name, MaxItems=1, **kwargs)
        pages += 1
        assert len(page["Versions"]) == 1, page["Versions"]
        seen += [v["Version"] for v in page["Versions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == ["$LATEST", "1", "2"]
    assert pages == 3


def test_get_a_version_by_qualifier_or_qualified_name(lam, make_fn):
    name = make_fn(scaling_zip("v1"), Environment={"Variables": {"MARK": "a"}})["FunctionName"]
    publish(lam, name)
    lam.update_function_code(FunctionName=name, ZipFile=scaling_zip("v2"))
    lam.update_function_configuration(FunctionName=name,
                                      Environment={"Variables": {"MARK": "b"}})

    for cfg in (lam.get_function_configuration(FunctionName=name, Qualifier="1"),
                lam.get_function_configuration(FunctionName=f"{name}:1"),
                lam.get_function(FunctionName=name, Qualifier="1")["Configuration"],
                lam.get_function(FunctionName=f"{name}:1")["Configuration"]):
        assert cfg["Version"] == "1"
        assert cfg["FunctionArn"] == function_arn(name) + ":1"
        assert cfg["CodeSha256"] == support.b64sha256(scaling_zip("v1"))
        assert cfg["Environment"]["Variables"] == {"MARK": "a"}

    latest = lam.get_function_configuration(FunctionName=name)
    assert latest["Version"] == "$LATEST"
    assert latest["CodeSha256"] == support.b64sha256(scaling_zip("v2"))
    assert latest["Environment"]["Variables"] == {"MARK": "b"}


def test_invoking_a_version_runs_that_versions_code(lam, make_fn):
    name = make_fn(scaling_zip("v1"), Environment={"Variables": {"MARK": "a"}})["FunctionName"]
    publish(lam, name)
    lam.update_function_code(FunctionName=name, ZipFile=scaling_zip("v2"))
    lam.update_function_configuration(FunctionName=name,
                                      Environment={"Variables": {"MARK": "b"}})
    publish(lam, name)
    lam.update_function_code(FunctionName=name, ZipFile=scaling_zip("v3"))  # not published

    cases = [
        ({"FunctionName": name, "Qualifier": "1"}, "1", "v1", "a"),
        ({"FunctionName": f"{name}:1"}, "1", "v1", "a"),
        ({"FunctionName": name, "Qualifier": "2"}, "2", "v2", "b"),
        ({"FunctionName": name}, "$LATEST", "v3", "b"),
        ({"FunctionName": name, "Qualifier": "$LATEST"}, "$LATEST", "v3", "b"),
    ]
    for kwargs, version, marker, mark in cases:
        fn = kwargs.pop("FunctionName")
        r = invoke(lam, fn, {}, LogType="Tail", **kwargs)
        assert r["StatusCode"] == 200 and "FunctionError" not in r, r["raw"]
        assert r["ExecutedVersion"] == version, (fn, kwargs)
        body = r["json"]
        assert (body["version"], body["contextVersion"]) == (version, version), (fn, kwargs)
        assert (body["marker"], body["mark"]) == (marker, mark), (fn, kwargs)
        assert f"Version: {version}" in r["log"].splitlines()[0], r["log"]


def test_delete_function_with_qualifier_deletes_only_that_version(lam, make_fn):
    name = make_fn(scaling_zip("v1"))["FunctionName"]
    publish(lam, name)
    lam.update_function_code(FunctionName=name, ZipFile=scaling_zip("v2"))
    publish(lam, name)
    assert invoke(lam, name, {}, Qualifier="1")["json"]["marker"] == "v1"

    deleted = lam.delete_function(FunctionName=name, Qualifier="1")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    not_found(lam.get_function_configuration, FunctionName=name, Qualifier="1")
    not_found(lam.invoke, FunctionName=name, Qualifier="1", Payload=b"{}")
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "2"]
    assert invoke(lam, name, {}, Qualifier="2")["json"]["marker"] == "v2"
    assert lam.get_function(FunctionName=name)["Configuration"]["Version"] == "$LATEST"


def test_missing_version_is_not_found(lam, make_fn):
    name = make_fn(scaling_zip("v1"))["FunctionName"]
    publish(lam, name)
    not_found(lam.get_function, FunctionName=name, Qualifier="7")
    not_found(lam.get_function_configuration, FunctionName=f"{name}:7")
    not_found(lam.invoke, FunctionName=name, Qualifier="7", Payload=b"{}")
    not_found(lam.invoke, FunctionName=f"{name}:7", Payload=b"{}")
    missing = support.unique_name("missing")
    not_found(lam.publish_version, FunctionName=missing)
    not_found(lam.list_versions_by_function, FunctionName=missing)
