"""API authentication: AWS SigV4 with configured keys, the open (loopback-only) API, and
body limits enforced before anything large is buffered.

Requests are signed with botocore's own SigV4 signer (`SigV4Auth` on an `AWSRequest`) and
sent over plain HTTP, so that each part of a signed request can be tampered with; boto3,
the AWS CLI and the `shoal` CLI are checked with right and wrong keys. Everything talks
to 127.0.0.1 only.
"""

from __future__ import annotations

import datetime
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path
from unittest import mock

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

import support
from support import SHOAL_BIN, function_arn, http, py_zip

# The main key (given as flags) and the keys of the keys file; realistic shapes, with the
# '/' and '+' that real secrets contain.
AKID = "AKIDSHOALE2E0000MAIN"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
FILE_KEYS = {
    "AKIDSHOALE2E00FILE01": "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    "AKIDSHOALE2E00FILE02": "Zm9vYmFyYmF6cXV4+cXV1eGZvb2Jhcg==EXAMPLE",
}
ALL_KEYS = {AKID: SECRET, **FILE_KEYS}

ECHO = ("def handler(event, context):\n"
        "    return {'event': event, 'arn': context.invoked_function_arn}\n")

MB = 1024 * 1024
GB = 1024 * MB
# "Refused quickly": how long a client waits for the 413 once it stopped sending.
QUICK_S = 3.0
# The most the server's resident memory may grow while refusing a 1 GB request.
RSS_GROWTH_MAX = 200 * MB


# --------------------------------------------------------------------------- helpers


def signed_request(endpoint: str, method: str, path: str, body: bytes | str = b"",
                   headers: dict[str, str] | None = None, key: tuple[str, str] = (AKID, SECRET),
                   region: str = support.REGION, service: str = "lambda",
                   when: datetime.datetime | None = None) -> AWSRequest:
    """An AWSRequest signed by botocore's SigV4Auth; `when` (UTC) fakes the signing clock."""
    if isinstance(body, str):
        body = body.encode()
    req = AWSRequest(method=method, url=endpoint + path, data=body, headers=dict(headers or {}))
    signer = botocore.auth.SigV4Auth(Credentials(*key), service, region)
    if when is None:
        signer.add_auth(req)
    else:
        # add_auth takes its timestamp from botocore.auth.get_current_datetime (naive UTC)
        # and overwrites req.context["timestamp"], so the clock is what must be patched.
        naive = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        with mock.patch("botocore.auth.get_current_datetime", return_value=naive):
            signer.add_auth(req)
    return req


def send(endpoint: str, req: AWSRequest, *, method: str | None = None, path: str | None = None,
         body: bytes | None = None, headers: dict[str, str] | None = None) -> support.HttpResult:
    """Send a signed request as it is, or with its method/path/body/headers replaced."""
    if path is None:
        split = urllib.parse.urlsplit(req.url)
        path = split.path + (f"?{split.query}" if split.query else "")
    sent_headers = {k: v for k, v in req.headers.items()}
    sent_headers.update(headers or {})
    data = req.body if body is None else body
    if isinstance(data, str):
        data = data.encode()
    return http(endpoint, method or req.method, path, body=data or None, headers=sent_headers)


def signed(endpoint: str, method: str, path: str, body: bytes | str = b"", **kwargs):
    return send(endpoint, signed_request(endpoint, method, path, body, **kwargs))


def assert_lambda_error(r: support.HttpResult, status: int, code: str,
                        message_part: str | None = None) -> None:
    """`r` is Lambda's error format: status, X-Amzn-ErrorType, {"Type":"User","message":...}."""
    assert r.status == status, f"expected {status} {code}, got {r}"
    assert r.headers.get("x-amzn-errortype", "").split(":")[0] == code, r
    try:
        doc = r.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {r}")
    assert doc.get("Type") == "User", r
    assert isinstance(doc.get("message"), str) and doc["message"], r
    if message_part is not None:
        assert message_part in doc["message"], r


def boto_client(srv, key: tuple[str, str] = (AKID, SECRET), region: str = support.REGION):
    return boto3.client(
        "lambda", endpoint_url=srv.endpoint, region_name=region,
        aws_access_key_id=key[0], aws_secret_access_key=key[1],
        config=Config(retries={"max_attempts": 0}, read_timeout=30, connect_timeout=5))


def write_keys_file(path: Path, keys: dict[str, str]) -> Path:
    lines = ["# Shoal API keys: ACCESS_KEY_ID SECRET", ""]
    for i, (akid, secret) in enumerate(keys.items()):
        lines += [f"# key {i}", f"{akid} {secret}", ""]
    path.write_text("\n".join(lines))
    return path


