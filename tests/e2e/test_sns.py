"""The built-in topics: Amazon SNS's query protocol (`POST /`, a form with
`Action=<Action>`, XML answers) as boto3 and the AWS CLI speak it, and the deliveries a
publish fans out to.

Topics (create, attributes, tags, delete, SNS's name rules, FIFO names), subscriptions
(functions and queues confirmed at once, HTTP endpoints asked to confirm - by
ConfirmSubscription or by following the SubscribeURL without a signature), and publishing:
one message reaching a function (SNS's Lambda event), a queue (SNS's JSON envelope) and an
HTTP endpoint (its headers and envelope) exactly once; raw delivery; filter policies on
attributes and on the body; a dead-letter queue for an endpoint that went away; PublishBatch;
MessageStructure json; a FIFO topic feeding a FIFO queue in order, deduplicated; the errors
SNS answers with; and the AWS CLI.

Everything runs against the session server with topics, queues and a function of the tests'
own (unique names). The HTTP endpoints are small `http.server`s on 127.0.0.1 that record
every POST; the function prints each event it gets, which the tests read from its log.
"""

from __future__ import annotations

import json
import re
import shutil
import ssl
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import support
from conftest import aws_env
from support import ACCOUNT, REGION, function_arn, py_zip, wait_for
from test_queues import sqs_client

# Prints every event it is invoked with, on one line, for the tests to read from its log.
PRINTER = r'''
import json

def handler(event, context):
    print("event", json.dumps(event))
    return {}
'''

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# SNS's limit on a message: 256 KiB.
MAX_MESSAGE = 262_144


# --------------------------------------------------------------------------- clients


def sns_client(endpoint: str, **config):
    return boto3.client(
        "sns", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id="x", aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 0}, read_timeout=60, connect_timeout=5,
                      **config))


@pytest.fixture(scope="module")
def sns(server):
    """boto3 SNS client against the session server."""
    return sns_client(server.endpoint)


@pytest.fixture(scope="module")
def sqs(server):
    return sqs_client(server.endpoint)


# --------------------------------------------------------------------------- helpers


def topic_arn(name: str) -> str:
    return f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def error(call, **kwargs) -> tuple[int, str]:
    """(HTTP status, error code) of the ClientError call(**kwargs) raises."""
    with pytest.raises(ClientError) as e:
        call(**kwargs)
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], e.value.response["Error"]["Code"]


def error_code(call, **kwargs) -> str:
    return error(call, **kwargs)[1]


def string_attribute(value: str) -> dict:
    return {"DataType": "String", "StringValue": value}


def number_attribute(value) -> dict:
    return {"DataType": "Number", "StringValue": str(value)}


@pytest.fixture
def make_topic(sns):
    """make_topic(fifo=False, **attributes) -> the ARN of a new topic; deleted after the test."""
    made: list[str] = []

    def make(fifo: bool = False, **attributes) -> str:
        name = support.unique_name("t") + (".fifo" if fifo else "")
        attrs = {k: str(v) for k, v in attributes.items()}
        if fifo:
            attrs["FifoTopic"] = "true"
        arn = sns.create_topic(Name=name, **({"Attributes": attrs} if attrs else {}))["TopicArn"]
        made.append(arn)
        return arn

    yield make
    for arn in made:
        try:
            sns.delete_topic(TopicArn=arn)
        except ClientError:
            pass


@pytest.fixture
def make_queue(sqs):
    """make_queue(fifo=False, **attributes) -> (arn, url) of a new queue; deleted after the
    test."""
    made: list[str] = []

    def make(fifo: bool = False, **attributes) -> tuple[str, str]:
        name = support.unique_name("q") + (".fifo" if fifo else "")
        attrs = {k: str(v) for k, v in attributes.items()}
        if fifo:
            attrs["FifoQueue"] = "true"
        url = sqs.create_queue(QueueName=name, **({"Attributes": attrs} if attrs else {}))[
            "QueueUrl"]
        made.append(url)
        return queue_arn(name), url

    yield make
    for url in made:
        try:
            sqs.delete_queue(QueueUrl=url)
        except ClientError:
            pass


def take(sqs, url: str, want: int, timeout: float = 10.0, **kwargs) -> list[dict]:
    """Receive (and delete) messages until `want` came or `timeout` passed; in the order
    they were received."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                    **kwargs).get("Messages", [])
        for m in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        got += batch
    assert len(got) >= want, f"{len(got)} of {want} messages within {timeout}s: {got}"
    return got


def envelopes(sqs, url: str, want: int, timeout: float = 10.0) -> list[dict]:
    """The SNS envelopes (parsed message bodies) of `want` messages taken from a queue."""
    return [json.loads(m["Body"]) for m in take(sqs, url, want, timeout=timeout)]


def assert_no_more(sqs, url: str) -> None:
    """A one-second long poll finds nothing: no duplicate, no late delivery."""
    extra = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                WaitTimeSeconds=1).get("Messages", [])
    assert extra == [], [m["Body"] for m in extra]


def assert_notification(doc: dict, *, message_id: str, topic: str, message: str,
                        subject: str | None = None) -> None:
    """Checks SNS's JSON envelope of a notification."""
    assert doc["Type"] == "Notification", doc
    assert doc["MessageId"] == message_id, doc
    assert doc["TopicArn"] == topic, doc
    assert doc["Message"] == message, doc
    if subject is not None:
        assert doc["Subject"] == subject, doc
    assert doc["Timestamp"].endswith("Z"), doc
    assert "Action=Unsubscribe" in doc["UnsubscribeURL"], doc


