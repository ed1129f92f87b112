"""The AWS CLI (`aws lambda ...`) against Shoal."""

import base64
import json
import shutil
import subprocess

import pytest

import support
from support import b64sha256, py_zip

pytestmark = pytest.mark.skipif(shutil.which("aws") is None,
                                reason="the AWS CLI is not installed (pip install awscli)")


def _raw_payload_args() -> list[str]:
    # AWS CLI v2 reads blob arguments as base64 unless told otherwise; v1 takes them raw.
    if shutil.which("aws") is None:
        return []
    version = subprocess.run(["aws", "--version"], capture_output=True, text=True)
    text = version.stdout + version.stderr
    return [] if "aws-cli/1." in text else ["--cli-binary-format", "raw-in-base64-out"]


RAW_PAYLOAD = _raw_payload_args()

V1 = "def handler(event, context):\n    return {'version': 1, 'event': event}\n"
V2 = "def handler(event, context):\n    return {'version': 2, 'event': event}\n"


def ok(proc):
    assert proc.returncode == 0, (
        f"{proc.args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return json.loads(proc.stdout) if proc.stdout.strip() else None


@pytest.fixture
def zipfile_path(tmp_path):
    def write(source: str, name: str = "f.zip"):
        path = tmp_path / name
        data = py_zip(source)
        path.write_bytes(data)
        return path, data

    return write


@pytest.fixture
def fn(aws, lam, unique_name, zipfile_path):
    """A function created with the AWS CLI; deleted after the test."""
    name = unique_name("awscli")
    path, data = zipfile_path(V1)
    cfg = ok(aws("create-function", "--function-name", name, "--runtime", support.PY_RUNTIME,
                 "--handler", "app.handler", "--role", support.ROLE,
                 "--zip-file", f"fileb://{path}"))
    yield name, cfg, data
    try:
        lam.delete_function(FunctionName=name)
    except Exception:
        pass


def test_create_function(fn):
    name, cfg, data = fn
    assert cfg["FunctionName"] == name
    assert cfg["FunctionArn"] == support.function_arn(name)
    assert cfg["CodeSha256"] == b64sha256(data)
    assert cfg["CodeSize"] == len(data)
    assert cfg["State"] == "Active"


def test_invoke_to_outfile(aws, fn, tmp_path):
    name, _, _ = fn
    out = tmp_path / "out.json"
    meta = ok(aws("invoke", "--function-name", name, *RAW_PAYLOAD, "--payload", '{"k": "v"}',
                  str(out)))
    assert meta["StatusCode"] == 200
    assert meta["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in meta
    assert json.loads(out.read_text()) == {"version": 1, "event": {"k": "v"}}


def test_invoke_with_log_tail(aws, fn, tmp_path):
    name, _, _ = fn
    out = tmp_path / "out.json"
    meta = ok(aws("invoke", "--function-name", name, "--log-type", "Tail", str(out)))
    assert "START RequestId:" in base64.b64decode(meta["LogResult"]).decode()


def test_list_functions(aws, fn):
    name, _, _ = fn
    listed = ok(aws("list-functions"))
    assert name in [f["FunctionName"] for f in listed["Functions"]]


def test_list_functions_paginated_by_the_cli(aws, fn):
    # --page-size makes the CLI follow NextMarker itself.
    name, _, _ = fn
    listed = ok(aws("list-functions", "--page-size", "1"))
    names = [f["FunctionName"] for f in listed["Functions"]]
    assert name in names
    assert len(names) == len(set(names))


def test_get_function(aws, fn):
    name, cfg, _ = fn
    got = ok(aws("get-function", "--function-name", name))
    assert got["Configuration"]["FunctionName"] == name
    assert got["Configuration"]["CodeSha256"] == cfg["CodeSha256"]


def test_update_function_code(aws, fn, zipfile_path, tmp_path):
    name, cfg, _ = fn
    path, data = zipfile_path(V2, "v2.zip")
    updated = ok(aws("update-function-code", "--function-name", name,
                     "--zip-file", f"fileb://{path}"))
    assert updated["CodeSha256"] == b64sha256(data)
    assert updated["CodeSha256"] != cfg["CodeSha256"]
    out = tmp_path / "out.json"
    ok(aws("invoke", "--function-name", name, str(out)))
    assert json.loads(out.read_text())["version"] == 2


def test_update_function_configuration(aws, fn):
    name, _, _ = fn
    updated = ok(aws("update-function-configuration", "--function-name", name,
                     "--memory-size", "256", "--timeout", "15",
                     "--environment", "Variables={K1=v1,K2=v2}"))
    assert updated["MemorySize"] == 256
    assert updated["Timeout"] == 15
    assert updated["Environment"]["Variables"] == {"K1": "v1", "K2": "v2"}


def test_delete_function(aws, fn):
    name, _, _ = fn
    proc = aws("delete-function", "--function-name", name)
    assert proc.returncode == 0, proc.stderr
    missing = aws("get-function", "--function-name", name)
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr, missing.stderr


def test_error_is_reported_by_name(aws, fn, zipfile_path):
    name, _, _ = fn
    path, _ = zipfile_path(V1, "again.zip")
    proc = aws("create-function", "--function-name", name, "--runtime", support.PY_RUNTIME,
               "--handler", "app.handler", "--role", support.ROLE, "--zip-file", f"fileb://{path}")
    assert proc.returncode != 0
    assert "ResourceConflictException" in proc.stderr, proc.stderr


def test_tags(aws, fn):
    name, cfg, _ = fn
    arn = cfg["FunctionArn"]
    assert ok(aws("tag-resource", "--resource", arn,
                  "--tags", "shoal:network=egress,team=cli")) is None
    assert ok(aws("list-tags", "--resource", arn))["Tags"] == {
        "shoal:network": "egress", "team": "cli"}
    assert ok(aws("get-function", "--function-name", name))["Tags"]["team"] == "cli"
    ok(aws("untag-resource", "--resource", arn, "--tag-keys", "shoal:network"))
    assert ok(aws("list-tags", "--resource", arn))["Tags"] == {"team": "cli"}