def start_keyed(tmp: Path, **settings) -> support.ShoalServer:
    return support.started(support.ShoalServer(data_dir=tmp / "data", log_dir=tmp / "logs",
                                                keep_alive="30s",
                                                extra_args=support.settings_to_flags(settings)))


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AWS_* / SHOAL_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SHOAL_"))}
    env.update(extra)
    return env


class RawResponse:
    def __init__(self, status: int | None, headers: dict[str, str], body: bytes,
                 sent: int, elapsed: float, note: str):
        self.status, self.headers, self.body = status, headers, body
        self.sent, self.elapsed, self.note = sent, elapsed, note

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return (f"RawResponse(status={self.status}, headers={self.headers}, body={self.body[:300]!r}, "
                f"body bytes sent={self.sent}, {self.elapsed:.2f}s, {self.note})")


def _parse_response(data: bytes):
    """(status, headers, body) once `data` holds a whole response, else None."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if len(rest) < length:
        return None
    return status, headers, rest[:length]


def declared_body_request(port: int, method: str, path: str, headers: dict[str, str],
                          declared: int, send_at_most: int, wait: float) -> RawResponse:
    """Send a request whose Content-Length is `declared`, then at most `send_at_most` bytes
    of body (stopping early once the server answers), then wait up to `wait` seconds for
    the answer without sending more."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
             f"Content-Length: {declared}"]
    lines += [f"{k}: {v}" for k, v in headers.items()
              if k.lower() not in ("host", "content-length")]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    chunk = b"{" + b" " * (256 * 1024 - 1)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sent, data, note = 0, b"", "no answer"
    start = time.monotonic()
    stopped_at = None
    try:
        sock.sendall(head)
        sock.setblocking(False)
        while True:
            now = time.monotonic()
            if stopped_at is None and (sent >= send_at_most or now - start > 30):
                stopped_at = now
            if stopped_at is not None and now - stopped_at > wait:
                note = f"no complete answer {wait}s after the client stopped sending"
                break
            want_write = [sock] if stopped_at is None else []
            readable, writable, _ = select.select([sock], want_write, [], 0.05)
            if readable:
                try:
                    got = sock.recv(65536)
                except OSError as e:
                    note = f"recv failed: {e!r}"
                    break
                if not got:
                    note = "server closed the connection"
                    break
                data += got
                if _parse_response(data):
                    note = "answered"
                    break
            if writable:
                try:
                    sent += sock.send(chunk[: max(0, min(len(chunk), send_at_most - sent))])
                except (BrokenPipeError, ConnectionResetError) as e:
                    note = f"send failed: {e!r}"
                    stopped_at = time.monotonic()
    finally:
        elapsed = time.monotonic() - start
        sock.close()
    parsed = _parse_response(data)
    if parsed:
        status, headers_, body = parsed
        return RawResponse(status, headers_, body, sent, elapsed, note)
    return RawResponse(None, {}, data, sent, elapsed, note)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A server with a key given as flags and two more from a keys file."""
    tmp = tmp_path_factory.mktemp("auth")
    keys_file = write_keys_file(tmp / "keys.txt", FILE_KEYS)
    srv = start_keyed(tmp, access_key_id=AKID, secret_access_key=SECRET, keys_file=keys_file)
    yield srv
    srv.stop()


@pytest.fixture
def keyed_fn(keyed):
    """An echo function on the keyed server; deleted after the test."""
    lam = boto_client(keyed)
    name = support.unique_name("auth")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": py_zip(ECHO)})
    yield name
    try:
        lam.delete_function(FunctionName=name)
    except Exception:
        pass


# --------------------------------------------------------------------------- the open server


def test_open_server_needs_no_signature(server_with):
    srv = server_with()
    r = http(srv.endpoint, "GET", "/2015-03-31/functions")
    assert r.status == 200, r
    assert "Functions" in r.json()


@pytest.mark.parametrize("address", ["0.0.0.0", "[::]"])
def test_open_server_refuses_non_loopback_listen(tmp_path, address):
    port = support.free_port()
    cmd = [str(SHOAL_BIN), "server", "--listen", f"{address}:{port}",
           "--data-dir", str(tmp_path / "data")]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                              env=clean_env(), cwd=str(tmp_path), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{cmd} without keys was still running after 10s "
                             f"(it should refuse at once); output: {e.stderr!r}")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{cmd} exited 0; output:\n{out}"
    assert "refusing to listen" in out, f"{cmd} exited {proc.returncode}; output:\n{out}"


@pytest.mark.parametrize("how,id_,secret", [
    ("flags", "", ""),
    ("flags", "   ", "   "),
    ("flags", AKID, ""),
    ("flags", "", SECRET),
    ("env", "", ""),
    ("env", AKID, " "),
    ("flags", "has space", SECRET),
    ("keys_file", "AKIA/BAD", SECRET),
])
def test_blank_keys_are_refused_at_start(tmp_path, how, id_, secret):
    """An empty id or secret (an unset template variable, say) is not a key: the server
    refuses to start instead of accepting requests signed with nothing."""
    port = support.free_port()
    cmd = [str(SHOAL_BIN), "server", "--listen", f"0.0.0.0:{port}",
           "--data-dir", str(tmp_path / "data")]
    env = clean_env()
    if how == "flags":
        cmd += ["--access-key-id", id_, "--secret-access-key", secret]
    elif how == "env":
        env.update(SHOAL_ACCESS_KEY_ID=id_, SHOAL_SECRET_ACCESS_KEY=secret)
    else:
        path = tmp_path / "keys"
        path.write_text(f"{id_} {secret}\n")
        cmd += ["--keys-file", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                              env=env, cwd=str(tmp_path), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{cmd} with blank keys was still running after 10s "
                             f"(it should refuse at once); output: {e.stderr!r}")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{cmd} exited 0; output:\n{out}"
    assert ("empty" in out or "refusing to listen" in out
            or "go together" in out or "space" in out or "'/'" in out), out


def test_short_secret_is_accepted_with_a_warning(tmp_path):
    srv = support.started(support.ShoalServer(
        data_dir=tmp_path / "data", log_dir=tmp_path / "logs",
        extra_args=["--access-key-id", AKID, "--secret-access-key", "short"]))
    try:
        r = signed(srv.endpoint, "GET", "/2015-03-31/functions", key=(AKID, "short"))
        assert r.status == 200, r
        assert "shorter than 16" in srv.stderr_text(), srv.stderr_text()
    finally:
        srv.stop()


@pytest.mark.parametrize("how", ["flags", "env", "keys_file"])
def test_keyed_server_may_listen_on_all_interfaces(tmp_path, how):
    port = support.free_port()
    cmd = [str(SHOAL_BIN), "server", "--listen", f"0.0.0.0:{port}",
           "--data-dir", str(tmp_path / "data"), "--keep-alive", "30s"]
    env = clean_env()
    if how == "flags":
        cmd += ["--access-key-id", AKID, "--secret-access-key", SECRET]
    elif how == "env":
        env.update(SHOAL_ACCESS_KEY_ID=AKID, SHOAL_SECRET_ACCESS_KEY=SECRET)
    else:
        cmd += ["--keys-file", str(write_keys_file(tmp_path / "keys", FILE_KEYS))]
    local = f"http://127.0.0.1:{port}"
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                stdin=subprocess.DEVNULL, env=env, cwd=str(tmp_path),
                                start_new_session=True)
    try:
        deadline = time.monotonic() + support.HEALTH_TIMEOUT_S
        while not support.health_ok(local):
            assert proc.poll() is None, (f"{cmd} ({how}) exited {proc.returncode}:\n"
                                         f"{(tmp_path / 'stderr').read_text(errors='replace')}")
            assert time.monotonic() < deadline, f"{cmd}: no /health on {local}"
            time.sleep(0.05)
        # And it is keyed: unsigned requests are refused, signed ones work.
        assert_lambda_error(http(local, "GET", "/2015-03-31/functions"), 403,
                            "MissingAuthenticationTokenException")
        key = (AKID, SECRET) if how != "keys_file" else next(iter(FILE_KEYS.items()))
        r = signed(local, "GET", "/2015-03-31/functions", key=key)
        assert r.status == 200, r
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


# --------------------------------------------------------------------------- raw SigV4


def test_health_needs_no_signature(keyed):
    r = http(keyed.endpoint, "GET", "/health")
    assert r.status == 200, r


@pytest.mark.parametrize("method,path", [
    ("GET", "/2015-03-31/functions"),
    ("GET", "/2015-03-31/functions/"),
    ("POST", "/2015-03-31/functions/some-fn/invocations"),
    ("GET", "/2015-03-31/functions/some-fn"),
    ("GET", "/shoal/v1/functions/some-fn/logs"),
    ("GET", "/shoal/v1/functions/some-fn/code.zip"),
    ("GET", "/metrics"),
    ("GET", "/2016-08-19/account-settings"),
    ("GET", "/no/such/operation"),
])
def test_unsigned_request_is_refused(keyed, method, path):
    body = b"{}" if method == "POST" else None
    r = http(keyed.endpoint, method, path, body=body)
    assert_lambda_error(r, 403, "MissingAuthenticationTokenException")


def test_signed_request_is_accepted(keyed):
    r = signed(keyed.endpoint, "GET", "/2015-03-31/functions")
    assert r.status == 200, r
    assert "Functions" in r.json()


@pytest.mark.parametrize("akid", sorted(ALL_KEYS))
def test_every_configured_key_works(keyed, akid):
    r = signed(keyed.endpoint, "GET", "/2015-03-31/functions?MaxItems=5",
               key=(akid, ALL_KEYS[akid]))
    assert r.status == 200, r


def test_keys_do_not_mix(keyed):
    """A key id with another key's secret is a bad signature."""
    ids = sorted(ALL_KEYS)
    r = signed(keyed.endpoint, "GET", "/2015-03-31/functions", key=(ids[0], ALL_KEYS[ids[1]]))
    assert_lambda_error(r, 403, "InvalidSignatureException")


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-3", "ap-southeast-2"])
def test_any_region_is_accepted(keyed, region):
    r = signed(keyed.endpoint, "GET", "/2015-03-31/functions", region=region)
    assert r.status == 200, r


