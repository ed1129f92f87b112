"""Event bus archives and replays with boto3: an archive keeps the events of its bus that
its pattern matches; a replay puts a time window of them on a bus again, in order, marked
with `replay-name`, reaching only the rules it names; archives and replays outlive a
restart; bad input gets EventBridge's errors.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import datetime
import json
import time

import boto3
import pytest
from botocore.config import Config

import support

REGION = support.REGION
ACCOUNT = "000000000000"
BASE = datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)


def client(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 0}))


def bus_arn(name: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}"


def make_queue(sqs, prefix: str) -> tuple[str, str]:
    name = support.unique_name(prefix)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def drain(sqs, url: str, expect: int, timeout: float = 30.0, settle: float = 1.5) -> list[dict]:
    """Receives (and deletes) until `expect` messages came and nothing more arrives for
    `settle` seconds, or the time is up."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                   WaitTimeSeconds=0 if len(got) < expect else 1).get("Messages", [])
        if msgs:
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
            got.extend(msgs)
            quiet_since = None
        elif len(got) >= expect:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle:
                break
        else:
            time.sleep(0.05)
    return got


def put_numbered(events, bus: str, numbers, source: str = "shop") -> None:
    """Puts one event per number, its time BASE + n seconds, in batches of 10."""
    numbers = list(numbers)
    for i in range(0, len(numbers), 10):
        entries = [{
            "Source": source, "DetailType": "order", "EventBusName": bus,
            "Time": BASE + datetime.timedelta(seconds=n),
            "Detail": json.dumps({"n": n}),
        } for n in numbers[i:i + 10]]
        out = events.put_events(Entries=entries)
        assert out["FailedEntryCount"] == 0, out


def error(call, **kwargs) -> dict:
    """The `Error` of the EventBridge error `call(**kwargs)` gets."""
    return support.client_error(call, **kwargs).response["Error"]


def wait_replay(events, name: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        d = events.describe_replay(ReplayName=name)
        if d["State"] in ("COMPLETED", "CANCELLED", "FAILED") or time.monotonic() > deadline:
            return d
        time.sleep(0.1)


def queue_rule(events, bus: str, rule: str, pattern: dict, queue_arn: str) -> str:
    arn = events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(pattern))["RuleArn"]
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}])
    return arn


def test_an_archived_window_replays_to_another_bus_only_to_the_rules_named(server):
    events = client("events", server.endpoint)
    sqs = client("sqs", server.endpoint)
    source, dest = support.unique_name("arch-src"), support.unique_name("arch-dst")
    events.create_event_bus(Name=source)
    events.create_event_bus(Name=dest)
    archive = support.unique_name("arch")
    made = events.create_archive(ArchiveName=archive, EventSourceArn=bus_arn(source),
                                 EventPattern=json.dumps({"source": ["shop"]}),
                                 Description="orders", RetentionDays=7)
    assert made["State"] == "ENABLED"
    assert made["ArchiveArn"] == f"arn:aws:events:{REGION}:{ACCOUNT}:archive/{archive}"

    # A rule on the source bus sees the originals; its queue must not see replays.
    source_q, source_q_arn = make_queue(sqs, "arch-orig")
    queue_rule(events, source, "orig", {"source": ["shop"]}, source_q_arn)
    named_q, named_q_arn = make_queue(sqs, "arch-named")
    other_q, other_q_arn = make_queue(sqs, "arch-other")
    named = queue_rule(events, dest, "named", {"source": ["shop"]}, named_q_arn)
    queue_rule(events, dest, "not-named", {"source": ["shop"]}, other_q_arn)

    put_numbered(events, source, range(1000))
    put_numbered(events, source, range(50), source="elsewhere")  # not archived: the pattern
    described = events.describe_archive(ArchiveName=archive)
    assert described["EventCount"] == 1000
    assert described["SizeBytes"] > 1000 * 200
    assert described["EventPattern"] == json.dumps({"source": ["shop"]})
    assert described["RetentionDays"] == 7 and described["Description"] == "orders"
    assert [a["ArchiveName"] for a in events.list_archives(NamePrefix=archive)["Archives"]] == [archive]
    assert len(drain(sqs, source_q, 1000)) == 1000

    replay = support.unique_name("replay")
    started = events.start_replay(
        ReplayName=replay, EventSourceArn=made["ArchiveArn"],
        EventStartTime=BASE + datetime.timedelta(seconds=200),
        EventEndTime=BASE + datetime.timedelta(seconds=700),
        Destination={"Arn": bus_arn(dest), "FilterArns": [named]})
    assert started["State"] in ("STARTING", "RUNNING")
    done = wait_replay(events, replay)
    assert done["State"] == "COMPLETED", done
    assert done["Destination"] == {"Arn": bus_arn(dest), "FilterArns": [named]}
    assert done["EventLastReplayedTime"] == BASE + datetime.timedelta(seconds=699)
    assert "ReplayEndTime" in done

    got = drain(sqs, named_q, 500)
    bodies = [json.loads(m["Body"]) for m in got]
    numbers = sorted(b["detail"]["n"] for b in bodies)
    assert numbers == list(range(200, 700)), (len(numbers), numbers[:5], numbers[-5:])
    assert all(b["replay-name"] == replay for b in bodies)
    assert all(b["source"] == "shop" for b in bodies)
    assert drain(sqs, other_q, 0, timeout=2) == []
    assert drain(sqs, source_q, 0, timeout=1) == []
    # Replays are not archived again.
    assert events.describe_archive(ArchiveName=archive)["EventCount"] == 1000

    listed = events.list_replays(NamePrefix=replay)["Replays"]
    assert [(r["ReplayName"], r["State"]) for r in listed] == [(replay, "COMPLETED")]
    with pytest.raises(events.exceptions.IllegalStatusException):
        events.cancel_replay(ReplayName=replay)
    with pytest.raises(events.exceptions.ResourceAlreadyExistsException):
        events.start_replay(ReplayName=replay, EventSourceArn=made["ArchiveArn"],
                            EventStartTime=BASE, EventEndTime=BASE + datetime.timedelta(seconds=1),
                            Destination={"Arn": bus_arn(dest)})

    # Without FilterArns every rule of the bus gets the replay.
    everyone = support.unique_name("replay-all")
    events.start_replay(ReplayName=everyone, EventSourceArn=made["ArchiveArn"],
                        EventStartTime=BASE, EventEndTime=BASE + datetime.timedelta(seconds=10),
                        Destination={"Arn": bus_arn(dest)})
    assert wait_replay(events, everyone)["State"] == "COMPLETED"
    for url in (named_q, other_q):
        got = drain(sqs, url, 10)
        assert sorted(json.loads(m["Body"])["detail"]["n"] for m in got) == list(range(10))

    events.update_archive(ArchiveName=archive, RetentionDays=30, Description="all orders")
    after = events.describe_archive(ArchiveName=archive)
    assert (after["RetentionDays"], after["Description"]) == (30, "all orders")
    events.delete_archive(ArchiveName=archive)
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_archive(ArchiveName=archive)


