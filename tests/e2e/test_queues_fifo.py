"""FIFO queues through boto3: `.fifo` names and the FifoQueue attribute, message groups
received in order (a group with a message in flight gives nothing more), deduplication by
id or by content within five minutes, sequence numbers, FIFO system attributes, redrive to
a FIFO dead-letter queue, and an event source mapping that keeps each group's order.
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest

import support
from support import ACCOUNT, REGION, py_zip, wait_for
from test_queues import sqs_client


@pytest.fixture(scope="module")
def sqs(server):
    return sqs_client(server.endpoint)


def code_of(call, **kwargs) -> str:
    return support.client_error(call, **kwargs).response["Error"]["Code"]


def fifo_queue(sqs, **attributes) -> tuple[str, str]:
    name = support.unique_name("f") + ".fifo"
    attrs = {"FifoQueue": "true", **{k: str(v) for k, v in attributes.items()}}
    return name, sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]


def receive(sqs, url: str, n: int = 10, **kwargs) -> list[dict]:
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=n, AttributeNames=["All"],
                               **kwargs).get("Messages", [])


def test_names_and_attributes_match_the_kind(sqs):
    plain = support.unique_name("p")
    assert code_of(sqs.create_queue, QueueName=plain + ".fifo") in (
        "InvalidAttributeValue", "InvalidParameterValue")
    assert code_of(sqs.create_queue, QueueName=plain,
                   Attributes={"FifoQueue": "true"}) in (
        "InvalidAttributeValue", "InvalidParameterValue")
    assert code_of(sqs.create_queue, QueueName=plain,
                   Attributes={"ContentBasedDeduplication": "true"}) == "InvalidAttributeName"
    name, url = fifo_queue(sqs, ContentBasedDeduplication="true")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["FifoQueue"] == "true" and attrs["ContentBasedDeduplication"] == "true"
    assert attrs["QueueArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"ContentBasedDeduplication": "false"})
    assert code_of(sqs.set_queue_attributes, QueueUrl=url,
                   Attributes={"FifoQueue": "true"}) == "InvalidAttributeName"


def test_fifo_sends_need_a_group_and_a_deduplication_id(sqs):
    _, url = fifo_queue(sqs)
    assert code_of(sqs.send_message, QueueUrl=url, MessageBody="x",
                   MessageDeduplicationId="d") == "MissingParameter"
    assert code_of(sqs.send_message, QueueUrl=url, MessageBody="x",
                   MessageGroupId="g") == "InvalidParameterValue"
    assert code_of(sqs.send_message, QueueUrl=url, MessageBody="x", MessageGroupId="g",
                   MessageDeduplicationId="d", DelaySeconds=5) == "InvalidParameterValue"
    _, standard = sqs_url_of(sqs)
    assert code_of(sqs.send_message, QueueUrl=standard, MessageBody="x",
                   MessageDeduplicationId="d") == "InvalidParameterValue"
    # A batch lists the bad entries and sends the rest.
    out = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "ok", "MessageBody": "a", "MessageGroupId": "g", "MessageDeduplicationId": "1"},
        {"Id": "nogroup", "MessageBody": "b", "MessageDeduplicationId": "2"},
    ])
    assert [e["Id"] for e in out["Successful"]] == ["ok"]
    assert out["Successful"][0]["SequenceNumber"]
    assert [(e["Id"], e["Code"]) for e in out["Failed"]] == [("nogroup", "MissingParameter")]


def sqs_url_of(sqs) -> tuple[str, str]:
    name = support.unique_name("s")
    return name, sqs.create_queue(QueueName=name)["QueueUrl"]


def test_groups_are_received_in_order_one_batch_in_flight_at_a_time(sqs):
    _, url = fifo_queue(sqs, VisibilityTimeout=30)
    for body, group in [("a1", "A"), ("b1", "B"), ("a2", "A"), ("a3", "A"), ("b2", "B")]:
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group,
                         MessageDeduplicationId=body)
    [first] = receive(sqs, url, 1)
    assert first["Body"] == "a1"
    assert first["Attributes"]["MessageGroupId"] == "A"
    assert first["Attributes"]["MessageDeduplicationId"] == "a1"
    assert first["Attributes"]["SequenceNumber"].isdigit()
    # Group A has a message in flight: only B's first comes next.
    [second] = receive(sqs, url, 1)
    assert second["Body"] == "b1"
    assert receive(sqs, url, 10) == []
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    got = receive(sqs, url, 10)
    assert [m["Body"] for m in got] == ["a2", "a3"]
    sequence = [int(m["Attributes"]["SequenceNumber"]) for m in [first] + got]
    assert sequence == sorted(sequence) and len(set(sequence)) == 3


def test_a_message_in_flight_comes_back_first_after_its_visibility_ends(sqs):
    _, url = fifo_queue(sqs, VisibilityTimeout=1)
    for body in ["m1", "m2"]:
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId="g",
                         MessageDeduplicationId=body)
    [m] = receive(sqs, url, 1)
    assert m["Body"] == "m1"
    time.sleep(1.2)
    again = receive(sqs, url, 10)
    assert [x["Body"] for x in again] == ["m1", "m2"]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_duplicates_within_five_minutes_are_acknowledged_not_enqueued(sqs):
    _, url = fifo_queue(sqs)
    one = sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g",
                           MessageDeduplicationId="same")
    two = sqs.send_message(QueueUrl=url, MessageBody="y", MessageGroupId="g",
                           MessageDeduplicationId="same")
    assert two["MessageId"] == one["MessageId"]
    assert two["SequenceNumber"] == one["SequenceNumber"]
    assert [m["Body"] for m in receive(sqs, url)] == ["x"]

    _, by_content = fifo_queue(sqs, ContentBasedDeduplication="true")
    a = sqs.send_message(QueueUrl=by_content, MessageBody="body", MessageGroupId="g")
    b = sqs.send_message(QueueUrl=by_content, MessageBody="body", MessageGroupId="h")
    c = sqs.send_message(QueueUrl=by_content, MessageBody="other", MessageGroupId="g")
    assert a["MessageId"] == b["MessageId"] != c["MessageId"]
    got = receive(sqs, by_content)
    assert sorted(m["Body"] for m in got) == ["body", "other"]
    dedup = {m["Body"]: m["Attributes"]["MessageDeduplicationId"] for m in got}
    assert dedup["body"] == hashlib.sha256(b"body").hexdigest()


def test_redrive_to_a_fifo_dead_letter_queue_keeps_the_group(sqs):
    dlq_name, dlq_url = fifo_queue(sqs)
    _, url = fifo_queue(sqs, VisibilityTimeout=1, RedrivePolicy=json.dumps({
        "deadLetterTargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{dlq_name}",
        "maxReceiveCount": 1}))
    sqs.send_message(QueueUrl=url, MessageBody="poison", MessageGroupId="g7",
                     MessageDeduplicationId="p")
    assert [m["Body"] for m in receive(sqs, url)] == ["poison"]
    time.sleep(1.2)
    assert receive(sqs, url) == []
    [dead] = receive(sqs, dlq_url)
    assert dead["Body"] == "poison"
    assert dead["Attributes"]["MessageGroupId"] == "g7"


RECORD = r'''
import time

def handler(event, context):
    for r in event["Records"]:
        print("got", r["attributes"]["MessageGroupId"], r["body"])
    time.sleep(0.05)
    return {}
'''


def test_a_mapping_keeps_each_groups_order(lam, server, sqs):
    name, url = fifo_queue(sqs, VisibilityTimeout=30)
    fn = support.unique_name("fifo")
    lam.create_function(FunctionName=fn, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": py_zip(RECORD)}, Timeout=30)
    groups = ["g0", "g1", "g2"]
    for i in range(10):
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": g, "MessageBody": f"{g}-{i}", "MessageGroupId": g,
             "MessageDeduplicationId": f"{g}-{i}"} for g in groups])
    lam.create_event_source_mapping(EventSourceArn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
                                    FunctionName=fn, BatchSize=3)

    def seen() -> list[tuple[str, str]]:
        return [tuple(e["message"].split()[1:3])
                for e in support.all_log_events(server.endpoint, fn)
                if e["message"].startswith("got ")]

    got = wait_for(seen, lambda s: len(s) >= 30, timeout=30, what="30 messages handled")
    for g in groups:
        assert [body for group, body in got if group == g] == [f"{g}-{i}" for i in range(10)]