# --------------------------------------------------------------------------- HTTP endpoints


@dataclass
class Post:
    path: str
    headers: dict[str, str]  # lower-case names
    body: str

    def json(self) -> dict:
        return json.loads(self.body)


class Hook:
    """An HTTP endpoint of the test's own on 127.0.0.1 (a free port): records every POST
    and answers 200."""

    def __init__(self, tls: "ssl.SSLContext | None" = None):
        self.posts: list[Post] = []
        self._lock = threading.Lock()
        posts, lock = self.posts, self._lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with lock:
                    posts.append(Post(self.path, headers, body.decode()))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self._stopped = False

    def of_type(self, kind: str) -> list[Post]:
        """The POSTs whose x-amz-sns-message-type is `kind`."""
        with self._lock:
            return [p for p in self.posts if p.headers.get("x-amz-sns-message-type") == kind]

    def notifications(self) -> list[Post]:
        return self.of_type("Notification")

    def stop(self) -> None:
        """Stops listening: connections to the port are refused from now on."""
        if not self._stopped:
            self._stopped = True
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.stop()


def confirmation_request(hook: Hook, topic: str) -> dict:
    """The SubscriptionConfirmation the endpoint was sent (checked); its parsed body."""
    [post] = wait_for(lambda: hook.of_type("SubscriptionConfirmation"), lambda ps: len(ps) >= 1,
                      timeout=10, what="the subscription confirmation request")
    assert post.path == "/hook", post
    assert post.headers.get("x-amz-sns-topic-arn") == topic, post.headers
    doc = post.json()
    assert doc["Type"] == "SubscriptionConfirmation", doc
    assert doc["TopicArn"] == topic, doc
    assert doc["Token"], doc
    assert doc["SubscribeURL"].startswith("http://"), doc
    return doc


def subscribe_http(sns, hook: Hook, topic: str, **attributes) -> str:
    """Subscribes `hook` to `topic` and confirms it with ConfirmSubscription; its ARN."""
    kwargs = {"Attributes": attributes} if attributes else {}
    pending = sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=hook.url, **kwargs)
    assert pending["SubscriptionArn"] == "pending confirmation", pending
    token = confirmation_request(hook, topic)["Token"]
    arn = sns.confirm_subscription(TopicArn=topic, Token=token)["SubscriptionArn"]
    assert re.fullmatch(re.escape(topic) + ":" + UUID, arn), arn
    return arn


def wait_notifications(hook: Hook, want: int, timeout: float = 10.0) -> list[Post]:
    return wait_for(hook.notifications, lambda ps: len(ps) >= want, timeout=timeout,
                    what=f"{want} notification(s) at the HTTP endpoint")


# --------------------------------------------------------------------------- the function


@pytest.fixture(scope="module")
def printer(lam):
    """A function that prints the events it gets (shared by the module's tests, which tell
    their events apart by topic); its name."""
    name = support.unique_name("sns-fn")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": py_zip(PRINTER)}, Timeout=30)
    yield name
    try:
        lam.delete_function(FunctionName=name)
    except ClientError:
        pass


def sns_records(endpoint: str, function: str, topic: str) -> list[dict]:
    """The SNS records of `topic` the function was invoked with, from its log."""
    records = []
    for e in support.all_log_events(endpoint, function):
        if e["message"].startswith("event "):
            event = json.loads(e["message"][len("event "):])
            records += [r for r in event.get("Records", [])
                        if r.get("Sns", {}).get("TopicArn") == topic]
    return records


def wait_records(endpoint: str, function: str, topic: str, want: int = 1) -> list[dict]:
    return wait_for(lambda: sns_records(endpoint, function, topic), lambda rs: len(rs) >= want,
                    timeout=20, interval=0.2, what=f"{want} SNS record(s) in the function's log")


# --------------------------------------------------------------------------- topics


