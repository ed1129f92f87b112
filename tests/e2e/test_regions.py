"""Regions as AWS has them: a request acts in the region of its SigV4 credential scope
(an unsigned one in the server's `--region`); functions and queues live in the region they
were made in, their ARNs carry it, and a client of another region does not see them. The
same name can be used in two regions for two different resources.

Against the session server (every resource has a unique name); the test of the home
region across restarts starts a server of its own.
"""

from __future__ import annotations

import json
import subprocess
import time

import boto3
import pytest
from botocore.config import Config

import support
from botocore.exceptions import ClientError

from support import ACCOUNT, PY_RUNTIME, ROLE, SHOAL_BIN, py_zip

WEST = "us-west-2"
EU = "eu-west-1"

SOURCE = """
import os

def handler(event, context):
    return {
        "region": os.environ["AWS_REGION"],
        "default_region": os.environ["AWS_DEFAULT_REGION"],
        "flavour": os.environ.get("FLAVOUR"),
        "arn": context.invoked_function_arn,
    }
"""


def client(service: str, endpoint: str, region: str):
    return boto3.client(
        service, endpoint_url=endpoint, region_name=region,
        aws_access_key_id="x", aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 0}, read_timeout=60, connect_timeout=5))


@pytest.fixture(scope="module")
def lams(server):
    """Lambda clients of the session server, by region."""
    return {r: client("lambda", server.endpoint, r) for r in (support.REGION, WEST, EU)}


@pytest.fixture(scope="module")
def sqss(server):
    """SQS clients of the session server, by region."""
    return {r: client("sqs", server.endpoint, r) for r in (support.REGION, WEST, EU)}


