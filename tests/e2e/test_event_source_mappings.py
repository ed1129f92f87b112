"""Event source mappings (the pull model): a built-in queue drives a function.

CreateEventSourceMapping and the other four operations through boto3, Lambda's validation
and error codes, and the poller: batches in SQS's event shape, deletion on success,
partial batch failures (`ReportBatchItemFailures`), failures left to the queue's redrive
policy, filter criteria, disabling, restarts, a function's deletion, and a 10,000-message
run through a mapping with batches of 100 that a `kill -9` interrupts.

The functions print one `got <body>` line per record they are handed; the tests read the
function's log through the logs API. Queues get a short visibility timeout so that failed
messages come back within the tests' time.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

import support
from support import ACCOUNT, REGION, py_zip, wait_for
from test_queues import sqs_client

ECHO = r'''
import json

def handler(event, context):
    for r in event["Records"]:
        print("got", r["body"])
    return {}
'''

# Reports the records whose body starts with "fail" as failures.
PARTIAL = r'''
def handler(event, context):
    failed = []
    for r in event["Records"]:
        print("got", r["body"])
        if r["body"].startswith("fail"):
            failed.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failed}
'''

FAILING = r'''
def handler(event, context):
    for r in event["Records"]:
        print("got", r["body"])
    raise RuntimeError("always")
'''

# Appends the bodies to a file of the host (the kill -9 test runs unisolated): a witness
# that a server crash cannot lose.
RECORDING = r'''
import os

def handler(event, context):
    with open(os.environ["RUN_FILE"], "a") as f:
        f.write("".join(r["body"] + "\n" for r in event["Records"]))
    return {}
'''

# The whole event, once, for its shape.
SHAPE = r'''
import json

def handler(event, context):
    print("event", json.dumps(event))
    return {}
'''


def client_error(call, **kwargs) -> tuple[int, str, str]:
    """(HTTP status, error code, message) of the error call(**kwargs) raises."""
    e = support.client_error(call, **kwargs)
    return (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"],
            e.response["Error"].get("Message", ""))


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def got_lines(endpoint: str, function: str) -> list[str]:
    return [e["message"][4:] for e in support.all_log_events(endpoint, function)
            if e["message"].startswith("got ")]


def make_queue(sqs, visibility: int = 2, **attributes) -> tuple[str, str]:
    name = support.unique_name("q")
    attrs = {"VisibilityTimeout": str(visibility), **{k: str(v) for k, v in attributes.items()}}
    url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    return name, url


def make_function(lam, source: str) -> str:
    name = support.unique_name("esm")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": py_zip(source)}, Timeout=30)
    return name


def visible(sqs, url: str) -> tuple[int, int]:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture(scope="module")
def sqs(server):
    return sqs_client(server.endpoint)


def test_create_get_list_update_delete(lam, sqs):
    qname, _ = make_queue(sqs)
    fn = make_function(lam, ECHO)
    created = lam.create_event_source_mapping(
        EventSourceArn=queue_arn(qname), FunctionName=fn, BatchSize=5)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert created["State"] == "Creating"
    uuid = created["UUID"]
    assert created["BatchSize"] == 5
    assert created["EventSourceArn"] == queue_arn(qname)
    assert created["FunctionArn"] == support.function_arn(fn)
    assert created["EventSourceMappingArn"] == \
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping:{uuid}"
    got = lam.get_event_source_mapping(UUID=uuid)
    assert got["State"] == "Enabled"
    assert got["LastProcessingResult"] == "No records processed"
    assert got["MaximumBatchingWindowInSeconds"] == 0
    assert got["LastModified"].year >= 2024

    listed = lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [uuid]
    listed = lam.list_event_source_mappings(EventSourceArn=queue_arn(qname))["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [uuid]

    updated = lam.update_event_source_mapping(
        UUID=uuid, BatchSize=50, MaximumBatchingWindowInSeconds=2, Enabled=False,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        ScalingConfig={"MaximumConcurrency": 3},
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"body": {"kind": ["a"]}})}]})
    assert updated["State"] == "Disabling"
    got = lam.get_event_source_mapping(UUID=uuid)
    assert got["State"] == "Disabled"
    assert got["BatchSize"] == 50 and got["MaximumBatchingWindowInSeconds"] == 2
    assert got["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert got["ScalingConfig"] == {"MaximumConcurrency": 3}
    assert json.loads(got["FilterCriteria"]["Filters"][0]["Pattern"]) == {"body": {"kind": ["a"]}}
    assert lam.update_event_source_mapping(UUID=uuid, Enabled=True)["State"] == "Enabling"

    deleted = lam.delete_event_source_mapping(UUID=uuid)
    assert deleted["State"] == "Deleting"
    assert client_error(lam.get_event_source_mapping, UUID=uuid)[1] == "ResourceNotFoundException"
    assert lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"] == []


def test_mappings_take_tags(lam, sqs):
    qname, _ = make_queue(sqs)
    fn = make_function(lam, ECHO)
    created = lam.create_event_source_mapping(
        EventSourceArn=queue_arn(qname), FunctionName=fn, Tags={"team": "a"})
    arn = created["EventSourceMappingArn"]
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "a"}
    lam.tag_resource(Resource=arn, Tags={"stage": "dev"})
    lam.untag_resource(Resource=arn, TagKeys=["team"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"stage": "dev"}
    lam.delete_event_source_mapping(UUID=created["UUID"])
    assert client_error(lam.list_tags, Resource=arn)[1] == "ResourceNotFoundException"


def test_bad_input_gets_lambdas_errors(lam, lam_nv, sqs):
    qname, _ = make_queue(sqs)
    fn = make_function(lam, ECHO)
    arn = queue_arn(qname)

    def code(**kwargs):
        return client_error(lam_nv.create_event_source_mapping, **kwargs)[1]

    assert code(EventSourceArn=arn, FunctionName="no-such-function") == "ResourceNotFoundException"
    assert code(EventSourceArn=arn, FunctionName=f"{fn}:nope") == "ResourceNotFoundException"
    assert code(EventSourceArn=queue_arn("no-such-queue"), FunctionName=fn) == \
        "InvalidParameterValueException"
    assert code(EventSourceArn="arn:aws:kinesis:us-east-1:000000000000:stream/s",
                FunctionName=fn) == "InvalidParameterValueException"
    assert code(EventSourceArn=arn, FunctionName=fn, BatchSize=0) == \
        "InvalidParameterValueException"
    assert code(EventSourceArn=arn, FunctionName=fn, BatchSize=10001) == \
        "InvalidParameterValueException"
    # More than 10 needs a batching window.
    assert code(EventSourceArn=arn, FunctionName=fn, BatchSize=100) == \
        "InvalidParameterValueException"
    assert code(EventSourceArn=arn, FunctionName=fn, MaximumBatchingWindowInSeconds=301) == \
        "InvalidParameterValueException"
    assert code(EventSourceArn=arn, FunctionName=fn, StartingPosition="LATEST") == \
        "InvalidParameterValueException"
    assert code(EventSourceArn=arn, FunctionName=fn,
                ScalingConfig={"MaximumConcurrency": 1}) == "InvalidParameterValueException"
    assert code(EventSourceArn=arn, FunctionName=fn,
                FunctionResponseTypes=["Everything"]) == "InvalidParameterValueException"
    status, err, message = client_error(
        lam_nv.create_event_source_mapping, EventSourceArn=arn, FunctionName=fn,
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"body": {"kind": "a"}})}]})
    assert (status, err) == (400, "InvalidParameterValueException"), (status, err, message)
    assert "filter pattern" in message
    uuid = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn)["UUID"]
    status, err, message = client_error(
        lam.create_event_source_mapping, EventSourceArn=arn, FunctionName=fn)
    assert (status, err) == (409, "ResourceConflictException")
    assert uuid in message
    assert client_error(lam.get_event_source_mapping,
                        UUID="00000000-0000-0000-0000-000000000000")[1] == \
        "ResourceNotFoundException"
    lam.delete_event_source_mapping(UUID=uuid)


def test_messages_reach_the_function_in_sqss_event_shape_and_are_deleted(lam, server, sqs):
    qname, url = make_queue(sqs)
    fn = make_function(lam, SHAPE)
    sent = sqs.send_message(QueueUrl=url, MessageBody="hello", MessageAttributes={
        "kind": {"DataType": "String", "StringValue": "greeting"}})
    lam.create_event_source_mapping(EventSourceArn=queue_arn(qname), FunctionName=fn)
    events = wait_for(lambda: [e for e in support.all_log_events(server.endpoint, fn)
                               if e["message"].startswith("event ")],
                      lambda es: len(es) >= 1, timeout=15, what="the function's event")
    event = json.loads(events[0]["message"][len("event "):])
    [record] = event["Records"]
    assert record["messageId"] == sent["MessageId"]
    assert record["body"] == "hello"
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue_arn(qname)
    assert record["awsRegion"] == REGION
    assert record["md5OfBody"] == sent["MD5OfMessageBody"]
    assert record["md5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert record["receiptHandle"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert int(record["attributes"]["SentTimestamp"]) > 0
    assert record["messageAttributes"]["kind"]["stringValue"] == "greeting"
    assert record["messageAttributes"]["kind"]["dataType"] == "String"
    wait_for(lambda: visible(sqs, url), lambda v: v == (0, 0), timeout=10,
             what="the processed message deleted")
    mapping = lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"][0]
    assert mapping["LastProcessingResult"] == "OK"


def test_partial_batch_failures_return_only_the_failed_ones(lam, server, sqs):
    dlq_name, dlq_url = make_queue(sqs)
    qname, url = make_queue(sqs, visibility=2, RedrivePolicy=json.dumps(
        {"deadLetterTargetArn": queue_arn(dlq_name), "maxReceiveCount": 2}))
    fn = make_function(lam, PARTIAL)
    bodies = [f"ok-{i}" for i in range(6)] + [f"fail-{i}" for i in range(3)]
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)])
    lam.create_event_source_mapping(EventSourceArn=queue_arn(qname), FunctionName=fn,
                                    BatchSize=10,
                                    FunctionResponseTypes=["ReportBatchItemFailures"])
    # The failed ones come back and fail again; after two receives they go to the DLQ.
    dead = wait_for(lambda: visible(sqs, dlq_url)[0], lambda n: n >= 3, timeout=30,
                    what="the three failing messages in the dead-letter queue")
    assert dead == 3
    got = got_lines(server.endpoint, fn)
    for i in range(6):
        assert got.count(f"ok-{i}") == 1, got
    for i in range(3):
        assert got.count(f"fail-{i}") == 2, got
    msgs = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in msgs) == [f"fail-{i}" for i in range(3)]
    assert visible(sqs, url) == (0, 0)


def test_an_always_failing_function_sends_its_messages_to_the_dead_letter_queue(lam, server,
                                                                              sqs):
    dlq_name, dlq_url = make_queue(sqs)
    qname, url = make_queue(sqs, visibility=1, RedrivePolicy=json.dumps(
        {"deadLetterTargetArn": queue_arn(dlq_name), "maxReceiveCount": 3}))
    fn = make_function(lam, FAILING)
    sqs.send_message(QueueUrl=url, MessageBody="doomed")
    uuid = lam.create_event_source_mapping(EventSourceArn=queue_arn(qname),
                                           FunctionName=fn)["UUID"]
    wait_for(lambda: visible(sqs, dlq_url)[0], lambda n: n == 1, timeout=30,
             what="the message in the dead-letter queue")
    assert got_lines(server.endpoint, fn).count("doomed") == 3
    assert lam.get_event_source_mapping(UUID=uuid)["LastProcessingResult"] == \
        "PROBLEM: Function call failed"


def test_filter_criteria_drop_what_does_not_match(lam, server, sqs):
    qname, url = make_queue(sqs)
    fn = make_function(lam, ECHO)
    lam.create_event_source_mapping(
        EventSourceArn=queue_arn(qname), FunctionName=fn,
        FilterCriteria={"Filters": [
            {"Pattern": json.dumps({"body": {"kind": ["order"], "total": [{"numeric": [">", 10]}]}})},
            {"Pattern": json.dumps({"body": ["plain-yes"]})},
        ]})
    bodies = [json.dumps({"kind": "order", "total": 50}),
              json.dumps({"kind": "order", "total": 5}),
              json.dumps({"kind": "refund", "total": 50}),
              "plain-yes", "plain-no"]
    for b in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=b)
    wait_for(lambda: visible(sqs, url), lambda v: v == (0, 0), timeout=15,
             what="every message deleted, matched or not")
    time.sleep(0.5)
    assert sorted(got_lines(server.endpoint, fn)) == sorted([bodies[0], "plain-yes"])


def test_a_disabled_mapping_stops_polling_within_a_second(lam, server, sqs):
    qname, url = make_queue(sqs)
    fn = make_function(lam, ECHO)
    uuid = lam.create_event_source_mapping(EventSourceArn=queue_arn(qname),
                                           FunctionName=fn)["UUID"]
    sqs.send_message(QueueUrl=url, MessageBody="first")
    wait_for(lambda: got_lines(server.endpoint, fn), lambda g: g == ["first"], timeout=15,
             what="the first message processed")
    lam.update_event_source_mapping(UUID=uuid, Enabled=False)
    time.sleep(1.0)
    sqs.send_message(QueueUrl=url, MessageBody="second")
    time.sleep(2.0)
    assert got_lines(server.endpoint, fn) == ["first"]
    assert visible(sqs, url) == (1, 0)
    lam.update_event_source_mapping(UUID=uuid, Enabled=True)
    wait_for(lambda: got_lines(server.endpoint, fn), lambda g: g == ["first", "second"],
             timeout=15, what="the second message processed once enabled again")


def test_mappings_survive_a_restart_and_go_with_their_function(server_with, client_for):
    srv = server_with()
    lam = client_for(srv)
    sqs = sqs_client(srv.endpoint)
    qname, url = make_queue(sqs)
    fn = make_function(lam, ECHO)
    uuid = lam.create_event_source_mapping(EventSourceArn=queue_arn(qname), FunctionName=fn,
                                           BatchSize=7)["UUID"]
    srv.stop()
    srv.start()
    got = lam.get_event_source_mapping(UUID=uuid)
    assert (got["State"], got["BatchSize"]) == ("Enabled", 7)
    sqs.send_message(QueueUrl=url, MessageBody="after restart")
    wait_for(lambda: got_lines(srv.endpoint, fn), lambda g: g == ["after restart"],
             timeout=15, what="a message processed after the restart")
    lam.delete_function(FunctionName=fn)
    assert client_error(lam.get_event_source_mapping, UUID=uuid)[1] == "ResourceNotFoundException"


def test_10000_messages_in_batches_of_100_through_a_kill_9(server_with, client_for, tmp_path):
    """Every message is processed at least once; a kill -9 mid-stream loses none."""
    srv = server_with(isolation="none")
    lam = client_for(srv)
    sqs = sqs_client(srv.endpoint, max_pool_connections=16)
    qname, url = make_queue(sqs, visibility=5)
    run_file = tmp_path / "runs.txt"
    fn = support.unique_name("esm")
    lam.create_function(FunctionName=fn, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": py_zip(RECORDING)}, Timeout=30,
                        Environment={"Variables": {"RUN_FILE": str(run_file)}})

    def handled() -> list[str]:
        return run_file.read_text().split() if run_file.exists() else []

    n = 10_000

    def send(start: int) -> None:
        for base in range(start, n, 16 * 10):
            sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "MessageBody": f"m{i}"} for i in range(base, min(base + 10, n))])

    threads = [threading.Thread(target=send, args=(k * 10,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert visible(sqs, url)[0] == n
    started = time.monotonic()
    lam.create_event_source_mapping(EventSourceArn=queue_arn(qname), FunctionName=fn,
                                    BatchSize=100, MaximumBatchingWindowInSeconds=1)
    wait_for(lambda: len(handled()), lambda k: k >= n // 4, timeout=60,
             interval=0.1, what="a quarter of the messages processed")
    support_kill = __import__("test_async").kill_9
    support_kill(srv)
    srv.start()
    sqs = sqs_client(srv.endpoint)
    wait_for(lambda: visible(sqs, url), lambda v: v == (0, 0), timeout=120, interval=0.5,
             what="the queue drained after the restart")
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    got = handled()
    counts: dict[str, int] = {}
    for body in got:
        counts[body] = counts.get(body, 0) + 1
    missing = [f"m{i}" for i in range(n) if f"m{i}" not in counts]
    duplicates = sum(c - 1 for c in counts.values())
    print(f"\n[test_event_source_mappings] {n} messages through a mapping (batch 100) in "
          f"{elapsed:.1f}s with one kill -9: {len(got)} records handled, {duplicates} "
          f"duplicates, {len(missing)} missing")
    assert not missing, missing[:10]
    # At least once: what was in flight at the kill comes back (a few batches).
    assert duplicates < n * 0.2, duplicates