def test_create_get_set_list_delete_topic(sns, unique_name):
    name = unique_name("topic")
    arn = sns.create_topic(Name=name)["TopicArn"]
    try:
        assert arn == topic_arn(name)
        assert sns.create_topic(Name=name)["TopicArn"] == arn, "creating again is a no-op"

        listed = [t["TopicArn"] for page in sns.get_paginator("list_topics").paginate()
                  for t in page["Topics"]]
        assert arn in listed
        assert len(listed) == len(set(listed)), listed

        attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
        assert attrs["TopicArn"] == arn, attrs
        assert attrs["Owner"] == ACCOUNT, attrs
        assert attrs["DisplayName"] == "", attrs
        assert (attrs["SubscriptionsConfirmed"], attrs["SubscriptionsPending"]) == ("0", "0"), attrs
        policy = json.loads(attrs["Policy"])
        assert isinstance(policy, dict) and policy.get("Statement"), policy
        assert "http" in json.loads(attrs["EffectiveDeliveryPolicy"]), attrs

        sns.set_topic_attributes(TopicArn=arn, AttributeName="DisplayName",
                                 AttributeValue="My Topic")
        assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["DisplayName"] == "My Topic"
    finally:
        sns.delete_topic(TopicArn=arn)
    assert error(sns.get_topic_attributes, TopicArn=arn) == (404, "NotFound")
    listed = [t["TopicArn"] for page in sns.get_paginator("list_topics").paginate()
              for t in page["Topics"]]
    assert arn not in listed


@pytest.mark.parametrize("name", ["bad name!", "a/b", "t" * 257, ".fifo"],
                         ids=["space-and-bang", "slash", "257-characters", "bare-fifo"])
def test_create_topic_refuses_bad_names(sns, name):
    assert error(sns.create_topic, Name=name) == (400, "InvalidParameter")


def test_a_256_character_name_is_fine(sns, unique_name):
    name = (unique_name("long") + "-" + "x" * 256)[:256]
    arn = sns.create_topic(Name=name)["TopicArn"]
    sns.delete_topic(TopicArn=arn)
    assert arn == topic_arn(name)


def test_fifo_names_and_the_fifo_attribute_go_together(sns, unique_name):
    base = unique_name("fifo")
    assert error(sns.create_topic, Name=base + ".fifo") == (400, "InvalidParameter")
    assert error(sns.create_topic, Name=base, Attributes={"FifoTopic": "true"}) == \
        (400, "InvalidParameter")
    arn = sns.create_topic(Name=base + ".fifo", Attributes={
        "FifoTopic": "true", "ContentBasedDeduplication": "true"})["TopicArn"]
    try:
        assert arn == topic_arn(base + ".fifo")
        attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
        assert attrs["FifoTopic"] == "true" and attrs["ContentBasedDeduplication"] == "true", attrs
    finally:
        sns.delete_topic(TopicArn=arn)


def test_tags(sns, unique_name):
    name = unique_name("tags")
    arn = sns.create_topic(Name=name, Tags=[{"Key": "team", "Value": "a"}])["TopicArn"]

    def tags() -> dict[str, str]:
        return {t["Key"]: t["Value"]
                for t in sns.list_tags_for_resource(ResourceArn=arn)["Tags"]}

    try:
        assert tags() == {"team": "a"}
        sns.tag_resource(ResourceArn=arn, Tags=[{"Key": "env", "Value": "dev"},
                                                {"Key": "team", "Value": "b"}])
        assert tags() == {"team": "b", "env": "dev"}
        sns.untag_resource(ResourceArn=arn, TagKeys=["team"])
        assert tags() == {"env": "dev"}
    finally:
        sns.delete_topic(TopicArn=arn)
    assert error_code(sns.list_tags_for_resource, ResourceArn=arn) == "ResourceNotFound"


# --------------------------------------------------------------------------- subscriptions


def test_function_and_queue_subscriptions_are_confirmed_at_once(sns, make_topic, unique_name):
    topic = make_topic()
    fn_arn = function_arn(unique_name("fn"))
    q_arn = queue_arn(unique_name("q"))
    lambda_sub = sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=fn_arn)[
        "SubscriptionArn"]
    sqs_sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q_arn)["SubscriptionArn"]
    for arn in (lambda_sub, sqs_sub):
        assert re.fullmatch(re.escape(topic) + ":" + UUID, arn), arn
    assert lambda_sub != sqs_sub

    expected = {
        lambda_sub: {"SubscriptionArn": lambda_sub, "Owner": ACCOUNT, "Protocol": "lambda",
                     "Endpoint": fn_arn, "TopicArn": topic},
        sqs_sub: {"SubscriptionArn": sqs_sub, "Owner": ACCOUNT, "Protocol": "sqs",
                  "Endpoint": q_arn, "TopicArn": topic},
    }
    by_topic = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert {s["SubscriptionArn"]: s for s in by_topic} == expected
    everywhere = {s["SubscriptionArn"]: s
                  for page in sns.get_paginator("list_subscriptions").paginate()
                  for s in page["Subscriptions"]}
    assert {arn: everywhere.get(arn) for arn in expected} == expected

    for arn, protocol, endpoint in [(lambda_sub, "lambda", fn_arn), (sqs_sub, "sqs", q_arn)]:
        attrs = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
        assert attrs["SubscriptionArn"] == arn, attrs
        assert attrs["PendingConfirmation"] == "false", attrs
        assert attrs["RawMessageDelivery"] == "false", attrs
        assert attrs["Protocol"] == protocol, attrs
        assert attrs["Endpoint"] == endpoint, attrs
        assert attrs["TopicArn"] == topic, attrs
        assert attrs["Owner"] == ACCOUNT, attrs
    topic_attrs = sns.get_topic_attributes(TopicArn=topic)["Attributes"]
    assert (topic_attrs["SubscriptionsConfirmed"], topic_attrs["SubscriptionsPending"]) == \
        ("2", "0"), topic_attrs

    sns.unsubscribe(SubscriptionArn=lambda_sub)
    by_topic = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [s["SubscriptionArn"] for s in by_topic] == [sqs_sub]
    assert error(sns.get_subscription_attributes, SubscriptionArn=lambda_sub) == \
        (404, "NotFound")


