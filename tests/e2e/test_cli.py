"""The `shoal` CLI, the way the README uses it."""

import json
import os
import queue
import subprocess
import threading
import time

import boto3
import pytest

import support
from support import SHOAL_BIN, invoke

HELLO = support.EXAMPLES / "hello-python"


@pytest.fixture
def hello(cli, lam, unique_name):
    """A name for the README's `hello` function, deleted after the test."""
    if not (HELLO / "app.py").is_file():
        pytest.fail(f"{HELLO}/app.py is missing: the README's example function", pytrace=False)
    name = unique_name("hello")
    yield name
    try:
        lam.delete_function(FunctionName=name)
    except Exception:
        pass


def deploy(cli, name, path=str(HELLO), *extra):
    return cli("deploy", path, "--name", name, "--runtime", support.PY_RUNTIME,
               "--handler", "app.handler", *extra)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"{proc.args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def test_deploy_prints_configuration(cli, lam, hello):
    out = ok(deploy(cli, hello))
    cfg = json.loads(out.stdout)
    assert cfg["FunctionName"] == hello
    assert cfg["Runtime"] == support.PY_RUNTIME
    assert cfg["Handler"] == "app.handler"
    assert lam.get_function(FunctionName=hello)["Configuration"]["CodeSha256"] == cfg["CodeSha256"]


def test_deploy_with_url_prints_a_public_url(cli, lam, hello):
    out = ok(deploy(cli, hello, str(HELLO), "--url"))
    line = [l for l in out.stderr.splitlines() if l.startswith("function URL: ")]
    assert line, out.stderr
    url = line[0].removeprefix("function URL: ")
    assert ".lambda-url." in url and url.endswith("/"), url
    got = subprocess.run(["curl", "-sS", url], capture_output=True, text=True, timeout=30)
    assert got.returncode == 0, got.stderr
    assert "Hello" in got.stdout, got.stdout
    # Deploying again keeps the same URL.
    again = ok(deploy(cli, hello, str(HELLO), "--url"))
    assert f"function URL: {url}" in again.stderr


def test_routes_lists_http_api_routes_and_function_urls(cli, server, lam, hello):
    ok(deploy(cli, hello, str(HELLO), "--url"))
    api = boto3.client("apigatewayv2", endpoint_url=server.endpoint, region_name=support.REGION,
                       aws_access_key_id="x", aws_secret_access_key="x")
    made = api.create_api(Name="cli-routes", ProtocolType="HTTP",
                          Target=support.function_arn(hello))
    try:
        api.create_route(ApiId=made["ApiId"], RouteKey="GET /hello/{name}",
                         Target=api.get_routes(ApiId=made["ApiId"])["Items"][0]["Target"])
        out = ok(cli("routes"))
        lines = out.stdout.splitlines()
        assert any(made["ApiEndpoint"] in l for l in lines), out.stdout
        assert any("GET /hello/{name}" in l and f"λ {hello}" in l for l in lines), out.stdout
        assert any("$default" in l and "(payload 2.0)" in l for l in lines), out.stdout
        assert any(".lambda-url." in l and f"λ {hello}" in l for l in lines), out.stdout
        only = ok(cli("routes", made["ApiId"]))
        assert ".lambda-url." not in only.stdout and "GET /hello/{name}" in only.stdout
        missing = cli("routes", "nosuchapi0")
        assert missing.returncode != 0 and "nosuchapi0" in missing.stderr
    finally:
        api.delete_api(ApiId=made["ApiId"])


def test_invoke_prints_payload(cli, hello):
    ok(deploy(cli, hello))
    out = ok(cli("invoke", hello, "--payload", '{"name":"x"}'))
    assert "Hello, x!" in out.stdout
    assert json.loads(out.stdout) == {"message": "Hello, x!"}


def test_invoke_tail_prints_log_on_stderr(cli, hello):
    ok(deploy(cli, hello))
    out = ok(cli("invoke", hello, "--payload", '{"name":"t"}', "--tail"))
    assert "Hello, t!" in out.stdout
    assert "START RequestId:" in out.stderr
    assert "REPORT RequestId:" in out.stderr


