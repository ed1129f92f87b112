"""Every error path of the API, in Lambda's shape: status, X-Amzn-ErrorType, JSON message."""

import io
import os
import json
import urllib.parse
import socket
import zipfile

import pytest
from botocore.exceptions import ClientError

import support
from support import SIX_MB, http, py_zip

ECHO_SRC = "def handler(event, context):\n    return event\n"


def client_error(call, *args, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as e:
        call(*args, **kwargs)
    return e.value


def assert_error(err: ClientError, status: int, code: str, mentions: str | None = None):
    resp = err.response
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == status, resp
    assert resp["Error"]["Code"] == code, resp
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    assert headers.get("x-amzn-errortype", "").split(":")[0] == code, headers
    message = resp["Error"].get("Message", "")
    assert message, f"empty error message: {resp}"
    if mentions:
        assert mentions.lower() in message.lower(), f"{mentions!r} not in {message!r}"


def create(lam, name, code=None, runtime=support.PY_RUNTIME, **extra):
    return lam.create_function(FunctionName=name, Runtime=runtime, Handler="app.handler",
                               Role=support.ROLE, Code={"ZipFile": code or py_zip(ECHO_SRC)},
                               **extra)


@pytest.fixture
def echo_fn(make_fn):
    return make_fn(py_zip(ECHO_SRC))["FunctionName"]


# --------------------------------------------------------------------------- 404


@pytest.mark.parametrize("op", ["get_function", "get_function_configuration",
                                "delete_function", "invoke"])
def test_missing_function_is_404(lam, unique_name, op):
    name = unique_name("missing")
    err = client_error(getattr(lam, op), FunctionName=name)
    assert_error(err, 404, "ResourceNotFoundException", mentions=name)


def test_update_code_of_missing_function_is_404(lam, unique_name):
    name = unique_name("missing")
    err = client_error(lam.update_function_code, FunctionName=name, ZipFile=py_zip(ECHO_SRC))
    assert_error(err, 404, "ResourceNotFoundException", mentions=name)


def test_update_configuration_of_missing_function_is_404(lam, unique_name):
    name = unique_name("missing")
    err = client_error(lam.update_function_configuration, FunctionName=name, MemorySize=256)
    assert_error(err, 404, "ResourceNotFoundException", mentions=name)


def test_not_found_body_uses_capital_message(endpoint, unique_name):
    r = http(endpoint, "GET", f"/2015-03-31/functions/{unique_name('missing')}")
    assert r.status == 404
    assert r.headers["x-amzn-errortype"].split(":")[0] == "ResourceNotFoundException"
    body = r.json()
    assert body.get("Message"), body
    assert body.get("Type") == "User", body


# --------------------------------------------------------------------------- 409


def test_create_twice_is_409(lam, make_fn, unique_name):
    name = unique_name("dup")
    make_fn(py_zip(ECHO_SRC), name=name)
    err = client_error(create, lam, name)
    assert_error(err, 409, "ResourceConflictException", mentions=name)


# --------------------------------------------------------------------------- 400 on create


@pytest.mark.parametrize("memory", [64, 127, 10241, 20000])
def test_create_with_bad_memory(lam_nv, unique_name, memory):
    err = client_error(create, lam_nv, unique_name("bad"), MemorySize=memory)
    assert_error(err, 400, "InvalidParameterValueException", mentions="memorysize")


@pytest.mark.parametrize("timeout", [0, 901])
def test_create_with_bad_timeout(lam_nv, unique_name, timeout):
    err = client_error(create, lam_nv, unique_name("bad"), Timeout=timeout)
    assert_error(err, 400, "InvalidParameterValueException", mentions="timeout")


def test_update_configuration_with_bad_values(lam_nv, echo_fn):
    err = client_error(lam_nv.update_function_configuration, FunctionName=echo_fn, MemorySize=64)
    assert_error(err, 400, "InvalidParameterValueException", mentions="memorysize")
    err = client_error(lam_nv.update_function_configuration, FunctionName=echo_fn, Timeout=901)
    assert_error(err, 400, "InvalidParameterValueException", mentions="timeout")
    err = client_error(lam_nv.update_function_configuration, FunctionName=echo_fn,
                       Runtime="cobol1")
    assert_error(err, 400, "InvalidParameterValueException", mentions="runtime")


@pytest.mark.parametrize("name", ["bad name!", "a/b", "x" * 65, ""])
def test_create_with_bad_name(lam_nv, name):
    err = client_error(create, lam_nv, name)
    assert_error(err, 400, "InvalidParameterValueException")


def test_bad_name_message_mentions_the_field(lam_nv):
    err = client_error(create, lam_nv, "bad name!")
    msg = err.response["Error"]["Message"].lower()
    assert "functionname" in msg or "function name" in msg or "bad name!" in msg, msg


def test_create_with_unknown_runtime(lam_nv, unique_name):
    err = client_error(create, lam_nv, unique_name("bad"), runtime="cobol1")
    assert_error(err, 400, "InvalidParameterValueException", mentions="runtime")


def test_create_with_runtime_the_host_cannot_serve(lam_nv, unique_name):
    err = client_error(create, lam_nv, unique_name("bad"), runtime="java21")
    assert_error(err, 400, "InvalidParameterValueException")
    msg = err.response["Error"]["Message"].lower()
    assert "runtime" in msg or "java21" in msg, msg


def test_create_with_corrupt_zip(lam, unique_name):
    err = client_error(create, lam, unique_name("bad"), code=b"this is not a zip file at all")
    assert_error(err, 400, "InvalidParameterValueException")


def test_update_code_with_corrupt_zip(lam, echo_fn):
    err = client_error(lam.update_function_code, FunctionName=echo_fn, ZipFile=b"PK\x03\x04junk")
    assert_error(err, 400, "InvalidParameterValueException")


def _zip_with_entry(entry: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", ECHO_SRC)
        zf.writestr(zipfile.ZipInfo(entry), b"owned\n")
    names = zipfile.ZipFile(io.BytesIO(buf.getvalue())).namelist()
    assert entry in names, names  # the archive really carries the hostile name
    return buf.getvalue()


@pytest.mark.parametrize("entry", ["../evil", "a/../../evil", "/etc/evil"])
def test_create_with_path_escaping_zip(lam, server, unique_name, entry):
    err = client_error(create, lam, unique_name("bad"), code=_zip_with_entry(entry))
    assert_error(err, 400, "InvalidParameterValueException")
    assert not os.path.exists("/etc/evil")
    assert not (server.data_dir.parent / "evil").exists()


def test_create_with_zip_unpacking_over_250mb(lam, unique_name):
    buf = io.BytesIO()
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("app.py", ECHO_SRC)
        with zf.open("zeros.bin", "w") as f:
            for _ in range(251):
                f.write(chunk)
    data = buf.getvalue()
    assert len(data) < 5 * 1024 * 1024, len(data)
    err = client_error(create, lam, unique_name("big"), code=data)
    assert_error(err, 400, "InvalidParameterValueException")


def test_create_with_zip_over_50mb(lam, unique_name):
    code = support.zip_files({"app.py": ECHO_SRC, "blob.bin": os.urandom(51 * 1024 * 1024)})
    err = client_error(create, lam, unique_name("big"), code=code)
    status = err.response["ResponseMetadata"]["HTTPStatusCode"]
    assert status in (400, 413), err.response
    assert err.response["Error"]["Code"] in ("RequestTooLargeException",
                                             "InvalidParameterValueException"), err.response
    assert err.response["Error"]["Message"], err.response


# --------------------------------------------------------------------------- malformed requests


def _assert_raw_400(r):
    assert r.status == 400, r
    etype = r.headers.get("x-amzn-errortype", "").split(":")[0]
    assert etype in ("InvalidRequestContentException", "InvalidParameterValueException"), r
    body = r.json()
    assert body.get("message") or body.get("Message"), body


def test_create_with_non_json_body(endpoint):
    r = http(endpoint, "POST", "/2015-03-31/functions", body=b"{this is not json",
             headers={"Content-Type": "application/json"})
    _assert_raw_400(r)


def test_create_with_wrong_field_types(endpoint, unique_name):
    body = {"FunctionName": unique_name("bad"), "Runtime": support.PY_RUNTIME,
            "Handler": "app.handler", "Role": support.ROLE, "MemorySize": "big",
            "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}
    r = http(endpoint, "POST", "/2015-03-31/functions", body=json.dumps(body),
             headers={"Content-Type": "application/json"})
    _assert_raw_400(r)


def test_create_with_zipfile_not_base64(endpoint, unique_name):
    body = {"FunctionName": unique_name("bad"), "Runtime": support.PY_RUNTIME,
            "Handler": "app.handler", "Role": support.ROLE, "Code": {"ZipFile": "%%% not b64"}}
    r = http(endpoint, "POST", "/2015-03-31/functions", body=json.dumps(body),
             headers={"Content-Type": "application/json"})
    _assert_raw_400(r)


def test_update_configuration_with_non_json_body(endpoint, echo_fn):
    r = http(endpoint, "PUT", f"/2015-03-31/functions/{echo_fn}/configuration", body=b"nope",
             headers={"Content-Type": "application/json"})
    _assert_raw_400(r)


@pytest.mark.parametrize("body", [b"nope", b'{"Tags": ["a"]}', b'{"Tags": {"k": 1}}', b"{}"])
def test_tag_resource_with_garbage_is_400(endpoint, echo_fn, body):
    path = "/2017-03-31/tags/" + urllib.parse.quote(support.function_arn(echo_fn), safe="")
    r = http(endpoint, "POST", path, body=body, headers={"Content-Type": "application/json"})
    _assert_raw_400(r)
    r = http(endpoint, "DELETE", path)  # no tagKeys
    _assert_raw_400(r)


# --------------------------------------------------------------------------- invoke errors


def test_invoke_payload_over_6mb_is_413(lam, echo_fn):
    payload = b'"' + b"a" * (SIX_MB + 1 - 2) + b'"'
    assert len(payload) == SIX_MB + 1
    err = client_error(lam.invoke, FunctionName=echo_fn, Payload=payload)
    assert_error(err, 413, "RequestTooLargeException")


def test_invoke_payload_just_under_6mb_is_accepted(lam, echo_fn):
    payload = b'"' + b"a" * (SIX_MB - 2 - 1024) + b'"'
    resp = lam.invoke(FunctionName=echo_fn, Payload=payload)
    assert resp["StatusCode"] == 200
    assert "FunctionError" not in resp
    assert len(resp["Payload"].read()) == len(payload)


def test_invoke_with_non_json_payload_is_400(lam, echo_fn):
    err = client_error(lam.invoke, FunctionName=echo_fn, Payload=b"{not json")
    assert_error(err, 400, "InvalidRequestContentException")


def test_invoke_event_type_is_a_clear_client_error(lam, echo_fn):
    try:
        resp = lam.invoke(FunctionName=echo_fn, InvocationType="Event", Payload=b"{}")
    except ClientError as e:
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        assert 400 <= status < 500, e.response
        assert e.response["Error"]["Code"], e.response
        assert e.response["Error"].get("Message"), e.response
    else:
        # Once async invocation is implemented, Lambda answers 202.
        assert resp["StatusCode"] == 202, resp


def test_invoke_with_unknown_invocation_type(endpoint, echo_fn):
    r = http(endpoint, "POST", f"/2015-03-31/functions/{echo_fn}/invocations", body=b"{}",
             headers={"X-Amz-Invocation-Type": "Sometimes"})
    assert 400 <= r.status < 500, r
    assert r.headers.get("x-amzn-errortype"), r


# --------------------------------------------------------------------------- garbage


@pytest.mark.parametrize("method,path", [
    ("GET", "/nope"),
    ("GET", "/2015-03-31/nothing/here"),
    ("POST", "/2015-03-31/functions/x/y/z/w"),
    ("DELETE", "/%ff%fe/.."),
])
def test_garbage_paths_are_404(endpoint, method, path):
    r = http(endpoint, method, path, body=b"\x00\xff garbage" if method != "GET" else None)
    assert r.status == 404, r
    assert support.health_ok(endpoint)


def test_unknown_method_on_known_path_is_4xx(endpoint):
    r = http(endpoint, "PATCH", "/2015-03-31/functions", body=b"{}")
    assert 400 <= r.status < 500, r
    r = http(endpoint, "PUT", "/2015-03-31/functions")
    assert 400 <= r.status < 500, r
    assert support.health_ok(endpoint)


def test_non_http_bytes_do_not_hurt_the_server(server):
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),
                 b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", b"\xff" * 4096):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            try:  # the server may answer 400 and close before reading it all: fine
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                s.recv(4096)
            except OSError:
                pass
    assert support.health_ok(server.endpoint)


# --------------------------------------------------------------------------- more validation


@pytest.mark.parametrize("missing", ["Runtime", "Handler"])
def test_create_without_runtime_or_handler(lam_nv, unique_name, missing):
    args = dict(FunctionName=unique_name("bad"), Runtime=support.PY_RUNTIME,
                Handler="app.handler", Role=support.ROLE, Code={"ZipFile": py_zip(ECHO_SRC)})
    del args[missing]
    err = client_error(lam_nv.create_function, **args)
    assert_error(err, 400, "InvalidParameterValueException", mentions=missing)


def test_create_without_code(lam_nv, unique_name):
    err = client_error(lam_nv.create_function, FunctionName=unique_name("bad"),
                       Runtime=support.PY_RUNTIME, Handler="app.handler", Role=support.ROLE,
                       Code={})
    assert_error(err, 400, "InvalidParameterValueException")


def test_create_with_reserved_environment_variable(lam, unique_name):
    err = client_error(create, lam, unique_name("bad"),
                       Environment={"Variables": {"AWS_REGION": "mars-1"}})
    assert_error(err, 400, "InvalidParameterValueException", mentions="AWS_REGION")


def test_create_with_environment_over_4kb(lam, unique_name):
    err = client_error(create, lam, unique_name("bad"),
                       Environment={"Variables": {"BIG": "x" * 5000}})
    assert_error(err, 400, "InvalidParameterValueException", mentions="4KB")


def test_create_with_bad_environment_key(lam, unique_name):
    err = client_error(create, lam, unique_name("bad"),
                       Environment={"Variables": {"1BAD-KEY": "v"}})
    assert_error(err, 400, "InvalidParameterValueException")


def test_update_with_stale_revision_id_is_412(lam, make_fn):
    cfg = make_fn(py_zip(ECHO_SRC))
    lam.update_function_configuration(FunctionName=cfg["FunctionName"], Timeout=4)
    err = client_error(lam.update_function_configuration, FunctionName=cfg["FunctionName"],
                       Timeout=5, RevisionId=cfg["RevisionId"])
    assert_error(err, 412, "PreconditionFailedException")


def test_invoke_unknown_version_is_404(lam, echo_fn):
    err = client_error(lam.invoke, FunctionName=echo_fn, Qualifier="7", Payload=b"{}")
    assert_error(err, 404, "ResourceNotFoundException", mentions=echo_fn)


@pytest.mark.parametrize("op", ["get_function", "get_function_configuration"])
def test_get_unknown_version_is_404(lam, echo_fn, op):
    # There are no published versions: only $LATEST exists.
    err = client_error(getattr(lam, op), FunctionName=echo_fn, Qualifier="7")
    assert_error(err, 404, "ResourceNotFoundException", mentions=echo_fn)


def test_delete_unknown_version_is_404_and_keeps_the_function(lam, echo_fn):
    err = None
    try:
        lam.delete_function(FunctionName=echo_fn, Qualifier="7")
    except ClientError as e:
        err = e
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert echo_fn in names, "DeleteFunction with Qualifier=7 deleted the whole function"
    assert err is not None, "DeleteFunction with Qualifier=7 (no such version) succeeded"
    assert_error(err, 404, "ResourceNotFoundException", mentions=echo_fn)


def test_invoke_with_bad_log_type(lam_nv, echo_fn):
    err = client_error(lam_nv.invoke, FunctionName=echo_fn, Payload=b"{}", LogType="Verbose")
    assert_error(err, 400, "InvalidParameterValueException", mentions="logtype")


def test_invoke_with_bad_client_context(lam, echo_fn):
    err = client_error(lam.invoke, FunctionName=echo_fn, Payload=b"{}",
                       ClientContext="%% not base64 %%")
    assert_error(err, 400, "InvalidRequestContentException")


def test_list_functions_with_bad_max_items(endpoint):
    r = http(endpoint, "GET", "/2015-03-31/functions?MaxItems=0")
    assert r.status == 400, r
    assert r.headers["x-amzn-errortype"].split(":")[0] == "InvalidParameterValueException"


# --------------------------------------------------------------------------- foreign ARNs


def test_function_arn_of_another_account_is_refused(lam, unique_name):
    """A FunctionName naming another account's function never creates or reads one of ours."""
    name = unique_name("foreign")
    foreign_arn = f"arn:aws:lambda:{support.REGION}:999999999999:function:{name}"
    for call, kwargs in (
        (create, {"lam": lam, "name": foreign_arn}),
        (create, {"lam": lam, "name": f"999999999999:{name}"}),
        (lam.get_function, {"FunctionName": foreign_arn}),
        (lam.invoke, {"FunctionName": foreign_arn}),
        (lam.delete_function, {"FunctionName": f"999999999999:function:{name}"}),
    ):
        assert_error(support.client_error(call, **kwargs), 403, "AccessDeniedException",
                     mentions="999999999999")
    assert name not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]


def test_function_arn_of_another_region_is_refused(lam, unique_name):
    name = unique_name("region")
    arn = f"arn:aws:lambda:eu-west-3:{support.ACCOUNT}:function:{name}"
    assert_error(support.client_error(create, lam=lam, name=arn), 400,
                 "InvalidParameterValueException", mentions="eu-west-3")
    assert name not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]


def test_function_arn_of_our_account_works(lam, unique_name):
    name = unique_name("ours")
    create(lam, support.function_arn(name))
    try:
        got = lam.get_function(FunctionName=f"{support.ACCOUNT}:{name}")["Configuration"]
        assert got["FunctionArn"] == support.function_arn(name)
    finally:
        lam.delete_function(FunctionName=name)
