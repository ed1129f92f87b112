"""Custom runtimes (provided.al2023): real Runtime API clients against Shoal's Runtime API.

- provided-awslambdaric: AWS's Python runtime interface client (pip `awslambdaric`).
- provided-node-ric: AWS's Node.js runtime interface client (npm `aws-lambda-ric`).
- provided-sh: a bootstrap written in shell (curl), if the fixture exists.
- examples/hello-rust: the `lambda_runtime` crate, built to target/release/bootstrap.
"""

import importlib.util
import os
import shutil

import pytest

import support
from support import PROVIDED_RUNTIME, invoke, zip_files


def assert_ok(resp):
    assert resp["StatusCode"] == 200, resp
    assert "FunctionError" not in resp, resp["raw"][:2000]


def test_awslambdaric(lam, make_fn, fixture_zip):
    if importlib.util.find_spec("awslambdaric") is None:
        pytest.skip("the awslambdaric Python package is not installed (pip install awslambdaric)")
    name = make_fn(fixture_zip("provided-awslambdaric"), runtime=PROVIDED_RUNTIME,
                   handler="app.handler")["FunctionName"]
    event = {"client": "awslambdaric", "n": 1}
    resp = invoke(lam, name, event, LogType="Tail")
    assert_ok(resp)
    body = resp["json"]
    assert body["event"] == event
    assert body["functionName"] == name
    assert str(body["memory"]) == "128"
    assert 0 < body["remainingMs"] <= 3000
    rid = support.request_id_from_tail(resp["LogResult"])
    assert body["requestId"] == rid
    assert f"awslambdaric handler {rid}" in resp["log"], resp["log"]
    # Warm: the same process answers the next event.
    again = invoke(lam, name, {"n": 2})
    assert_ok(again)
    assert again["json"]["event"] == {"n": 2}
    assert again["json"]["env_id"] == body["env_id"]


def test_awslambdaric_function_error(lam, make_fn, fixture_zip):
    if importlib.util.find_spec("awslambdaric") is None:
        pytest.skip("the awslambdaric Python package is not installed (pip install awslambdaric)")
    name = make_fn(fixture_zip("provided-awslambdaric"), runtime=PROVIDED_RUNTIME,
                   handler="app.fail")["FunctionName"]
    resp = invoke(lam, name, {})
    assert resp["FunctionError"] == "Unhandled"
    assert resp["json"]["errorMessage"] == "boom", resp["json"]
    assert resp["json"]["errorType"] == "ValueError", resp["json"]


NODE_MODULES = support.REPO / "tests" / "e2e" / "node_modules"


def test_node_ric(lam, make_fn, fixture_zip):
    ric = NODE_MODULES / "aws-lambda-ric"
    if not (ric / "package.json").is_file():
        pytest.skip(f"{ric} is missing (run `npm ci` in tests/e2e)")
    if not any(ric.rglob("*.node")):
        pytest.skip(f"{ric} has no built native addon (npm ci needs cmake, autoconf, "
                    f"automake, libtool, make, g++)")
    name = make_fn(fixture_zip("provided-node-ric"), runtime=PROVIDED_RUNTIME,
                   handler="index.handler", Timeout=10,
                   Environment={"Variables": {"SHOAL_TEST_NODE_MODULES": str(NODE_MODULES)}}
                   )["FunctionName"]
    event = {"client": "aws-lambda-ric"}
    resp = invoke(lam, name, event, LogType="Tail")
    assert_ok(resp)
    body = resp["json"]
    assert body["event"] == event
    assert body["functionName"] == name
    rid = support.request_id_from_tail(resp["LogResult"])
    assert body["requestId"] == rid
    again = invoke(lam, name, {"n": 2})
    assert_ok(again)
    assert again["json"]["event"] == {"n": 2}


def test_shell_bootstrap(lam, make_fn, fixture_zip):
    root = support.FIXTURES / "provided-sh"
    if not root.is_dir():
        pytest.skip("no provided-sh fixture")
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    name = make_fn(fixture_zip("provided-sh"), runtime=PROVIDED_RUNTIME,
                   handler="function.handler")["FunctionName"]
    resp = invoke(lam, name, {"sh": "yes"})
    assert_ok(resp)
    assert resp["json"] == {"sh": "yes"}
    again = invoke(lam, name, {"sh": "again"}, LogType="Tail")
    assert_ok(again)
    assert again["json"] == {"sh": "again"}
    rid = support.request_id_from_tail(again["LogResult"])
    assert f"provided-sh handling {rid}" in again["log"], again["log"]


def test_rust_lambda_runtime(lam, make_fn):
    binary = support.REPO / "target" / "release" / "bootstrap"
    if not binary.is_file():
        pytest.skip(f"{binary} is missing (cargo build --release -p hello-rust)")
    code = zip_files({"bootstrap": (binary.read_bytes(), 0o755)})
    name = make_fn(code, runtime=PROVIDED_RUNTIME, handler="bootstrap")["FunctionName"]
    resp = invoke(lam, name, {"name": "rust"}, LogType="Tail")
    assert_ok(resp)
    assert "rust" in resp["raw"].decode(), resp["raw"]
    again = invoke(lam, name, {"name": "again"})
    assert_ok(again)


def test_provided_bootstrap_exec_bit_matters(lam, make_fn):
    # A bootstrap without the executable bit cannot be started: an init error, not a hang.
    code = zip_files({"bootstrap": ("#!/bin/sh\nexit 0\n", 0o644)})
    name = make_fn(code, runtime=PROVIDED_RUNTIME, handler="x")["FunctionName"]
    resp = invoke(lam, name, {})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert resp["json"]["errorType"].startswith("Runtime."), resp["json"]


def test_provided_bootstrap_that_exits_during_init(lam, make_fn):
    code = zip_files({"bootstrap": ("#!/bin/sh\necho dying early\nexit 7\n", 0o755)})
    name = make_fn(code, runtime=PROVIDED_RUNTIME, handler="x")["FunctionName"]
    resp = invoke(lam, name, {}, LogType="Tail")
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert resp["json"]["errorType"] == "Runtime.ExitError", resp["json"]
    assert "exit status 7" in resp["json"]["errorMessage"], resp["json"]


def test_zip_dir_keeps_exec_bit(tmp_path, zip_dir):
    import io
    import zipfile

    (tmp_path / "bootstrap").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "bootstrap", 0o755)
    zf = zipfile.ZipFile(io.BytesIO(zip_dir(tmp_path)))
    assert (zf.getinfo("bootstrap").external_attr >> 16) & 0o777 == 0o755
