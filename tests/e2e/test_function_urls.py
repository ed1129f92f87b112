"""Function URLs and resource policies: the URL configuration operations (boto3 and the
AWS CLI), requests through a URL by host name (curl, which resolves `*.localhost` to
loopback) and by path, payload format 2.0 in and out, the permission a public URL needs,
AWS_IAM URLs on a keyed server, and CORS.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import functools
from http import server as http_server
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.parse

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

import support
from support import http, py_zip

URL_APP = py_zip('''
import base64, json

def handler(event, context):
    mode = (event.get("queryStringParameters") or {}).get("mode", "echo")
    if mode == "echo":
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/json", "x-echo": "yes"},
            "cookies": ["a=1; Path=/", "b=2; Max-Age=60"],
            "body": json.dumps({"event": event, "request_id": context.aws_request_id}),
        }
    if mode == "binary":
        raw = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event["body"].encode()
        return {"statusCode": 201, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(raw[::-1]).decode(), "isBase64Encoded": True}
    if mode == "plain":
        return {"hello": "world"}
    if mode == "string":
        return "Hello, world!"
    if mode == "teapot":
        return {"statusCode": 418, "body": "short and stout",
                "headers": {"access-control-allow-origin": "https://mine.example"}}
    if mode == "fail":
        raise RuntimeError("boom")
    if mode == "bad":
        return {"statusCode": "teapot"}
    return {"statusCode": 400, "body": "unknown mode"}
''')

URL_RE = re.compile(r"^http://([a-z0-9]{32})\.lambda-url\.us-east-1\.localhost:(\d+)/$")


def public(lam, name: str, qualifier: str | None = None) -> None:
    """The permission a URL of auth type NONE needs."""
    extra = {"Qualifier": qualifier} if qualifier else {}
    lam.add_permission(FunctionName=name, StatementId="FunctionURLAllowPublicAccess",
                       Action="lambda:InvokeFunctionUrl", Principal="*",
                       FunctionUrlAuthType="NONE", **extra)


def url_id(url: str) -> str:
    m = URL_RE.match(url)
    assert m, url
    return m.group(1)


def via_path(endpoint: str, url: str, method: str, path: str, body=None, headers=None):
    """A request to a URL in the path form (`/lambda-url/<id>/...`)."""
    return http(endpoint, method, f"/lambda-url/{url_id(url)}{path}", body=body, headers=headers)


def curl(url: str, *args: str) -> tuple[int, dict[str, list[str]], bytes]:
    """curl `url` (its host name resolved to loopback by curl itself): status, headers
    (lower-case names, every value), body."""
    out = subprocess.run(["curl", "-sS", "-D", "-", *args, url], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers, body


@pytest.fixture
def url_fn(lam, make_fn):
    """A function with a public URL (auth type NONE and the permission): (name, url)."""
    name = make_fn(URL_APP)["FunctionName"]
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    public(lam, name)
    return name, url


# --------------------------------------------------------------------------- configuration


def test_url_configurations_are_created_read_updated_listed_and_deleted(lam, make_fn):
    name = make_fn(URL_APP)["FunctionName"]
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    cors = {"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["content-type"], "ExposeHeaders": ["x-echo"], "MaxAge": 300}
    made = lam.create_function_url_config(FunctionName=name, AuthType="NONE", Cors=cors)
    assert made["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert URL_RE.match(made["FunctionUrl"]), made
    assert made["FunctionArn"] == support.function_arn(name)
    assert made["AuthType"] == "NONE" and made["InvokeMode"] == "BUFFERED"
    assert made["Cors"]["AllowOrigins"] == ["https://app.example"]
    alias = lam.create_function_url_config(FunctionName=name, Qualifier="live",
                                           AuthType="AWS_IAM")
    assert alias["FunctionArn"] == support.function_arn(name) + ":live"
    assert alias["FunctionUrl"] != made["FunctionUrl"]

    got = lam.get_function_url_config(FunctionName=name)
    assert got["FunctionUrl"] == made["FunctionUrl"] and "LastModifiedTime" in got
    updated = lam.update_function_url_config(FunctionName=name, AuthType="AWS_IAM",
                                             InvokeMode="RESPONSE_STREAM")
    assert updated["AuthType"] == "AWS_IAM" and updated["InvokeMode"] == "RESPONSE_STREAM"
    assert updated["Cors"] == got["Cors"], "an update without Cors keeps it"
    listed = lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert sorted(c["FunctionArn"] for c in listed) == sorted(
        [support.function_arn(name), support.function_arn(name) + ":live"])
    page = lam.list_function_url_configs(FunctionName=name, MaxItems=1)
    assert len(page["FunctionUrlConfigs"]) == 1 and page["NextMarker"]
    rest = lam.list_function_url_configs(FunctionName=name, Marker=page["NextMarker"])
    assert len(rest["FunctionUrlConfigs"]) == 1 and "NextMarker" not in rest

    e = support.client_error(lam.create_function_url_config, FunctionName=name, AuthType="NONE")
    assert e.response["Error"]["Code"] == "ResourceConflictException"
    lam.delete_function_url_config(FunctionName=name)
    e = support.client_error(lam.get_function_url_config, FunctionName=name)
    assert e.response["Error"]["Code"] == "ResourceNotFoundException"
    e = support.client_error(lam.delete_function_url_config, FunctionName=name)
    assert e.response["Error"]["Code"] == "ResourceNotFoundException"
    # Deleting the alias deletes its URL.
    lam.delete_alias(FunctionName=name, Name="live")
    assert lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []


def test_bad_url_configurations_are_refused(lam_nv, make_fn):
    lam = lam_nv
    name = make_fn(URL_APP)["FunctionName"]

    def code(**kwargs) -> str:
        e = support.client_error(lam.create_function_url_config, FunctionName=name, **kwargs)
        return e.response["Error"]["Code"]

    assert code(AuthType="OPEN") == "InvalidParameterValueException"
    assert code(AuthType="NONE", InvokeMode="FAST") == "InvalidParameterValueException"
    assert code(AuthType="NONE", Qualifier="1") == "InvalidParameterValueException"
    assert code(AuthType="NONE", Qualifier="nosuch") == "ResourceNotFoundException"
    for cors in ({"AllowMethods": ["FETCH"]}, {"AllowOrigins": ["app.example"]},
                 {"MaxAge": 100000}, {"AllowHeaders": ["bad header"]},
                 {"AllowMethods": ["GET"] * 7}):
        assert code(AuthType="NONE", Cors=cors) == "InvalidParameterValueException", cors
    e = support.client_error(lam.create_function_url_config, FunctionName="nosuch-fn",
                             AuthType="NONE")
    assert e.response["Error"]["Code"] == "ResourceNotFoundException"
    assert lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []


# --------------------------------------------------------------------------- policies


def test_permissions_make_a_policy_as_lambda_does(lam, aws, make_fn):
    name = make_fn(URL_APP)["FunctionName"]
    e = support.client_error(lam.get_policy, FunctionName=name)
    assert e.response["Error"]["Code"] == "ResourceNotFoundException"
    added = lam.add_permission(FunctionName=name, StatementId="sns", Action="lambda:InvokeFunction",
                               Principal="sns.amazonaws.com",
                               SourceArn="arn:aws:sns:us-east-1:000000000000:topic")
    statement = json.loads(added["Statement"])
    assert statement == {
        "Sid": "sns", "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "lambda:InvokeFunction", "Resource": support.function_arn(name),
        "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:sns:us-east-1:000000000000:topic"}},
    }
    out = aws("add-permission", "--function-name", name, "--statement-id", "acct",
              "--action", "lambda:GetFunction", "--principal", "123456789012")
    assert out.returncode == 0, out.stderr
    policy = lam.get_policy(FunctionName=name)
    doc = json.loads(policy["Policy"])
    assert doc["Version"] == "2012-10-17"
    assert [s["Sid"] for s in doc["Statement"]] == ["sns", "acct"]
    assert doc["Statement"][1]["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert policy["RevisionId"] == lam.get_function(FunctionName=name)["Configuration"]["RevisionId"]

    e = support.client_error(lam.add_permission, FunctionName=name, StatementId="sns",
                             Action="lambda:InvokeFunction", Principal="*")
    assert e.response["Error"]["Code"] == "ResourceConflictException"
    e = support.client_error(lam.add_permission, FunctionName=name, StatementId="x",
                             Action="s3:GetObject", Principal="*")
    assert e.response["Error"]["Code"] == "InvalidParameterValueException"
    e = support.client_error(lam.add_permission, FunctionName=name, StatementId="x",
                             Action="lambda:InvokeFunction", Principal="*", Qualifier="9")
    assert e.response["Error"]["Code"] == "ResourceNotFoundException"
    e = support.client_error(lam.add_permission, FunctionName=name, StatementId="x",
                             Action="lambda:InvokeFunction", Principal="*", RevisionId="stale")
    assert e.response["Error"]["Code"] == "PreconditionFailedException"

    lam.remove_permission(FunctionName=name, StatementId="sns")
    e = support.client_error(lam.remove_permission, FunctionName=name, StatementId="sns")
    assert e.response["Error"]["Code"] == "ResourceNotFoundException"
    lam.remove_permission(FunctionName=name, StatementId="acct")
    e = support.client_error(lam.get_policy, FunctionName=name)
    assert e.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_public_url_needs_the_permission(lam, endpoint, make_fn):
    name = make_fn(URL_APP)["FunctionName"]
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    r = via_path(endpoint, url, "GET", "/?mode=plain")
    assert r.status == 403 and r.json() == {"Message": "Forbidden"}, r
    # A permission for another action or principal does not open it.
    lam.add_permission(FunctionName=name, StatementId="other", Action="lambda:InvokeFunction",
                       Principal="*")
    assert via_path(endpoint, url, "GET", "/?mode=plain").status == 403
    public(lam, name)
    r = via_path(endpoint, url, "GET", "/?mode=plain")
    assert r.status == 200 and r.json() == {"hello": "world"}, r
    lam.remove_permission(FunctionName=name, StatementId="FunctionURLAllowPublicAccess")
    assert via_path(endpoint, url, "GET", "/?mode=plain").status == 403


# --------------------------------------------------------------------------- requests


def test_curl_gets_status_headers_cookies_and_the_event(url_fn, server):
    name, url = url_fn
    status, headers, body = curl(url + "some/path?mode=echo&x=1&x=2&y=a%20b",
                                 "-H", "X-Multi: one", "-H", "Cookie: s=1; t=2",
                                 "-H", "content-type: application/json",
                                 "--data-binary", '{"hello": "url"}')
    assert status == 200, body
    assert headers["x-echo"] == ["yes"]
    assert headers["content-type"] == ["application/json"], headers
    assert headers["set-cookie"] == ["a=1; Path=/", "b=2; Max-Age=60"]
    assert headers["x-amzn-requestid"]
    out = json.loads(body)
    event = out["event"]
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/some/path"
    assert event["rawQueryString"] == "mode=echo&x=1&x=2&y=a%20b"
    assert event["queryStringParameters"] == {"mode": "echo", "x": "1,2", "y": "a b"}
    assert event["cookies"] == ["s=1", "t=2"]
    assert event["headers"]["x-multi"] == "one" and "cookie" not in event["headers"]
    assert event["body"] == '{"hello": "url"}' and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"]["method"] == "POST" and ctx["http"]["path"] == "/some/path"
    assert ctx["http"]["sourceIp"] == "127.0.0.1" and ctx["http"]["userAgent"].startswith("curl/")
    assert ctx["domainName"] == urllib.parse.urlsplit(url).hostname
    assert ctx["domainPrefix"] == url_id(url) == ctx["apiId"]
    assert ctx["accountId"] == support.ACCOUNT
    assert ctx["requestId"] == out["request_id"] == headers["x-amzn-requestid"][0]
    assert ctx["stage"] == "$default" and isinstance(ctx["timeEpoch"], int)


def test_a_binary_body_round_trips_through_base64(url_fn, server):
    _, url = url_fn
    data = bytes(range(256)) * 8
    out = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code} %{content_type}",
                          "-H", "content-type: application/octet-stream", "--data-binary", "@-",
                          url + "?mode=binary"], input=data, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    body, _, trailer = out.stdout.rpartition(b"\n")
    assert trailer.decode() == "201 application/octet-stream", trailer
    assert body == data[::-1]


def test_answers_follow_the_2_0_response_rules(url_fn, endpoint):
    _, url = url_fn
    r = via_path(endpoint, url, "GET", "/?mode=plain")
    assert (r.status, r.headers["content-type"], r.json()) == (200, "application/json",
                                                               {"hello": "world"})
    r = via_path(endpoint, url, "GET", "/?mode=string")
    assert (r.status, r.body) == (200, b'"Hello, world!"')
    r = via_path(endpoint, url, "GET", "/?mode=teapot")
    assert (r.status, r.body) == (418, b"short and stout")
    # Without CORS settings the function's own CORS headers pass.
    assert r.headers["access-control-allow-origin"] == "https://mine.example"
    for mode in ("fail", "bad"):
        r = via_path(endpoint, url, "GET", f"/?mode={mode}")
        assert (r.status, r.body) == (502, b"Internal Server Error"), (mode, r)
    r = via_path(endpoint, url, "POST", "/", body=b"x" * (6 * 1024 * 1024 + 1))
    assert r.status == 413, r
    # An unknown URL id, and a deleted function's URL: 404.
    r = http(endpoint, "GET", "/lambda-url/" + "z" * 32 + "/")
    assert r.status == 404 and r.json() == {"Message": "Not Found"}, r


def test_a_deleted_functions_url_is_gone(lam, endpoint):
    name = support.unique_name("url-gone")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": URL_APP})
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    public(lam, name)
    assert via_path(endpoint, url, "GET", "/?mode=plain").status == 200
    lam.delete_function(FunctionName=name)
    assert via_path(endpoint, url, "GET", "/?mode=plain").status == 404


def test_an_alias_url_runs_the_alias_version(lam, endpoint, make_fn):
    name = make_fn(URL_APP)["FunctionName"]
    lam.publish_version(FunctionName=name)
    lam.update_function_code(FunctionName=name, ZipFile=py_zip(
        'def handler(event, context):\n    return {"version": "latest"}\n'))
    lam.create_alias(FunctionName=name, Name="stable", FunctionVersion="1")
    url = lam.create_function_url_config(FunctionName=name, Qualifier="stable",
                                         AuthType="NONE")["FunctionUrl"]
    # The function's own permission does not open the alias's URL; the alias's does.
    public(lam, name)
    assert via_path(endpoint, url, "GET", "/?mode=plain").status == 403
    public(lam, name, qualifier="stable")
    r = via_path(endpoint, url, "GET", "/?mode=plain")
    assert r.status == 200 and r.json() == {"hello": "world"}, r


# --------------------------------------------------------------------------- AWS_IAM

AKID = "AKIDSHOALE2EURLS0001"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("urls-keyed")
    srv = support.started(support.ShoalServer(
        data_dir=tmp / "data", log_dir=tmp / "logs",
        extra_args=["--access-key-id", AKID, "--secret-access-key", SECRET]))
    yield srv
    srv.stop()


def test_an_aws_iam_url_takes_only_signed_requests(keyed):
    lam = boto3.client("lambda", endpoint_url=keyed.endpoint, region_name=support.REGION,
                       aws_access_key_id=AKID, aws_secret_access_key=SECRET,
                       config=Config(retries={"max_attempts": 0}))
    name = support.unique_name("url-iam")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": URL_APP})
    url = lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
    path = f"/lambda-url/{url_id(url)}/?mode=echo"

    def send(key):
        req = AWSRequest(method="POST", url=keyed.endpoint + path, data=b'{"a":1}',
                         headers={"content-type": "application/json"})
        if key:
            botocore.auth.SigV4Auth(Credentials(*key), "lambda", support.REGION).add_auth(req)
        return http(keyed.endpoint, "POST", path, body=req.body, headers=dict(req.headers))

    r = send(None)
    assert r.status == 403 and r.json() == {"Message": "Forbidden"}, r
    assert send((AKID, "not-the-secret")).status == 403
    r = send((AKID, SECRET))
    assert r.status == 200, r
    iam = r.json()["event"]["requestContext"]["authorizer"]["iam"]
    assert iam["accessKey"] == AKID
    # The URL's requests bypass the API's own authentication, not the URL's: an
    # unsigned request to a public URL of this keyed server works.
    public(lam, name)
    lam.update_function_url_config(FunctionName=name, AuthType="NONE")
    assert send(None).status == 200
    lam.delete_function(FunctionName=name)


# --------------------------------------------------------------------------- CORS


def test_cors_preflight_and_answers_follow_the_settings(lam, endpoint, make_fn):
    name = make_fn(URL_APP)["FunctionName"]
    url = lam.create_function_url_config(
        FunctionName=name, AuthType="NONE",
        Cors={"AllowOrigins": ["http://app.example"], "AllowMethods": ["POST"],
              "AllowHeaders": ["content-type", "x-trace"], "ExposeHeaders": ["x-echo"],
              "MaxAge": 600, "AllowCredentials": True})["FunctionUrl"]
    public(lam, name)
    pre = via_path(endpoint, url, "OPTIONS", "/", headers={
        "Origin": "http://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert pre.status == 200, pre
    assert pre.headers["access-control-allow-origin"] == "http://app.example"
    assert pre.headers["access-control-allow-methods"] == "POST"
    assert pre.headers["access-control-allow-headers"] == "content-type,x-trace"
    assert pre.headers["access-control-max-age"] == "600"
    assert pre.headers["access-control-allow-credentials"] == "true"
    denied = via_path(endpoint, url, "OPTIONS", "/", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in denied.headers
    # Answers: the settings' headers replace the function's.
    r = via_path(endpoint, url, "GET", "/?mode=teapot", headers={"Origin": "http://app.example"})
    assert r.headers["access-control-allow-origin"] == "http://app.example"
    assert r.headers["access-control-expose-headers"] == "x-echo"
    r = via_path(endpoint, url, "GET", "/?mode=teapot", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


# --------------------------------------------------------------------------- a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("SHOAL_E2E_REQUIRE_CHROMIUM"),
    reason="headless Chromium is not installed (apt-get install chromium)")

PAGE = """<html><body><div id="out">pending</div><script>
fetch("{url}?mode=plain", {{method: "POST", body: "{{}}",
      headers: {{"content-type": "application/json", "x-trace": "1"}}}})
  .then(r => r.text())
  .then(t => document.getElementById("out").textContent = "ok:" + t)
  .catch(e => document.getElementById("out").textContent = "blocked:" + e.name);