def test_a_replay_can_be_cancelled_and_bad_input_is_refused(server):
    events = client("events", server.endpoint)
    bus = support.unique_name("arch-bad")
    events.create_event_bus(Name=bus)
    archive = support.unique_name("arch-bad")
    arn = events.create_archive(ArchiveName=archive, EventSourceArn=bus_arn(bus))["ArchiveArn"]
    with pytest.raises(events.exceptions.ResourceAlreadyExistsException):
        events.create_archive(ArchiveName=archive, EventSourceArn=bus_arn(bus))
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.create_archive(ArchiveName=support.unique_name("a"), EventSourceArn=bus_arn("no-such-bus"))
    with pytest.raises(events.exceptions.InvalidEventPatternException):
        events.create_archive(ArchiveName=support.unique_name("a"), EventSourceArn=bus_arn(bus),
                              EventPattern='{"source": "not-a-list"}')
    e = error(events.create_archive, ArchiveName="bad/name", EventSourceArn=bus_arn(bus))
    assert e["Code"] == "ValidationException"
    e = error(events.start_replay, ReplayName=support.unique_name("r"),
                             EventSourceArn=arn, EventStartTime=BASE + datetime.timedelta(seconds=5),
                             EventEndTime=BASE, Destination={"Arn": bus_arn(bus)})
    assert e["Code"] == "ValidationException" and "EventStartTime" in e["Message"]
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.start_replay(ReplayName=support.unique_name("r"),
                            EventSourceArn=arn.replace(archive, "no-such-archive"),
                            EventStartTime=BASE, EventEndTime=BASE + datetime.timedelta(seconds=5),
                            Destination={"Arn": bus_arn(bus)})
    e = error(events.start_replay, ReplayName=support.unique_name("r"),
                             EventSourceArn=arn, EventStartTime=BASE,
                             EventEndTime=BASE + datetime.timedelta(seconds=5),
                             Destination={"Arn": bus_arn(bus),
                                          "FilterArns": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{bus}/none"]})
    assert e["Code"] == "ValidationException"
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_replay(ReplayName="no-such-replay")

    # A replay of a large window is cancelled while it runs (or has just finished).
    put_numbered(events, bus, range(3000))
    replay = support.unique_name("cancel")
    events.start_replay(ReplayName=replay, EventSourceArn=arn, EventStartTime=BASE,
                        EventEndTime=BASE + datetime.timedelta(days=1),
                        Destination={"Arn": bus_arn(bus)})
    try:
        assert events.cancel_replay(ReplayName=replay)["State"] == "CANCELLING"
        assert wait_replay(events, replay)["State"] == "CANCELLED"
    except events.exceptions.IllegalStatusException:
        assert wait_replay(events, replay)["State"] == "COMPLETED"


def test_archives_and_replays_outlive_a_restart(server_factory):
    srv = server_factory()
    events = client("events", srv.endpoint)
    sqs = client("sqs", srv.endpoint)
    archive = "kept"
    arn = events.create_archive(ArchiveName=archive, EventSourceArn=bus_arn("default"))["ArchiveArn"]
    put_numbered(events, "default", range(100))
    srv.kill()
    srv.start()
    assert events.describe_archive(ArchiveName=archive)["EventCount"] == 100
    put_numbered(events, "default", range(100, 120))
    url, q_arn = make_queue(sqs, "arch-restart")
    queue_rule(events, "default", "replayed-only",
               {"source": ["shop"], "replay-name": [{"exists": True}]}, q_arn)
    events.start_replay(ReplayName="after-restart", EventSourceArn=arn, EventStartTime=BASE,
                        EventEndTime=BASE + datetime.timedelta(seconds=1000),
                        Destination={"Arn": bus_arn("default")})
    assert wait_replay(events, "after-restart")["State"] == "COMPLETED"
    got = drain(sqs, url, 120)
    assert sorted(json.loads(m["Body"])["detail"]["n"] for m in got) == list(range(120))
    srv.stop()