def test_deploy_again_updates(cli, lam, hello):
    first = json.loads(ok(deploy(cli, hello)).stdout)
    second = json.loads(ok(deploy(cli, hello, str(HELLO), "--memory", "256", "--timeout", "7",
                                  "--env", "GREETING=Howdy")).stdout)
    assert second["FunctionName"] == hello
    assert second["MemorySize"] == 256
    assert second["Timeout"] == 7
    assert second["Environment"]["Variables"]["GREETING"] == "Howdy"
    assert second["CodeSha256"] == first["CodeSha256"]
    got = lam.get_function_configuration(FunctionName=hello)
    assert got["MemorySize"] == 256
    assert got["Timeout"] == 7
    ok(cli("invoke", hello, "--payload", '{"name":"y"}'))


def test_deploy_a_zip_file(cli, lam, hello, tmp_path):
    z = tmp_path / "hello.zip"
    z.write_bytes(support.zip_dir(HELLO))
    cfg = json.loads(ok(deploy(cli, hello, str(z))).stdout)
    assert cfg["CodeSha256"] == support.b64sha256(z.read_bytes())
    assert "Hello, z!" in ok(cli("invoke", hello, "--payload", '{"name":"z"}')).stdout


def test_ls_lists_function(cli, hello):
    ok(deploy(cli, hello))
    out = ok(cli("ls"))
    lines = out.stdout.splitlines()
    assert lines, out
    header = lines[0].split()
    assert header[:5] == ["NAME", "RUNTIME", "MEMORY", "TIMEOUT", "LAST_MODIFIED"], lines[0]
    rows = [line.split() for line in lines[1:]]
    mine = [r for r in rows if r and r[0] == hello]
    assert len(mine) == 1, out.stdout
    assert mine[0][1] == support.PY_RUNTIME
    assert mine[0][2] == "128"
    assert mine[0][3] == "3"


def test_logs_show_invocation(cli, hello):
    ok(deploy(cli, hello))
    ok(cli("invoke", hello, "--payload", '{"name":"logs"}'))
    deadline = time.monotonic() + 5
    while True:
        out = ok(cli("logs", hello))
        text = out.stdout
        if "REPORT RequestId:" in text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "START RequestId:" in text, text
    assert "END RequestId:" in text, text
    assert "REPORT RequestId:" in text, text
    # One message per line, START before END before REPORT.
    assert text.index("START RequestId:") < text.index("END RequestId:") < text.index("REPORT")


def test_logs_follow_shows_new_invocations(cli, lam, hello, endpoint):
    ok(deploy(cli, hello))
    ok(cli("invoke", hello, "--payload", '{"name":"before"}'))
    proc = subprocess.Popen([str(SHOAL_BIN), "logs", hello, "--follow", "--endpoint", endpoint],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    lines: queue.Queue = queue.Queue()

    def reader():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        time.sleep(1.0)
        resp = invoke(lam, hello, {"name": "during-follow"}, LogType="Tail")
        request_id = support.request_id_from_tail(resp["LogResult"])
        seen = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=0.2))
            except queue.Empty:
                if proc.poll() is not None:
                    break
                continue
            if any(l.startswith(f"REPORT RequestId: {request_id}") for l in seen):
                break
        assert any(l.startswith(f"START RequestId: {request_id}") for l in seen), (
            f"follow output did not show the new invocation {request_id}; got:\n"
            + "\n".join(seen) + f"\nexit: {proc.poll()}")
        assert any(l.startswith(f"REPORT RequestId: {request_id}") for l in seen), seen
        # It starts at now: the invocation before it is not printed.
        assert not any("before" in l for l in seen), seen
        assert proc.poll() is None, "`shoal logs --follow` exited on its own"
    finally:
        proc.kill()
        proc.wait(5)
        t.join(2)


