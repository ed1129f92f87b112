"""Response streaming: InvokeWithResponseStream (boto3 reads the event stream), function
URLs in RESPONSE_STREAM mode (the first bytes reach the client while the function is
still running), the Node runtime's `awslambda.streamifyResponse` and
`awslambda.HttpResponseStream`, and errors mid-stream.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse

import pytest

import support

STREAMER = support.zip_files({"index.mjs": '''
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  const mode = event.mode ?? event.queryStringParameters?.mode ?? "chunks";
  if (mode === "http") {
    responseStream = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 201,
      headers: { "content-type": "text/plain", "x-streamed": "yes" },
      cookies: ["s=1; Path=/"],
    });
  } else {
    responseStream.setContentType("text/plain");
  }
  if (mode === "slow" || mode === "http") {
    responseStream.write("first ");
    await sleep(1000);
    responseStream.write("second");
  } else if (mode === "fail") {
    responseStream.write("partial ");
    await sleep(50);
    throw new Error("mid-stream");
  } else if (mode === "big") {
    const piece = "x".repeat(1024 * 1024);
    for (let i = 0; i < 8; i++) responseStream.write(piece);
  } else {
    for (const part of ["one\\n", "two\\n", "three\\n"]) {
      responseStream.write(part);
      await sleep(20);
    }
  }
  responseStream.end();
});
'''})


@pytest.fixture
def streamer(make_fn):
    return make_fn(STREAMER, runtime=support.NODE_RUNTIME, handler="index.handler",
                   Timeout=10)["FunctionName"]


def stream_events(lam, name: str, payload: dict, **kwargs) -> tuple[list[bytes], dict, dict]:
    """InvokeWithResponseStream: the chunks, the InvokeComplete event and the response."""
    resp = lam.invoke_with_response_stream(FunctionName=name, Payload=json.dumps(payload),
                                           **kwargs)
    chunks, complete = [], None
    for event in resp["EventStream"]:
        if "PayloadChunk" in event:
            assert complete is None, "a chunk after InvokeComplete"
            chunks.append(event["PayloadChunk"]["Payload"])
        elif "InvokeComplete" in event:
            complete = event["InvokeComplete"]
    assert complete is not None, chunks
    return chunks, complete, resp


def test_boto3_reads_the_chunks_in_order(lam, streamer):
    chunks, complete, resp = stream_events(lam, streamer, {"mode": "chunks"})
    assert b"".join(chunks) == b"one\ntwo\nthree\n"
    assert len(chunks) >= 2, chunks
    assert not complete.get("ErrorCode"), complete
    assert resp["ExecutedVersion"] == "$LATEST"
    assert resp["ResponseStreamContentType"] == "text/plain"


def test_an_error_mid_stream_is_reported(lam, streamer):
    chunks, complete, _ = stream_events(lam, streamer, {"mode": "fail"}, LogType="Tail")
    assert b"".join(chunks) == b"partial "
    assert complete["ErrorCode"] == "Error", complete
    assert "mid-stream" in complete["ErrorDetails"], complete
    assert "mid-stream" in support.base64.b64decode(complete["LogResult"]).decode()


def test_a_streamed_response_may_pass_the_buffered_limit(lam, streamer):
    chunks, complete, _ = stream_events(lam, streamer, {"mode": "big"})
    assert sum(len(c) for c in chunks) == 8 * 1024 * 1024
    assert not complete.get("ErrorCode"), complete
    # A buffered Invoke of the same function gets Lambda's 6 MB limit.
    out = support.invoke(lam, streamer, {"mode": "big"})
    assert out.get("FunctionError") == "Unhandled", out
    assert out["json"]["errorType"] == "Function.ResponseSizeTooLarge", out["json"]


def test_a_buffered_invoke_of_a_streaming_function_gets_the_whole_body(lam, streamer):
    out = support.invoke(lam, streamer, {"mode": "chunks"})
    assert "FunctionError" not in out, out
    assert out["raw"] == b"one\ntwo\nthree\n"


def test_a_function_that_does_not_stream_answers_in_one_chunk(lam, make_fn):
    name = make_fn(support.py_zip(
        "def handler(event, context):\n    return {'got': event}\n"))["FunctionName"]
    chunks, complete, _ = stream_events(lam, name, {"a": 1})
    assert json.loads(b"".join(chunks)) == {"got": {"a": 1}}
    assert not complete.get("ErrorCode"), complete
    failing = make_fn(support.py_zip(
        "def handler(event, context):\n    raise ValueError('nope')\n"))["FunctionName"]
    chunks, complete, _ = stream_events(lam, failing, {})
    assert chunks == [] and complete["ErrorCode"] == "ValueError", complete
    e = support.client_error(lam.invoke_with_response_stream, FunctionName="nosuch-streamer")
    assert e.response["Error"]["Code"] == "ResourceNotFoundException"


def public_stream_url(lam, name: str) -> str:
    """A public RESPONSE_STREAM URL of function `name` (with its permission)."""
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE",
                                         InvokeMode="RESPONSE_STREAM")["FunctionUrl"]
    lam.add_permission(FunctionName=name, StatementId="public",
                       Action="lambda:InvokeFunctionUrl", Principal="*",
                       FunctionUrlAuthType="NONE")
    return url


def timed_read(url: str) -> tuple[int, dict, list[tuple[float, bytes]], float]:
    """GET `url` (http, loopback); the status, headers, each piece of the body with the
    time it arrived (seconds after the request was sent), and the time of the end."""
    split = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection("127.0.0.1", split.port, timeout=30)
    path = split.path + (f"?{split.query}" if split.query else "")
    start = time.monotonic()
    conn.request("GET", path, headers={"Host": split.netloc})
    resp = conn.getresponse()
    pieces = []
    while True:
        data = resp.read1(65536)
        if not data:
            break
        pieces.append((time.monotonic() - start, data))
    end = time.monotonic() - start
    headers = {}
    for k, v in resp.getheaders():
        headers.setdefault(k.lower(), []).append(v)
    conn.close()
    return resp.status, headers, pieces, end


def test_a_streaming_url_sends_the_first_bytes_early(lam, streamer):
    url = public_stream_url(lam, streamer)
    status, headers, pieces, end = timed_read(url + "?mode=slow")
    assert status == 200, pieces
    assert headers["content-type"] == ["text/plain"], headers
    assert b"".join(p for _, p in pieces) == b"first second"
    first_at = pieces[0][0]
    assert pieces[0][1].startswith(b"first"), pieces
    assert end - first_at >= 0.9, (first_at, end, pieces)

    # With an HTTP prelude: its status, headers and cookies, then the body as it comes.
    status, headers, pieces, end = timed_read(url + "?mode=http")
    assert status == 201, pieces
    assert headers["x-streamed"] == ["yes"] and headers["set-cookie"] == ["s=1; Path=/"], headers
    assert b"".join(p for _, p in pieces) == b"first second"
    assert end - pieces[0][0] >= 0.9, (pieces, end)

    # A buffered URL of the same function waits for the whole answer.
    lam.update_function_url_config(FunctionName=streamer, InvokeMode="BUFFERED")
    status, headers, pieces, end = timed_read(url + "?mode=slow")
    assert status == 200 and b"".join(p for _, p in pieces) == b"first second"
    assert end - pieces[0][0] < 0.5, (pieces, end)


PY_STREAMER = support.py_zip('''
import time

def handler(event, context):
    mode = event.get("mode") or (event.get("queryStringParameters") or {}).get("mode", "chunks")
    if mode == "http":
        yield {"statusCode": 202, "headers": {"content-type": "text/plain", "x-py": "yes"},
               "cookies": ["p=1"]}
        yield "first "
        time.sleep(1)
        yield b"second"
    elif mode == "fail":
        yield "partial "
        raise KeyError("mid-stream")
    else:
        for part in ("one\\n", "two\\n", {"three": 3}):
            yield part
''')


def test_a_python_generator_streams_its_response(lam, make_fn):
    name = make_fn(PY_STREAMER, Timeout=10)["FunctionName"]
    chunks, complete, _ = stream_events(lam, name, {"mode": "chunks"})
    assert b"".join(chunks) == b'one\ntwo\n{"three": 3}'
    assert not complete.get("ErrorCode"), complete
    chunks, complete, _ = stream_events(lam, name, {"mode": "fail"})
    assert b"".join(chunks) == b"partial "
    assert complete["ErrorCode"] == "KeyError", complete
    # Through a streaming URL: the prelude's status, headers and cookies; the first bytes
    # early.
    url = public_stream_url(lam, name)
    status, headers, pieces, end = timed_read(url + "?mode=http")
    assert status == 202, pieces
    assert headers["x-py"] == ["yes"] and headers["set-cookie"] == ["p=1"], headers
    assert b"".join(p for _, p in pieces) == b"first second"
    assert end - pieces[0][0] >= 0.9, (pieces, end)