def code(call, *args, **kwargs) -> str:
    """The error code of the ClientError call(...) raises; fails if it succeeds."""
    try:
        result = call(*args, **kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError(f"{call.__name__} succeeded, expected an error: {result}")


def create(lam, name: str, flavour: str) -> dict:
    return lam.create_function(
        FunctionName=name, Runtime=PY_RUNTIME, Handler="app.handler", Role=ROLE,
        Code={"ZipFile": py_zip(SOURCE)}, Environment={"Variables": {"FLAVOUR": flavour}})


def invoke(lam, name: str) -> dict:
    out = lam.invoke(FunctionName=name, Payload=b"{}")
    assert "FunctionError" not in out, out
    return json.loads(out["Payload"].read())


def test_the_same_name_is_two_functions_in_two_regions(lams):
    east, west, eu = lams[support.REGION], lams[WEST], lams[EU]
    name = support.unique_name("region")
    try:
        made_east = create(east, name, "east")
        made_west = create(west, name, "west")
        assert made_east["FunctionArn"] == f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"
        assert made_west["FunctionArn"] == f"arn:aws:lambda:{WEST}:{ACCOUNT}:function:{name}"
        # A second one in the same region is refused, in either.
        for lam in (east, west):
            assert code(create, lam, name, "again") == "ResourceConflictException"

        # Each region runs its own, in that region.
        got_east, got_west = invoke(east, name), invoke(west, name)
        assert got_east == {"region": "us-east-1", "default_region": "us-east-1",
                            "flavour": "east", "arn": made_east["FunctionArn"]}
        assert got_west == {"region": WEST, "default_region": WEST, "flavour": "west",
                            "arn": made_west["FunctionArn"]}

        # A client of a third region sees neither.
        assert code(eu.get_function, FunctionName=name) == \
            "ResourceNotFoundException"
        assert code(eu.invoke, FunctionName=name) == "ResourceNotFoundException"
        assert name not in [f["FunctionName"] for f in list_all(eu)]
        # Each region lists its own, with its ARN.
        west_listed = {f["FunctionName"]: f for f in list_all(west)}
        assert west_listed[name]["FunctionArn"] == made_west["FunctionArn"]
        assert west_listed[name]["Environment"]["Variables"]["FLAVOUR"] == "west"
        assert {f["FunctionName"]: f for f in list_all(east)}[name]["FunctionArn"] == \
            made_east["FunctionArn"]

        # An ARN names its region: another region's ARN is refused, its own works.
        error = code(east.get_function, FunctionName=made_west["FunctionArn"])
        assert error == "InvalidParameterValueException", error
        assert west.get_function(FunctionName=made_west["FunctionArn"])[
            "Configuration"]["FunctionArn"] == made_west["FunctionArn"]

        # Versions and aliases are the region's too.
        version = west.publish_version(FunctionName=name)
        assert version["FunctionArn"] == f"{made_west['FunctionArn']}:1"
        alias = west.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        assert alias["AliasArn"] == f"{made_west['FunctionArn']}:live"
        assert code(east.get_alias, FunctionName=name, Name="live") == \
            "ResourceNotFoundException"

        # Deleting in one region leaves the other's.
        west.delete_function(FunctionName=name)
        assert code(west.get_function, FunctionName=name) == \
            "ResourceNotFoundException"
        assert invoke(east, name)["flavour"] == "east"
    finally:
        for lam in (east, west):
            try:
                lam.delete_function(FunctionName=name)
            except Exception:
                pass


def list_all(lam) -> list[dict]:
    out, marker = [], None
    while True:
        page = lam.list_functions(**({"Marker": marker} if marker else {}), MaxItems=50)
        out += page["Functions"]
        marker = page.get("NextMarker")
        if not marker:
            return out


def test_the_same_name_is_two_queues_in_two_regions(sqss):
    east, west, eu = sqss[support.REGION], sqss[WEST], sqss[EU]
    name = support.unique_name("regionq")
    east_url = east.create_queue(QueueName=name)["QueueUrl"]
    west_url = west.create_queue(QueueName=name)["QueueUrl"]
    try:
        west.send_message(QueueUrl=west_url, MessageBody="for the west")
        # The east queue of that name is another queue: empty.
        assert not east.receive_message(QueueUrl=east_url, WaitTimeSeconds=0).get("Messages")
        got = west.receive_message(QueueUrl=west_url, WaitTimeSeconds=0)["Messages"]
        assert [m["Body"] for m in got] == ["for the west"]

        def arn_of(sqs, url):
            return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"]["QueueArn"]

        assert arn_of(east, east_url) == f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"
        assert arn_of(west, west_url) == f"arn:aws:sqs:{WEST}:{ACCOUNT}:{name}"
        # Another region does not know it.
        error = code(eu.get_queue_url, QueueName=name)
        assert error in ("AWS.SimpleQueueService.NonExistentQueue",
                                 "QueueDoesNotExist"), error
        assert all(name not in u for u in eu.list_queues(QueueNamePrefix=name).get(
            "QueueUrls", []))
        assert west.list_queues(QueueNamePrefix=name)["QueueUrls"] == [west_url]
        assert east.list_queues(QueueNamePrefix=name)["QueueUrls"] == [east_url]
        # A redrive policy names its dead-letter queue by ARN, in that queue's region.
        dlq = support.unique_name("regiondlq")
        west_dlq = west.create_queue(QueueName=dlq)["QueueUrl"]
        policy = json.dumps({"deadLetterTargetArn": arn_of(west, west_dlq),
                             "maxReceiveCount": 1})
        west.set_queue_attributes(QueueUrl=west_url, Attributes={"RedrivePolicy": policy})
        # The same ARN does not exist for the east: it names a west queue, which exists.
        east.set_queue_attributes(QueueUrl=east_url, Attributes={"RedrivePolicy": policy})
        missing = json.dumps({"deadLetterTargetArn": f"arn:aws:sqs:{EU}:{ACCOUNT}:{dlq}",
                              "maxReceiveCount": 1})
        assert code(west.set_queue_attributes, QueueUrl=west_url,
                            Attributes={"RedrivePolicy": missing}) in (
            "InvalidAttributeValue", "InvalidParameterValue")
        west.delete_queue(QueueUrl=west_dlq)
        # Deleting in one region leaves the other's.
        west.delete_queue(QueueUrl=west_url)
        east.send_message(QueueUrl=east_url, MessageBody="still here")
        assert east.receive_message(QueueUrl=east_url)["Messages"][0]["Body"] == "still here"
    finally:
        for sqs, url in ((east, east_url), (west, west_url)):
            try:
                sqs.delete_queue(QueueUrl=url)
            except Exception:
                pass


def test_a_destination_is_found_in_the_region_its_arn_names(lams, sqss):
    west, west_sqs, east_sqs = lams[WEST], sqss[WEST], sqss[support.REGION]
    name = support.unique_name("regiondest")
    queue = support.unique_name("regiondestq")
    west_url = west_sqs.create_queue(QueueName=queue)["QueueUrl"]
    east_url = east_sqs.create_queue(QueueName=queue)["QueueUrl"]
    try:
        made = create(west, name, "west")
        west.put_function_event_invoke_config(
            FunctionName=name,
            DestinationConfig={"OnSuccess": {
                "Destination": f"arn:aws:sqs:{WEST}:{ACCOUNT}:{queue}"}})
        # A destination that does not exist in the region its ARN names is refused.
        error = code(
            west.put_function_event_invoke_config, FunctionName=name,
            DestinationConfig={"OnSuccess": {
                "Destination": f"arn:aws:sqs:{EU}:{ACCOUNT}:{queue}"}})
        assert error == "InvalidParameterValueException", error
        assert west.invoke(FunctionName=name, InvocationType="Event",
                           Payload=b'{"k": 1}')["StatusCode"] == 202
        deadline, got = time.time() + 20, []
        while not got and time.time() < deadline:
            got = west_sqs.receive_message(QueueUrl=west_url, WaitTimeSeconds=1).get(
                "Messages", [])
        assert got, "no destination record arrived in the west queue"
        record = json.loads(got[0]["Body"])
        assert record["requestContext"]["functionArn"] == f"{made['FunctionArn']}:$LATEST"
        assert record["responsePayload"]["region"] == WEST
        assert not east_sqs.receive_message(QueueUrl=east_url, WaitTimeSeconds=0).get(
            "Messages")
    finally:
        try:
            west.delete_function(FunctionName=name)
        except Exception:
            pass
        for sqs, url in ((west_sqs, west_url), (east_sqs, east_url)):
            sqs.delete_queue(QueueUrl=url)


def test_the_cli_acts_in_the_region_it_is_given(server, lams):
    west = lams[WEST]
    name = support.unique_name("regioncli")
    create(west, name, "west")
    try:
        def shoal(*args):
            return subprocess.run([str(SHOAL_BIN), *args, "--endpoint", server.endpoint],
                                  capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)

        listed = shoal("ls", "--region", WEST)
        assert listed.returncode == 0, listed.stderr
        assert name in listed.stdout
        assert name not in shoal("ls", "--region", EU).stdout
        invoked = shoal("invoke", name, "--region", WEST)
        assert invoked.returncode == 0, invoked.stderr
        assert '"flavour": "west"' in invoked.stdout or '"flavour":"west"' in invoked.stdout
        missing = shoal("invoke", name, "--region", EU)
        assert missing.returncode != 0
    finally:
        west.delete_function(FunctionName=name)


def test_the_home_region_is_kept_when_the_server_starts_with_another(own_server):
    srv = own_server
    east = client("lambda", srv.endpoint, "us-east-1")
    name = support.unique_name("home")
    made = create(east, name, "home")
    srv.extra_args += ["--region", EU]
    srv.restart()
    east = client("lambda", srv.endpoint, "us-east-1")
    # The function stays where it was made, with its ARN.
    assert east.get_function(FunctionName=name)["Configuration"]["FunctionArn"] == \
        made["FunctionArn"]
    assert invoke(east, name)["region"] == "us-east-1"
    eu = client("lambda", srv.endpoint, EU)
    assert code(eu.get_function, FunctionName=name) == \
        "ResourceNotFoundException"
    # Unsigned requests act in --region: the function is not there.
    status = support.http(srv.endpoint, "GET", f"/2015-03-31/functions/{name}")
    assert status.status == 404, status
    # A function made in the new --region is its own.
    made_eu = create(eu, name, "eu")
    assert made_eu["FunctionArn"] == f"arn:aws:lambda:{EU}:{ACCOUNT}:function:{name}"
    assert invoke(eu, name) == {"region": EU, "default_region": EU, "flavour": "eu",
                                "arn": made_eu["FunctionArn"]}
    srv.restart()
    assert invoke(client("lambda", srv.endpoint, EU), name)["flavour"] == "eu"
    assert invoke(client("lambda", srv.endpoint, "us-east-1"), name)["flavour"] == "home"
