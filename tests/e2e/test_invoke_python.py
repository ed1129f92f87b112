"""Invoking Python functions (tests/fixtures/functions/py-echo and friends)."""

import base64
import threading
import time

import pytest

import support
from support import invoke, py_zip, wait_for_logs


@pytest.fixture
def py_echo(make_fn, fixture_zip):
    """make py-echo with a handler of app.py: py_echo('sleep', Timeout=1) -> function name."""

    def make(handler: str = "handler", **extra) -> str:
        return make_fn(fixture_zip("py-echo"), runtime=support.PY_RUNTIME,
                       handler=f"app.{handler}", **extra)["FunctionName"]

    return make


def assert_ok(resp):
    assert resp["StatusCode"] == 200, resp
    assert "FunctionError" not in resp, resp["raw"][:2000]


def test_result_payload_and_context(lam, py_echo):
    name = py_echo(Environment={"Variables": {"MY_VAR": "my value"}})
    event = {"hello": "world", "n": [1, 2, 3], "nested": {"ok": True}}
    resp = invoke(lam, name, event)
    assert_ok(resp)
    assert resp["ResponseMetadata"]["HTTPHeaders"]["content-type"].startswith("application/json")
    body = resp["json"]
    assert body["event"] == event
    assert body["requestId"]
    assert body["functionName"] == name
    assert body["functionVersion"] == "$LATEST"
    assert body["invokedFunctionArn"] == support.function_arn(name)
    assert str(body["memory"]) == "128"
    # Default timeout 3 s: the deadline is in the future and no further than 3 s away.
    assert 0 < body["remainingMs"] <= 3000
    env = body["env"]
    assert env["MY_VAR"] == "my value"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert env["AWS_REGION"] == "us-east-1"
    assert env["_HANDLER"] == "app.handler"
    assert env["TZ"] == ":UTC"
    assert env["LAMBDA_TASK_ROOT"]


ENV_DUMP = """
import os, tempfile
def handler(event, context):
    return {"env": dict(os.environ), "stream": context.log_stream_name,
            "cwd": os.path.realpath(os.getcwd()),
            "task_root": os.path.realpath(os.environ.get("LAMBDA_TASK_ROOT", "")),
            "tmp": os.path.realpath(tempfile.gettempdir()),
            "tmpdir": os.path.realpath(os.environ.get("TMPDIR", "/nonexistent"))}
"""


