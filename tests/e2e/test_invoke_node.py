"""Invoking Node.js functions (tests/fixtures/functions/node-echo, node-cjs)."""

import pytest

import support
from support import invoke


@pytest.fixture
def node_fn(make_fn, fixture_zip):
    """node_fn('node-echo', 'index.counter') -> function name."""

    def make(fixture: str = "node-echo", handler: str = "index.handler", **extra) -> str:
        return make_fn(fixture_zip(fixture), runtime=support.NODE_RUNTIME, handler=handler,
                       **extra)["FunctionName"]

    return make


def assert_ok(resp):
    assert resp["StatusCode"] == 200, resp
    assert "FunctionError" not in resp, resp["raw"][:2000]


def test_result_payload_and_context(lam, node_fn):
    name = node_fn(Environment={"Variables": {"MY_VAR": "node value"}})
    event = {"hello": "node", "list": [1, 2]}
    resp = invoke(lam, name, event)
    assert_ok(resp)
    assert resp["ExecutedVersion"] == "$LATEST"
    body = resp["json"]
    assert body["event"] == event
    assert body["requestId"]
    assert body["functionName"] == name
    assert body["functionVersion"] == "$LATEST"
    assert body["invokedFunctionArn"] == support.function_arn(name)
    assert str(body["memory"]) == "128"
    assert 0 < body["remainingMs"] <= 3000
    assert body["clientContext"] is None
    env = body["env"]
    assert env["MY_VAR"] == "node value"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_REGION"] == "us-east-1"
    assert env["_HANDLER"] == "index.handler"
    assert env["TZ"] == ":UTC"
    assert env["LAMBDA_TASK_ROOT"]


def test_client_context_reaches_the_function(lam, node_fn):
    import base64
    import json

    cc = {"custom": {"k": "v"}, "env": {"e": "1"}, "client": {"installation_id": "abc"}}
    resp = invoke(lam, node_fn(), {}, ClientContext=base64.b64encode(json.dumps(cc).encode()).decode())
    assert_ok(resp)
    got = resp["json"]["clientContext"]
    assert got is not None, "ClientContext was not passed to the function"
    assert got["custom"] == {"k": "v"}, got


def test_log_tail(lam, node_fn):
    resp = invoke(lam, node_fn("node-cjs", "index.handler"), {}, LogType="Tail")
    assert_ok(resp)
    request_id = support.request_id_from_tail(resp["LogResult"])
    assert f"START RequestId: {request_id}" in resp["log"]
    assert f"END RequestId: {request_id}" in resp["log"]
    assert f"REPORT RequestId: {request_id}" in resp["log"]
    assert f"cjs handler {request_id}" in resp["log"], resp["log"]


def test_function_error(lam, node_fn):
    resp = invoke(lam, node_fn(handler="index.fail"), {})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    body = resp["json"]
    assert body["errorType"] == "Error", body
    assert body["errorMessage"] == "boom", body
    # Lambda's Node.js runtime names the stack "trace" (Python's says "stackTrace").
    assert isinstance(body.get("trace"), list) and body["trace"][0] == "Error: boom", body


def test_callback_handler(lam, node_fn):
    resp = invoke(lam, node_fn(handler="index.cb"), {"x": 1})
    assert_ok(resp)
    assert resp["json"] == {"callback": True, "event": {"x": 1}}


def test_warm_reuse(lam, node_fn):
    name = node_fn(handler="index.counter")
    first = invoke(lam, name, {})
    second = invoke(lam, name, {})
    assert_ok(first)
    assert_ok(second)
    assert first["json"]["count"] == 1
    assert second["json"]["count"] == 2
    assert first["json"]["envId"] == second["json"]["envId"]


def test_commonjs_module(lam, node_fn):
    resp = invoke(lam, node_fn("node-cjs", "index.handler"), {"cjs": True})
    assert_ok(resp)
    assert resp["json"] == {"cjs": True, "event": {"cjs": True}}


def test_missing_handler_export(lam, node_fn):
    resp = invoke(lam, node_fn(handler="index.nope"), {})
    assert resp["FunctionError"] == "Unhandled"
    assert resp["json"]["errorType"] == "Runtime.HandlerNotFound", resp["json"]


NODE_MISC = """
export const sleep = async (e) => { await new Promise(r => setTimeout(r, e.ms)); return "slept"; };
export const exit = async () => { process.exit(3); };
export const nothing = async () => undefined;
export const cbErr = (e, ctx, cb) => { cb(new TypeError("cb failed")); };
"""


@pytest.fixture
def node_misc(make_fn):
    def make(handler: str, **extra) -> str:
        return make_fn(support.zip_files({"index.mjs": NODE_MISC}), runtime=support.NODE_RUNTIME,
                       handler=f"index.{handler}", **extra)["FunctionName"]

    return make


def test_timeout(lam, node_misc):
    import time

    name = node_misc("sleep", Timeout=1)
    t0 = time.monotonic()
    resp = invoke(lam, name, {"ms": 3000})
    assert time.monotonic() - t0 < 2.5
    assert resp["FunctionError"] == "Unhandled"
    assert resp["json"]["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in resp["json"]["errorMessage"]
    assert_ok(invoke(lam, name, {"ms": 1}))


def test_process_exit(lam, node_misc):
    resp = invoke(lam, node_misc("exit"), {})
    assert resp["FunctionError"] == "Unhandled"
    assert resp["json"]["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in resp["json"]["errorMessage"]


def test_undefined_result_is_null(lam, node_misc):
    resp = invoke(lam, node_misc("nothing"), {})
    assert_ok(resp)
    assert resp["raw"] == b"null"


def test_callback_error(lam, node_misc):
    resp = invoke(lam, node_misc("cbErr"), {})
    assert resp["FunctionError"] == "Unhandled"
    assert resp["json"]["errorType"] == "TypeError"
    assert resp["json"]["errorMessage"] == "cb failed"