def test_signature_for_another_service_is_refused(keyed):
    """The scope must name the `lambda` service."""
    r = signed(keyed.endpoint, "GET", "/2015-03-31/functions", service="s3")
    assert r.status == 403, f"a SigV4 signature scoped to service s3 was accepted: {r}"


SQS_HEADERS = {"X-Amz-Target": "AmazonSQS.ListQueues",
               "Content-Type": "application/x-amz-json-1.0"}


def test_queue_requests_are_signed_for_sqs(keyed):
    """`POST /` with an `AmazonSQS.` target must be signed for `sqs`, and the Lambda API
    for `lambda`: a signature for the other service is refused, in each service's format."""
    r = signed(keyed.endpoint, "POST", "/", "{}", headers=SQS_HEADERS, service="sqs")
    assert r.status == 200, r
    assert isinstance(r.json().get("QueueUrls"), list), r
    r = signed(keyed.endpoint, "POST", "/", "{}", headers=SQS_HEADERS, service="lambda")
    assert r.status == 403, r
    assert r.headers.get("x-amzn-query-error") == "InvalidSignatureException;Sender", r
    assert r.json()["__type"].endswith("#InvalidSignatureException"), r
    assert_lambda_error(signed(keyed.endpoint, "GET", "/2015-03-31/functions", service="sqs"),
                        403, "InvalidSignatureException")