def test_subscribe_refuses_what_it_cannot_deliver_to(sns, make_topic, unique_name):
    topic = make_topic()
    q_arn = queue_arn(unique_name("q"))
    assert error(sns.subscribe, TopicArn=topic, Protocol="email",
                 Endpoint="someone@example.com") == (400, "InvalidParameter")
    assert error(sns.subscribe, TopicArn=topic, Protocol="lambda", Endpoint=q_arn) == \
        (400, "InvalidParameter")
    assert error(sns.subscribe, TopicArn=topic, Protocol="sqs",
                 Endpoint=function_arn(unique_name("fn"))) == (400, "InvalidParameter")
    assert error(sns.subscribe, TopicArn=topic_arn(unique_name("missing")), Protocol="sqs",
                 Endpoint=q_arn) == (404, "NotFound")
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


def test_an_http_subscription_is_confirmed_by_following_its_subscribe_url(sns, make_topic,
                                                                          hook):
    topic = make_topic()
    arn = sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=hook.url,
                        ReturnSubscriptionArn=True)["SubscriptionArn"]
    assert re.fullmatch(re.escape(topic) + ":" + UUID, arn), arn
    request = confirmation_request(hook, topic)

    assert sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"][
        "PendingConfirmation"] == "true"
    [listed] = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert (listed["SubscriptionArn"], listed["Protocol"], listed["Endpoint"]) == \
        ("PendingConfirmation", "http", hook.url), listed
    attrs = sns.get_topic_attributes(TopicArn=topic)["Attributes"]
    assert (attrs["SubscriptionsConfirmed"], attrs["SubscriptionsPending"]) == ("0", "1"), attrs
    # Nothing is delivered to an endpoint that has not confirmed.
    sns.publish(TopicArn=topic, Message="too early")

    # The link itself, as an endpoint follows it: a plain GET without a signature.
    with urllib.request.urlopen(request["SubscribeURL"], timeout=10) as resp:
        assert resp.status == 200
        answer = resp.read().decode()
    assert f"<SubscriptionArn>{arn}</SubscriptionArn>" in answer, answer

    assert sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"][
        "PendingConfirmation"] == "false"
    [listed] = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert listed["SubscriptionArn"] == arn, listed
    attrs = sns.get_topic_attributes(TopicArn=topic)["Attributes"]
    assert (attrs["SubscriptionsConfirmed"], attrs["SubscriptionsPending"]) == ("1", "0"), attrs

    message_id = sns.publish(TopicArn=topic, Message="on time")["MessageId"]
    [post] = wait_notifications(hook, 1)
    assert post.headers["x-amz-sns-message-id"] == message_id, post.headers
    assert_notification(post.json(), message_id=message_id, topic=topic, message="on time")
    time.sleep(0.5)
    assert [p.json()["Message"] for p in hook.notifications()] == ["on time"]


# --------------------------------------------------------------------------- publishing