def test_execution_environment_variables(lam, make_fn):
    name = make_fn(py_zip(ENV_DUMP), MemorySize=256,
                   Environment={"Variables": {"A_VAR": "a", "ANOTHER": "b c"}})["FunctionName"]
    resp = invoke(lam, name, {})
    assert_ok(resp)
    body = resp["json"]
    env = body["env"]
    assert env["A_VAR"] == "a"
    assert env["ANOTHER"] == "b c"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["_HANDLER"] == "app.handler"
    assert env["LAMBDA_TASK_ROOT"] and body["task_root"] == body["cwd"]
    assert env["LAMBDA_RUNTIME_DIR"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == body["stream"]
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_EXECUTION_ENV"] == f"AWS_Lambda_{support.PY_RUNTIME}"
    assert env["TZ"] == ":UTC"
    assert env["TMPDIR"] and body["tmp"] == body["tmpdir"]  # exists and is writable
    assert env["PATH"]


def test_executed_version_header(lam, py_echo):
    resp = invoke(lam, py_echo(), {})
    assert_ok(resp)
    assert resp["ExecutedVersion"] == "$LATEST"
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-executed-version"] == "$LATEST"


def test_empty_payload_is_an_empty_object(lam, py_echo):
    resp = invoke(lam, py_echo())
    assert_ok(resp)
    assert resp["json"]["event"] == {}


def test_log_tail(lam, py_echo):
    name = py_echo("printer")
    resp = invoke(lam, name, {"lines": 2}, LogType="Tail")
    assert_ok(resp)
    assert resp.get("LogResult"), "LogType=Tail must return X-Amz-Log-Result"
    text = resp["log"]
    request_id = support.request_id_from_tail(resp["LogResult"])
    assert f"START RequestId: {request_id} Version: $LATEST" in text
    assert f"END RequestId: {request_id}" in text
    assert f"REPORT RequestId: {request_id}" in text
    assert "line 0" in text and "line 1" in text
    assert len(base64.b64decode(resp["LogResult"])) <= 4096


def test_no_tail_without_log_type(lam, py_echo):
    resp = invoke(lam, py_echo(), {})
    assert_ok(resp)
    assert "LogResult" not in resp


def test_function_error(lam, py_echo):
    resp = invoke(lam, py_echo("fail"), {})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-function-error"] == "Unhandled"
    body = resp["json"]
    assert body["errorType"] == "ValueError", body
    assert body["errorMessage"] == "boom", body
    assert isinstance(body.get("stackTrace"), list) and body["stackTrace"], body


def test_timeout(lam, py_echo):
    name = py_echo("sleep", Timeout=1)
    t0 = time.monotonic()
    resp = invoke(lam, name, {"seconds": 3})
    elapsed = time.monotonic() - t0
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    body = resp["json"]
    assert body["errorType"] == "Sandbox.Timedout", body
    assert "Task timed out after 1.00 seconds" in body["errorMessage"], body
    assert body["errorMessage"].startswith("RequestId: "), body
    assert elapsed < 2.5, f"timed-out invoke took {elapsed:.2f}s"
    # The environment was discarded; a new one serves the next call.
    resp = invoke(lam, name, {"seconds": 0})
    assert_ok(resp)


def test_crash(lam, py_echo):
    name = py_echo("crash")
    resp = invoke(lam, name, {})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    body = resp["json"]
    assert body["errorType"] == "Runtime.ExitError", body
    assert "Runtime exited with error: exit status 3" in body["errorMessage"], body
    # A crashed environment is replaced: the next invoke of a working handler works.
    lam.update_function_configuration(FunctionName=name, Handler="app.handler")
    resp = invoke(lam, name, {"after": "crash"})
    assert_ok(resp)
    assert resp["json"]["event"] == {"after": "crash"}


def test_crash_then_same_handler_is_tried_again(lam, py_echo):
    name = py_echo("crash")
    for _ in range(2):
        resp = invoke(lam, name, {})
        assert resp["FunctionError"] == "Unhandled"
        assert resp["json"]["errorType"] == "Runtime.ExitError"


def test_import_error(lam, make_fn, fixture_zip):
    name = make_fn(fixture_zip("py-broken-import"), runtime=support.PY_RUNTIME,
                   handler="app.handler")["FunctionName"]
    resp = invoke(lam, name, {})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert resp["json"]["errorType"] == "Runtime.ImportModuleError", resp["json"]
    assert "Unable to import module" in resp["json"]["errorMessage"]


def test_syntax_error(lam, make_fn, fixture_zip):
    name = make_fn(fixture_zip("py-syntax"), runtime=support.PY_RUNTIME,
                   handler="app.handler")["FunctionName"]
    resp = invoke(lam, name, {})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert resp["json"]["errorType"] == "Runtime.UserCodeSyntaxError", resp["json"]


def test_handler_not_found(lam, py_echo):
    resp = invoke(lam, py_echo("no_such_handler"), {})
    assert resp["FunctionError"] == "Unhandled"
    assert resp["json"]["errorType"] == "Runtime.HandlerNotFound", resp["json"]


def test_warm_reuse(lam, py_echo):
    name = py_echo("counter")
    first = invoke(lam, name, {})
    second = invoke(lam, name, {})
    assert_ok(first)
    assert_ok(second)
    assert first["json"]["count"] == 1
    assert second["json"]["count"] == 2
    assert first["json"]["env_id"] == second["json"]["env_id"]


SLEEPER = """
import time, uuid
ENV_ID = uuid.uuid4().hex  # once per runtime process: which environment this is
def handler(event, context):
    time.sleep(event["seconds"])
    return {"env_id": ENV_ID}
"""


def test_concurrent_invokes_run_in_parallel(lam, make_fn):
    name = make_fn(py_zip(SLEEPER), Timeout=10)["FunctionName"]
    assert_ok(invoke(lam, name, {"seconds": 0}))  # the first environment is warm
    t0 = time.monotonic()
    single = invoke(lam, name, {"seconds": 1})
    one = time.monotonic() - t0
    assert_ok(single)

    results: list = [None, None]

    def run(i):
        results[i] = invoke(lam, name, {"seconds": 1})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    both = time.monotonic() - t0
    for r in results:
        assert r is not None
        assert_ok(r)
    assert both < 1.8 * one, f"two concurrent invokes took {both:.2f}s, one took {one:.2f}s"
    assert results[0]["json"]["env_id"] != results[1]["json"]["env_id"], \
        "two concurrent invokes ran in the same environment"


def test_update_code_runs_new_code(lam, make_fn):
    name = make_fn(py_zip("def handler(event, context):\n    return 'v1'\n"))["FunctionName"]
    assert invoke(lam, name, {})["json"] == "v1"
    lam.update_function_code(FunctionName=name,
                             ZipFile=py_zip("def handler(event, context):\n    return 'v2'\n"))
    assert invoke(lam, name, {})["json"] == "v2"


def test_update_configuration_applies_to_next_invoke(lam, py_echo):
    name = py_echo(Environment={"Variables": {"MY_VAR": "1"}})
    assert invoke(lam, name, {})["json"]["env"]["MY_VAR"] == "1"
    lam.update_function_configuration(FunctionName=name, MemorySize=256,
                                      Environment={"Variables": {"MY_VAR": "2"}})
    body = invoke(lam, name, {})["json"]
    assert body["env"]["MY_VAR"] == "2"
    assert str(body["memory"]) == "256"


def test_dry_run(lam, py_echo):
    resp = lam.invoke(FunctionName=py_echo(), InvocationType="DryRun")
    assert resp["StatusCode"] == 204
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_five_megabyte_response(lam, py_echo):
    size = 5 * 1024 * 1024
    resp = invoke(lam, py_echo("big"), {"bytes": size})
    assert_ok(resp)
    assert isinstance(resp["json"], str)
    assert len(resp["json"]) == size


def test_response_over_6mb_is_a_function_error(lam, py_echo):
    name = py_echo("big", Timeout=20)
    resp = invoke(lam, name, {"bytes": 7 * 1024 * 1024})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert resp["json"]["errorType"] == "Function.ResponseSizeTooLarge", resp["raw"][:500]
    assert "6291556" in resp["json"]["errorMessage"], resp["json"]
    small = invoke(lam, name, {"bytes": 3})
    assert_ok(small)
    assert small["json"] == "xxx"


def test_invoke_by_arn_and_latest_qualifier(lam, py_echo):
    name = py_echo()
    assert_ok(invoke(lam, support.function_arn(name), {"a": 1}))
    resp = invoke(lam, name, {"a": 2}, Qualifier="$LATEST")
    assert_ok(resp)
    assert resp["json"]["event"] == {"a": 2}


MISC = """
import os, subprocess, sys
def handler(event, context):
    mode = event.get("mode")
    if mode == "streams":
        print("to-stdout")
        print("to-stderr", file=sys.stderr)
        return "ok"
    if mode == "spam":
        for i in range(event["n"]):
            print("spam line %06d " % i + "y" * 100)
        return "spammed"
    if mode == "child":
        # The child's pid is one of this process's PID namespace: with it, its namespace,
        # which is how the host finds it (support.process_identity).
        pid = subprocess.Popen(["sleep", "60"]).pid
        return {"child": "%s/%d" % (os.readlink("/proc/self/ns/pid"), pid)}
    return event
"""


def test_unicode_round_trip(lam, make_fn):
    name = make_fn(py_zip(MISC))["FunctionName"]
    event = {"s": "h\u00e9llo \U0001F600 \u00fcn\u00ef \u4e2d\u6587", "q": "\"quoted\"\n"}
    resp = invoke(lam, name, event)
    assert_ok(resp)
    assert resp["json"] == event


def test_stdout_and_stderr_are_both_logged(lam, make_fn):
    name = make_fn(py_zip(MISC))["FunctionName"]
    resp = invoke(lam, name, {"mode": "streams"}, LogType="Tail")
    assert_ok(resp)
    lines = resp["log"].splitlines()
    assert "to-stdout" in lines and "to-stderr" in lines, resp["log"]


def test_tail_is_the_last_4kb_of_a_long_log(lam, endpoint, make_fn):
    name = make_fn(py_zip(MISC), Timeout=30)["FunctionName"]
    # (Fewer lines than the server keeps per function (10,000), so none is trimmed.)
    resp = invoke(lam, name, {"mode": "spam", "n": 9000}, LogType="Tail")
    assert_ok(resp)
    raw = base64.b64decode(resp["LogResult"])
    assert 3000 < len(raw) <= 4096, len(raw)
    text = resp["log"]
    assert "spam line 008999" in text
    assert text.rstrip("\n").splitlines()[-1].startswith("REPORT RequestId: "), text[-300:]
    rid = text.split("END RequestId: ")[1].split()[0]
    events = wait_for_logs(endpoint, name, lambda ev: any(
        e["message"].startswith(f"REPORT RequestId: {rid}") for e in ev), timeout=10)
    printed = [e["message"] for e in events if e["message"].startswith("spam line ")]
    assert len(printed) == 9000
    assert printed[0].startswith("spam line 000000") and printed[-1].startswith("spam line 008999")


def test_function_child_processes_end_with_the_environment(lam, make_fn):
    name = make_fn(py_zip(MISC))["FunctionName"]
    child = support.host_pid(name, invoke(lam, name, {"mode": "child"})["json"]["child"])
    everything = support.function_pids(name)  # the runtime and its child
    assert child in everything and len(everything) >= 2, everything
    lam.delete_function(FunctionName=name)
    left = support.wait_pids_dead(everything, timeout=3)
    assert child not in left, f"the function's child process {child} outlived its environment"
    assert not left, f"processes {left} of the function outlived its environment"


def test_init_duration_only_on_cold_start(lam, endpoint, py_echo):
    name = py_echo()
    cold = invoke(lam, name, {}, LogType="Tail")
    warm = invoke(lam, name, {}, LogType="Tail")
    cold_id = support.request_id_from_tail(cold["LogResult"])
    warm_id = support.request_id_from_tail(warm["LogResult"])

    def reports(events):
        return {e["message"].split()[2]: e["message"] for e in events
                if e["message"].startswith("REPORT RequestId: ")}

    events = wait_for_logs(endpoint, name,
                           lambda ev: {cold_id, warm_id} <= set(reports(ev)))
    rep = reports(events)
    assert "Init Duration: " in rep[cold_id], rep[cold_id]
    assert "Init Duration" not in rep[warm_id], rep[warm_id]
    for line in rep.values():
        fields = line.split("\t")
        assert fields[1].startswith("Duration: ") and fields[1].endswith(" ms"), line
        assert fields[2].startswith("Billed Duration: ") and fields[2].endswith(" ms"), line
        assert fields[3] == "Memory Size: 128 MB", line
        assert fields[4].startswith("Max Memory Used: ") and fields[4].endswith(" MB"), line