def test_boto3_sqs_with_the_right_and_wrong_keys(keyed):
    def sqs(key):
        return boto3.client(
            "sqs", endpoint_url=keyed.endpoint, region_name=support.REGION,
            aws_access_key_id=key[0], aws_secret_access_key=key[1],
            config=Config(retries={"max_attempts": 0}, read_timeout=30, connect_timeout=5))
    client = sqs((AKID, SECRET))
    name = support.unique_name("auth-q")
    url = client.create_queue(QueueName=name)["QueueUrl"]
    try:
        client.send_message(QueueUrl=url, MessageBody="signed")
        got = client.receive_message(QueueUrl=url)["Messages"]
        assert [m["Body"] for m in got] == ["signed"], got
        with pytest.raises(ClientError) as e:
            sqs((AKID, "not-the-secret")).list_queues()
        assert e.value.response["Error"]["Code"] == "InvalidSignatureException", e.value.response
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        client.delete_queue(QueueUrl=url)


def test_unknown_access_key(keyed):
    r = signed(keyed.endpoint, "GET", "/2015-03-31/functions", key=("AKIDNOTCONFIGURED000", SECRET))
    assert_lambda_error(r, 403, "UnrecognizedClientException")


def test_wrong_secret(keyed):
    r = signed(keyed.endpoint, "GET", "/2015-03-31/functions", key=(AKID, SECRET + "x"))
    assert_lambda_error(r, 403, "InvalidSignatureException")