def test_a_message_reaches_a_function_a_queue_and_an_http_endpoint_once_each(
        server, sns, sqs, make_topic, make_queue, printer, hook):
    topic = make_topic()
    q_arn, url = make_queue()
    fn_arn = function_arn(printer)
    lambda_sub = sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=fn_arn)[
        "SubscriptionArn"]
    sqs_sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q_arn)["SubscriptionArn"]
    http_sub = subscribe_http(sns, hook, topic)
    assert sns.get_subscription_attributes(SubscriptionArn=http_sub)["Attributes"][
        "PendingConfirmation"] == "false"

    attributes = {"color": string_attribute("red"), "size": number_attribute(12)}
    shown = {"color": {"Type": "String", "Value": "red"},
             "size": {"Type": "Number", "Value": "12"}}
    message_id = sns.publish(TopicArn=topic, Message="hello, subscribers", Subject="Greetings",
                             MessageAttributes=attributes)["MessageId"]
    assert message_id

    # The function: SNS's Lambda event.
    [record] = wait_records(server.endpoint, printer, topic)
    assert record["EventSource"] == "aws:sns", record
    assert record["EventVersion"] == "1.0", record
    assert record["EventSubscriptionArn"] == lambda_sub, record
    event = record["Sns"]
    assert event["Type"] == "Notification", event
    assert event["MessageId"] == message_id, event
    assert event["TopicArn"] == topic, event
    assert event["Subject"] == "Greetings", event
    assert event["Message"] == "hello, subscribers", event
    assert event["Timestamp"].endswith("Z"), event
    assert event["MessageAttributes"] == shown, event
    for key in ("SignatureVersion", "Signature", "SigningCertUrl", "UnsubscribeUrl"):
        assert key in event, (key, event)

    # The queue: SNS's envelope as the message body.
    [doc] = envelopes(sqs, url, 1)
    assert_notification(doc, message_id=message_id, topic=topic, message="hello, subscribers",
                        subject="Greetings")
    assert doc["MessageAttributes"] == shown, doc
    assert sqs_sub in doc["UnsubscribeURL"] or sqs_sub.replace(":", "%3A") in \
        doc["UnsubscribeURL"], doc

    # The HTTP endpoint: SNS's headers and the envelope.
    [post] = wait_notifications(hook, 1)
    assert post.path == "/hook", post
    assert post.headers["x-amz-sns-message-type"] == "Notification", post.headers
    assert post.headers["x-amz-sns-topic-arn"] == topic, post.headers
    assert post.headers["x-amz-sns-subscription-arn"] == http_sub, post.headers
    assert post.headers["x-amz-sns-message-id"] == message_id, post.headers
    doc = post.json()
    assert_notification(doc, message_id=message_id, topic=topic, message="hello, subscribers",
                        subject="Greetings")
    assert doc["MessageAttributes"] == shown, doc

    # Exactly once each (the queue's long poll is the wait for a late duplicate).
    assert_no_more(sqs, url)
    assert len(sns_records(server.endpoint, printer, topic)) == 1
    assert len(hook.notifications()) == 1


def test_raw_delivery_to_a_queue_sends_the_message_and_its_attributes(sns, sqs, make_topic,
                                                                      make_queue):
    topic = make_topic()
    q_arn, url = make_queue()
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q_arn)["SubscriptionArn"]
    sns.set_subscription_attributes(SubscriptionArn=sub, AttributeName="RawMessageDelivery",
                                    AttributeValue="true")
    assert sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"][
        "RawMessageDelivery"] == "true"
    attributes = {"k": string_attribute("v"), "n": number_attribute(5)}
    body = '{"just": "the message"}'
    sns.publish(TopicArn=topic, Message=body, Subject="ignored", MessageAttributes=attributes)
    [m] = take(sqs, url, 1, MessageAttributeNames=["All"])
    assert m["Body"] == body, m
    assert m.get("MessageAttributes") == attributes, m
    assert_no_more(sqs, url)


def test_raw_delivery_to_an_http_endpoint_posts_the_bare_message(sns, make_topic, hook):
    topic = make_topic()
    sub = subscribe_http(sns, hook, topic, RawMessageDelivery="true")
    message_id = sns.publish(TopicArn=topic, Message="bare text")["MessageId"]
    [post] = wait_notifications(hook, 1)
    assert post.body == "bare text", post
    assert post.headers["x-amz-sns-message-id"] == message_id, post.headers
    assert post.headers["x-amz-sns-subscription-arn"] == sub, post.headers
    assert post.headers.get("x-amz-sns-rawdelivery") == "true", post.headers


# --------------------------------------------------------------------------- filter policies


def test_a_filter_policy_on_message_attributes_passes_only_matching_messages(
        sns, sqs, make_topic, make_queue):
    topic = make_topic()
    q_arn, url = make_queue()
    policy = {"color": ["red"], "size": [{"numeric": [">", 10]}]}
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q_arn,
                        Attributes={"FilterPolicy": json.dumps(policy)})["SubscriptionArn"]
    attrs = sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    assert json.loads(attrs["FilterPolicy"]) == policy, attrs

    cases = [
        ("red-5", {"color": string_attribute("red"), "size": number_attribute(5)}),
        ("blue-12", {"color": string_attribute("blue"), "size": number_attribute(12)}),
        ("red-no-size", {"color": string_attribute("red")}),
        ("no-attributes", {}),
        ("red-12", {"color": string_attribute("red"), "size": number_attribute(12)}),
    ]
    for text, attributes in cases:
        sns.publish(TopicArn=topic, Message=text,
                    **({"MessageAttributes": attributes} if attributes else {}))
    assert [d["Message"] for d in envelopes(sqs, url, 1)] == ["red-12"]
    assert_no_more(sqs, url)


