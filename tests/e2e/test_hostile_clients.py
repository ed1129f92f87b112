"""Hostile clients of the public API: connections that never finish their headers, idle
connections, floods of connections, huge headers, forged signatures with huge bodies,
bodies over an operation's limit, paths that are not UTF-8, concurrent code uploads.

Each test starts a server of its own with short timeouts (`--header-timeout`,
`--idle-timeout`) or a small cap (`--max-connections`) so that it takes seconds, talks to
it over raw sockets on 127.0.0.1 and reads the server's memory from /proc/<pid>/status.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import time

import pytest

import support
from support import http
from test_auth import (AKID, SECRET, RawResponse, _parse_response, assert_lambda_error,
                       declared_body_request, rss_bytes, signed_request)

MB = 1024 * 1024


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closes `sock` (reading and discarding what it sends), or
    None if it is still open after `seconds`."""
    start = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - start < seconds:
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
    return None


def read_answer(sock: socket.socket, timeout: float = 5.0) -> RawResponse:
    """Reads one whole response from `sock` (or what came before it closed)."""
    data, note, start = b"", "no answer", time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() - start < timeout:
        try:
            got = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError as e:
            note = f"reset: {e!r}"
            break
        if not got:
            note = "closed"
            break
        data += got
        if _parse_response(data):
            note = "answered"
            break
    parsed = _parse_response(data)
    elapsed = time.monotonic() - start
    if parsed:
        return RawResponse(*parsed, 0, elapsed, note)
    return RawResponse(None, {}, data, 0, elapsed, note)


def get_health(sock: socket.socket) -> RawResponse:
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return read_answer(sock)


# --------------------------------------------------------------------------- timeouts


def test_partial_header_is_closed_within_the_header_timeout(server_with):
    srv = server_with(header_timeout="1s", idle_timeout="30s")
    partial = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    silent = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        partial.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: abc")
        # A request whose headers keep trickling in is closed too.
        for _ in range(3):
            time.sleep(0.3)
            partial.sendall(b"d")
        waited = closed_within(partial, 3.0)
        assert waited is not None, "a connection with half its headers was still open 4s later"
        assert closed_within(silent, 1.0) is not None, \
            "a connection that sent nothing was still open after 2s"
        assert support.health_ok(srv.endpoint)
    finally:
        partial.close()
        silent.close()


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(server_with):
    srv = server_with(header_timeout="10s", idle_timeout="1s")
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        r = get_health(sock)
        assert r.status == 200, r
        start = time.monotonic()
        waited = closed_within(sock, 4.0)
        assert waited is not None, "an idle kept-alive connection was still open 4s later"
        # Closed by the idle timeout (1s), not the header timeout (10s), and not at once.
        assert 0.7 <= time.monotonic() - start <= 3.0, waited
    finally:
        sock.close()


def test_idle_timeout_and_header_timeout_are_apart(server_with):
    """A kept-alive connection waits for its next request up to the idle timeout, even
    when that is longer than the header timeout."""
    srv = server_with(header_timeout="1s", idle_timeout="5s")
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        assert get_health(sock).status == 200
        time.sleep(2.0)
        r = get_health(sock)
        assert r.status == 200, f"second request after 2s idle (idle timeout 5s): {r}"
    finally:
        sock.close()


def test_many_large_partial_headers_keep_memory_bounded(server_with):
    """1000 connections each sending 256 KB of a header that never ends: refused at the
    64 KB header cap, memory stays bounded and the API keeps answering."""
    srv = server_with(header_timeout="20s", max_header_bytes=64 * 1024)
    pid = srv.proc.pid
    before = rss_bytes(pid)
    line = b"X-Filler: " + b"a" * (256 * 1024)
    socks = []
    try:
        for i in range(1000):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            socks.append(s)
            s.settimeout(2)
            try:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + line)
            except (ConnectionResetError, BrokenPipeError, socket.timeout):
                pass
        time.sleep(0.5)
        growth = rss_bytes(pid) - before
        r = http(srv.endpoint, "GET", "/2015-03-31/functions", timeout=5)
        assert r.status == 200, r
        assert growth < 64 * MB, f"1000 large partial headers grew the server by {growth / MB:.0f} MB"
        # The oversized ones were answered 431 and closed, not kept.
        answered = read_answer(socks[0], timeout=2)
        assert answered.status == 431 or answered.note in ("closed",) or "reset" in answered.note, \
            answered
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------- connection cap