</script></body></html>"""


def browse(page_url: str) -> str:
    """What the page at `page_url` wrote into #out, by headless Chromium."""
    assert CHROMIUM, "headless Chromium is required (apt-get install chromium)"
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                          "--virtual-time-budget=10000", "--dump-dom", page_url],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r'<div id="out">(.*?)</div>', out.stdout)
    assert m, (out.stdout[-2000:], out.stderr[-2000:])
    return m.group(1)


class _Quiet(http_server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def page_origins(tmp_path):
    """Two loopback origins serving `page.html` (written by the test): their base URLs."""
    servers = []
    for _ in range(2):
        handler = functools.partial(_Quiet, directory=str(tmp_path))
        srv = http_server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    yield tmp_path, [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    for srv in servers:
        srv.shutdown()


@needs_chromium
def test_a_browser_on_an_allowed_origin_reads_the_url_and_another_is_blocked(
        lam, make_fn, page_origins):
    folder, (allowed, other) = page_origins
    name = make_fn(URL_APP)["FunctionName"]
    url = lam.create_function_url_config(
        FunctionName=name, AuthType="NONE",
        Cors={"AllowOrigins": [allowed], "AllowMethods": ["POST"],
              "AllowHeaders": ["content-type", "x-trace"]})["FunctionUrl"]
    public(lam, name)
    (folder / "page.html").write_text(PAGE.format(url=url))
    # The custom header makes the browser send a preflight first.
    assert browse(f"{allowed}/page.html") == 'ok:{"hello": "world"}'
    assert browse(f"{other}/page.html") == "blocked:TypeError"