def test_a_filter_policy_on_the_body_passes_only_matching_json_bodies(sns, sqs, make_topic,
                                                                      make_queue):
    topic = make_topic()
    q_arn, url = make_queue()
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q_arn, Attributes={
        "FilterPolicyScope": "MessageBody",
        "FilterPolicy": json.dumps({"kind": [{"prefix": "ord"}]}),
    })
    bodies = [json.dumps({"kind": "order", "n": 1}), json.dumps({"kind": "refund"}),
              "kind: order (not JSON)", json.dumps({"other": "order"}),
              json.dumps({"kind": "ordinary"})]
    for body in bodies:
        sns.publish(TopicArn=topic, Message=body)
    got = [d["Message"] for d in envelopes(sqs, url, 2)]
    assert sorted(got) == sorted([bodies[0], bodies[4]]), got
    assert_no_more(sqs, url)


def test_invalid_filter_policies_are_refused(sns, make_topic, unique_name):
    topic = make_topic()
    q_arn = queue_arn(unique_name("q"))
    for bad in ['{"a": "not-a-list"}', "not json"]:
        assert error(sns.subscribe, TopicArn=topic, Protocol="sqs", Endpoint=q_arn,
                     Attributes={"FilterPolicy": bad}) == (400, "InvalidParameter"), bad
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q_arn)["SubscriptionArn"]
    for bad in ['{"a": "not-a-list"}', "not json"]:
        assert error(sns.set_subscription_attributes, SubscriptionArn=sub,
                     AttributeName="FilterPolicy", AttributeValue=bad) == \
            (400, "InvalidParameter"), bad
    assert "FilterPolicy" not in sns.get_subscription_attributes(SubscriptionArn=sub)[
        "Attributes"]


# --------------------------------------------------------------------------- failures


def delivery_count(endpoint: str, protocol: str, outcome: str) -> int:
    """`shoal_topic_deliveries_total` for a protocol and outcome."""
    series = f'shoal_topic_deliveries_total{{protocol="{protocol}",outcome="{outcome}"}} '
    text = urllib.request.urlopen(endpoint + "/metrics", timeout=10).read().decode()
    return next((int(line[len(series):]) for line in text.splitlines()
                 if line.startswith(series)), 0)


def test_an_endpoint_that_went_away_sends_the_message_to_the_dead_letter_queue(
        server, sns, sqs, make_topic, make_queue, hook):
    dead_lettered = delivery_count(server.endpoint, "http", "dead_lettered")
    topic = make_topic()
    dlq_arn, dlq_url = make_queue()
    sub = subscribe_http(sns, hook, topic)
    hook.stop()
    sns.set_subscription_attributes(SubscriptionArn=sub, AttributeName="RedrivePolicy",
                                    AttributeValue=json.dumps({"deadLetterTargetArn": dlq_arn}))
    sns.set_subscription_attributes(
        SubscriptionArn=sub, AttributeName="DeliveryPolicy",
        AttributeValue=json.dumps({"healthyRetryPolicy": {
            "numRetries": 1, "minDelayTarget": 1, "maxDelayTarget": 1,
            "numNoDelayRetries": 0, "numMinDelayRetries": 0, "numMaxDelayRetries": 0,
            "backoffFunction": "linear"}}))
    message_id = sns.publish(TopicArn=topic, Message="nobody is listening")["MessageId"]
    [doc] = envelopes(sqs, dlq_url, 1, timeout=15)
    assert doc["Message"] == "nobody is listening", doc
    assert doc["MessageId"] == message_id, doc
    assert doc["TopicArn"] == topic, doc
    assert_no_more(sqs, dlq_url)
    # Counted (the session server's other tests may dead-letter too: at least ours).
    assert delivery_count(server.endpoint, "http", "dead_lettered") >= dead_lettered + 1
    assert delivery_count(server.endpoint, "http", "retried") >= 1


# --------------------------------------------------------------------------- batches


def test_publish_batch_publishes_the_good_entries_and_lists_the_bad(sns, sqs, make_topic,
                                                                    make_queue):
    topic = make_topic()
    q_arn, url = make_queue()
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q_arn)
    out = sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[
        {"Id": "a", "Message": "one"},
        {"Id": "b", "Message": "two"},
        {"Id": "c", "Message": "three"},
        {"Id": "empty", "Message": ""},
    ])
    successful = {e["Id"]: e["MessageId"] for e in out["Successful"]}
    assert sorted(successful) == ["a", "b", "c"], out
    assert all(successful.values()) and len(set(successful.values())) == 3, out
    [failed] = out["Failed"]
    assert (failed["Id"], failed["Code"], failed["SenderFault"]) == \
        ("empty", "InvalidParameter", True), failed

    got = {d["MessageId"]: d["Message"] for d in envelopes(sqs, url, 3)}
    assert got == {successful["a"]: "one", successful["b"]: "two", successful["c"]: "three"}
    assert_no_more(sqs, url)