def test_connections_over_the_cap_are_refused_and_the_api_recovers(server_with):
    srv = server_with(max_connections=20, header_timeout="30s", idle_timeout="30s")
    held = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(20)]
    try:
        # Every held connection is taken before the next one is accepted (accept is FIFO).
        time.sleep(0.2)
        start = time.monotonic()
        extra = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        r = read_answer(extra, timeout=3)
        assert time.monotonic() - start < 1.0, f"refusal took {time.monotonic() - start:.2f}s: {r}"
        assert r.status == 429, f"connection over the cap: {r}"
        assert r.headers.get("x-amzn-errortype") == "TooManyRequestsException", r
        assert json.loads(r.body)["Type"] == "User", r
        extra.close()
        # A flood far over the cap changes nothing for the held connections...
        flood = []
        for _ in range(500):
            try:
                flood.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
            except OSError:
                pass
        for s in flood:
            s.close()
        r = get_health(held[0])
        assert r.status == 200, f"a held connection stopped working during the flood: {r}"
    finally:
        for s in held:
            s.close()
    # ...and once the connections close, new ones are served again.
    support.wait_for(lambda: support.health_ok(srv.endpoint), bool, timeout=3,
                     what="/health answers after the flood")
    for _ in range(20):
        assert support.health_ok(srv.endpoint)


# --------------------------------------------------------------------------- signatures


def _forged_headers(srv, path: str, payload_hash: str | None) -> dict[str, str]:
    """Headers signed for an empty body with a real key id whose signature is then
    replaced by a bogus one."""
    headers = {"Content-Type": "application/json"}
    if payload_hash is not None:
        headers["X-Amz-Content-SHA256"] = payload_hash
    req = signed_request(srv.endpoint, "POST", path, b"", headers=headers)
    out = dict(req.headers.items())
    auth = out["Authorization"]
    out["Authorization"] = auth[: auth.index("Signature=")] + "Signature=" + "0" * 64
    return out


def test_forged_signature_with_declared_hash_is_refused_before_the_body(server_with):
    """Valid key id, bogus signature, 69 MB declared: 403 while only headers were sent."""
    srv = server_with(access_key_id=AKID, secret_access_key=SECRET)
    path = "/2015-03-31/functions"
    headers = _forged_headers(srv, path, hashlib.sha256(b"x" * 69 * MB).hexdigest())
    before = rss_bytes(srv.proc.pid)
    r = declared_body_request(srv.port, "POST", path, headers, declared=69 * MB,
                              send_at_most=0, wait=3.0)
    assert r.status == 403, f"forged request with a 69 MB body: {r}"
    assert r.headers.get("x-amzn-errortype") == "InvalidSignatureException", r
    assert r.sent == 0, r
    assert r.elapsed < 2.0, r
    assert rss_bytes(srv.proc.pid) - before < 16 * MB


def test_forged_signatures_without_declared_hash_are_read_a_few_at_a_time(server_with):
    """botocore sends no x-amz-content-sha256 to Lambda, so the body must be hashed: ten
    concurrent forged 60 MB uploads are read at most --upload-concurrency at a time."""
    srv = server_with(access_key_id=AKID, secret_access_key=SECRET, upload_concurrency=2)
    path = "/2015-03-31/functions"
    headers = _forged_headers(srv, path, None)
    body = b"{" + b" " * (60 * MB - 2) + b"}"
    peak_before = peak_rss_bytes(srv.proc.pid)
    results, _ = support.burst(10, lambda i: http(srv.endpoint, "POST", path, body=body,
                                                  headers=headers, timeout=60), timeout=90)
    for r in results:
        assert not isinstance(r, Exception), results
        assert_lambda_error(r, 403, "InvalidSignatureException")
    growth = peak_rss_bytes(srv.proc.pid) - peak_before
    assert growth < 300 * MB, f"ten forged 60 MB uploads peaked at +{growth / MB:.0f} MB"


