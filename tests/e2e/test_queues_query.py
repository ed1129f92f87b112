"""SQS's query protocol: the form requests (`Action=...`, flattened lists and maps) and XML
answers that older SDKs and tools send and read, signed for `sqs` like any SQS request,
to `POST /` or to a queue's own URL. Each request is signed here with botocore's SigV4
signer and its answer read with ElementTree, against the session server; a queue made
through one protocol is the same queue through the other (boto3 speaks JSON).
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

import support
from support import ACCOUNT, REGION
from test_queues import sqs_client

NS = "{http://queue.amazonaws.com/doc/2012-11-05/}"


def query(endpoint: str, params: dict, path: str = "/") -> tuple[int, ET.Element]:
    """POSTs a signed query request; the status and the parsed XML answer."""
    body = urllib.parse.urlencode(params)
    request = AWSRequest(method="POST", url=endpoint + path, data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    SigV4Auth(Credentials("x", "x"), "sqs", REGION).add_auth(request)
    prepared = request.prepare()
    raw = urllib.request.Request(prepared.url, data=body.encode(), method="POST",
                                 headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(raw, timeout=30) as response:
            return response.status, ET.fromstring(response.read())
    except urllib.error.HTTPError as e:
        return e.code, ET.fromstring(e.read())


def text(element: ET.Element, path: str) -> str | None:
    """The text of the element at `path` (tags without their namespace)."""
    found = element.find("/".join(NS + p for p in path.split("/")))
    return None if found is None else found.text


def all_of(element: ET.Element, path: str) -> list[ET.Element]:
    return element.findall(".//" + "/".join(NS + p for p in path.split("/")))


@pytest.fixture(scope="module")
def sqs(server):
    return sqs_client(server.endpoint)


@pytest.fixture
def queue(server, sqs):
    """A queue made through the query protocol: (name, url); deleted after the test."""
    name = support.unique_name("qp")
    status, doc = query(server.endpoint, {
        "Action": "CreateQueue", "Version": "2012-11-05", "QueueName": name,
        "Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "7",
        "Tag.1.Key": "team", "Tag.1.Value": "queues"})
    assert status == 200, ET.tostring(doc)
    assert doc.tag == NS + "CreateQueueResponse"
    url = text(doc, "CreateQueueResult/QueueUrl")
    assert url.endswith(f"/{ACCOUNT}/{name}"), url
    assert text(doc, "ResponseMetadata/RequestId")
    yield name, url
    query(server.endpoint, {"Action": "DeleteQueue", "QueueUrl": url})


def test_a_query_queue_is_the_same_queue_through_json(server, sqs, queue):
    name, url = queue
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "queues"}
    status, doc = query(server.endpoint, {"Action": "GetQueueAttributes", "QueueUrl": url,
                                          "AttributeName.1": "All"})
    assert status == 200
    attributes = {text(a, "Name"): text(a, "Value")
                  for a in all_of(doc, "GetQueueAttributesResult/Attribute")}
    assert attributes["VisibilityTimeout"] == "7", attributes
    assert attributes["QueueArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
    status, doc = query(server.endpoint, {"Action": "ListQueues", "QueueNamePrefix": name})
    assert [u.text for u in all_of(doc, "ListQueuesResult/QueueUrl")] == [url]
    status, doc = query(server.endpoint, {"Action": "GetQueueUrl", "QueueName": name})
    assert text(doc, "GetQueueUrlResult/QueueUrl") == url
    status, doc = query(server.endpoint, {"Action": "ListQueueTags", "QueueUrl": url})
    assert [(text(t, "Key"), text(t, "Value")) for t in all_of(doc, "ListQueueTagsResult/Tag")] \
        == [("team", "queues")]


def test_send_receive_and_delete_with_attributes(server, sqs, queue):
    _, url = queue
    status, doc = query(server.endpoint, {
        "Action": "SendMessage", "QueueUrl": url, "MessageBody": "a < b & \"c\"\r\n",
        "MessageAttribute.1.Name": "color", "MessageAttribute.1.Value.DataType": "String",
        "MessageAttribute.1.Value.StringValue": "red"})
    assert status == 200, ET.tostring(doc)
    sent_id = text(doc, "SendMessageResult/MessageId")
    assert text(doc, "SendMessageResult/MD5OfMessageAttributes")
    status, doc = query(server.endpoint, {
        "Action": "ReceiveMessage", "QueueUrl": url, "AttributeName.1": "All",
        "MessageAttributeName.1": "All", "WaitTimeSeconds": "1"})
    messages = all_of(doc, "ReceiveMessageResult/Message")
    assert len(messages) == 1, ET.tostring(doc)
    message = messages[0]
    assert text(message, "MessageId") == sent_id
    assert text(message, "Body") == "a < b & \"c\"\r\n", "the body comes back byte for byte"
    system = {text(a, "Name"): text(a, "Value") for a in message.findall(NS + "Attribute")}
    assert system["ApproximateReceiveCount"] == "1", system
    attribute = message.find(NS + "MessageAttribute")
    assert text(attribute, "Name") == "color"
    assert text(attribute, "Value/StringValue") == "red"
    assert text(attribute, "Value/DataType") == "String"
    status, doc = query(server.endpoint, {"Action": "DeleteMessage", "QueueUrl": url,
                                          "ReceiptHandle": text(message, "ReceiptHandle")})
    assert status == 200 and doc.tag == NS + "DeleteMessageResponse"
    assert sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_batches_list_each_entry(server, queue):
    _, url = queue
    status, doc = query(server.endpoint, {
        "Action": "SendMessageBatch", "QueueUrl": url,
        "SendMessageBatchRequestEntry.1.Id": "good", "SendMessageBatchRequestEntry.1.MessageBody": "1",
        "SendMessageBatchRequestEntry.2.Id": "late", "SendMessageBatchRequestEntry.2.MessageBody": "2",
        "SendMessageBatchRequestEntry.2.DelaySeconds": "901"})
    assert status == 200, ET.tostring(doc)
    ok = all_of(doc, "SendMessageBatchResult/SendMessageBatchResultEntry")
    failed = all_of(doc, "SendMessageBatchResult/BatchResultErrorEntry")
    assert [text(e, "Id") for e in ok] == ["good"]
    assert [(text(e, "Id"), text(e, "SenderFault")) for e in failed] == [("late", "true")]
    status, doc = query(server.endpoint, {"Action": "ReceiveMessage", "QueueUrl": url,
                                          "WaitTimeSeconds": "1"})
    handle = text(all_of(doc, "ReceiveMessageResult/Message")[0], "ReceiptHandle")
    status, doc = query(server.endpoint, {
        "Action": "DeleteMessageBatch", "QueueUrl": url,
        "DeleteMessageBatchRequestEntry.1.Id": "a", "DeleteMessageBatchRequestEntry.1.ReceiptHandle": handle,
        "DeleteMessageBatchRequestEntry.2.Id": "b", "DeleteMessageBatchRequestEntry.2.ReceiptHandle": "bogus"})
    assert [text(e, "Id") for e in all_of(doc, "DeleteMessageBatchResult/DeleteMessageBatchResultEntry")] == ["a"]
    assert [text(e, "Id") for e in all_of(doc, "DeleteMessageBatchResult/BatchResultErrorEntry")] == ["b"]


def test_requests_sent_to_the_queue_url_act_on_that_queue(server, sqs, queue):
    name, url = queue
    path = f"/{ACCOUNT}/{name}"
    status, doc = query(server.endpoint, {"Action": "SendMessage", "MessageBody": "by path"}, path)
    assert status == 200, ET.tostring(doc)
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in got] == ["by path"]
    status, doc = query(server.endpoint, {"Action": "GetQueueAttributes", "AttributeName.1": "QueueArn"},
                        f"/{ACCOUNT}/{name}-missing")
    assert status == 400
    assert text(doc, "Error/Code") == "AWS.SimpleQueueService.NonExistentQueue"


def test_errors_are_error_responses(server):
    status, doc = query(server.endpoint, {"Action": "GetQueueUrl", "QueueName": "no-such-queue-here"})
    assert status == 400
    assert doc.tag == NS + "ErrorResponse"
    assert text(doc, "Error/Type") == "Sender"
    assert text(doc, "Error/Code") == "AWS.SimpleQueueService.NonExistentQueue"
    assert text(doc, "RequestId")
    status, doc = query(server.endpoint, {"Action": "FlyToTheMoon"})
    assert (status, text(doc, "Error/Code")) == (400, "InvalidAction")
    status, doc = query(server.endpoint, {"Action": "SendMessage", "QueueUrl": f"/{ACCOUNT}/x",
                                          "MessageBody": "x", "DelaySeconds": "soon"})
    assert status == 400 and text(doc, "Error/Code") == "InvalidParameterValue", ET.tostring(doc)