def test_publish_batch_refuses_duplicate_ids_and_too_many_entries(sns, make_topic):
    topic = make_topic()
    assert error_code(sns.publish_batch, TopicArn=topic, PublishBatchRequestEntries=[
        {"Id": "x", "Message": "1"}, {"Id": "x", "Message": "2"}]) == "BatchEntryIdsNotDistinct"
    assert error_code(sns.publish_batch, TopicArn=topic, PublishBatchRequestEntries=[
        {"Id": f"e{i}", "Message": str(i)} for i in range(11)]) == \
        "TooManyEntriesInBatchRequest"


# --------------------------------------------------------------------------- publish errors


def test_publish_errors(sns, make_topic, unique_name):
    topic = make_topic()
    assert error(sns.publish, TopicArn=topic_arn(unique_name("missing")), Message="x") == \
        (404, "NotFound")
    assert sns.publish(TopicArn=topic, Message="x" * MAX_MESSAGE)["MessageId"]
    assert error(sns.publish, TopicArn=topic, Message="x" * (MAX_MESSAGE + 1)) == \
        (400, "InvalidParameter")
    assert error(sns.publish, TopicArn=topic, MessageStructure="json",
                 Message=json.dumps({"sqs": "no default"})) == (400, "InvalidParameter")


def test_message_structure_json_gives_each_protocol_its_message(server, sns, sqs, make_topic,
                                                                make_queue, printer):
    topic = make_topic()
    q_arn, url = make_queue()
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q_arn)
    sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=function_arn(printer))
    message_id = sns.publish(TopicArn=topic, MessageStructure="json",
                             Message=json.dumps({"default": "d", "sqs": "for-sqs"}))["MessageId"]
    [doc] = envelopes(sqs, url, 1)
    assert (doc["MessageId"], doc["Message"]) == (message_id, "for-sqs"), doc
    [record] = wait_records(server.endpoint, printer, topic)
    assert (record["Sns"]["MessageId"], record["Sns"]["Message"]) == (message_id, "d"), record


# --------------------------------------------------------------------------- FIFO


def test_a_fifo_topic_delivers_a_group_in_order_and_deduplicates(sns, sqs, make_topic,
                                                                 make_queue):
    topic = make_topic(fifo=True, ContentBasedDeduplication="true")
    q_arn, url = make_queue(fifo=True, ContentBasedDeduplication="true")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q_arn)
    sent = [sns.publish(TopicArn=topic, Message=f"m{i}", MessageGroupId="g") for i in range(10)]
    sequence = [s["SequenceNumber"] for s in sent]
    assert all(sequence), sent
    assert [int(n) for n in sequence] == sorted(int(n) for n in sequence), sequence
    assert len(set(sequence)) == 10, sequence
    # The same body again within five minutes: accepted, not delivered.
    assert sns.publish(TopicArn=topic, Message="m3", MessageGroupId="g")["MessageId"]

    docs = envelopes(sqs, url, 10, timeout=15)
    assert [d["Message"] for d in docs] == [f"m{i}" for i in range(10)]
    assert [d["MessageId"] for d in docs] == [s["MessageId"] for s in sent]
    assert [d.get("SequenceNumber") for d in docs] == sequence
    assert_no_more(sqs, url)

    assert error(sns.publish, TopicArn=topic, Message="no group") == (400, "InvalidParameter")


