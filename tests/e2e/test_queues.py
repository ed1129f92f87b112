"""The built-in queues: the Amazon SQS JSON protocol (`POST /` with
`X-Amz-Target: AmazonSQS.<Action>`) as boto3 and the AWS CLI speak it, and queues as
targets of asynchronous invocations (destinations and dead-letter queues).

The queue API runs against the session server (every test uses queues of its own, with
unique names); the tests that restart a server or invoke functions asynchronously start one
of their own (`--retry-base-delay 1s`).

Digests are recomputed here: MD5OfMessageBody is the MD5 of the body's UTF-8 bytes, and
MD5OfMessageAttributes is SQS's digest over the attributes sorted by name (each name, data
type and value length-prefixed, a transport byte 1 for strings and 2 for binary values) -
checked against digests published for AWS by moto's test suite. (botocore 1.43 no longer
verifies them itself, so a test has to.)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import threading
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import support
from conftest import aws_env
from support import ACCOUNT, REGION, client_error, function_arn, py_zip

NON_EXISTENT = "AWS.SimpleQueueService.NonExistentQueue"


# --------------------------------------------------------------------------- helpers


def sqs_client(endpoint: str, **config):
    return boto3.client(
        "sqs", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id="x", aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 0}, read_timeout=60, connect_timeout=5,
                      **config))


@pytest.fixture(scope="module")
def sqs(server):
    """boto3 SQS client against the session server."""
    return sqs_client(server.endpoint)


@pytest.fixture(scope="module")
def sqs_nv(server):
    """The same without botocore's parameter validation (out-of-range values reach the
    server, which must reject them itself)."""
    return sqs_client(server.endpoint, parameter_validation=False)


@pytest.fixture
def make_queue(sqs):
    """make_queue(prefix="q", **attributes) -> (name, url); deleted after the test."""
    made: list[str] = []

    def make(prefix: str = "q", **attributes) -> tuple[str, str]:
        name = support.unique_name(prefix)
        kwargs = {"Attributes": {k: str(v) for k, v in attributes.items()}} if attributes else {}
        url = sqs.create_queue(QueueName=name, **kwargs)["QueueUrl"]
        made.append(url)
        return name, url

    yield make
    for url in made:
        try:
            sqs.delete_queue(QueueUrl=url)
        except ClientError:
            pass


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def md5_of_attributes(attrs: dict) -> str:
    """SQS's MD5OfMessageAttributes (boto3 shapes: StringValue str, BinaryValue bytes)."""
    buf = bytearray()
    for name in sorted(attrs):
        a = attrs[name]
        for part in (name.encode(), a["DataType"].encode()):
            buf += struct.pack(">I", len(part)) + part
        if "StringValue" in a:
            value, transport = a["StringValue"].encode(), b"\x01"
        else:
            value, transport = a["BinaryValue"], b"\x02"
        buf += transport + struct.pack(">I", len(value)) + value
    return hashlib.md5(bytes(buf)).hexdigest()


def code_of(err: ClientError) -> tuple[int, str]:
    return err.response["ResponseMetadata"]["HTTPStatusCode"], err.response["Error"].get("Code")


def assert_code(err: ClientError, *codes: str, status: int = 400) -> None:
    got = code_of(err)
    assert got[0] == status and got[1] in codes, \
        f"expected {status} and one of {codes}, got {got}: {err.response}"


def batch_code(name: str) -> tuple[str, str]:
    """SQS reports batch errors as AWS.SimpleQueueService.<Name>; accept the bare name too."""
    return f"AWS.SimpleQueueService.{name}", name


def receive(sqs, url: str, **kwargs) -> list[dict]:
    return sqs.receive_message(QueueUrl=url, **kwargs).get("Messages", [])