def test_rm_then_invoke_fails(cli, lam, hello):
    ok(deploy(cli, hello))
    ok(cli("rm", hello))
    out = cli("invoke", hello, "--payload", "{}")
    assert out.returncode != 0, out
    assert hello in out.stderr or "not found" in out.stderr.lower(), out.stderr
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert hello not in names


def test_rm_missing_function_fails(cli, unique_name):
    out = cli("rm", unique_name("missing"))
    assert out.returncode != 0, out


def test_function_error_exits_1(cli, lam, unique_name, fixture_zip):
    fixture_zip("py-echo")  # fails clearly if the fixture is missing
    name = unique_name("clifail")
    path = str(support.FIXTURES / "py-echo")
    try:
        ok(cli("deploy", path, "--name", name, "--runtime", support.PY_RUNTIME,
               "--handler", "app.fail"))
        out = cli("invoke", name, "--payload", "{}")
        assert out.returncode == 1, out
        assert "FunctionError: Unhandled" in out.stderr, out.stderr
        body = json.loads(out.stdout)
        assert body["errorType"] == "ValueError"
        assert body["errorMessage"] == "boom"
    finally:
        try:
            lam.delete_function(FunctionName=name)
        except Exception:
            pass


def test_invoke_bad_payload_fails(cli, hello):
    ok(deploy(cli, hello))
    out = cli("invoke", hello, "--payload", "{not json")
    assert out.returncode != 0, out
    assert out.stderr.strip(), out


def test_invoke_missing_function_fails_with_the_error(cli, unique_name):
    name = unique_name("missing")
    out = cli("invoke", name)
    assert out.returncode == 1, out
    assert "ResourceNotFoundException" in out.stderr, out.stderr
    assert out.stdout == ""


def test_deploy_with_bad_runtime_fails(cli, unique_name):
    out = cli("deploy", str(HELLO), "--name", unique_name("bad"), "--runtime", "cobol1",
              "--handler", "app.handler")
    assert out.returncode != 0, out
    assert "InvalidParameterValueException" in out.stderr and "cobol1" in out.stderr, out.stderr


def test_deploy_missing_path_fails(cli, unique_name):
    out = cli("deploy", "/nonexistent/shoal-e2e", "--name", unique_name("bad"),
              "--runtime", support.PY_RUNTIME, "--handler", "app.handler")
    assert out.returncode != 0, out
    assert "/nonexistent/shoal-e2e" in out.stderr, out.stderr


def test_env_flags_and_node_example(cli, lam, unique_name):
    name = unique_name("hellonode")
    try:
        cfg = json.loads(ok(cli("deploy", str(support.EXAMPLES / "hello-node"), "--name", name,
                                "--runtime", support.NODE_RUNTIME, "--handler", "index.handler",
                                "--env", "K1=v1", "--env", "K2=a=b")).stdout)
        assert cfg["Environment"]["Variables"] == {"K1": "v1", "K2": "a=b"}
        out = ok(cli("invoke", name, "--payload", '{"name":"node"}'))
        assert json.loads(out.stdout) == {"message": "Hello, node!"}
    finally:
        try:
            lam.delete_function(FunctionName=name)
        except Exception:
            pass


