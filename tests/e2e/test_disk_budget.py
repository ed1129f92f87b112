"""The data disk's budget: log bytes per function and in all, a reserve of free space
before async events, queue messages and code uploads are accepted, and disk-backed /tmp
images promised to their environments.

The disk tests put the server's data dir on a small ext4 filesystem of their own (a
loop-mounted sparse image, unmounted in teardown), so filling it touches nothing else.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

import support
from support import invoke

MB = 1 << 20
# CloudWatch's size of a log event: its UTF-8 bytes plus 26.
EVENT_OVERHEAD = 26

PRINTER = support.py_zip('''
def handler(event, context):
    for i in range(event["lines"]):
        print("%s %05d %s" % (event["tag"], i, "x" * event["width"]))
    return event["tag"]
''')

TMP_WRITER = support.py_zip('''
import os, time
def handler(event, context):
    with open("/tmp/probe", "wb") as f:
        f.write(b"x" * 1024)
    time.sleep(event.get("sleep", 0))
    s = os.statvfs("/tmp")
    return {"tmp_mb": s.f_blocks * s.f_frsize // (1 << 20)}
''')

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="loop-mounting a small data disk needs root")


# --------------------------------------------------------------------------- fixtures


def _lambda(srv):
    return boto3.client("lambda", endpoint_url=srv.endpoint, region_name=support.REGION,
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 0}, read_timeout=60))


def _sqs(srv):
    return boto3.client("sqs", endpoint_url=srv.endpoint, region_name=support.REGION,
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 0}, read_timeout=60))


@pytest.fixture
def disk_server(tmp_path):
    """disk_server(size_mb, *flags, keep_alive="30s") -> a started server whose data dir is on a fresh ext4
    filesystem of size_mb (None: the test's temporary folder). Servers stop, then the
    filesystems are unmounted and their images removed."""
    servers: list[support.ShoalServer] = []
    mounts: list[tuple[Path, Path]] = []

    def start(size_mb: int | None, *flags: str, keep_alive: str = "30s") -> support.ShoalServer:
        n = len(servers)
        data = tmp_path / f"data{n}"
        data.mkdir()
        if size_mb is not None:
            image = tmp_path / f"disk{n}.img"
            with open(image, "wb") as f:
                f.truncate(size_mb * MB)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True,
                           capture_output=True)
            subprocess.run(["mount", "-o", "loop", str(image), str(data)], check=True,
                           capture_output=True)
            mounts.append((data, image))
        srv = support.ShoalServer(data_dir=data, log_dir=tmp_path / f"logs{n}",
                                  keep_alive=keep_alive, extra_args=list(flags))
        servers.append(srv)
        return support.started(srv)

    yield start
    for srv in servers:
        srv.stop()
    for data, image in mounts:
        subprocess.run(["umount", str(data)], capture_output=True)
        if os.path.ismount(data):
            subprocess.run(["umount", "-l", str(data)], capture_output=True)
        image.unlink(missing_ok=True)


def _headroom(path: Path) -> int:
    s = os.statvfs(path)
    return s.f_bavail * s.f_frsize


def _db_log_bytes(data_dir: Path) -> dict[str, int]:
    """Log bytes per function, read from the database itself."""
    conn = sqlite3.connect(f"file:{data_dir / 'shoal.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT function, SUM(length(CAST(message AS BLOB)) + ?) "
                            "FROM logs GROUP BY function", (EVENT_OVERHEAD,)).fetchall()
    finally:
        conn.close()
    return {f: n for f, n in rows}


def _async(srv, name: str, payload: dict) -> support.HttpResult:
    return support.invoke_http(srv.endpoint, name, payload,
                               headers={"X-Amz-Invocation-Type": "Event"})


def _assert_disk_full(r: support.HttpResult) -> None:
    assert r.status == 503, r
    assert r.headers.get("x-amzn-errortype") == "ServiceException", r
    body = r.json()
    assert body.get("Type") == "Service", body
    assert body.get("Message", "").startswith("Shoal's data disk is full:"), body
    assert "--disk-reserve" in body["Message"], body


# --------------------------------------------------------------------------- logs


def test_log_bytes_stay_within_the_function_and_total_budgets(disk_server, unique_name):
    """A function printing far more than its log budget keeps its newest lines only; a
    second one pushes the total over its budget and the oldest lines of all go first."""
    srv = disk_server(None, "--isolation", "none",
                      "--log-bytes-per-function", "200KB", "--log-bytes-total", "300KB")
    lam = _lambda(srv)
    maker = support.FunctionMaker(lam)
    f, g = unique_name("loud"), unique_name("louder")
    for name in (f, g):
        maker.create(PRINTER, name=name, Timeout=30)
    # 10 invocations of ~100 KB each per function: five times the function's budget.
    def fill(name: str) -> None:
        for r in range(10):
            out = invoke(lam, name, {"tag": f"r{r}", "lines": 100, "width": 1000})
            assert out["json"] == f"r{r}", out["raw"]

    fill(f)
    events = support.all_log_events(srv.endpoint, f)
    per_function = _db_log_bytes(srv.data_dir)
    assert 150 * 1024 < per_function[f] <= 200 * 1024, per_function
    # Oldest first: the last invocation is whole, the first ones are gone.
    f_lines = [e["message"] for e in events]
    assert sum(m.startswith("r9 ") for m in f_lines) == 100, f_lines[-3:]
    assert not any(m.startswith(("r0 ", "r1 ", "r2 ")) for m in f_lines), f_lines[:3]
    # What the logs API returns is what the database holds.
    assert sum(len(m.encode()) + EVENT_OVERHEAD for m in f_lines) == per_function[f]

    # A second function: now the total passes its budget, and the oldest lines of any
    # function (the first one's) go first.
    fill(g)
    # The log writer commits in batches: wait until g's lines are in.
    per_function = support.wait_for(lambda: _db_log_bytes(srv.data_dir),
                                    lambda d: d.get(g, 0) > 150 * 1024, timeout=10,
                                    what="the second function's log lines to be committed")
    assert sum(per_function.values()) <= 300 * 1024, per_function
    assert 150 * 1024 < per_function[g] <= 200 * 1024, per_function
    g_lines = [e["message"] for e in support.all_log_events(srv.endpoint, g)]
    assert sum(m.startswith("r9 ") for m in g_lines) == 100, g_lines[-3:]
    left_of_f = [e["message"] for e in support.all_log_events(srv.endpoint, f)]
    assert len(left_of_f) < len(f_lines), "the total budget took the oldest lines"
    assert left_of_f == f_lines[len(f_lines) - len(left_of_f):], "the newest of f are kept"
    maker.delete_all()


# --------------------------------------------------------------------------- free space


@needs_root
def test_a_full_disk_refuses_async_events_queue_messages_and_code_then_recovers(
        disk_server, unique_name):
    srv = disk_server(256, "--isolation", "none", "--disk-reserve", "32MB")
    lam, sqs = _lambda(srv), _sqs(srv)
    name = unique_name("async")
    support.FunctionMaker(lam).create(PRINTER, name=name)
    queue = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    assert _async(srv, name, {"tag": "before", "lines": 1, "width": 1}).status == 202

    # Fill the disk until 16 MB are left: less than the 32 MB reserve.
    filler = srv.data_dir / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, _headroom(srv.data_dir) - 16 * MB)
    time.sleep(0.6)  # the server's figure is at most half a second old

    r = _async(srv, name, {"tag": "refused", "lines": 1, "width": 1})
    _assert_disk_full(r)
    assert "an async event" in r.json()["Message"], r
    # boto3 sees Lambda's ServiceException.
    err = support.client_error(lam.invoke, FunctionName=name, InvocationType="Event",
                               Payload=b"{}")
    assert err.response["Error"]["Code"] == "ServiceException", err.response
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    # A queue message: SQS's own format.
    raw = support.http(srv.endpoint, "POST", "/",
                       body=json.dumps({"QueueUrl": queue, "MessageBody": "hello"}),
                       headers={"X-Amz-Target": "AmazonSQS.SendMessage",
                                "Content-Type": "application/x-amz-json-1.0"})
    assert raw.status == 503, raw
    assert raw.headers.get("x-amzn-query-error") == "ServiceUnavailable;Receiver", raw
    assert raw.json()["__type"].endswith("ServiceUnavailable"), raw
    assert raw.json()["message"].startswith("Shoal's data disk is full:"), raw
    err = support.client_error(sqs.send_message, QueueUrl=queue, MessageBody="hello")
    assert err.response["Error"]["Code"] == "ServiceUnavailable", err.response
    # A code upload.
    err = support.client_error(lam.update_function_code, FunctionName=name, ZipFile=PRINTER)
    assert err.response["Error"]["Code"] == "ServiceException", err.response
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 503

    # Space is freed: the same server takes events again, and runs them.
    filler.unlink()
    deadline = time.monotonic() + 5
    while True:
        r = _async(srv, name, {"tag": "after", "lines": 1, "width": 1})
        if r.status == 202 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status == 202, r
    support.wait_for_logs(srv.endpoint, name,
                          lambda ev: any(e["message"].startswith("after ") for e in ev),
                          timeout=15)
    assert sqs.send_message(QueueUrl=queue, MessageBody="hello")["MessageId"]


# --------------------------------------------------------------------------- /tmp


@needs_root
def test_tmp_images_of_two_functions_cannot_exceed_the_disk(disk_server, unique_name):
    """Each live environment is promised its whole /tmp: a second function whose /tmp
    would not fit beside the first's busy environment fails its cold start with a clear
    503; once the first's environment is idle, the second's cold start evicts it and
    starts."""
    srv = disk_server(1600, "--isolation", "namespaces", "--tmp-storage", "disk",
                      "--disk-reserve", "64MB")
    lam = _lambda(srv)
    maker = support.FunctionMaker(lam)
    first, second = unique_name("tmp-a"), unique_name("tmp-b")
    for name in (first, second):
        maker.create(TMP_WRITER, name=name, EphemeralStorage={"Size": 900})
    busy = {}
    holder = threading.Thread(
        target=lambda: busy.update(out=support.invoke_http(srv.endpoint, first, {"sleep": 2})))
    holder.start()
    support.wait_for_logs(srv.endpoint, first,
                          lambda ev: any(e["message"].startswith("START") for e in ev),
                          timeout=15)

    r = support.invoke_http(srv.endpoint, second, {})
    assert r.status == 503, r
    assert r.headers.get("x-amzn-errortype") == "ServiceException", r
    message = r.json()["Message"]
    assert message.startswith("Shoal's data disk is full: a /tmp of 900 MB"), message
    assert "promised to the /tmp of live environments" in message, message

    holder.join(timeout=30)
    assert busy["out"].status == 200, busy["out"]
    assert busy["out"].json()["tmp_mb"] >= 900, busy["out"]
    # The first function's environment is idle now: the second's cold start evicts it.
    r = support.invoke_http(srv.endpoint, second, {})
    assert r.status == 200, r
    assert r.json()["tmp_mb"] >= 900, r
    # And back: the first's cold start evicts the second's idle environment.
    r = support.invoke_http(srv.endpoint, first, {})
    assert r.status == 200, r
    maker.delete_all()


# --------------------------------------------------------------------------- write-backs

ALWAYS_FAILING = support.py_zip('''
import time
def handler(event, context):
    with open(event["marker"], "a") as f:
        f.write("run\\n")
    time.sleep(event["sleep"])
    raise RuntimeError("fails every time")
''')


def test_an_async_retry_whose_write_failed_runs_soon_after_writes_work_again(
        disk_server, unique_name, tmp_path):
    """The outcome of a claimed event cannot be written (the database refuses writes: a
    full disk does the same; here another connection holds SQLite's write lock past the
    server's 5 s busy timeout). Once writes work again, the retry runs within seconds,
    rather than after the event's 16-minute lease."""
    srv = disk_server(None, "--isolation", "none", "--retry-base-delay", "1s")
    lam = _lambda(srv)
    name = unique_name("retry")
    support.FunctionMaker(lam).create(ALWAYS_FAILING, name=name, Timeout=30)
    marker = tmp_path / "runs.txt"
    runs = lambda: marker.read_text().count("run") if marker.exists() else 0  # noqa: E731
    assert _async(srv, name, {"marker": str(marker), "sleep": 1}).status == 202
    support.wait_for(runs, lambda n: n == 1, timeout=15, what="the first run")
    # The first run is under way: hold the write lock until its outcome (a retry in 1 s)
    # could not be written. (The log writer waits on the lock too, and the end of the
    # invocation on the log writer, so this takes 5 to 15 s.)
    db = sqlite3.connect(str(srv.data_dir / "shoal.db"), timeout=10, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        support.wait_for(lambda: srv.stderr_text(200_000),
                         lambda text: "writing back async events failed" in text,
                         timeout=30, interval=0.2, what="a failed write-back")
    finally:
        db.execute("COMMIT")
        db.close()
    assert runs() == 1
    # Writes work again: the retry (due 1 s after the failure) runs within seconds.
    support.wait_for(runs, lambda n: n >= 2, timeout=10, what="the retry")
