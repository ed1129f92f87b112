"""The Runtime API as a custom runtime sees it (a bootstrap written here, in Python)."""

import base64
import json
import time

import pytest

import support
from support import PROVIDED_RUNTIME, invoke, zip_files

# A custom runtime: reports what /next gave it, or misbehaves on request.
BOOTSTRAP = r'''#!/usr/bin/env python3
import http.client, json, os, sys, time
API = os.environ["AWS_LAMBDA_RUNTIME_API"]
BASE = "/2018-06-01/runtime"

def call(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(API)
    conn.request(method, path, body, headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

if os.environ.get("MODE") == "init-error":
    body = json.dumps({"errorMessage": "init went wrong", "errorType": "Custom.InitError",
                       "stackTrace": []})
    status = call("POST", BASE + "/init/error", body,
                  {"Lambda-Runtime-Function-Error-Type": "Custom.InitError"})[0]
    print("init error posted", status, flush=True)
    sys.exit(1)

while True:
    status, headers, body = call("GET", BASE + "/invocation/next")
    rid = headers["lambda-runtime-aws-request-id"]
    event = json.loads(body)
    mode = event.get("mode") if isinstance(event, dict) else None
    if mode == "raw":
        call("POST", BASE + "/invocation/%s/response" % rid, b"\x00raw bytes, not JSON\xff")
        continue
    if mode == "error":
        err = json.dumps({"errorMessage": "custom failure", "errorType": "MyError",
                          "stackTrace": ["frame 1"]})
        call("POST", BASE + "/invocation/%s/error" % rid, err,
             {"Lambda-Runtime-Function-Error-Type": "MyError"})
        continue
    report = {"status": status, "headers": headers, "now_ms": int(time.time() * 1000),
              "event": event}
    if mode == "probe":
        report["unknown_id"] = call("POST", BASE + "/invocation/no-such-id/response", b"{}")[0]
    first = call("POST", BASE + "/invocation/%s/response" % rid, json.dumps(report))[0]
    if mode == "probe":
        print("response status %d, again %d" % (
            first, call("POST", BASE + "/invocation/%s/response" % rid, b"{}")[0]), flush=True)
'''


@pytest.fixture
def custom(make_fn):
    def make(**extra) -> str:
        return make_fn(zip_files({"bootstrap": (BOOTSTRAP, 0o755)}), runtime=PROVIDED_RUNTIME,
                       handler="handler.name", **extra)["FunctionName"]

    return make


def test_next_headers(lam, custom):
    name = custom(Timeout=7)
    cc = {"custom": {"k": "v"}, "env": {"e": "1"}}
    t0 = int(time.time() * 1000)
    resp = invoke(lam, name, {"mode": "report", "x": 1},
                  ClientContext=base64.b64encode(json.dumps(cc).encode()).decode(),
                  LogType="Tail")
    assert "FunctionError" not in resp, resp["raw"]
    report = resp["json"]
    h = report["headers"]
    assert report["status"] == 200
    assert report["event"] == {"mode": "report", "x": 1}
    assert h["content-type"].startswith("application/json")
    assert h["lambda-runtime-aws-request-id"] == support.request_id_from_tail(resp["LogResult"])
    assert h["lambda-runtime-invoked-function-arn"] == support.function_arn(name)
    assert h["lambda-runtime-trace-id"].startswith("Root=1-"), h
    assert json.loads(h["lambda-runtime-client-context"]) == cc
    assert "lambda-runtime-cognito-identity" not in h
    deadline = int(h["lambda-runtime-deadline-ms"])
    # The deadline is the invoke's start + Timeout (7 s), in epoch milliseconds.
    assert t0 + 6000 <= deadline <= int(time.time() * 1000) + 7000, (t0, deadline)


def test_request_ids_differ_per_invocation(lam, custom):
    name = custom()
    ids = {invoke(lam, name, {"mode": "report"})["json"]["headers"]
           ["lambda-runtime-aws-request-id"] for _ in range(3)}
    assert len(ids) == 3


def test_response_bytes_are_returned_as_is(lam, custom):
    resp = invoke(lam, custom(), {"mode": "raw"})
    assert "FunctionError" not in resp
    assert resp["raw"] == b"\x00raw bytes, not JSON\xff"


def test_error_body_is_returned_as_posted(lam, custom):
    resp = invoke(lam, custom(), {"mode": "error"})
    assert resp["FunctionError"] == "Unhandled"
    assert resp["json"] == {"errorMessage": "custom failure", "errorType": "MyError",
                            "stackTrace": ["frame 1"]}


def test_unknown_request_id_and_double_response_are_rejected(lam, endpoint, custom):
    name = custom()
    resp = invoke(lam, name, {"mode": "probe"}, LogType="Tail")
    assert "FunctionError" not in resp, resp["raw"]
    assert 400 <= resp["json"]["unknown_id"] < 500, resp["json"]
    # The runtime prints after it answered: read the line from the logs.
    events = support.wait_for_logs(endpoint, name, lambda ev: any(
        e["message"].startswith("response status") for e in ev))
    line = next(e["message"] for e in events if e["message"].startswith("response status"))
    first, again = (int(x) for x in line.replace(",", "").split()[2::2])
    assert first == 202, line
    assert 400 <= again < 500, line


def test_init_error_is_reported(lam, custom):
    name = custom(Environment={"Variables": {"MODE": "init-error"}})
    resp = invoke(lam, name, {})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert resp["json"]["errorType"] == "Custom.InitError", resp["json"]
    assert resp["json"]["errorMessage"] == "init went wrong"