def test_endpoint_from_environment_variable(server, hello, cli):
    ok(deploy(cli, hello))
    env = dict(os.environ, SHOAL_ENDPOINT=server.endpoint)
    out = subprocess.run([str(SHOAL_BIN), "ls"], capture_output=True, text=True, env=env,
                         timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out
    assert any(line.split()[:1] == [hello] for line in out.stdout.splitlines()), out.stdout


def test_unreachable_endpoint_is_a_clear_error():
    out = subprocess.run([str(SHOAL_BIN), "ls", "--endpoint", "http://127.0.0.1:1"],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode != 0
    assert "127.0.0.1:1" in out.stderr, out.stderr


def test_output_into_a_closed_pipe_does_not_panic(cli, lam, make_fn, fixture_zip, endpoint):
    # `shoal logs NAME | head -1`: the reader goes away early; the CLI must not panic.
    name = make_fn(fixture_zip("py-echo"), handler="app.printer", Timeout=30)["FunctionName"]
    invoke(lam, name, {"lines": 20000})
    support.wait_for_logs(endpoint, name, lambda ev: any(
        e["message"].startswith("REPORT") for e in ev), timeout=10)
    env = dict(os.environ, RUST_BACKTRACE="0")
    proc = subprocess.Popen([str(SHOAL_BIN), "logs", name, "--endpoint", endpoint],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            stdin=subprocess.DEVNULL)
    proc.stdout.readline()
    proc.stdout.close()  # like `head -1` exiting
    _, err = proc.communicate(timeout=30)
    assert b"panicked" not in err, err.decode(errors="replace")


def test_invoke_async_queues_the_event_and_pending_shows_it(cli, hello):
    ok(deploy(cli, hello))
    out = ok(cli("invoke", hello, "--async", "--payload", '{"name":"queued"}'))
    assert out.stdout.startswith("accepted "), out
    request_id = out.stdout.split()[1]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logs = ok(cli("logs", hello)).stdout
        if f"START RequestId: {request_id}" in logs and "Saying hello to queued" in logs:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the async event {request_id} did not run:\n{logs}")
    pending = ok(cli("pending", hello)).stdout
    assert pending.startswith("0 pending"), pending


def test_large_uploads_show_progress_and_an_oversized_one_the_servers_error(
        cli, lam, unique_name, tmp_path):
    """A 12 MB deploy counts its bytes; a 60 MB one gets RequestTooLargeException."""
    def folder(name, size):
        d = tmp_path / name
        d.mkdir()
        (d / "app.py").write_text("def handler(event, context):\n    return 'big'\n")
        (d / "blob").write_bytes(os.urandom(size))
        return d

    name = unique_name("big")
    out = ok(cli("deploy", str(folder("fits", 12 * 1024 * 1024)), "--name", name,
                 "--runtime", support.PY_RUNTIME))
    try:
        lines = [l for l in out.stderr.splitlines() if l.startswith("uploading ")]
        assert len(lines) == 4 and lines[-1].endswith("(100%)"), out.stderr
        assert " of 16." in lines[0], lines  # 12 MB of random bytes, base64 in JSON
        assert invoke(lam, name, {})["json"] == "big"
        too_big = cli("deploy", str(folder("too-big", 60 * 1024 * 1024)), "--name", name,
                      "--runtime", support.PY_RUNTIME)
        assert too_big.returncode != 0
        assert "RequestTooLargeException" in too_big.stderr, too_big.stderr
        assert "cannot reach" not in too_big.stderr, too_big.stderr
        assert invoke(lam, name, {})["json"] == "big"  # the function is as it was
    finally:
        lam.delete_function(FunctionName=name)


def test_pending_lists_waiting_events_with_attempts_next_retry_and_last_error(
        cli, lam, unique_name, tmp_path):
    """A failing async event waits a minute for its retry: `pending` shows it."""
    src = tmp_path / "failing"
    src.mkdir()
    (src / "app.py").write_text(
        "def handler(event, context):\n    raise ValueError('no ' + event['what'])\n")
    name = unique_name("failing")
    ok(cli("deploy", str(src), "--name", name, "--runtime", support.PY_RUNTIME))
    try:
        request_id = ok(cli("invoke", name, "--async", "--payload", '{"what":"luck"}')
                        ).stdout.split()[1]
        deadline = time.monotonic() + 20
        while True:
            listed = json.loads(ok(cli("pending", name, "-o", "json")).stdout)
            events = listed["events"]
            if events and events[0]["attempts"] == 1 and events[0]["lastError"]:
                break
            assert time.monotonic() < deadline, listed
            time.sleep(0.2)
        [event] = events
        assert listed["pending"] == 1
        assert event["requestId"] == request_id
        assert event["qualifier"] == "$LATEST"
        assert event["lastError"] == "ValueError: no luck", event
        # The first retry waits about a minute.
        assert event["nextAttemptMs"] > time.time() * 1000 + 30_000, event
        assert event["running"] is False
        table = ok(cli("pending", name)).stdout.splitlines()
        assert table[0].startswith("1 pending"), table
        assert table[1].split() == ["REQUEST_ID", "QUALIFIER", "AGE", "ATTEMPTS",
                                    "NEXT_ATTEMPT", "LAST_ERROR"], table
        row = table[2].split()
        assert row[0] == request_id and row[1] == "$LATEST" and row[3] == "1", table
        assert row[4].endswith("Z") and " ".join(row[5:]) == "ValueError: no luck", table
        assert "--limit" in cli("pending", name, "--limit", "0").stderr
    finally:
        lam.delete_function(FunctionName=name)


def test_pending_of_a_missing_function_fails(cli, unique_name):
    out = cli("pending", unique_name("missing"))
    assert out.returncode != 0, out
    assert "ResourceNotFoundException" in out.stderr, out


def test_deploy_network_sets_the_functions_network_tag(cli, lam, hello):
    arn = support.function_arn(hello)
    ok(deploy(cli, hello, str(HELLO), "--network", "egress"))
    assert lam.list_tags(Resource=arn)["Tags"] == {"shoal:network": "egress"}
    ok(deploy(cli, hello, str(HELLO), "--network", "none"))
    assert lam.list_tags(Resource=arn)["Tags"] == {"shoal:network": "none"}
    ok(deploy(cli, hello))  # without --network the tag stays as it is
    assert lam.list_tags(Resource=arn)["Tags"] == {"shoal:network": "none"}
    bad = deploy(cli, hello, str(HELLO), "--network", "host")
    assert bad.returncode != 0 and "none" in bad.stderr


def _host_python() -> tuple[int, int]:
    """The version of the `python3` the server runs Python functions with."""
    out = subprocess.run(["python3", "-c", "import sys; print(*sys.version_info[:2])"],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


def test_deploy_says_when_the_interpreter_is_not_the_runtimes_version(server, cli, lam, hello):
    major, minor = _host_python()
    same = f"python{major}.{minor}"
    other = f"python{major}.{minor + 1 if minor < 13 else minor - 1}"
    out = ok(cli("deploy", str(HELLO), "--name", hello, "--runtime", same,
                 "--handler", "app.handler"))
    assert "warning" not in out.stderr, out.stderr
    out = ok(cli("deploy", str(HELLO), "--name", hello, "--runtime", other,
                 "--handler", "app.handler"))
    assert json.loads(out.stdout)["Runtime"] == other
    assert f"warning: {other} functions run on this server's interpreter" in out.stderr
    assert f"(version {major}.{minor})" in out.stderr, out.stderr
    # A provided runtime has no interpreter to differ.
    r = support.http(server.endpoint, "GET", "/shoal/v1/runtimes/provided.al2023")
    assert r.status == 200, r.body
    assert r.json() == {"Runtime": "provided.al2023", "Interpreter": None, "Version": None,
                      "Matches": True}


def wait_for_output(cli, args, needle, timeout=10.0):
    """Runs `shoal <args>` until its stdout holds `needle`; the last stdout."""
    deadline = time.monotonic() + timeout
    while True:
        out = ok(cli(*args)).stdout
        if needle in out or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def test_queue_commands(cli, unique_name):
    name = unique_name("cliq")
    url = ok(cli("queue", "create", name, "--attr", "VisibilityTimeout=7")).stdout.strip()
    assert url.endswith(f"/{support.ACCOUNT}/{name}"), url
    assert url in ok(cli("queue", "ls", name)).stdout
    attrs = json.loads(ok(cli("queue", "attrs", name)).stdout)
    assert attrs["VisibilityTimeout"] == "7", attrs
    message_id = ok(cli("queue", "send", name, "hello there")).stdout.strip()
    assert message_id
    kept = ok(cli("queue", "receive", name, "--keep", "--wait", "2")).stdout.splitlines()
    assert [json.loads(line)["Body"] for line in kept] == ["hello there"]
    assert json.loads(kept[0])["MessageId"] == message_id
    # Kept messages are hidden for the visibility timeout, then received and deleted.
    ok(cli("queue", "purge", name))
    ok(cli("queue", "send", name, "second"))
    got = ok(cli("queue", "receive", name, "--wait", "2")).stdout.splitlines()
    assert [json.loads(line)["Body"] for line in got] == ["second"]
    assert ok(cli("queue", "receive", name, "--wait", "0")).stdout == ""
    ok(cli("queue", "rm", name))
    missing = cli("queue", "send", name, "x")
    assert missing.returncode != 0
    assert "NonExistentQueue" in missing.stderr, missing.stderr


def test_topic_commands_fan_out_to_a_queue(cli, unique_name):
    topic = unique_name("clit")
    queue_name = unique_name("clitq")
    arn = ok(cli("topic", "create", topic)).stdout.strip()
    assert arn == f"arn:aws:sns:{support.REGION}:{support.ACCOUNT}:{topic}", arn
    assert arn in ok(cli("topic", "ls")).stdout
    ok(cli("queue", "create", queue_name))
    sub = ok(cli("topic", "subscribe", topic, "--queue", queue_name, "--raw",
                 "--filter", '{"kind":["order"]}')).stdout.strip()
    assert sub.startswith(arn + ":"), sub
    subs = ok(cli("topic", "subs", topic)).stdout
    assert f"sqs\tarn:aws:sqs:{support.REGION}:{support.ACCOUNT}:{queue_name}\t{sub}" in subs, subs
    ok(cli("topic", "publish", topic, "skipped", "--attr", "kind=refund"))
    message_id = ok(cli("topic", "publish", topic, "delivered", "--attr", "kind=order",
                        "--subject", "hi")).stdout.strip()
    assert message_id
    got = ok(cli("queue", "receive", queue_name, "--wait", "5")).stdout.splitlines()
    assert [json.loads(line)["Body"] for line in got] == ["delivered"], got
    ok(cli("topic", "unsubscribe", sub))
    assert sub not in ok(cli("topic", "subs", topic)).stdout
    ok(cli("topic", "rm", topic))
    assert arn not in ok(cli("topic", "ls")).stdout
    ok(cli("queue", "rm", queue_name))
    missing = cli("topic", "publish", topic, "x")
    assert missing.returncode != 0 and topic in missing.stderr, missing.stderr


def test_deploy_queue_wires_a_queue_to_the_function(cli, lam, hello):
    queue_name = hello + "-in"
    out = ok(deploy(cli, hello, str(HELLO), "--queue", queue_name, "--batch-size", "5"))
    assert json.loads(out.stdout)["FunctionName"] == hello
    assert f"created queue {queue_name}" in out.stderr, out.stderr
    mappings = lam.list_event_source_mappings(FunctionName=hello)["EventSourceMappings"]
    assert len(mappings) == 1, mappings
    assert mappings[0]["EventSourceArn"].endswith(f":{queue_name}")
    assert mappings[0]["BatchSize"] == 5
    # Deploying again keeps the one mapping and takes the new batch size.
    out = ok(deploy(cli, hello, str(HELLO), "--queue", queue_name, "--batch-size", "3"))
    assert "created queue" not in out.stderr
    mappings = lam.list_event_source_mappings(FunctionName=hello)["EventSourceMappings"]
    assert [m["BatchSize"] for m in mappings] == [3], mappings
    ok(cli("queue", "send", queue_name, '{"from":"queue"}'))
    text = wait_for_output(cli, ("logs", hello), "REPORT RequestId:")
    assert "Saying hello to world" in text, text
    ok(cli("queue", "rm", queue_name))


# --------------------------------------------------------------------------- the first hour


def test_payload_from_a_file_and_from_standard_input(cli, server, hello, tmp_path):
    ok(deploy(cli, hello))
    event = tmp_path / "event.json"
    event.write_text('{"name": "file"}')
    assert "Hello, file!" in ok(cli("invoke", hello, "--payload", f"@{event}")).stdout
    piped = subprocess.run([str(SHOAL_BIN), "invoke", hello, "--payload", "-",
                            "--endpoint", server.endpoint],
                           input='{"name": "stdin"}', capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert "Hello, stdin!" in piped.stdout
    missing = cli("invoke", hello, "--payload", f"@{tmp_path / 'none.json'}")
    assert missing.returncode != 0 and "none.json" in missing.stderr


def test_invoke_a_qualifier_and_say_which_version_ran(cli, lam, hello):
    ok(deploy(cli, hello))
    version = lam.publish_version(FunctionName=hello)["Version"]
    lam.create_alias(FunctionName=hello, Name="live", FunctionVersion=version)
    out = ok(cli("invoke", hello, "--qualifier", "live", "--verbose", "--payload", '{"name":"q"}'))
    assert "Hello, q!" in out.stdout
    assert f"executed version: {version}" in out.stderr
    out = ok(cli("invoke", f"{hello}:{version}", "--verbose"))
    assert f"executed version: {version}" in out.stderr
    assert "executed version: $LATEST" in ok(cli("invoke", hello, "--verbose")).stderr


def test_deploy_reads_an_env_file_and_defaults_the_handler(cli, lam, hello, tmp_path):
    env = tmp_path / ".env"
    env.write_text("# local settings\nGREETING=hi there\nexport MODE='dev # not a comment'\n"
                   "QUOTED=\"a\\nb\"\n")
    # No --handler: a Python function gets app.handler; --env wins over the file.
    ok(cli("deploy", str(HELLO), "--name", hello, "--runtime", support.PY_RUNTIME,
           "--env-file", str(env), "--env", "MODE=prod"))
    cfg = lam.get_function_configuration(FunctionName=hello)
    assert cfg["Handler"] == "app.handler"
    assert cfg["Environment"]["Variables"] == {"GREETING": "hi there", "MODE": "prod", "QUOTED": "a\nb"}
    assert "Hello, h!" in ok(cli("invoke", hello, "--payload", '{"name":"h"}')).stdout
    bad = tmp_path / "bad.env"
    bad.write_text("NOT A LINE\n")
    out = cli("deploy", str(HELLO), "--name", hello, "--runtime", support.PY_RUNTIME,
              "--env-file", str(bad))
    assert out.returncode != 0 and "line 1" in out.stderr, out.stderr
    out = cli("deploy", str(HELLO), "--name", hello, "--runtime", "java21")
    assert out.returncode != 0 and "--handler" in out.stderr, out.stderr


def test_logs_filter_by_request_text_time_and_count_with_timestamps_or_json(cli, lam, hello):
    ok(deploy(cli, hello))
    ids = []
    for who in ["alpha", "beta", "gamma"]:
        resp = invoke(lam, hello, {"name": who}, LogType="Tail")
        ids.append(support.request_id_from_tail(resp["LogResult"]))
    support.wait_for(lambda: ok(cli("logs", hello)).stdout,
                     lambda out: f"REPORT RequestId: {ids[2]}" in out, timeout=10, what="the logs")

    only_beta = ok(cli("logs", hello, "--request-id", ids[1])).stdout.splitlines()
    assert only_beta[0].startswith(f"START RequestId: {ids[1]}"), only_beta
    assert only_beta[-1].startswith(f"REPORT RequestId: {ids[1]}"), only_beta
    assert any("Saying hello to beta" in l for l in only_beta)
    assert not any("alpha" in l or "gamma" in l for l in only_beta), only_beta

    assert ok(cli("logs", hello, "--filter", "hello to gamma")).stdout.splitlines() == [
        "Saying hello to gamma"]
    last = ok(cli("logs", hello, "-n", "2")).stdout.splitlines()
    assert len(last) == 2 and last[-1].startswith(f"REPORT RequestId: {ids[2]}"), last
    assert ok(cli("logs", hello, "--since", "2030-01-01T00:00Z")).stdout == ""
    assert "hello to alpha" in ok(cli("logs", hello, "--since", "10m")).stdout

    stamped = ok(cli("logs", hello, "--timestamps", "--filter", "hello to alpha")).stdout.split(" ", 1)
    assert stamped[0].endswith("Z") and stamped[0][:2] == "20" and "T" in stamped[0], stamped
    assert stamped[1].strip() == "Saying hello to alpha"
    rows = [json.loads(l) for l in ok(cli("logs", hello, "--output", "json")).stdout.splitlines()]
    assert {"timestamp", "time", "logStream", "message"} <= set(rows[0]), rows[0]
    assert any(r["message"] == "Saying hello to beta" for r in rows)
    bad = cli("logs", hello, "--since", "yesterday")
    assert bad.returncode != 0 and "--since" in bad.stderr


def test_publish_aliases_with_weights_and_reserved_concurrency(cli, lam, hello):
    ok(deploy(cli, hello))
    assert f"published {hello} version 1" in ok(cli("publish", hello, "--description", "first")).stdout
    ok(cli("deploy", str(HELLO), "--name", hello, "--runtime", support.PY_RUNTIME, "--env", "STAGE=2"))
    assert f"published {hello} version 2" in ok(cli("publish", hello)).stdout
    assert lam.get_function_configuration(FunctionName=hello, Qualifier="1")["Description"] == "first"

    ok(cli("alias", "set", hello, "live", "1"))
    out = ok(cli("alias", "set", hello, "live", "1", "--weight", "2=0.25")).stdout
    assert f"{hello}:live -> version 1 (and 2=0.25)" in out
    alias = lam.get_alias(FunctionName=hello, Name="live")
    assert alias["FunctionVersion"] == "1"
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.25}
    table = ok(cli("alias", "ls", hello)).stdout.splitlines()
    assert table[0].split() == ["ALIAS", "VERSION", "WEIGHTS"]
    assert table[1].split() == ["live", "1", "2=0.25"]
    [row] = json.loads(ok(cli("alias", "ls", hello, "--output", "json")).stdout)
    assert (row["Name"], row["FunctionVersion"]) == ("live", "1")
    bad = cli("alias", "set", hello, "live", "1", "--weight", "2=3")
    assert bad.returncode != 0 and "0 to 1" in bad.stderr
    ok(cli("alias", "rm", hello, "live"))
    assert lam.list_aliases(FunctionName=hello)["Aliases"] == []

    assert "5 reserved" in ok(cli("concurrency", hello, "5")).stdout
    assert lam.get_function_concurrency(FunctionName=hello)["ReservedConcurrentExecutions"] == 5
    assert "5 reserved" in ok(cli("concurrency", hello)).stdout
    assert "no reserved" in ok(cli("concurrency", hello, "--clear")).stdout
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=hello)


def test_ls_and_pending_print_json_for_scripts(cli, hello):
    ok(deploy(cli, hello))
    functions = json.loads(ok(cli("ls", "--output", "json")).stdout)
    [mine] = [f for f in functions if f["FunctionName"] == hello]
    assert (mine["Runtime"], mine["Handler"]) == (support.PY_RUNTIME, "app.handler")
    pending = json.loads(ok(cli("pending", hello, "-o", "json")).stdout)
    assert pending["pending"] == 0 and "oldestAgeMs" in pending


def test_shell_completions(tmp_path):
    for shell, marker in [("bash", "_shoal()"), ("zsh", "#compdef shoal"), ("fish", "complete -c shoal")]:
        out = subprocess.run([str(SHOAL_BIN), "completions", shell], capture_output=True, text=True,
                             timeout=30, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, out.stderr
        assert marker in out.stdout, (shell, out.stdout[:200])
        assert "deploy" in out.stdout and "payload" in out.stdout
    script = tmp_path / "shoal.bash"
    script.write_text(subprocess.run([str(SHOAL_BIN), "completions", "bash"], capture_output=True,
                                     text=True, timeout=30).stdout)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