def test_body_not_matching_the_declared_hash_is_refused(server_with):
    srv = server_with(access_key_id=AKID, secret_access_key=SECRET)
    path = "/2015-03-31/functions"
    signed_body = json.dumps({"FunctionName": "a"}).encode()
    other_body = json.dumps({"FunctionName": "b"}).encode()
    req = signed_request(srv.endpoint, "POST", path, signed_body,
                         headers={"X-Amz-Content-SHA256": hashlib.sha256(signed_body).hexdigest(),
                                  "Content-Type": "application/json"})
    headers = dict(req.headers.items())
    r = http(srv.endpoint, "POST", path, body=other_body, headers=headers)
    assert_lambda_error(r, 403, "InvalidSignatureException", "x-amz-content-sha256")
    # The same headers with the body they were signed for pass authentication.
    r = http(srv.endpoint, "POST", path, body=signed_body, headers=headers)
    assert r.headers.get("x-amzn-errortype") != "InvalidSignatureException", r
    assert r.status == 400, r  # the request itself is incomplete (no Runtime, Role, Code)
    listing = signed_request(srv.endpoint, "GET", "/2015-03-31/functions", b"",
                             headers={"X-Amz-Content-SHA256": hashlib.sha256(b"").hexdigest()})
    r = http(srv.endpoint, "GET", "/2015-03-31/functions", headers=dict(listing.headers.items()))
    assert r.status == 200, r


# --------------------------------------------------------------------------- body limits


def test_invoke_over_6mb_is_refused_before_its_body(server_with):
    """A signed 7 MB invoke that waits for 100 Continue: 413 without the body."""
    srv = server_with(access_key_id=AKID, secret_access_key=SECRET)
    path = "/2015-03-31/functions/any-fn/invocations"
    req = signed_request(srv.endpoint, "POST", path, b"", headers={"Expect": "100-continue"})
    r = declared_body_request(srv.port, "POST", path, dict(req.headers.items()),
                              declared=7 * MB, send_at_most=0, wait=3.0)
    assert r.status == 413, r
    assert r.headers.get("x-amzn-errortype") == "RequestTooLargeException", r
    assert "6291456" in r.json()["message"], r
    assert r.sent == 0 and r.elapsed < 2.0, r


def test_invoke_over_6mb_sent_whole_is_refused_in_lambda_format(server_with):
    srv = server_with()
    before = rss_bytes(srv.proc.pid)
    r = http(srv.endpoint, "POST", "/2015-03-31/functions/any-fn/invocations",
             body=b"{" + b" " * (7 * MB - 2) + b"}")
    assert_lambda_error(r, 413, "RequestTooLargeException", "InvokeFunction")
    assert rss_bytes(srv.proc.pid) - before < 16 * MB


@pytest.mark.parametrize("keyed", [False, True])
@pytest.mark.parametrize("method,path", [
    ("GET", "/2015-03-31/functions"),
    ("PUT", "/2015-03-31/functions/some-fn/configuration"),
    ("POST", "/2015-03-31/functions/some-fn/versions"),
])
def test_small_operations_refuse_a_2mb_body(server_with, keyed, method, path):
    keys = dict(access_key_id=AKID, secret_access_key=SECRET) if keyed else {}
    srv = server_with(**keys)
    body = b"{" + b" " * (2 * MB - 2) + b"}"
    headers = {"Content-Type": "application/json"}
    if keyed:
        headers = dict(signed_request(srv.endpoint, method, path, body, headers=headers)
                       .headers.items())
    r = http(srv.endpoint, method, path, body=body, headers=headers)
    assert_lambda_error(r, 413, "RequestTooLargeException", "1048576")


# --------------------------------------------------------------------------- error format


@pytest.mark.parametrize("path", [
    "/2015-03-31/functions/%FF%FE/configuration",
    "/2015-03-31/functions/%C3%28",
    "/2015-03-31/functions/abc%80/invocations",
])
def test_path_that_is_not_utf8_gets_a_lambda_error(server_with, path):
    srv = server_with()
    method = "POST" if path.endswith("invocations") else "GET"
    r = http(srv.endpoint, method, path, body=b"{}" if method == "POST" else None)
    assert_lambda_error(r, 400, "InvalidParameterValueException")


def test_bad_query_string_gets_a_lambda_error(server_with):
    srv = server_with()
    r = http(srv.endpoint, "GET", "/2015-03-31/functions?Marker=a&Marker=b")
    assert r.status == 400, r
    assert r.headers.get("x-amzn-errortype"), r
    assert json.loads(r.body).get("message"), r