CREATE_BODY = json.dumps({"FunctionName": "tamper-target", "Runtime": support.PY_RUNTIME,
                          "Handler": "app.handler", "Role": support.ROLE,
                          "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}})


@pytest.mark.parametrize("tamper", ["body", "body-same-length", "path", "query", "query-added",
                                    "method", "signed-header", "amz-date", "signature"])
def test_tampered_request_is_refused(keyed, tamper):
    ep = keyed.endpoint
    if tamper in ("body", "body-same-length"):
        req = signed_request(ep, "POST", "/2015-03-31/functions", CREATE_BODY,
                             headers={"Content-Type": "application/json"})
        changed = (CREATE_BODY.replace("tamper-target", "tamper-target-2") if tamper == "body"
                   else CREATE_BODY.replace("tamper-target", "tamper-targex"))
        r = send(ep, req, body=changed.encode())
    elif tamper == "path":
        req = signed_request(ep, "GET", "/2015-03-31/functions/fn-a")
        r = send(ep, req, path="/2015-03-31/functions/fn-b")
    elif tamper == "query":
        req = signed_request(ep, "GET", "/2015-03-31/functions?MaxItems=5")
        r = send(ep, req, path="/2015-03-31/functions?MaxItems=6")
    elif tamper == "query-added":
        req = signed_request(ep, "GET", "/2015-03-31/functions")
        r = send(ep, req, path="/2015-03-31/functions?MaxItems=1")
    elif tamper == "method":
        req = signed_request(ep, "GET", "/2015-03-31/functions/fn-a")
        r = send(ep, req, method="DELETE")
    elif tamper == "signed-header":
        req = signed_request(ep, "POST", "/2015-03-31/functions/fn-a/invocations", b"{}",
                             headers={"X-Amz-Invocation-Type": "RequestResponse",
                                      "X-Amz-Log-Type": "None"})
        assert "x-amz-log-type" in req.headers["Authorization"].lower()
        r = send(ep, req, headers={"X-Amz-Log-Type": "Tail"})
    elif tamper == "amz-date":
        req = signed_request(ep, "GET", "/2015-03-31/functions")
        date = datetime.datetime.strptime(req.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        shifted = date - datetime.timedelta(seconds=1)
        if shifted.date() != date.date():
            shifted = date + datetime.timedelta(seconds=1)
        r = send(ep, req, headers={"X-Amz-Date": shifted.strftime("%Y%m%dT%H%M%SZ")})
    else:  # signature: one hex digit changed
        req = signed_request(ep, "GET", "/2015-03-31/functions")
        auth = req.headers["Authorization"]
        last = auth[-1]
        r = send(ep, req, headers={"Authorization": auth[:-1] + ("0" if last != "0" else "1")})
    assert_lambda_error(r, 403, "InvalidSignatureException")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@pytest.mark.parametrize("minutes", [-14, 14])
def test_clock_skew_within_15_minutes_is_accepted(keyed, minutes):
    r = signed(keyed.endpoint, "GET", "/2015-03-31/functions",
               when=_now() + datetime.timedelta(minutes=minutes))
    assert r.status == 200, r


@pytest.mark.parametrize("minutes", [-16, 16, -24 * 60, 24 * 60])
def test_clock_skew_over_15_minutes_is_refused(keyed, minutes):
    when = _now() + datetime.timedelta(minutes=minutes)
    req = signed_request(keyed.endpoint, "GET", "/2015-03-31/functions", when=when)
    assert req.headers["X-Amz-Date"] == when.strftime("%Y%m%dT%H%M%SZ")
    r = send(keyed.endpoint, req)
    assert_lambda_error(r, 403, "InvalidSignatureException", "Signature expired")


def _good_auth(keyed) -> str:
    return signed_request(keyed.endpoint, "GET", "/2015-03-31/functions").headers["Authorization"]


@pytest.mark.parametrize("authorization", [
    "garbage",
    "Bearer abc.def.ghi",
    "AWS4-HMAC-SHA256",
    f"AWS4-HMAC-SHA256 Credential={AKID}",
    f"AWS4-HMAC-SHA256 Credential={AKID}/20240101/us-east-1/lambda/aws4_request, "
    "SignedHeaders=host;x-amz-date",
    f"AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature={'0' * 64}",
    f"AWS4-HMAC-SHA256 Credential={AKID}, SignedHeaders=host;x-amz-date, Signature={'0' * 64}",
    "<good-without-algorithm>",
])
def test_malformed_authorization(keyed, authorization):
    if authorization == "<good-without-algorithm>":
        authorization = _good_auth(keyed).split(" ", 1)[1]
    req = signed_request(keyed.endpoint, "GET", "/2015-03-31/functions")
    r = send(keyed.endpoint, req, headers={"Authorization": authorization})
    assert_lambda_error(r, 403, "IncompleteSignatureException")


def test_signature_without_amz_date_is_refused(keyed):
    req = signed_request(keyed.endpoint, "GET", "/2015-03-31/functions")
    headers = {k: v for k, v in req.headers.items() if k.lower() != "x-amz-date"}
    r = http(keyed.endpoint, "GET", "/2015-03-31/functions", headers=headers)
    assert r.status == 403, r
    assert r.headers.get("x-amzn-errortype"), r


def test_signed_invoke_passes_the_body_through(keyed, keyed_fn):
    payload = json.dumps({"signed": True, "n": 42})
    r = signed(keyed.endpoint, "POST",
               f"/2015-03-31/functions/{keyed_fn}/invocations?Qualifier=%24LATEST", payload)
    assert r.status == 200, r
    assert r.json()["event"] == {"signed": True, "n": 42}


# --------------------------------------------------------------------------- boto3


def test_boto3_with_the_right_keys(keyed):
    lam = boto_client(keyed)
    name = support.unique_name("auth-boto")
    arn = function_arn(name)
    cfg = lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME,
                              Handler="app.handler", Role=support.ROLE,
                              Code={"ZipFile": py_zip(ECHO)})
    try:
        assert cfg["FunctionArn"] == arn
        resp = support.invoke(lam, arn, {"k": "v"}, Qualifier="$LATEST")
        assert resp["StatusCode"] == 200, resp
        assert resp.get("FunctionError") is None, resp["raw"]
        assert resp["ExecutedVersion"] == "$LATEST"
        assert resp["json"]["event"] == {"k": "v"}
        version = lam.publish_version(FunctionName=arn)["Version"]
        resp = support.invoke(lam, arn, {"v": 1}, Qualifier=version)
        assert resp["ExecutedVersion"] == version, resp
        assert resp["json"]["event"] == {"v": 1}
        names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
        assert name in names
    finally:
        lam.delete_function(FunctionName=arn)
    with pytest.raises(ClientError) as e:
        lam.get_function(FunctionName=name)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


@pytest.mark.parametrize("akid", sorted(FILE_KEYS))
def test_boto3_with_a_keys_file_key(keyed, keyed_fn, akid):
    lam = boto_client(keyed, key=(akid, FILE_KEYS[akid]))
    resp = support.invoke(lam, function_arn(keyed_fn), {"key": akid}, Qualifier="$LATEST")
    assert resp["json"]["event"] == {"key": akid}


@pytest.mark.parametrize("which", ["wrong-secret", "unknown-key"])
def test_boto3_with_wrong_keys(keyed, keyed_fn, which):
    key = (AKID, "not-the-secret") if which == "wrong-secret" else ("AKIDUNKNOWN000000000", SECRET)
    expected = ("InvalidSignatureException" if which == "wrong-secret"
                else "UnrecognizedClientException")
    lam = boto_client(keyed, key=key)
    for call in (lambda: lam.list_functions(),
                 lambda: lam.invoke(FunctionName=function_arn(keyed_fn), Qualifier="$LATEST",
                                    Payload=b"{}")):
        with pytest.raises(ClientError) as e:
            call()
        err = e.value.response
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 403, err
        assert err["Error"]["Code"] == expected, err


# --------------------------------------------------------------------------- AWS CLI


def _aws(srv, key: tuple[str, str], *args: str, cwd: Path | None = None):
    env = clean_env(AWS_ACCESS_KEY_ID=key[0], AWS_SECRET_ACCESS_KEY=key[1],
                    AWS_DEFAULT_REGION=support.REGION, AWS_PAGER="", AWS_MAX_ATTEMPTS="1",
                    AWS_RETRY_MODE="standard", AWS_EC2_METADATA_DISABLED="true",
                    AWS_CONFIG_FILE="/nonexistent/shoal-e2e-aws-config",
                    AWS_SHARED_CREDENTIALS_FILE="/nonexistent/shoal-e2e-aws-credentials")
    cmd = ["aws", "lambda", *args, "--endpoint-url", srv.endpoint, "--region", support.REGION,
           "--output", "json"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env,
                          cwd=str(cwd) if cwd else None, stdin=subprocess.DEVNULL)


def _ok(proc):
    assert proc.returncode == 0, (
        f"{proc.args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return json.loads(proc.stdout) if proc.stdout.strip() else None


needs_aws = pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")


def _raw_payload_args() -> list[str]:
    if shutil.which("aws") is None:
        return []
    v = subprocess.run(["aws", "--version"], capture_output=True, text=True)
    return [] if "aws-cli/1." in v.stdout + v.stderr else ["--cli-binary-format",
                                                          "raw-in-base64-out"]


@needs_aws
def test_aws_cli_with_the_right_keys(keyed, tmp_path):
    name = support.unique_name("auth-cli")
    arn = function_arn(name)
    zip_path = tmp_path / "f.zip"
    zip_path.write_bytes(py_zip(ECHO))
    key = (AKID, SECRET)
    cfg = _ok(_aws(keyed, key, "create-function", "--function-name", name,
                   "--runtime", support.PY_RUNTIME, "--handler", "app.handler",
                   "--role", support.ROLE, "--zip-file", f"fileb://{zip_path}"))
    try:
        assert cfg["FunctionArn"] == arn
        out = tmp_path / "out.json"
        meta = _ok(_aws(keyed, key, "invoke", "--function-name", arn, "--qualifier", "$LATEST",
                        *_raw_payload_args(), "--payload", '{"via": "aws-cli"}', str(out)))
        assert meta["StatusCode"] == 200 and "FunctionError" not in meta, meta
        assert json.loads(out.read_text())["event"] == {"via": "aws-cli"}
        listed = _ok(_aws(keyed, key, "list-functions"))
        assert name in [f["FunctionName"] for f in listed["Functions"]]
    finally:
        _ok(_aws(keyed, key, "delete-function", "--function-name", arn))
    r = signed(keyed.endpoint, "GET", f"/2015-03-31/functions/{name}")
    assert r.status == 404, r


@needs_aws
def test_aws_cli_with_a_wrong_secret(keyed):
    proc = _aws(keyed, (AKID, "not-the-secret"), "list-functions")
    assert proc.returncode != 0, proc.stdout
    assert "InvalidSignatureException" in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- shoal CLI


def _shoal(srv, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    cmd = [str(SHOAL_BIN), *args, "--endpoint", srv.endpoint]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env,
                          cwd=str(support.REPO), stdin=subprocess.DEVNULL)


def _shoal_ok(proc):
    assert proc.returncode == 0, (
        f"{proc.args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.mark.parametrize("variables", ["SHOAL", "AWS"])
def test_shoal_cli_with_the_right_keys(keyed, variables):
    key = (AKID, SECRET) if variables == "SHOAL" else next(iter(FILE_KEYS.items()))
    env = clean_env(**{f"{variables}_ACCESS_KEY_ID": key[0],
                       f"{variables}_SECRET_ACCESS_KEY": key[1]})
    name = support.unique_name("auth-shoal")
    hello = support.EXAMPLES / "hello-python"
    cfg = json.loads(_shoal_ok(_shoal(keyed, env, "deploy", str(hello), "--name", name,
                                      "--runtime", support.PY_RUNTIME,
                                      "--handler", "app.handler")).stdout)
    assert cfg["FunctionName"] == name
    try:
        out = _shoal_ok(_shoal(keyed, env, "invoke", name, "--payload", '{"name":"signed"}'))
        assert json.loads(out.stdout) == {"message": "Hello, signed!"}
        assert name in _shoal_ok(_shoal(keyed, env, "ls")).stdout
        deadline = time.monotonic() + 5
        while True:
            logs = _shoal_ok(_shoal(keyed, env, "logs", name))
            if "REPORT RequestId" in logs.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert "REPORT RequestId" in logs.stdout, logs.stdout
    finally:
        _shoal_ok(_shoal(keyed, env, "rm", name))
    assert name not in _shoal_ok(_shoal(keyed, env, "ls")).stdout


@pytest.mark.parametrize("which,code", [
    ("wrong-secret", "InvalidSignatureException"),
    ("unknown-key", "UnrecognizedClientException"),
])
def test_shoal_cli_with_wrong_keys(keyed, keyed_fn, which, code):
    key = (AKID, "not-the-secret") if which == "wrong-secret" else ("AKIDUNKNOWN000000000", SECRET)
    env = clean_env(SHOAL_ACCESS_KEY_ID=key[0], SHOAL_SECRET_ACCESS_KEY=key[1])
    hello = support.EXAMPLES / "hello-python"
    for args in (["deploy", str(hello), "--name", keyed_fn, "--runtime", support.PY_RUNTIME,
                  "--handler", "app.handler"],
                 ["invoke", keyed_fn], ["ls"], ["logs", keyed_fn], ["rm", keyed_fn]):
        proc = _shoal(keyed, env, *args)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"shoal {args[0]} with a {which} exited 0:\n{out}"
        assert code in out, f"shoal {args[0]} with a {which}: no {code} in\n{out}"
    # Nothing was changed: the function is still there and unchanged.
    r = signed(keyed.endpoint, "GET", f"/2015-03-31/functions/{keyed_fn}")
    assert r.status == 200, r
    assert r.json()["Configuration"]["Handler"] == "app.handler"


def test_shoal_cli_without_keys_against_a_keyed_server(keyed):
    proc = _shoal(keyed, clean_env(), "ls")
    assert proc.returncode != 0, proc.stdout
    assert "MissingAuthenticationTokenException" in proc.stdout + proc.stderr, proc.stderr
    # ...and it says which variables it reads the keys from.
    hint = [l for l in proc.stderr.splitlines() if l.startswith("hint: ")]
    assert hint and "SHOAL_ACCESS_KEY_ID" in hint[0] and "AWS_SECRET_ACCESS_KEY" in hint[0], \
        proc.stderr


# --------------------------------------------------------------------------- body limits


def _check_refused_quickly(srv, r: RawResponse, rss_before: int, what: str) -> None:
    growth = rss_bytes(srv.proc.pid) - rss_before
    assert support.health_ok(srv.endpoint), f"{what}: /health no longer answers; {r}"
    assert growth < RSS_GROWTH_MAX, f"{what}: server RSS grew by {growth / MB:.0f} MB; {r}"
    assert r.status == 413, f"{what}: expected 413 RequestTooLargeException, got {r}"
    assert r.headers.get("x-amzn-errortype") == "RequestTooLargeException", r
    assert r.json().get("Type") == "User", r


def _open_invoke_target(srv) -> str:
    name = support.unique_name("auth-big")
    boto_client(srv).create_function(FunctionName=name, Runtime=support.PY_RUNTIME,
                                     Handler="app.handler", Role=support.ROLE,
                                     Code={"ZipFile": py_zip(ECHO)})
    return f"/2015-03-31/functions/{name}/invocations"


def _keyed_invoke_headers(srv, path: str) -> dict[str, str]:
    """Headers of a correctly signed (empty-body) invoke, to go with a huge body."""
    req = signed_request(srv.endpoint, "POST", path, b"",
                         headers={"Content-Type": "application/json"})
    return dict(req.headers.items())


def test_open_server_refuses_declared_1gb_invoke_quickly(server_with):
    """Content-Length: 1 GB, 3 MB sent, then the client waits: the 6 MB invoke limit must be
    applied on the declared length, without waiting for (or buffering) the body."""
    srv = server_with()
    path = _open_invoke_target(srv)
    before = rss_bytes(srv.proc.pid)
    r = declared_body_request(srv.port, "POST", path, {"Content-Type": "application/json"},
                              declared=GB, send_at_most=3 * MB, wait=QUICK_S)
    _check_refused_quickly(srv, r, before, f"POST {path} (open server), Content-Length {GB}")


def test_keyed_server_refuses_declared_1gb_request_quickly(server_with):
    """The same on a keyed server, where authentication reads bodies of up to 70 MB."""
    srv = server_with(access_key_id=AKID, secret_access_key=SECRET)
    path = "/2015-03-31/functions/auth-big/invocations"
    headers = _keyed_invoke_headers(srv, path)
    before = rss_bytes(srv.proc.pid)
    r = declared_body_request(srv.port, "POST", path, headers, declared=GB,
                              send_at_most=3 * MB, wait=QUICK_S)
    _check_refused_quickly(srv, r, before, f"signed POST {path} (keyed server), "
                                           f"Content-Length {GB}")


def test_open_server_cuts_off_a_streamed_1gb_invoke(server_with):
    """Content-Length: 1 GB, body streamed until the server answers (at most 64 MB)."""
    srv = server_with()
    path = _open_invoke_target(srv)
    before = rss_bytes(srv.proc.pid)
    r = declared_body_request(srv.port, "POST", path, {"Content-Type": "application/json"},
                              declared=GB, send_at_most=64 * MB, wait=QUICK_S)
    _check_refused_quickly(srv, r, before, f"POST {path} (open server), streamed")
    assert r.sent <= 16 * MB, f"the server read far beyond the 6 MB invoke limit: {r}"
    assert "6291456" in r.json()["message"], r


def test_keyed_server_cuts_off_a_streamed_1gb_request(server_with):
    """Content-Length: 1 GB, body streamed until the server answers (at most 200 MB)."""
    srv = server_with(access_key_id=AKID, secret_access_key=SECRET)
    path = "/2015-03-31/functions/auth-big/invocations"
    headers = _keyed_invoke_headers(srv, path)
    before = rss_bytes(srv.proc.pid)
    r = declared_body_request(srv.port, "POST", path, headers, declared=GB,
                              send_at_most=200 * MB, wait=QUICK_S)
    _check_refused_quickly(srv, r, before, f"signed POST {path} (keyed server), streamed")
    assert r.sent <= 80 * MB, f"authentication read far beyond 70 MB: {r}"


def test_env_keys_turn_authentication_on(server_with):
    srv = server_with(env={"SHOAL_ACCESS_KEY_ID": AKID, "SHOAL_SECRET_ACCESS_KEY": SECRET})
    assert_lambda_error(http(srv.endpoint, "GET", "/2015-03-31/functions"), 403,
                        "MissingAuthenticationTokenException")
    assert signed(srv.endpoint, "GET", "/2015-03-31/functions").status == 200
    assert http(srv.endpoint, "GET", "/health").status == 200