def receive_all(sqs, url: str, want: int, timeout: float = 5.0, **kwargs) -> list[dict]:
    """Receive until `want` messages came (or the deadline); every reply within its max."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    per_call = kwargs.setdefault("MaxNumberOfMessages", 10)
    while len(got) < want and time.monotonic() < deadline:
        batch = receive(sqs, url, WaitTimeSeconds=1, **kwargs)
        assert len(batch) <= per_call, f"{len(batch)} messages for MaxNumberOfMessages={per_call}"
        got += batch
    return got


def counts(sqs, url: str) -> tuple[int, int, int]:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return (int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]),
            int(attrs["ApproximateNumberOfMessagesDelayed"]))


def test_md5_helper_matches_digests_published_for_aws():
    # Guard for the helper itself (vectors from moto's tests/test_sqs).
    assert md5_of_attributes(
        {"timestamp": {"StringValue": "1493147359900", "DataType": "Number"}}
    ) == "235c5c510d26fb653d073faed50ae77c"
    assert md5_of_attributes({
        "ccc": {"StringValue": "testjunk", "DataType": "String"},
        "aaa": {"BinaryValue": b"\x02\x03\x04", "DataType": "Binary"},
        "zzz": {"DataType": "Number", "StringValue": "0230.01"},
        "öther_encodings": {"DataType": "String", "StringValue": "T\xfcst"},
    }) == "8ae21a7957029ef04146b42aeaa18a22"


# --------------------------------------------------------------------------- queues


def test_create_get_list_delete_queue(sqs):
    prefix = support.unique_name("ql")
    attrs = {"VisibilityTimeout": "7", "DelaySeconds": "0"}
    url = sqs.create_queue(QueueName=f"{prefix}-a", Attributes=attrs)["QueueUrl"]
    try:
        assert url.endswith(f"/{ACCOUNT}/{prefix}-a"), url
        # Same name, same attributes: the same queue.
        again = sqs.create_queue(QueueName=f"{prefix}-a", Attributes=attrs)["QueueUrl"]
        assert again == url
        # Same name, other attributes: QueueAlreadyExists.
        err = client_error(sqs.create_queue, QueueName=f"{prefix}-a",
                           Attributes={"VisibilityTimeout": "8", "DelaySeconds": "0"})
        assert_code(err, "QueueAlreadyExists")
        assert isinstance(err, sqs.exceptions.QueueNameExists), type(err)
        assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])[
            "Attributes"] == {"VisibilityTimeout": "7"}, "the conflicting create changed the queue"

        assert sqs.get_queue_url(QueueName=f"{prefix}-a")["QueueUrl"] == url
        err = client_error(sqs.get_queue_url, QueueName=f"{prefix}-missing")
        assert_code(err, NON_EXISTENT)
        assert isinstance(err, sqs.exceptions.QueueDoesNotExist), type(err)
        with pytest.raises(sqs.exceptions.QueueDoesNotExist):
            sqs.get_queue_url(QueueName=f"{prefix}-missing")

        url_b = sqs.create_queue(QueueName=f"{prefix}-b")["QueueUrl"]
        other = sqs.create_queue(QueueName=f"x{prefix}")["QueueUrl"]
        listed = sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
        assert sorted(listed) == sorted([url, url_b]), listed
        everything = sqs.list_queues().get("QueueUrls", [])
        assert {url, url_b, other} <= set(everything), everything
        assert sqs.list_queues(QueueNamePrefix=support.unique_name("none")).get(
            "QueueUrls", []) == []

        sqs.delete_queue(QueueUrl=url_b)
        sqs.delete_queue(QueueUrl=other)
        assert sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []) == [url]
        assert_code(client_error(sqs.get_queue_url, QueueName=f"{prefix}-b"), NON_EXISTENT)
        # Every operation on a deleted queue: NonExistentQueue.
        for call, kwargs in [
            (sqs.send_message, {"QueueUrl": url_b, "MessageBody": "x"}),
            (sqs.receive_message, {"QueueUrl": url_b}),
            (sqs.get_queue_attributes, {"QueueUrl": url_b, "AttributeNames": ["All"]}),
            (sqs.purge_queue, {"QueueUrl": url_b}),
            (sqs.delete_queue, {"QueueUrl": url_b}),
        ]:
            assert_code(client_error(call, **kwargs), NON_EXISTENT)
    finally:
        sqs.delete_queue(QueueUrl=url)
    assert sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []) == []


def test_nonexistent_queue_on_the_wire(endpoint):
    """What botocore reads: a 400 in the JSON protocol with the query error header."""
    r = support.http(endpoint, "POST", "/",
                     body=json.dumps({"QueueName": support.unique_name("nope")}),
                     headers={"X-Amz-Target": "AmazonSQS.GetQueueUrl",
                              "Content-Type": "application/x-amz-json-1.0"})
    assert r.status == 400, r
    assert r.headers.get("content-type", "").startswith("application/x-amz-json-1.0"), r
    assert r.headers.get("x-amzn-query-error") == f"{NON_EXISTENT};Sender", r
    body = r.json()
    assert body.get("__type", "").endswith("QueueDoesNotExist"), body


@pytest.mark.parametrize("action", ["StartMessageMoveTasks", "listqueues", ""])
def test_unknown_action_is_an_unsupported_operation(endpoint, action):
    r = support.http(endpoint, "POST", "/", body=b"{}",
                     headers={"X-Amz-Target": f"AmazonSQS.{action}",
                              "Content-Type": "application/x-amz-json-1.0"})
    assert r.status == 400, r
    assert r.headers.get("x-amzn-query-error") == (
        "AWS.SimpleQueueService.UnsupportedOperation;Sender"), r
    body = r.json()
    assert body["__type"] == "com.amazonaws.sqs#UnsupportedOperation", body
    assert body["message"] == f"The action {action} is not supported by this server", body


@pytest.mark.parametrize("target", [None, "AmazonSQSX.ListQueues", "AWSStepFunctions.StartExecution"])
def test_post_root_without_a_known_target_is_an_unknown_lambda_operation(endpoint, target):
    headers = {"Content-Type": "application/x-amz-json-1.0"}
    if target is not None:
        headers["X-Amz-Target"] = target
    r = support.http(endpoint, "POST", "/", body=b"{}", headers=headers)
    assert r.status == 404, r
    assert r.headers.get("x-amzn-errortype", "").startswith("UnknownOperationException"), r
    assert "x-amzn-query-error" not in r.headers, r
    assert "AmazonSQS.<Action>" in r.json()["message"], r


@pytest.mark.parametrize("attribute,value", [
    ("VisibilityTimeout", "-1"), ("VisibilityTimeout", "43201"), ("VisibilityTimeout", "abc"),
    ("MessageRetentionPeriod", "59"), ("MessageRetentionPeriod", "1209601"),
    ("DelaySeconds", "-1"), ("DelaySeconds", "901"),
    ("ReceiveMessageWaitTimeSeconds", "-1"), ("ReceiveMessageWaitTimeSeconds", "21"),
    ("MaximumMessageSize", "1023"), ("MaximumMessageSize", "0"),
    ("MaximumMessageSize", "1048577"),
])
def test_create_queue_rejects_out_of_range_attributes(sqs, attribute, value):
    name = support.unique_name("qbad")
    err = client_error(sqs.create_queue, QueueName=name, Attributes={attribute: value})
    assert_code(err, "InvalidAttributeValue", "InvalidParameterValue")
    assert_code(client_error(sqs.get_queue_url, QueueName=name), NON_EXISTENT)


def test_create_queue_accepts_the_limits(sqs, make_queue):
    for attrs in [
        {"VisibilityTimeout": 0, "MessageRetentionPeriod": 60, "DelaySeconds": 0,
         "ReceiveMessageWaitTimeSeconds": 0, "MaximumMessageSize": 1024},
        {"VisibilityTimeout": 43200, "MessageRetentionPeriod": 1209600, "DelaySeconds": 900,
         "ReceiveMessageWaitTimeSeconds": 20, "MaximumMessageSize": 1048576},
    ]:
        _, url = make_queue(**attrs)
        got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert {k: got.get(k) for k in attrs} == {k: str(v) for k, v in attrs.items()}, got


@pytest.mark.parametrize("name", ["has space", "a/b", "q" * 81, "dot.ted", ""])
def test_create_queue_rejects_invalid_names(sqs_nv, name):
    # Names: 1-80 characters, alphanumerics, hyphens and underscores.
    err = client_error(sqs_nv.create_queue, QueueName=name)
    assert code_of(err)[0] == 400, err.response


def test_get_queue_attributes(sqs, make_queue):
    name, url = make_queue(VisibilityTimeout=45, MessageRetentionPeriod=3600, DelaySeconds=0,
                           ReceiveMessageWaitTimeSeconds=0, MaximumMessageSize=2048)
    before = int(time.time())
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["QueueArn"] == queue_arn(name), attrs
    assert attrs["VisibilityTimeout"] == "45", attrs
    assert attrs["MessageRetentionPeriod"] == "3600", attrs
    assert attrs["DelaySeconds"] == "0", attrs
    assert attrs["MaximumMessageSize"] == "2048", attrs
    assert attrs["ReceiveMessageWaitTimeSeconds"] == "0", attrs
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"],
            attrs["ApproximateNumberOfMessagesDelayed"]) == ("0", "0", "0"), attrs
    if "CreatedTimestamp" in attrs:  # seconds since the epoch
        assert abs(int(attrs["CreatedTimestamp"]) - before) < 60, attrs

    # Only what was asked for.
    only = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "DelaySeconds"])
    assert only["Attributes"] == {"QueueArn": queue_arn(name), "DelaySeconds": "0"}, only

    # Visible, in flight and delayed messages are counted apart.
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"visible {i}")
    sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=60)
    [m] = receive(sqs, url, MaxNumberOfMessages=1)
    assert m["Body"].startswith("visible"), m
    assert counts(sqs, url) == (2, 1, 1)

    # The configured wait time is reported as configured.
    _, url20 = make_queue(ReceiveMessageWaitTimeSeconds=20)
    got = sqs.get_queue_attributes(QueueUrl=url20, AttributeNames=["ReceiveMessageWaitTimeSeconds"])
    assert got["Attributes"] == {"ReceiveMessageWaitTimeSeconds": "20"}, got


# --------------------------------------------------------------------------- messages


def test_send_receive_delete_with_digests_and_attributes(sqs, make_queue):
    _, url = make_queue()
    body = 'héllo, queue 😀 <&> {"json": true}'
    sent = sqs.send_message(QueueUrl=url, MessageBody=body)
    assert sent["MD5OfMessageBody"] == md5(body), sent
    assert sent["MessageId"], sent
    assert "MD5OfMessageAttributes" not in sent, sent

    message_attributes = {
        "trace": {"DataType": "String", "StringValue": "abc-123"},
        "count": {"DataType": "Number", "StringValue": "42"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe\xff"},
        "kind": {"DataType": "String.custom", "StringValue": "Tüst"},
    }
    sent2 = sqs.send_message(QueueUrl=url, MessageBody="with attributes",
                             MessageAttributes=message_attributes)
    assert sent2["MD5OfMessageBody"] == md5("with attributes"), sent2
    assert sent2["MD5OfMessageAttributes"] == md5_of_attributes(message_attributes), sent2
    assert sent2["MessageId"] != sent["MessageId"]

    before_ms = int(time.time() * 1000)
    got = receive_all(sqs, url, 2, AttributeNames=["All"], MessageAttributeNames=["All"])
    by_id = {m["MessageId"]: m for m in got}
    assert set(by_id) == {sent["MessageId"], sent2["MessageId"]}, got

    plain = by_id[sent["MessageId"]]
    assert plain["Body"] == body
    assert plain["MD5OfBody"] == md5(body), plain
    assert plain["ReceiptHandle"], plain
    assert "MessageAttributes" not in plain and "MD5OfMessageAttributes" not in plain, plain
    a = plain["Attributes"]
    assert a["ApproximateReceiveCount"] == "1", a
    assert abs(int(a["SentTimestamp"]) - before_ms) < 30_000, a
    assert int(a["SentTimestamp"]) <= int(a["ApproximateFirstReceiveTimestamp"]), a
    assert abs(int(a["ApproximateFirstReceiveTimestamp"]) - before_ms) < 30_000, a
    assert a.get("SenderId"), a

    rich = by_id[sent2["MessageId"]]
    assert rich["Body"] == "with attributes"
    assert rich["MessageAttributes"] == message_attributes, rich
    assert rich["MD5OfMessageAttributes"] == md5_of_attributes(message_attributes), rich

    # Both in flight now.
    assert counts(sqs, url) == (0, 2, 0)
    for m in got:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert counts(sqs, url) == (0, 0, 0)
    assert receive(sqs, url) == []


def test_receive_selects_attributes(sqs, make_queue):
    _, url = make_queue(VisibilityTimeout=0)  # every receive sees the message again
    attrs = {"a1": {"DataType": "String", "StringValue": "one"},
             "a2": {"DataType": "Number", "StringValue": "2"}}
    sqs.send_message(QueueUrl=url, MessageBody="sel", MessageAttributes=attrs)

    [m] = receive(sqs, url)
    assert "Attributes" not in m and "MessageAttributes" not in m, m

    [m] = receive(sqs, url, MessageSystemAttributeNames=["All"])
    assert {"SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp",
            "SenderId"} <= set(m["Attributes"]), m
    assert m["Attributes"]["ApproximateReceiveCount"] == "2", m

    [m] = receive(sqs, url, AttributeNames=["SentTimestamp"])
    assert set(m["Attributes"]) == {"SentTimestamp"}, m

    [m] = receive(sqs, url, MessageAttributeNames=["a2"])
    assert m["MessageAttributes"] == {"a2": attrs["a2"]}, m

    [m] = receive(sqs, url, MessageAttributeNames=["All"])
    assert m["MessageAttributes"] == attrs, m
    assert m["MD5OfMessageAttributes"] == md5_of_attributes(attrs), m


def test_send_message_rejects_empty_body_and_out_of_range_delay(sqs, sqs_nv, make_queue):
    _, url = make_queue()
    assert_code(client_error(sqs_nv.send_message, QueueUrl=url, MessageBody=""),
                "InvalidParameterValue", "MissingParameter")
    # DelaySeconds: 0..900, on SendMessage and on every entry of SendMessageBatch.
    for bad in (901, 3600):
        assert_code(client_error(sqs_nv.send_message, QueueUrl=url, MessageBody="x",
                                 DelaySeconds=bad), "InvalidParameterValue")
        out = sqs_nv.send_message_batch(QueueUrl=url, Entries=[
            {"Id": "a", "MessageBody": "x", "DelaySeconds": bad}])
        assert out["Successful"] == [], out
        assert [(f["Id"], f["Code"], f["SenderFault"]) for f in out["Failed"]] == \
            [("a", "InvalidParameterValue", True)], out
    sqs.send_message(QueueUrl=url, MessageBody="x", DelaySeconds=900)
    assert counts(sqs, url) == (0, 0, 1), "only the valid message may be queued"


def test_send_message_rejects_characters_sqs_refuses(sqs, sqs_nv, make_queue):
    _, url = make_queue()
    assert_code(client_error(sqs_nv.send_message, QueueUrl=url, MessageBody=""),
                "MissingParameter")
    for bad in ("a\x00b", "\x08", "\x0b", "\x1f", "\ufffe"):
        err = client_error(sqs.send_message, QueueUrl=url, MessageBody=bad)
        assert_code(err, "InvalidMessageContents")
        assert "#x" in err.response["Error"]["Message"], err.response
    ok = "tab\tnl\ncr\r \ue000 \U0001F600"
    sqs.send_message(QueueUrl=url, MessageBody=ok)
    [m] = receive(sqs, url)
    assert m["Body"] == ok
    assert counts(sqs, url)[0] == 0


def test_queue_urls_of_another_account_or_endpoint_are_refused(sqs, make_queue, server):
    name, url = make_queue()
    sqs.send_message(QueueUrl=url, MessageBody="mine")
    other_account = url.replace(f"/{ACCOUNT}/", "/123456789012/")
    assert_code(client_error(sqs.send_message, QueueUrl=other_account, MessageBody="x"),
                "AccessDenied", status=403)
    other_host = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
    assert_code(client_error(sqs.send_message, QueueUrl=other_host, MessageBody="x"),
                "InvalidAddress", status=404)
    # The same server by another loopback name is the same endpoint.
    by_name = url.replace("127.0.0.1", "localhost")
    sqs.send_message(QueueUrl=by_name, MessageBody="also mine")
    assert counts(sqs, url)[0] == 2


def test_queue_maximum_message_size_is_enforced(sqs, make_queue):
    _, url = make_queue(MaximumMessageSize=1024)
    sqs.send_message(QueueUrl=url, MessageBody="m" * 1024)
    assert_code(client_error(sqs.send_message, QueueUrl=url, MessageBody="m" * 1025),
                "InvalidParameterValue")
    # Bytes count, not characters: 342 three-byte characters are 1026 bytes.
    assert_code(client_error(sqs.send_message, QueueUrl=url, MessageBody="€" * 342),
                "InvalidParameterValue")
    assert counts(sqs, url) == (1, 0, 0)


def test_a_message_of_1_mib_is_the_default_limit(sqs, make_queue):
    _, url = make_queue()
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
    assert attrs["Attributes"]["MaximumMessageSize"] == "1048576"
    sqs.send_message(QueueUrl=url, MessageBody="m" * 1_048_576)
    assert_code(client_error(sqs.send_message, QueueUrl=url, MessageBody="m" * 1_048_577),
                "InvalidParameterValue")
    [m] = receive(sqs, url)
    assert len(m["Body"]) == 1_048_576


def test_a_batch_with_bad_entries_sends_the_good_ones_and_lists_the_bad(sqs_nv, sqs,
                                                                         make_queue):
    _, url = make_queue(MaximumMessageSize=1024)
    out = sqs_nv.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "good", "MessageBody": "fine"},
        {"Id": "big", "MessageBody": "m" * 1025},
        {"Id": "late", "MessageBody": "x", "DelaySeconds": 901},
        {"Id": "binary", "MessageBody": "bad \u0001 char"},
        {"Id": "also-good", "MessageBody": "fine too"},
    ])
    assert sorted(e["Id"] for e in out["Successful"]) == ["also-good", "good"], out
    failed = {e["Id"]: e for e in out["Failed"]}
    assert set(failed) == {"big", "late", "binary"}, out
    assert all(e["SenderFault"] for e in failed.values()), out
    assert failed["big"]["Code"] == "InvalidParameterValue", out
    assert failed["binary"]["Code"] == "InvalidMessageContents", out
    assert sorted(m["Body"] for m in receive(sqs, url, MaxNumberOfMessages=10)) == \
        ["fine", "fine too"]
    # A batch whose bodies pass 1 MiB in all is refused whole.
    assert_code(client_error(sqs_nv.send_message_batch, QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": "m" * 300_000} for i in range(4)]),
        *batch_code("BatchRequestTooLong"))


def test_an_empty_receive_has_no_messages_key(sqs, make_queue):
    _, url = make_queue()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)


def test_send_message_batch(sqs, sqs_nv, make_queue):
    _, url = make_queue()
    entries = [{"Id": f"e{i}", "MessageBody": f"batch body {i}"} for i in range(10)]
    entries[3]["MessageAttributes"] = {"n": {"DataType": "Number", "StringValue": "3"}}
    out = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert out.get("Failed", []) == [], out
    ok = {e["Id"]: e for e in out["Successful"]}
    assert set(ok) == {f"e{i}" for i in range(10)}, out
    for i in range(10):
        assert ok[f"e{i}"]["MD5OfMessageBody"] == md5(f"batch body {i}"), ok[f"e{i}"]
        assert ok[f"e{i}"]["MessageId"], ok[f"e{i}"]
    assert len({e["MessageId"] for e in ok.values()}) == 10
    assert ok["e3"].get("MD5OfMessageAttributes") == md5_of_attributes(
        entries[3]["MessageAttributes"]), ok["e3"]

    # 11 entries, the same Id twice, no entry: errors, and nothing is sent.
    eleven = [{"Id": f"x{i}", "MessageBody": "x"} for i in range(11)]
    assert_code(client_error(sqs_nv.send_message_batch, QueueUrl=url, Entries=eleven),
                *batch_code("TooManyEntriesInBatchRequest"))
    twice = [{"Id": "same", "MessageBody": "a"}, {"Id": "same", "MessageBody": "b"}]
    assert_code(client_error(sqs_nv.send_message_batch, QueueUrl=url, Entries=twice),
                *batch_code("BatchEntryIdsNotDistinct"))
    assert_code(client_error(sqs_nv.send_message_batch, QueueUrl=url, Entries=[]),
                *batch_code("EmptyBatchRequest"))
    assert counts(sqs, url) == (10, 0, 0)

    # MaxNumberOfMessages: 1..10.
    for bad in (0, 11):
        err = client_error(sqs_nv.receive_message, QueueUrl=url, MaxNumberOfMessages=bad)
        assert code_of(err)[0] == 400, err.response
    first = receive(sqs, url, MaxNumberOfMessages=3)
    assert 1 <= len(first) <= 3, first
    rest = receive_all(sqs, url, 10 - len(first))
    got = first + rest
    assert sorted(m["Body"] for m in got) == sorted(e["MessageBody"] for e in entries), got

    # DeleteMessageBatch: a bad handle fails alone.
    dels = [{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got[:9])]
    dels.append({"Id": "bogus", "ReceiptHandle": "not-a-receipt-handle"})
    out = sqs.delete_message_batch(QueueUrl=url, Entries=dels)
    assert sorted(e["Id"] for e in out["Successful"]) == sorted(f"d{i}" for i in range(9)), out
    [failed] = out["Failed"]
    assert failed["Id"] == "bogus" and failed["SenderFault"] is True, failed
    assert failed["Code"] == "ReceiptHandleIsInvalid", failed
    assert counts(sqs, url) == (0, 1, 0)
    out = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": "last", "ReceiptHandle": got[9]["ReceiptHandle"]}])
    assert [e["Id"] for e in out["Successful"]] == ["last"] and not out.get("Failed"), out
    assert counts(sqs, url) == (0, 0, 0)
    assert_code(client_error(sqs_nv.delete_message_batch, QueueUrl=url, Entries=[]),
                *batch_code("EmptyBatchRequest"))


def test_visibility_timeout_then_received_again(sqs, make_queue):
    _, url = make_queue(VisibilityTimeout=30)
    sent = sqs.send_message(QueueUrl=url, MessageBody="vt")
    [m1] = receive(sqs, url, VisibilityTimeout=2, AttributeNames=["All"])
    received_at = time.monotonic()
    assert m1["MessageId"] == sent["MessageId"]
    assert m1["Attributes"]["ApproximateReceiveCount"] == "1", m1
    assert receive(sqs, url) == [], "a message in flight was received again"
    assert counts(sqs, url) == (0, 1, 0)

    m2 = None
    while m2 is None and time.monotonic() - received_at < 6:
        got = receive(sqs, url, WaitTimeSeconds=1, AttributeNames=["All"])
        m2 = got[0] if got else None
    back_after = time.monotonic() - received_at
    assert m2 is not None, "the message did not come back after its visibility timeout"
    assert 1.7 <= back_after <= 4.0, f"visible again after {back_after:.2f}s, expected ~2s"
    assert m2["MessageId"] == sent["MessageId"] and m2["Body"] == "vt"
    assert m2["Attributes"]["ApproximateReceiveCount"] == "2", m2
    assert m2["Attributes"]["ApproximateFirstReceiveTimestamp"] == \
        m1["Attributes"]["ApproximateFirstReceiveTimestamp"], (m1, m2)
    assert m2["ReceiptHandle"] != m1["ReceiptHandle"]
    # Now in flight for the queue's 30 s.
    time.sleep(2.5)
    assert receive(sqs, url) == []
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m2["ReceiptHandle"])
    assert counts(sqs, url) == (0, 0, 0)


def test_queue_visibility_timeout_applies_by_default(sqs, make_queue):
    _, url = make_queue(VisibilityTimeout=1)
    sqs.send_message(QueueUrl=url, MessageBody="default vt")
    [m1] = receive(sqs, url)
    t0 = time.monotonic()
    assert receive(sqs, url) == []
    got = receive(sqs, url, WaitTimeSeconds=4, AttributeNames=["ApproximateReceiveCount"])
    waited = time.monotonic() - t0
    assert got, "not visible again after the queue's VisibilityTimeout (1 s)"
    assert 0.7 <= waited <= 3.0, waited
    assert got[0]["Attributes"]["ApproximateReceiveCount"] == "2", got


def test_change_message_visibility(sqs, make_queue):
    _, url = make_queue()
    sqs.send_message(QueueUrl=url, MessageBody="cmv")
    [m] = receive(sqs, url, VisibilityTimeout=60)
    assert receive(sqs, url) == []
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"],
                                  VisibilityTimeout=0)
    [again] = receive(sqs, url, VisibilityTimeout=60, AttributeNames=["ApproximateReceiveCount"])
    assert again["Body"] == "cmv"
    assert again["Attributes"]["ApproximateReceiveCount"] == "2", again

    # Extend, then shorten to 1 s.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"],
                                  VisibilityTimeout=1)
    assert receive(sqs, url) == []
    assert receive(sqs, url, WaitTimeSeconds=3), "not visible 1 s after ChangeMessageVisibility(1)"

    for bad in ("not-a-receipt-handle", ""):
        assert_code(client_error(sqs.change_message_visibility, QueueUrl=url, ReceiptHandle=bad,
                                 VisibilityTimeout=0), "ReceiptHandleIsInvalid")
        assert_code(client_error(sqs.delete_message, QueueUrl=url, ReceiptHandle=bad),
                    "ReceiptHandleIsInvalid")


def test_only_the_latest_receipt_handle_deletes(sqs, make_queue):
    _, url = make_queue()
    sqs.send_message(QueueUrl=url, MessageBody="handles")
    [first] = receive(sqs, url, VisibilityTimeout=0)
    [latest] = receive(sqs, url, VisibilityTimeout=60)
    assert latest["ReceiptHandle"] != first["ReceiptHandle"]
    # A forged handle (a real one, altered) is refused or ignored; it never deletes.
    forged = latest["ReceiptHandle"][:-1] + ("0" if latest["ReceiptHandle"][-1] != "0" else "1")
    for handle in (forged, latest["ReceiptHandle"] + "x"):
        try:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
        except ClientError as e:
            assert_code(e, "ReceiptHandleIsInvalid")
        assert counts(sqs, url) == (0, 1, 0), f"DeleteMessage({handle!r}) deleted the message"
        assert_code(client_error(sqs.change_message_visibility, QueueUrl=url,
                                 ReceiptHandle=handle, VisibilityTimeout=0),
                    "ReceiptHandleIsInvalid")
    # A stale handle: the request succeeds, the message stays (as SQS documents).
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    assert counts(sqs, url) == (0, 1, 0), "a stale receipt handle deleted the message"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=latest["ReceiptHandle"])
    assert counts(sqs, url) == (0, 0, 0)
    # Deleting again with the same handle is harmless.
    sqs.delete_message(QueueUrl=url, ReceiptHandle=latest["ReceiptHandle"])


def test_delay_seconds(sqs, make_queue):
    _, url = make_queue(DelaySeconds=2)
    sqs.send_message(QueueUrl=url, MessageBody="queue delay")
    sent_at = time.monotonic()
    sqs.send_message(QueueUrl=url, MessageBody="no delay", DelaySeconds=0)
    assert counts(sqs, url) == (1, 0, 1)
    [now] = receive(sqs, url, MaxNumberOfMessages=10)
    assert now["Body"] == "no delay", "DelaySeconds=0 on the message must override the queue's"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=now["ReceiptHandle"])
    got = receive(sqs, url, WaitTimeSeconds=6)
    waited = time.monotonic() - sent_at
    assert [m["Body"] for m in got] == ["queue delay"], got
    assert 1.7 <= waited <= 4.0, f"delayed message received {waited:.2f}s after sending"

    # A message's own delay on a queue without one.
    _, url0 = make_queue()
    sqs.send_message(QueueUrl=url0, MessageBody="own delay", DelaySeconds=1)
    t0 = time.monotonic()
    assert receive(sqs, url0) == []
    assert counts(sqs, url0) == (0, 0, 1)
    got = receive(sqs, url0, WaitTimeSeconds=4)
    assert [m["Body"] for m in got] == ["own delay"], got
    assert 0.7 <= time.monotonic() - t0 <= 3.0


def test_long_polling(sqs, sqs_nv, make_queue, server):
    _, url = make_queue()
    t0 = time.monotonic()
    assert receive(sqs, url, WaitTimeSeconds=3) == []
    waited = time.monotonic() - t0
    assert 2.8 <= waited <= 4.5, f"an empty long poll of 3 s returned after {waited:.2f}s"

    # A message sent meanwhile (from another thread and client) ends the wait early.
    other = sqs_client(server.endpoint)
    timer = threading.Timer(1.0, lambda: other.send_message(QueueUrl=url, MessageBody="woke"))
    t0 = time.monotonic()
    timer.start()
    try:
        got = receive(sqs, url, WaitTimeSeconds=10)
    finally:
        timer.join()
    waited = time.monotonic() - t0
    assert [m["Body"] for m in got] == ["woke"], got
    assert 0.9 <= waited <= 2.5, f"the long poll returned {waited:.2f}s after it began " \
        "(message sent at 1 s)"

    # The queue's ReceiveMessageWaitTimeSeconds is the default wait.
    _, url2 = make_queue(ReceiveMessageWaitTimeSeconds=2)
    t0 = time.monotonic()
    assert receive(sqs, url2) == []
    waited = time.monotonic() - t0
    assert 1.8 <= waited <= 3.5, f"queue wait time 2 s, the receive returned after {waited:.2f}s"
    t0 = time.monotonic()
    assert receive(sqs, url2, WaitTimeSeconds=0) == []
    assert time.monotonic() - t0 < 1.0, "WaitTimeSeconds=0 must override the queue's wait time"

    for bad in (-1, 21):
        err = client_error(sqs_nv.receive_message, QueueUrl=url, WaitTimeSeconds=bad)
        assert code_of(err)[0] == 400, err.response


def test_purge_queue(sqs, make_queue):
    _, url = make_queue()
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": f"p{i}"} for i in range(5)])
    sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=30)
    assert len(receive(sqs, url, MaxNumberOfMessages=2, VisibilityTimeout=1)) >= 1
    sqs.purge_queue(QueueUrl=url)
    assert counts(sqs, url) == (0, 0, 0)
    time.sleep(1.2)  # past the in-flight messages' visibility timeout
    assert receive(sqs, url, MaxNumberOfMessages=10) == []
    # The queue itself stays.
    sqs.send_message(QueueUrl=url, MessageBody="after purge")
    assert [m["Body"] for m in receive(sqs, url)] == ["after purge"]


def test_messages_survive_restart(own_server):
    sqs = sqs_client(own_server.endpoint)
    name = support.unique_name("qr")
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "5",
                                                       "MessageRetentionPeriod": "3600"})["QueueUrl"]
    attrs = {"k": {"DataType": "String", "StringValue": "v"}}
    # One message deleted, one in flight (for 2 s) at the restart, one never received.
    gone = sqs.send_message(QueueUrl=url, MessageBody="deleted")
    [m] = receive(sqs, url)
    assert m["MessageId"] == gone["MessageId"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    inflight = sqs.send_message(QueueUrl=url, MessageBody="in flight")
    [m] = receive(sqs, url, VisibilityTimeout=2)
    assert m["MessageId"] == inflight["MessageId"]
    kept = sqs.send_message(QueueUrl=url, MessageBody="kept", MessageAttributes=attrs)

    own_server.restart()
    sqs = sqs_client(own_server.endpoint)

    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    q = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert q["VisibilityTimeout"] == "5" and q["MessageRetentionPeriod"] == "3600", q
    assert q["QueueArn"] == queue_arn(name), q
    got = receive_all(sqs, url, 2, timeout=6, AttributeNames=["All"],
                      MessageAttributeNames=["All"])
    by_id = {m["MessageId"]: m for m in got}
    assert set(by_id) == {kept["MessageId"], inflight["MessageId"]}, \
        f"after the restart the queue held {[m['Body'] for m in got]}"
    assert gone["MessageId"] not in by_id
    k = by_id[kept["MessageId"]]
    assert k["Body"] == "kept" and k["MessageAttributes"] == attrs, k
    assert k["MD5OfMessageAttributes"] == md5_of_attributes(attrs), k
    assert k["Attributes"]["ApproximateReceiveCount"] == "1", k
    f = by_id[inflight["MessageId"]]
    assert f["Body"] == "in flight"
    assert f["Attributes"]["ApproximateReceiveCount"] == "2", f
    assert receive(sqs, url) == []


# --------------------------------------------------------------------------- AWS CLI


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_aws_cli_sqs(endpoint):
    def aws_sqs(*args: str) -> dict | None:
        cmd = ["aws", "sqs", *args, "--endpoint-url", endpoint, "--region", REGION,
               "--output", "json"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=aws_env(),
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, (
            f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    name = support.unique_name("qcli")
    url = aws_sqs("create-queue", "--queue-name", name,
                  "--attributes", "VisibilityTimeout=10")["QueueUrl"]
    assert url.endswith(f"/{ACCOUNT}/{name}"), url
    try:
        assert aws_sqs("get-queue-url", "--queue-name", name)["QueueUrl"] == url
        sent = aws_sqs("send-message", "--queue-url", url, "--message-body", "from the cli")
        assert sent["MD5OfMessageBody"] == md5("from the cli"), sent
        got = aws_sqs("receive-message", "--queue-url", url, "--wait-time-seconds", "2",
                      "--attribute-names", "All")
        [m] = got["Messages"]
        assert m["Body"] == "from the cli" and m["MessageId"] == sent["MessageId"], m
        assert m["Attributes"]["ApproximateReceiveCount"] == "1", m
        aws_sqs("delete-message", "--queue-url", url, "--receipt-handle", m["ReceiptHandle"])
        attrs = aws_sqs("get-queue-attributes", "--queue-url", url, "--attribute-names", "All")
        assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0", attrs
        assert attrs["Attributes"]["VisibilityTimeout"] == "10", attrs
    finally:
        aws_sqs("delete-queue", "--queue-url", url)
    proc = subprocess.run(["aws", "sqs", "get-queue-url", "--queue-name", name,
                           "--endpoint-url", endpoint, "--region", REGION],
                          capture_output=True, text=True, timeout=60, env=aws_env(),
                          stdin=subprocess.DEVNULL)
    assert proc.returncode != 0
    assert "NonExistentQueue" in proc.stderr or "QueueDoesNotExist" in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- async targets

APP = r'''
import json


def echo(event, context):
    return {"echo": event, "by": context.function_name}


def fail(event, context):
    raise ValueError("always fails")


def relay(event, context):
    return {"relayed": event.get("responsePayload"), "by": context.function_name}
'''
APP_ZIP = py_zip(APP)


def create_fn(lam, handler: str, **extra) -> str:
    name = support.unique_name("qfn")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler=f"app.{handler}",
                        Role=support.ROLE, Code={"ZipFile": APP_ZIP}, **extra)
    return name


def invoke_event(lam, name: str, payload: str) -> str:
    resp = lam.invoke(FunctionName=name, InvocationType="Event", Payload=payload)
    assert resp["StatusCode"] == 202, resp
    rid = resp["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid")
    assert rid, resp["ResponseMetadata"]
    return rid


def wait_messages(sqs, url: str, count: int = 1, timeout: float = 20.0, **kwargs) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += receive(sqs, url, WaitTimeSeconds=1, MaxNumberOfMessages=10, **kwargs)
    assert len(got) >= count, f"{len(got)} of {count} message(s) in {url} within {timeout}s"
    return got


@pytest.fixture
def async_env(server_with, client_for):
    """(server, lambda client, sqs client) of a server with --retry-base-delay 1s."""
    srv = server_with(retry_base_delay="1s")
    return srv, client_for(srv), sqs_client(srv.endpoint)


def test_on_success_destination_queue(async_env):
    srv, lam, sqs = async_env
    qname = support.unique_name("dest")
    url = sqs.create_queue(QueueName=qname)["QueueUrl"]
    fn = create_fn(lam, "echo")
    put = lam.put_function_event_invoke_config(
        FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": queue_arn(qname)}})
    assert put["DestinationConfig"]["OnSuccess"]["Destination"] == queue_arn(qname), put

    event = {"to": "queue", "n": [1, 2]}
    rid = invoke_event(lam, fn, json.dumps(event))
    [m] = wait_messages(sqs, url)
    assert m["MD5OfBody"] == md5(m["Body"]), m
    rec = json.loads(m["Body"])
    assert rec["version"] == "1.0", rec
    assert rec["requestContext"]["condition"] == "Success", rec
    assert rec["requestContext"]["requestId"] == rid, rec
    assert rec["requestContext"]["functionArn"] == function_arn(fn) + ":$LATEST", rec
    assert rec["requestContext"]["approximateInvokeCount"] == 1, rec
    assert rec["requestPayload"] == event, rec
    assert rec["responseContext"]["statusCode"] == 200, rec
    assert rec["responsePayload"] == {"echo": event, "by": fn}, rec
    time.sleep(1.0)
    assert receive(sqs, url) == [], "more than one record for one event"


def test_on_failure_destination_queue(async_env):
    srv, lam, sqs = async_env
    ok_name, fail_name = support.unique_name("dok"), support.unique_name("dfail")
    ok_url = sqs.create_queue(QueueName=ok_name)["QueueUrl"]
    fail_url = sqs.create_queue(QueueName=fail_name)["QueueUrl"]
    fn = create_fn(lam, "fail")
    lam.put_function_event_invoke_config(
        FunctionName=fn, MaximumRetryAttempts=0,
        DestinationConfig={"OnSuccess": {"Destination": queue_arn(ok_name)},
                           "OnFailure": {"Destination": queue_arn(fail_name)}})
    event = {"doomed": True}
    rid = invoke_event(lam, fn, json.dumps(event))
    [m] = wait_messages(sqs, fail_url)
    rec = json.loads(m["Body"])
    assert rec["requestContext"]["condition"] == "RetriesExhausted", rec
    assert rec["requestContext"]["requestId"] == rid, rec
    assert rec["requestContext"]["approximateInvokeCount"] == 1, rec
    assert rec["requestPayload"] == event, rec
    assert rec["responseContext"].get("functionError") == "Unhandled", rec
    assert rec["responsePayload"]["errorMessage"] == "always fails", rec
    assert rec["responsePayload"]["errorType"] == "ValueError", rec
    assert receive(sqs, ok_url) == []


def test_destination_queue_must_exist(async_env):
    srv, lam, sqs = async_env
    fn = create_fn(lam, "echo")
    missing = queue_arn(support.unique_name("missing"))
    for which in ("OnSuccess", "OnFailure"):
        err = client_error(lam.put_function_event_invoke_config, FunctionName=fn,
                           DestinationConfig={which: {"Destination": missing}})
        assert code_of(err) == (400, "InvalidParameterValueException"), err.response
    lam.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=1)
    err = client_error(lam.update_function_event_invoke_config, FunctionName=fn,
                       DestinationConfig={"OnSuccess": {"Destination": missing}})
    assert code_of(err) == (400, "InvalidParameterValueException"), err.response
    got = lam.get_function_event_invoke_config(FunctionName=fn)
    assert not got.get("DestinationConfig", {}).get("OnSuccess", {}).get("Destination"), got


def test_dead_letter_queue(async_env):
    srv, lam, sqs = async_env
    dlq = support.unique_name("dlq")
    url = sqs.create_queue(QueueName=dlq)["QueueUrl"]

    # A DLQ that does not exist is refused, at create and at update.
    missing = queue_arn(support.unique_name("missing"))
    err = client_error(lam.create_function, FunctionName=support.unique_name("qfn"),
                       Runtime=support.PY_RUNTIME, Handler="app.fail", Role=support.ROLE,
                       Code={"ZipFile": APP_ZIP}, DeadLetterConfig={"TargetArn": missing})
    assert code_of(err) == (400, "InvalidParameterValueException"), err.response

    fn = create_fn(lam, "fail", DeadLetterConfig={"TargetArn": queue_arn(dlq)})
    cfg = lam.get_function_configuration(FunctionName=fn)
    assert cfg.get("DeadLetterConfig", {}).get("TargetArn") == queue_arn(dlq), cfg
    err = client_error(lam.update_function_configuration, FunctionName=fn,
                       DeadLetterConfig={"TargetArn": missing})
    assert code_of(err) == (400, "InvalidParameterValueException"), err.response
    cfg = lam.get_function_configuration(FunctionName=fn)
    assert cfg.get("DeadLetterConfig", {}).get("TargetArn") == queue_arn(dlq), cfg
    lam.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=0)

    payload = '{"original": "event",  "n": 7}'  # sent as is, odd spacing included
    rid = invoke_event(lam, fn, payload)
    [m] = wait_messages(sqs, url, MessageAttributeNames=["All"])
    assert json.loads(m["Body"]) == json.loads(payload), m
    assert m["Body"] == payload, "the DLQ message body is not the original event verbatim"
    assert m["MD5OfBody"] == md5(m["Body"]), m
    want = {
        "RequestID": {"DataType": "String", "StringValue": rid},
        "ErrorCode": {"DataType": "Number", "StringValue": "200"},
        "ErrorMessage": {"DataType": "String", "StringValue": "always fails"},
    }
    assert m.get("MessageAttributes") == want, m
    assert m["MD5OfMessageAttributes"] == md5_of_attributes(want), m
    time.sleep(1.0)
    assert receive(sqs, url) == [], "more than one DLQ message for one event"


def test_chain_function_then_queue(async_env):
    srv, lam, sqs = async_env
    qname = support.unique_name("chain")
    url = sqs.create_queue(QueueName=qname)["QueueUrl"]
    fn_b = create_fn(lam, "relay")
    fn_a = create_fn(lam, "echo")
    lam.put_function_event_invoke_config(
        FunctionName=fn_a, DestinationConfig={"OnSuccess": {"Destination": function_arn(fn_b)}})
    lam.put_function_event_invoke_config(
        FunctionName=fn_b, DestinationConfig={"OnSuccess": {"Destination": queue_arn(qname)}})
    event = {"chain": "a-b-queue"}
    rid_a = invoke_event(lam, fn_a, json.dumps(event))
    [m] = wait_messages(sqs, url)
    rec = json.loads(m["Body"])
    assert rec["requestContext"]["condition"] == "Success", rec
    assert rec["requestContext"]["functionArn"] == function_arn(fn_b) + ":$LATEST", rec
    assert rec["requestContext"]["requestId"] != rid_a, rec
    assert rec["responsePayload"] == {"relayed": {"echo": event, "by": fn_a}, "by": fn_b}, rec
    a_rec = rec["requestPayload"]
    assert a_rec["requestContext"]["requestId"] == rid_a, a_rec
    assert a_rec["requestPayload"] == event, a_rec
    time.sleep(1.0)
    assert receive(sqs, url) == []


# --------------------------------------------------------------------------- attributes, redrive, tags
# (SetQueueAttributes, RedrivePolicy to a dead-letter queue, TagQueue/UntagQueue/ListQueueTags:
# what deploy tools such as Terraform's AWS provider call.)


def redrive(dlq_name: str, max_receive_count) -> str:
    return json.dumps({"deadLetterTargetArn": queue_arn(dlq_name),
                       "maxReceiveCount": max_receive_count})


def test_set_queue_attributes(sqs, make_queue):
    _, url = make_queue("setattr", VisibilityTimeout=30)
    sqs.set_queue_attributes(QueueUrl=url, Attributes={
        "VisibilityTimeout": "45", "DelaySeconds": "2", "Policy": '{"Version":"2012-10-17"}'})
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attrs["VisibilityTimeout"], attrs["DelaySeconds"]) == ("45", "2"), attrs
    assert attrs["Policy"] == '{"Version":"2012-10-17"}', attrs
    assert attrs["MessageRetentionPeriod"] == "345600", attrs
    # The new default visibility timeout applies to the next receive.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "0",
                                                        "VisibilityTimeout": "1"})
    sqs.send_message(QueueUrl=url, MessageBody="m")
    assert len(receive_all(sqs, url, 1)) == 1
    assert receive(sqs, url) == [], "hidden for the queue's visibility timeout"
    time.sleep(1.3)
    assert len(receive(sqs, url, WaitTimeSeconds=1)) == 1, "visible again after 1 s"
    # An empty Policy removes it.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": ""})
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert "Policy" not in attrs, attrs
    # Checked as CreateQueue checks them; nothing is changed by a refused request.
    for bad in ({"VisibilityTimeout": "43201"}, {"MessageRetentionPeriod": "59"},
                {"DelaySeconds": "x"}, {"VisibilityTimeout": "5", "ReceiveMessageWaitTimeSeconds": "21"}):
        err = client_error(sqs.set_queue_attributes, QueueUrl=url, Attributes=bad)
        assert_code(err, "InvalidAttributeValue")
    err = client_error(sqs.set_queue_attributes, QueueUrl=url, Attributes={"NoSuch": "1"})
    assert_code(err, "InvalidAttributeValue", "InvalidAttributeName")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
    assert attrs["Attributes"] == {"VisibilityTimeout": "1"}
    err = client_error(sqs.set_queue_attributes, QueueUrl=url + "-missing",
                       Attributes={"DelaySeconds": "1"})
    assert_code(err, NON_EXISTENT)


def test_redrive_policy_moves_messages_to_the_dead_letter_queue(sqs, make_queue):
    dlq_name, dlq_url = make_queue("dlq")
    # The policy must be valid JSON naming an existing queue, maxReceiveCount 1..1000.
    for bad in (redrive(dlq_name + "-missing", 2), redrive(dlq_name, 0), redrive(dlq_name, 1001),
                "not json", json.dumps({"maxReceiveCount": 2})):
        err = client_error(sqs.create_queue, QueueName=support.unique_name("src"),
                           Attributes={"RedrivePolicy": bad})
        assert_code(err, "InvalidAttributeValue")
    name, url = make_queue("src")
    err = client_error(sqs.set_queue_attributes, QueueUrl=url,
                       Attributes={"RedrivePolicy": redrive(dlq_name + "-missing", 2)})
    assert_code(err, "InvalidAttributeValue")
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": redrive(dlq_name, 2)})
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"]) == {"deadLetterTargetArn": queue_arn(dlq_name),
                                                  "maxReceiveCount": 2}
    sent = sqs.send_message(QueueUrl=url, MessageBody="poison", MessageAttributes={
        "k": {"DataType": "String", "StringValue": "v"}})["MessageId"]
    for count in (1, 2):
        [m] = receive(sqs, url, VisibilityTimeout=0, AttributeNames=["ApproximateReceiveCount"])
        assert m["Body"] == "poison" and m["Attributes"]["ApproximateReceiveCount"] == str(count)
    # Received maxReceiveCount times: the next receive moves it instead of handing it out.
    assert receive(sqs, url, VisibilityTimeout=0) == []
    assert counts(sqs, url) == (0, 0, 0)
    [dead] = receive_all(sqs, dlq_url, 1, MessageAttributeNames=["All"])
    assert dead["MessageId"] == sent and dead["Body"] == "poison", dead
    assert dead["MessageAttributes"] == {"k": {"DataType": "String", "StringValue": "v"}}, dead
    # Removing the policy stops the moves.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": ""})
    sqs.send_message(QueueUrl=url, MessageBody="stays")
    for count in (1, 2, 3, 4):
        [m] = receive(sqs, url, VisibilityTimeout=0, AttributeNames=["ApproximateReceiveCount"])
        assert m["Attributes"]["ApproximateReceiveCount"] == str(count)


def test_queue_tags(sqs, make_queue):
    name = support.unique_name("tags")
    url = sqs.create_queue(QueueName=name, tags={"team": "shoal", "env": "dev"})["QueueUrl"]
    try:
        assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "shoal", "env": "dev"}
        sqs.tag_queue(QueueUrl=url, Tags={"env": "prod", "cost": "42"})
        assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {
            "team": "shoal", "env": "prod", "cost": "42"}
        sqs.untag_queue(QueueUrl=url, TagKeys=["team", "absent"])
        assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "prod", "cost": "42"}
        sqs.untag_queue(QueueUrl=url, TagKeys=["env", "cost"])
        assert "Tags" not in sqs.list_queue_tags(QueueUrl=url)
        # SQS's limits: keys up to 128 characters, values up to 256, 50 tags a queue.
        sqs.tag_queue(QueueUrl=url, Tags={"k" * 128: "v" * 256})
        for bad in ({"k" * 129: "v"}, {"k": "v" * 257}, {"aws:owner": "x"}):
            assert_code(client_error(sqs.tag_queue, QueueUrl=url, Tags=bad),
                        "InvalidParameterValue")
        sqs.tag_queue(QueueUrl=url, Tags={f"t{i}": "x" for i in range(49)})
        assert len(sqs.list_queue_tags(QueueUrl=url)["Tags"]) == 50
        assert_code(client_error(sqs.tag_queue, QueueUrl=url, Tags={"one-more": "x"}),
                    "InvalidParameterValue")
        sqs.tag_queue(QueueUrl=url, Tags={"t0": "overwritten"})
        assert sqs.list_queue_tags(QueueUrl=url)["Tags"]["t0"] == "overwritten"
    finally:
        sqs.delete_queue(QueueUrl=url)
    for call, kwargs in ((sqs.list_queue_tags, {}), (sqs.tag_queue, {"Tags": {"a": "b"}}),
                         (sqs.untag_queue, {"TagKeys": ["a"]})):
        assert_code(client_error(call, QueueUrl=url, **kwargs), NON_EXISTENT)
    # Tags go with the queue: one of the same name starts without them.
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    try:
        assert "Tags" not in sqs.list_queue_tags(QueueUrl=url)
    finally:
        sqs.delete_queue(QueueUrl=url)


def test_change_message_visibility_batch(sqs, sqs_nv, make_queue):
    _, url = make_queue(VisibilityTimeout=30)
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    got = receive(sqs, url, MaxNumberOfMessages=10)
    assert len(got) == 3
    out = sqs_nv.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": "a", "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 0},
        {"Id": "b", "ReceiptHandle": got[1]["ReceiptHandle"], "VisibilityTimeout": 0},
        {"Id": "bad", "ReceiptHandle": "nonsense", "VisibilityTimeout": 0},
        {"Id": "long", "ReceiptHandle": got[2]["ReceiptHandle"], "VisibilityTimeout": 43201},
    ])
    assert sorted(e["Id"] for e in out["Successful"]) == ["a", "b"], out
    assert sorted(e["Id"] for e in out["Failed"]) == ["bad", "long"], out
    # The two made visible again come back at once; the third stays hidden.
    again = receive(sqs, url, MaxNumberOfMessages=10)
    assert sorted(m["Body"] for m in again) == sorted([got[0]["Body"], got[1]["Body"]])


def test_list_dead_letter_source_queues(sqs, make_queue):
    dlq_name, dlq_url = make_queue()
    policy = json.dumps({"deadLetterTargetArn": queue_arn(dlq_name), "maxReceiveCount": 3})
    sources = sorted(make_queue(RedrivePolicy=policy)[1] for _ in range(3))
    make_queue()  # not a source
    got = sqs.list_dead_letter_source_queues(QueueUrl=dlq_url)
    assert sorted(got["queueUrls"]) == sources, got
    first = sqs.list_dead_letter_source_queues(QueueUrl=dlq_url, MaxResults=2)
    assert len(first["queueUrls"]) == 2 and first.get("NextToken"), first
    rest = sqs.list_dead_letter_source_queues(QueueUrl=dlq_url, MaxResults=2,
                                              NextToken=first["NextToken"])
    assert sorted(first["queueUrls"] + rest["queueUrls"]) == sources, rest


def test_add_and_remove_permission_edit_the_queue_policy(sqs, make_queue):
    name, url = make_queue()
    sqs.add_permission(QueueUrl=url, Label="send", AWSAccountIds=["111111111111"],
                       Actions=["SendMessage"])
    sqs.add_permission(QueueUrl=url, Label="read", AWSAccountIds=["111111111111",
                                                                  "222222222222"],
                       Actions=["ReceiveMessage", "DeleteMessage"])
    policy = json.loads(sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"send", "read"}
    assert by_sid["send"]["Action"] == "SQS:SendMessage"
    assert by_sid["send"]["Principal"]["AWS"] == "arn:aws:iam::111111111111:root"
    assert by_sid["read"]["Resource"] == queue_arn(name)
    assert_code(client_error(sqs.add_permission, QueueUrl=url, Label="send",
                             AWSAccountIds=["111111111111"], Actions=["SendMessage"]),
                "InvalidParameterValue")
    sqs.remove_permission(QueueUrl=url, Label="send")
    assert_code(client_error(sqs.remove_permission, QueueUrl=url, Label="send"),
                "InvalidParameterValue")
    sqs.remove_permission(QueueUrl=url, Label="read")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert "Policy" not in attrs, attrs


# --------------------------------------------------------------------------- message move tasks


def dead_lettered(sqs, make_queue, count: int) -> tuple[str, str, str, str]:
    """A queue whose `count` messages went to its dead-letter queue after one receive:
    (source name, source url, dlq name, dlq url)."""
    dlq_name, dlq_url = make_queue("movedlq")
    name, url = make_queue("movesrc", RedrivePolicy=redrive(dlq_name, 1))
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": f"m{i}"} for i in range(count)])
    assert len(receive_all(sqs, url, count, VisibilityTimeout=0)) == count
    # Received once each: the next receive moves them to the dead-letter queue.
    assert receive(sqs, url, WaitTimeSeconds=0) == []
    counts = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert counts["Attributes"]["ApproximateNumberOfMessages"] == str(count)
    return name, url, dlq_name, dlq_url


def wait_task(sqs, source_arn: str, status: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10)["Results"]
        if tasks and tasks[0]["Status"] == status:
            return tasks[0]
        assert time.monotonic() < deadline, f"no task reached {status}: {tasks}"
        time.sleep(0.1)


def test_a_move_task_sends_dead_lettered_messages_back_to_their_queue(sqs, make_queue):
    _, url, dlq_name, dlq_url = dead_lettered(sqs, make_queue, 5)
    handle = sqs.start_message_move_task(SourceArn=queue_arn(dlq_name))["TaskHandle"]
    assert handle
    task = wait_task(sqs, queue_arn(dlq_name), "COMPLETED")
    assert task["ApproximateNumberOfMessagesMoved"] == 5, task
    assert task["ApproximateNumberOfMessagesToMove"] == 5, task
    assert task["SourceArn"] == queue_arn(dlq_name)
    assert "TaskHandle" not in task, "only a running task shows its handle"
    back = receive_all(sqs, url, 5)
    assert sorted(m["Body"] for m in back) == [f"m{i}" for i in range(5)]
    assert receive(sqs, dlq_url, WaitTimeSeconds=0) == []
    # Moved back, a message starts over: received once now, not yet dead-lettered.
    attrs = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"],
                                WaitTimeSeconds=0)
    assert attrs.get("Messages", []) == [], "the five are in flight"


def test_a_move_task_to_a_destination_at_a_rate_can_be_cancelled(sqs, make_queue):
    _, _, dlq_name, _ = dead_lettered(sqs, make_queue, 6)
    other_name, other_url = make_queue("movedst")
    handle = sqs.start_message_move_task(SourceArn=queue_arn(dlq_name),
                                         DestinationArn=queue_arn(other_name),
                                         MaxNumberOfMessagesPerSecond=2)["TaskHandle"]
    running = wait_task(sqs, queue_arn(dlq_name), "RUNNING")
    assert running["TaskHandle"] == handle
    assert running["DestinationArn"] == queue_arn(other_name)
    assert running["MaxNumberOfMessagesPerSecond"] == 2
    # One task at a time per source.
    err = client_error(sqs.start_message_move_task, SourceArn=queue_arn(dlq_name))
    assert_code(err, "InvalidParameterValue")
    time.sleep(1.2)
    sqs.cancel_message_move_task(TaskHandle=handle)
    task = wait_task(sqs, queue_arn(dlq_name), "CANCELLED")
    moved = task["ApproximateNumberOfMessagesMoved"]
    assert 2 <= moved < 6, task
    assert len(receive_all(sqs, other_url, moved)) == moved
    # A finished task cannot be cancelled.
    err = client_error(sqs.cancel_message_move_task, TaskHandle=handle)
    assert_code(err, "InvalidParameterValue")


def test_move_tasks_refuse_what_they_cannot_move(sqs, make_queue):
    name, _ = make_queue("notdlq")
    err = client_error(sqs.start_message_move_task, SourceArn=queue_arn(name))
    assert_code(err, "InvalidParameterValue")
    for call, kwargs in [
        (sqs.start_message_move_task, {"SourceArn": queue_arn(name + "-missing")}),
        (sqs.list_message_move_tasks, {"SourceArn": queue_arn(name + "-missing")}),
        (sqs.cancel_message_move_task, {"TaskHandle": "bm9wZQ=="}),
    ]:
        assert_code(client_error(call, **kwargs), "ResourceNotFoundException")
    err = client_error(sqs.start_message_move_task, SourceArn="not-an-arn")
    assert_code(err, "InvalidParameterValue")
    assert sqs.list_message_move_tasks(SourceArn=queue_arn(name))["Results"] == []
