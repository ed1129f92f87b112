"""Control plane: create / get / list / update / delete, as boto3 sees them."""

import os
import re

import pytest
from botocore.exceptions import ClientError

import support
from support import b64sha256, function_arn, py_zip

ECHO_SRC = "def handler(event, context):\n    return event\n"
LAST_MODIFIED_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


def test_create_returns_full_configuration(lam, make_fn, unique_name):
    code = py_zip(ECHO_SRC)
    name = unique_name("cp")
    cfg = make_fn(code, name=name, Environment={"Variables": {"GREETING": "hi"}})
    assert cfg["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert cfg["FunctionName"] == name
    assert cfg["FunctionArn"] == function_arn(name)
    assert cfg["Runtime"] == support.PY_RUNTIME
    assert cfg["Handler"] == "app.handler"
    assert cfg["CodeSize"] == len(code)
    assert cfg["CodeSha256"] == b64sha256(code)
    assert cfg["MemorySize"] == 128
    assert cfg["Timeout"] == 3
    assert cfg["Environment"]["Variables"] == {"GREETING": "hi"}
    assert cfg["EphemeralStorage"]["Size"] == 512
    assert cfg["State"] == "Active"
    assert cfg["LastUpdateStatus"] == "Successful"
    assert cfg["Version"] == "$LATEST"
    assert LAST_MODIFIED_RE.match(cfg["LastModified"]), cfg["LastModified"]
    assert cfg["PackageType"] == "Zip"
    assert cfg["Architectures"] == ["x86_64"]
    assert cfg["Role"] == support.ROLE


def test_get_function_and_configuration(lam, make_fn, unique_name):
    code = py_zip(ECHO_SRC)
    name = unique_name("cp")
    created = make_fn(code, name=name, MemorySize=256, Timeout=10)

    got = lam.get_function(FunctionName=name)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    cfg = got["Configuration"]
    for key in ("FunctionName", "FunctionArn", "Runtime", "Handler", "CodeSize", "CodeSha256",
                "MemorySize", "Timeout", "Version", "LastModified", "PackageType"):
        assert cfg[key] == created[key], key
    assert cfg["MemorySize"] == 256
    assert cfg["Timeout"] == 10
    assert cfg["State"] == "Active"
    assert "Code" in got

    only_cfg = lam.get_function_configuration(FunctionName=name)
    assert only_cfg["FunctionName"] == name
    assert only_cfg["CodeSha256"] == b64sha256(code)
    assert only_cfg["MemorySize"] == 256


def test_get_by_arn(lam, make_fn, unique_name):
    name = unique_name("cp")
    make_fn(py_zip(ECHO_SRC), name=name)
    cfg = lam.get_function_configuration(FunctionName=function_arn(name))
    assert cfg["FunctionName"] == name


def test_list_functions_paginates_with_marker(lam, make_fn, unique_name):
    prefix = unique_name("pg")
    names = {f"{prefix}-{i}" for i in range(5)}
    code = py_zip(ECHO_SRC)
    for n in sorted(names):
        make_fn(code, name=n)

    seen: list[str] = []
    marker = None
    for _ in range(200):
        kwargs = {"MaxItems": 2}
        if marker:
            kwargs["Marker"] = marker
        page = lam.list_functions(**kwargs)
        assert len(page["Functions"]) <= 2
        seen.extend(f["FunctionName"] for f in page["Functions"])
        marker = page.get("NextMarker")
        if not marker:
            break
    else:
        pytest.fail("pagination did not end")
    assert len(seen) == len(set(seen)), f"a function listed twice: {seen}"
    assert names <= set(seen), f"missing: {names - set(seen)}"
    # Each page of 2 carried a NextMarker until the end: at least 3 pages for 5 functions.
    assert len(seen) >= 5


def test_list_functions_entries_are_configurations(lam, make_fn, unique_name):
    name = unique_name("cp")
    code = py_zip(ECHO_SRC)
    make_fn(code, name=name)
    funcs = {f["FunctionName"]: f for f in lam.list_functions()["Functions"]}
    assert name in funcs
    assert funcs[name]["FunctionArn"] == function_arn(name)
    assert funcs[name]["CodeSha256"] == b64sha256(code)
    assert funcs[name]["Runtime"] == support.PY_RUNTIME


def test_update_function_code_changes_digest_and_size(lam, make_fn, unique_name):
    name = unique_name("cp")
    v1 = py_zip(ECHO_SRC)
    v2 = py_zip(ECHO_SRC + "\n# version 2, a longer file\nVERSION = 2\n")
    first = make_fn(v1, name=name)
    updated = lam.update_function_code(FunctionName=name, ZipFile=v2)
    assert updated["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert updated["CodeSha256"] == b64sha256(v2)
    assert updated["CodeSha256"] != first["CodeSha256"]
    assert updated["CodeSize"] == len(v2)
    assert updated["LastUpdateStatus"] == "Successful"
    assert LAST_MODIFIED_RE.match(updated["LastModified"])
    got = lam.get_function_configuration(FunctionName=name)
    assert got["CodeSha256"] == b64sha256(v2)
    assert got["CodeSize"] == len(v2)


def test_update_function_configuration(lam, make_fn, unique_name):
    name = unique_name("cp")
    make_fn(py_zip(ECHO_SRC + "def other(event, context):\n    return 'other'\n"), name=name,
            Environment={"Variables": {"AA": "1"}})
    updated = lam.update_function_configuration(
        FunctionName=name, MemorySize=512, Timeout=30, Handler="app.other",
        Environment={"Variables": {"BB": "2", "CC": "three"}})
    assert updated["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert updated["MemorySize"] == 512
    assert updated["Timeout"] == 30
    assert updated["Handler"] == "app.other"
    assert updated["Environment"]["Variables"] == {"BB": "2", "CC": "three"}
    got = lam.get_function_configuration(FunctionName=name)
    assert got["MemorySize"] == 512
    assert got["Timeout"] == 30
    assert got["Handler"] == "app.other"
    assert got["Environment"]["Variables"] == {"BB": "2", "CC": "three"}
    # Fields not named in the update keep their values.
    assert got["Runtime"] == support.PY_RUNTIME


def test_delete_function(lam, unique_name):
    name = unique_name("cp")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": py_zip(ECHO_SRC)})
    resp = lam.delete_function(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        lam.get_function(FunctionName=name)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert name not in names


def test_account_settings_counts_functions(lam, make_fn, unique_name):
    before = lam.get_account_settings()
    assert "AccountLimit" in before and "AccountUsage" in before
    assert isinstance(before["AccountLimit"].get("ConcurrentExecutions"), int)
    listed = len(_all_functions(lam))
    assert before["AccountUsage"]["FunctionCount"] == listed

    make_fn(py_zip(ECHO_SRC), name=unique_name("cp"))
    after = lam.get_account_settings()
    assert after["AccountUsage"]["FunctionCount"] == listed + 1
    assert after["AccountUsage"]["TotalCodeSize"] >= before["AccountUsage"]["TotalCodeSize"]


def _all_functions(lam) -> list[dict]:
    out: list[dict] = []
    marker = None
    for _ in range(100):
        page = lam.list_functions(**({"Marker": marker} if marker else {}))
        out.extend(page["Functions"])
        marker = page.get("NextMarker")
        if not marker:
            return out
    raise AssertionError("ListFunctions pagination did not end")


def test_boundary_values_are_accepted(lam, make_fn):
    name = "b" + "x" * 63  # the longest allowed name
    cfg = make_fn(py_zip(ECHO_SRC), name=name, MemorySize=10240, Timeout=900,
                  Description="d" * 256)
    assert cfg["FunctionName"] == name
    assert (cfg["MemorySize"], cfg["Timeout"]) == (10240, 900)
    assert cfg["Description"] == "d" * 256
    lam.delete_function(FunctionName=name)
    cfg = make_fn(py_zip(ECHO_SRC), name=name, MemorySize=128, Timeout=1)
    assert (cfg["MemorySize"], cfg["Timeout"]) == (128, 1)


def test_revision_id_changes_on_update(lam, make_fn):
    cfg = make_fn(py_zip(ECHO_SRC))
    assert cfg["RevisionId"]
    updated = lam.update_function_configuration(FunctionName=cfg["FunctionName"], Timeout=9,
                                                RevisionId=cfg["RevisionId"])
    assert updated["RevisionId"] != cfg["RevisionId"]
    code = lam.update_function_code(FunctionName=cfg["FunctionName"],
                                    ZipFile=py_zip(ECHO_SRC + "# v2\n"),
                                    RevisionId=updated["RevisionId"])
    assert code["RevisionId"] not in (cfg["RevisionId"], updated["RevisionId"])


def test_empty_environment_update_removes_variables(lam, make_fn):
    cfg = make_fn(py_zip(ECHO_SRC), Environment={"Variables": {"KEY1": "v"}})
    lam.update_function_configuration(FunctionName=cfg["FunctionName"],
                                      Environment={"Variables": {}})
    got = lam.get_function_configuration(FunctionName=cfg["FunctionName"])
    assert got.get("Environment", {}).get("Variables", {}) == {}


def test_zip_of_40mb_is_accepted(lam, make_fn):
    # Lambda takes direct uploads up to 50 MB zipped; random bytes do not compress.
    code = support.zip_files({"app.py": ECHO_SRC, "blob.bin": os.urandom(40 * 1024 * 1024)})
    cfg = make_fn(code)
    assert cfg["CodeSize"] == len(code)
    assert cfg["CodeSha256"] == b64sha256(code)
    resp = support.invoke(lam, cfg["FunctionName"], {"big": "code"})
    assert resp["json"] == {"big": "code"}


def test_code_signing_config_reads_as_not_configured(lam, make_fn, unique_name):
    # Deploy tools (Terraform's AWS provider) read it after every create and refresh.
    cfg = make_fn(py_zip(ECHO_SRC))
    name = cfg["FunctionName"]
    for ref in (name, cfg["FunctionArn"]):
        got = lam.get_function_code_signing_config(FunctionName=ref)
        assert (got["CodeSigningConfigArn"], got["FunctionName"]) == ("", name), got
    err = support.client_error(lam.get_function_code_signing_config, FunctionName=unique_name())
    assert err.response["Error"]["Code"] == "ResourceNotFoundException", err.response
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 404
