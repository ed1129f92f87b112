"""Durability of asynchronous invocation under repeated crashes.

10,000 events are accepted (202) in a burst while the function is held (reserved
concurrency 0); then it is released and, while the backlog drains, the server process is
`kill -9`-ed three times at random points of the drain and restarted on the same data dir and port.
The function has an OnSuccess destination that is a built-in queue; at the end every
acknowledged event must have at least one Success record in that queue (none lost), and the
duplicates (events with more than one record: at-least-once delivery re-running or
re-recording what was in flight at a kill) are counted, printed and must be rare (< 5%).

The server runs unisolated (`--isolation none`) like the other kill -9 tests, with
`--retry-base-delay 1s`. Figures are printed with a `[test_async_durability]` prefix even
under `pytest -q` (they are printed with capture disabled).
"""

from __future__ import annotations

import json
import random
import time
import urllib.parse

import boto3
from botocore.config import Config

import support
from support import py_zip, wait_for
from test_async import accept_burst, kill_9

N = 10_000
KILLS = 3
QUEUE = "done"
QUEUE_ARN = f"arn:aws:sqs:{support.REGION}:{support.ACCOUNT}:{QUEUE}"

APP = r'''
def handler(event, context):
    return {"i": event["i"]}
'''


def sqs_client(endpoint: str):
    return boto3.client(
        "sqs", endpoint_url=endpoint, region_name=support.REGION,
        aws_access_key_id="x", aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 0}, read_timeout=30, connect_timeout=5))


def pending(endpoint: str, name: str) -> int:
    r = support.http(endpoint, "GET",
                     f"/shoal/v1/functions/{urllib.parse.quote(name, safe='')}/async-events",
                     timeout=10)
    assert r.status == 200, f"GET async-events -> {r}"
    return int(r.json()["pending"])


def test_burst_of_10000_events_survives_three_kill_9(server_with, client_for, capsys):
    def report(text: str) -> None:
        with capsys.disabled():
            print(f"\n[test_async_durability] {text}", flush=True)

    t0 = time.monotonic()
    srv = server_with(retry_base_delay="1s", isolation="none")
    lam = client_for(srv)
    sqs = sqs_client(srv.endpoint)
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]

    name = support.unique_name("durable")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": py_zip(APP)})
    lam.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": QUEUE_ARN}})
    # Held while they are accepted, so that the whole backlog drains under the kills.
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)

    results, accept_s = accept_burst(srv.endpoint, name, N, threads=32)
    acked = {i: r[1] for i, r in enumerate(results) if isinstance(r, tuple) and r[0] == 202}
    refused = [(i, r) for i, r in enumerate(results)
               if not (isinstance(r, tuple) and r[0] == 202)]
    report(f"accepted {len(acked)} of {N} events (202) in {accept_s:.2f}s = "
           f"{len(acked) / accept_s:.0f} events/s (32 threads, keep-alive)")
    assert not refused, f"{len(refused)} of {N} events were not acknowledged: {refused[:5]}"
    assert len(set(acked.values())) == len(acked), "request ids of accepted events repeat"
    assert pending(srv.endpoint, name) == N

    # Release the backlog, then kill -9 three times at random moments while it drains.
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    lam.delete_function_concurrency(FunctionName=name)
    drain_started = time.monotonic()
    kills = []
    before = N
    for k in range(KILLS):
        # Each kill lands when the backlog has drained to a random 45-80% of what the last
        # one left, so that every kill interrupts the drain, however fast it runs.
        target = int(before * rng.uniform(0.45, 0.8))
        started = time.monotonic()
        wait_for(lambda: pending(srv.endpoint, name), lambda p: p <= target, timeout=60,
                 interval=0.02, what=f"the backlog down to {target} events")
        delay = time.monotonic() - started
        left = pending(srv.endpoint, name)
        kill_9(srv)
        killed_at = time.monotonic()
        srv.start()  # same data dir, same port; waits for /health
        back_in = time.monotonic() - killed_at
        kills.append((delay, left, back_in))
        before = left
        report(f"kill -9 #{k + 1} after {delay:.2f}s: {left} events pending at the kill; "
               f"restarted and healthy in {back_in:.2f}s")
    lam = client_for(srv)
    sqs = sqs_client(srv.endpoint)
    report(f"random seed {seed}")
    assert all(left > 0 for _, left, _ in kills), (
        f"a kill landed after the backlog had drained (pending at each kill: "
        f"{[left for _, left, _ in kills]}): it did not interrupt the drain")

    # After the last restart: the backlog empties...
    wait_for(lambda: pending(srv.endpoint, name), lambda p: p == 0, timeout=90, interval=0.5,
             what=f"pending async events of {name} back to 0 after the last restart")
    drained_s = time.monotonic() - drain_started

    # ... then read the destination queue until it is empty twice in a row.
    per_i: dict[int, int] = {}
    rids_of: dict[int, set[str]] = {}
    n_records = 0
    bad = []
    empty_in_a_row = 0
    deadline = time.monotonic() + 60
    while empty_in_a_row < 2 and time.monotonic() < deadline:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                   WaitTimeSeconds=1).get("Messages", [])
        if not msgs:
            empty_in_a_row += 1
            continue
        empty_in_a_row = 0
        for m in msgs:
            rec = json.loads(m["Body"])
            n_records += 1
            try:
                i = rec["responsePayload"]["i"]
                rid = rec["requestContext"]["requestId"]
                assert rec["requestContext"]["condition"] == "Success"
            except (KeyError, TypeError, AssertionError):
                bad.append(rec)
                continue
            per_i[i] = per_i.get(i, 0) + 1
            rids_of.setdefault(i, set()).add(rid)
        d = sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(msgs)])
        assert not d.get("Failed"), d
    assert empty_in_a_row >= 2, f"the queue {QUEUE} did not empty within 60s"

    lost = sorted(set(acked) - set(per_i))
    duplicates = sum(c - 1 for c in per_i.values())
    twice = sum(1 for c in per_i.values() if c > 1)
    wrong_rid = [(i, rids_of[i], acked[i]) for i in per_i if rids_of[i] != {acked[i]}]
    report(f"backlog drained {drained_s:.1f}s after release (3 kills included); "
           f"{n_records} records in queue {QUEUE}, {len(per_i)} distinct i, "
           f"{duplicates} duplicates ({duplicates / N:.2%} of N; {twice} events recorded "
           f"twice or more), {len(lost)} lost, {len(bad)} malformed; "
           f"test time {time.monotonic() - t0:.1f}s")

    assert not bad, f"{len(bad)} records without responsePayload.i / Success: {bad[:3]}"
    assert not lost, (f"{len(lost)} of {N} acknowledged events have no Success record after "
                      f"{KILLS} kill -9 (first: {lost[:20]})")
    assert set(per_i) <= set(acked), sorted(set(per_i) - set(acked))[:10]
    assert not wrong_rid, f"records whose requestId is not the 202's: {wrong_rid[:5]}"
    assert duplicates < 0.05 * N, f"{duplicates} duplicate records (N={N})"