def test_sqs_errors_made_outside_the_queue_handler_use_the_sqs_format(server_with):
    srv = server_with(access_key_id=AKID, secret_access_key=SECRET)
    headers = {"X-Amz-Target": "AmazonSQS.ListQueues",
               "Content-Type": "application/x-amz-json-1.0"}
    r = http(srv.endpoint, "POST", "/", body=b"{}", headers=headers)
    assert r.status == 403, r
    assert r.headers.get("x-amzn-query-error", "").startswith(
        "MissingAuthenticationTokenException;Sender"), r
    assert json.loads(r.body)["__type"].endswith("#MissingAuthenticationTokenException"), r


# --------------------------------------------------------------------------- uploads


def test_concurrent_big_uploads_peak_memory_is_bounded(server_with):
    """Six concurrent CreateFunction requests of a 32 MB (incompressible) zip each: read and
    processed two at a time, so the server's peak memory stays far below six at once."""
    srv = server_with(upload_concurrency=2)
    blob = os.urandom(32 * MB)
    lam_zip = support.zip_files({"app.py": "def handler(e, c):\n    return 1\n", "blob": blob})

    def create(i: int):
        doc = {"FunctionName": support.unique_name("big"), "Runtime": support.PY_RUNTIME,
               "Handler": "app.handler", "Role": support.ROLE,
               "Code": {"ZipFile": base64.b64encode(lam_zip).decode()}}
        return http(srv.endpoint, "POST", "/2015-03-31/functions", body=json.dumps(doc),
                    headers={"Content-Type": "application/json"}, timeout=120)

    peak_before = peak_rss_bytes(srv.proc.pid)
    results, elapsed = support.burst(6, create, timeout=180)
    for r in results:
        assert not isinstance(r, Exception), results
        assert r.status == 201, r
    growth = peak_rss_bytes(srv.proc.pid) - peak_before
    assert growth < 400 * MB, \
        f"six concurrent 43 MB uploads peaked at +{growth / MB:.0f} MB ({elapsed:.1f}s)"


def test_a_stalled_upload_gives_its_slot_up(server_with):
    """An upload whose body stops arriving is refused after the idle timeout, so that it
    cannot keep the only upload slot from the uploads behind it."""
    srv = server_with(upload_concurrency=1, idle_timeout="1s")
    stalled = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        stalled.sendall(b"POST /2015-03-31/functions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
                        b'{"FunctionName": "stalled", ')
        time.sleep(0.2)
        doc = {"FunctionName": support.unique_name("after"), "Runtime": support.PY_RUNTIME,
               "Handler": "app.handler", "Role": support.ROLE,
               "Code": {"ZipFile": base64.b64encode(support.py_zip("def handler(e, c):\n"
                                                                   "    return 1\n")).decode()}}
        start = time.monotonic()
        r = http(srv.endpoint, "POST", "/2015-03-31/functions", body=json.dumps(doc),
                 headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status == 201, r
        assert time.monotonic() - start < 5, f"the upload behind a stalled one waited {r}"
        answer = read_answer(stalled, timeout=2)
        assert_lambda_error(answer, 400, "InvalidRequestContentException", "request body")
    finally:
        stalled.close()


def test_connection_cap_fits_a_low_open_file_limit(tmp_path):
    """Under an open-file limit of 256 the cap drops to 128: connections past it are
    refused (the server never runs out of descriptors) and it answers once they close."""
    wrapper = tmp_path / "shoal-nofile"
    wrapper.write_text(f"#!/bin/sh\nexec prlimit --nofile=256:256 -- {support.SHOAL_BIN} \"$@\"\n")
    wrapper.chmod(0o755)
    srv = support.started(support.ShoalServer(data_dir=tmp_path / "data", log_dir=tmp_path / "logs",
                                              binary=wrapper, extra_args=["--isolation", "none"]))
    socks = []
    try:
        for _ in range(300):
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        time.sleep(0.3)
        r = read_answer(socks[-1], timeout=3)
        assert r.status == 429, f"connection 300 under a 256-file limit: {r}"
        assert get_health(socks[0]).status == 200, "the first connection is served"
        assert "--max-connections lowered" in srv.stderr_text(), srv.stderr_text()
    finally:
        for s in socks:
            s.close()
        support.wait_for(lambda: support.health_ok(srv.endpoint), bool, timeout=3,
                         what="/health answers once the connections closed")
        srv.stop()