# --------------------------------------------------------------------------- the AWS CLI


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_aws_cli_creates_a_topic_and_publishes(endpoint, sns, sqs, make_queue, unique_name):
    # The `aws` fixture runs `aws lambda ...`; SNS needs `aws sns ...` with the same setup.
    def aws_sns(*args: str) -> dict | None:
        cmd = ["aws", "sns", *args, "--endpoint-url", endpoint, "--region", REGION,
               "--output", "json"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=aws_env(),
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, (
            f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    name = unique_name("cli")
    arn = aws_sns("create-topic", "--name", name)["TopicArn"]
    try:
        assert arn == topic_arn(name)
        q_arn, url = make_queue()
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=q_arn)
        message_id = aws_sns("publish", "--topic-arn", arn, "--message", "hi")["MessageId"]
        [doc] = envelopes(sqs, url, 1)
        assert (doc["MessageId"], doc["Message"]) == (message_id, "hi"), doc
    finally:
        sns.delete_topic(TopicArn=arn)


# --------------------------------------------------------------------------- durability


def test_kill_9_while_publishing_loses_no_acknowledged_message(server_with, capsys):
    """2,000 messages published in batches of 10 to a topic with two queue subscribers; the
    server is killed (-9) twice while they are published and delivered and restarted on
    the same data. Every acknowledged message reaches both queues; a batch whose answer
    the kill cut off is published again (so it may arrive twice; counted, and rare)."""
    import os
    import signal

    srv = server_with(isolation="none")
    sns = sns_client(srv.endpoint)
    sqs = sqs_client(srv.endpoint)
    topic = sns.create_topic(Name="durable")["TopicArn"]
    urls = []
    for name in ("durable-a", "durable-b"):
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn(name),
                      Attributes={"RawMessageDelivery": "true"})
        urls.append(url)
    total, acked, retried = 2000, set(), [0]
    done = threading.Event()

    def publish():
        for start in range(0, total, 10):
            entries = [{"Id": str(i), "Message": f"m{start + i}"} for i in range(10)]
            while True:
                try:
                    client = sns_client(srv.endpoint)
                    out = client.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)
                    assert not out.get("Failed"), out
                    acked.update(e["Message"] for e in entries)
                    break
                except Exception:  # noqa: BLE001 - the server is down: try again
                    retried[0] += 1
                    time.sleep(0.1)
        done.set()

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    for fraction in (0.3, 0.6):
        wait_for(lambda: len(acked), lambda n: n >= total * fraction, timeout=60, interval=0.01,
                 what=f"{fraction:.0%} of the messages acknowledged")
        pid = srv.proc.pid
        os.kill(pid, signal.SIGKILL)
        srv.proc.wait(timeout=10)
        srv.start()
    assert done.wait(120), "the publisher did not finish"
    seen: list[dict[str, int]] = [{}, {}]

    def drained() -> bool:
        for url, counts in zip(urls, seen):
            while True:
                got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                          WaitTimeSeconds=0).get("Messages", [])
                if not got:
                    break
                for m in got:
                    counts[m["Body"]] = counts.get(m["Body"], 0) + 1
                sqs.delete_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
        return all(acked <= set(counts) for counts in seen)

    wait_for(drained, lambda ok: ok, timeout=60, interval=0.2,
             what="every acknowledged message in both queues")
    duplicates = [sum(n - 1 for n in counts.values()) for counts in seen]
    with capsys.disabled():
        print(f"\n  SNS kill -9 x2: {len(acked)} acknowledged, {retried[0]} publish retries, "
              f"duplicates per queue {duplicates}")
    assert len(acked) == total
    # A kill can repeat at most what was in flight: the deliverer's 256 attempts, and the
    # batch whose answer it cut off.
    assert all(d <= 2 * (256 + 10) for d in duplicates), duplicates



# --------------------------------------------------------------------------- https


def certificate_authority(folder) -> tuple[str, str, str]:
    """A CA and a certificate it issued for 127.0.0.1, made with openssl in `folder`:
    (CA cert, leaf cert, leaf key) paths."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca-key.pem"
    leaf, key, csr = folder / "leaf.pem", folder / "leaf-key.pem", folder / "leaf.csr"
    ext = folder / "leaf.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    for cmd in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", ca_key,
         "-out", ca, "-subj", "/CN=shoal-test-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "1", "-out", leaf, "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True, timeout=60)
    return str(ca), str(leaf), str(key)


def tls_hook(leaf: str, key: str) -> Hook:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf, key)
    return Hook(context)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_https_endpoints_need_a_certificate_the_server_trusts(server_with, tmp_path, unique_name):
    """The server trusts the CA that SSL_CERT_FILE names: an HTTPS endpoint with a
    certificate it issued is asked to confirm and gets notifications over TLS; an endpoint
    whose certificate another CA issued is never reached (its handshake fails)."""
    ca, leaf, key = certificate_authority(tmp_path / "trusted")
    _, other_leaf, other_key = certificate_authority(tmp_path / "other")
    srv = server_with(env={"SSL_CERT_FILE": ca})
    sns = sns_client(srv.endpoint)
    secure, untrusted = tls_hook(leaf, key), tls_hook(other_leaf, other_key)
    try:
        assert secure.url.startswith("https://127.0.0.1:")
        topic = sns.create_topic(Name=unique_name("tls"))["TopicArn"]
        pending = sns.subscribe(TopicArn=topic, Protocol="https", Endpoint=secure.url)
        assert pending["SubscriptionArn"] == "pending confirmation"
        token = confirmation_request(secure, topic)["Token"]
        arn = sns.confirm_subscription(TopicArn=topic, Token=token)["SubscriptionArn"]
        sns.publish(TopicArn=topic, Message="over tls")
        [post] = wait_notifications(secure, 1)
        assert post.json()["Message"] == "over tls"
        assert post.headers["x-amz-sns-subscription-arn"] == arn
        other = sns.subscribe(TopicArn=topic, Protocol="https", Endpoint=untrusted.url,
                              ReturnSubscriptionArn=True)["SubscriptionArn"]
        time.sleep(1.5)
        assert untrusted.posts == [], "no request gets through a refused handshake"
        attributes = sns.get_subscription_attributes(SubscriptionArn=other)["Attributes"]
        assert attributes["PendingConfirmation"] == "true", attributes
    finally:
        secure.stop()
        untrusted.stop()
