"""The event bus (EventBridge) with boto3 and the AWS CLI: buses, rules, targets and tags;
PutEvents routed by pattern to queues and functions, with Input, InputPath and
InputTransformer; a target that cannot take its events sends them to its dead-letter
queue; events accepted before a `kill -9` are all delivered after it; and bad input.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import boto3
import pytest
from botocore.config import Config

import support
from support import py_zip

REGION = support.REGION
ACCOUNT = "000000000000"


def client(service: str, endpoint: str, **config):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 0}, **config))


@pytest.fixture(scope="module")
def events(server):
    return client("events", server.endpoint)


@pytest.fixture(scope="module")
def events_nv(server):
    return client("events", server.endpoint, parameter_validation=False)


@pytest.fixture(scope="module")
def sqs(server):
    return client("sqs", server.endpoint)


@pytest.fixture
def queue(sqs):
    made = []

    def create(prefix="bus"):
        name = support.unique_name(prefix)
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        made.append(url)
        return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
    yield create
    for url in made:
        try:
            sqs.delete_queue(QueueUrl=url)
        except Exception:
            pass


def drain(sqs, url: str, expect: int, timeout: float = 15.0) -> list[dict]:
    """Receives until `expect` messages came (or the time is up), deleting them."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < expect and time.monotonic() < deadline:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                   MessageAttributeNames=["All"]).get("Messages", [])
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        got.extend(msgs)
    return got


def entry(source: str, detail_type: str, detail: dict, bus: str | None = None) -> dict:
    e = {"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail)}
    if bus:
        e["EventBusName"] = bus
    return e


# --------------------------------------------------------------------------- configuration


def test_buses_rules_targets_and_tags(events, queue):
    name = support.unique_name("bus")
    arn = events.create_event_bus(Name=name, Tags=[{"Key": "team", "Value": "core"}])["EventBusArn"]
    assert arn == f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}"
    described = events.describe_event_bus(Name=name)
    assert described["Arn"] == arn and "CreationTime" in described
    names = [b["Name"] for b in events.list_event_buses()["EventBuses"]]
    assert "default" in names and name in names
    e = support.client_error(events.create_event_bus, Name=name)
    assert e.response["Error"]["Code"] == "ResourceAlreadyExistsException"

    pattern = json.dumps({"source": ["shop"], "detail-type": ["OrderPlaced"]})
    rule_arn = events.put_rule(Name="orders", EventBusName=name, EventPattern=pattern,
                               Description="new orders")["RuleArn"]
    assert rule_arn == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}/orders"
    rule = events.describe_rule(Name="orders", EventBusName=name)
    assert (rule["State"], rule["EventPattern"], rule["EventBusName"]) == ("ENABLED", pattern, name)
    events.disable_rule(Name="orders", EventBusName=name)
    assert events.describe_rule(Name="orders", EventBusName=name)["State"] == "DISABLED"
    events.enable_rule(Name="orders", EventBusName=name)
    assert [r["Name"] for r in events.list_rules(EventBusName=name, NamePrefix="ord")["Rules"]] == ["orders"]

    url, qarn = queue()
    out = events.put_targets(Rule="orders", EventBusName=name, Targets=[
        {"Id": "q", "Arn": qarn},
        {"Id": "bad", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:no-such-queue"},
    ])
    assert out["FailedEntryCount"] == 1 and out["FailedEntries"][0]["TargetId"] == "bad"
    assert [t["Id"] for t in events.list_targets_by_rule(Rule="orders", EventBusName=name)["Targets"]] == ["q"]
    assert events.list_rule_names_by_target(TargetArn=qarn, EventBusName=name)["RuleNames"] == ["orders"]
    e = support.client_error(events.delete_rule, Name="orders", EventBusName=name)
    assert e.response["Error"]["Code"] == "ValidationException"

    events.tag_resource(ResourceARN=rule_arn, Tags=[{"Key": "k", "Value": "v"}])
    assert events.list_tags_for_resource(ResourceARN=rule_arn)["Tags"] == [{"Key": "k", "Value": "v"}]
    events.untag_resource(ResourceARN=rule_arn, TagKeys=["k"])
    assert events.list_tags_for_resource(ResourceARN=rule_arn)["Tags"] == []
    assert events.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "team", "Value": "core"}]

    events.remove_targets(Rule="orders", EventBusName=name, Ids=["q"])
    events.delete_rule(Name="orders", EventBusName=name)
    e = support.client_error(events.describe_rule, Name="orders", EventBusName=name)
    assert e.response["Error"]["Code"] == "ResourceNotFoundException"
    events.delete_event_bus(Name=name)
    e = support.client_error(events.describe_event_bus, Name=name)
    assert e.response["Error"]["Code"] == "ResourceNotFoundException"


# --------------------------------------------------------------------------- routing


def test_events_reach_exactly_the_targets_whose_patterns_match(events, sqs, queue):
    bus = support.unique_name("route")
    events.create_event_bus(Name=bus)
    rules = {
        "placed": {"source": ["shop"], "detail-type": ["OrderPlaced"]},
        "big": {"source": ["shop"], "detail": {"total": [{"numeric": [">=", 100]}]}},
        "eu": {"detail": {"country": [{"prefix": "EU-"}]}},
        "not-test": {"source": [{"anything-but": ["test"]}], "detail": {"flag": [{"exists": True}]}},
    }
    queues = {}
    for rule, pattern in rules.items():
        url, qarn = queue(rule)
        queues[rule] = url
        events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": qarn}])
    sent = [
        ("shop", "OrderPlaced", {"total": 50, "country": "EU-FR"}),
        ("shop", "OrderPlaced", {"total": 150}),
        ("shop", "OrderShipped", {"total": 500, "flag": 1}),
        ("test", "Ping", {"flag": True, "country": "EU-DE"}),
        ("other", "Thing", {"country": "US"}),
    ]
    expected = {rule: [] for rule in rules}
    ids = []
    for i in range(0, len(sent), 2):
        batch = [entry(s, d, {**detail, "n": i + k}, bus) for k, (s, d, detail) in enumerate(sent[i:i + 2])]
        out = events.put_events(Entries=batch)
        assert out["FailedEntryCount"] == 0, out
        ids.extend(e["EventId"] for e in out["Entries"])
    for n, (source, dtype, detail) in enumerate(sent):
        event = {"source": source, "detail-type": dtype, "detail": detail}
        for rule, pattern in rules.items():
            ok = events.test_event_pattern(EventPattern=json.dumps(pattern), Event=json.dumps({
                "id": "x", "account": ACCOUNT, "time": "2024-01-01T00:00:00Z", "region": REGION,
                "resources": [], **event}))["Result"]
            if ok:
                expected[rule].append(n)
    assert expected == {"placed": [0, 1], "big": [1, 2], "eu": [0, 3], "not-test": [2]}
    for rule, url in queues.items():
        got = drain(sqs, url, len(expected[rule]))
        bodies = [json.loads(m["Body"]) for m in got]
        assert sorted(b["detail"]["n"] for b in bodies) == expected[rule], rule
        for b in bodies:
            assert b["id"] in ids and b["account"] == ACCOUNT and b["region"] == REGION
            assert b["version"] == "0" and b["time"].endswith("Z")
        assert drain(sqs, url, 1, timeout=1.5) == [], f"{rule} got more than it matched"


def test_inputs_paths_and_transformers_shape_what_targets_get(events, sqs, queue):
    pattern = json.dumps({"source": [support.unique_name("shape")]})
    source = json.loads(pattern)["source"][0]
    (u1, a1), (u2, a2), (u3, a3) = queue("input"), queue("path"), queue("tx")
    events.put_rule(Name=source, EventPattern=pattern)
    events.put_targets(Rule=source, Targets=[
        {"Id": "constant", "Arn": a1, "Input": '{"fixed": true}'},
        {"Id": "path", "Arn": a2, "InputPath": "$.detail.order"},
        {"Id": "tx", "Arn": a3, "InputTransformer": {
            "InputPathsMap": {"id": "$.detail.order.id", "items": "$.detail.order.items",
                              "src": "$.source"},
            "InputTemplate": '{"order": <id>, "text": "order <id> from <src>", "items": <items>, '
                             '"rule": "<aws.events.rule-name>"}'}},
    ])
    out = events.put_events(Entries=[entry(source, "Order", {"order": {"id": "o-1", "items": [1, 2]}})])
    assert out["FailedEntryCount"] == 0
    assert json.loads(drain(sqs, u1, 1)[0]["Body"]) == {"fixed": True}
    assert json.loads(drain(sqs, u2, 1)[0]["Body"]) == {"id": "o-1", "items": [1, 2]}
    assert json.loads(drain(sqs, u3, 1)[0]["Body"]) == {
        "order": "o-1", "text": f"order o-1 from {source}", "items": [1, 2], "rule": source}
    events.remove_targets(Rule=source, Ids=["constant", "path", "tx"])
    events.delete_rule(Name=source)


def test_a_function_target_is_invoked_with_the_event_once_its_policy_allows_the_rule(
        events, sqs, queue, make_fn, lam, server):
    fn = make_fn(py_zip('''
import json
def handler(event, context):
    print("got", json.dumps(event))
    return {}
'''))
    source = support.unique_name("fn")
    rule_arn = events.put_rule(Name=source, EventPattern=json.dumps({"source": [source]}))["RuleArn"]
    dlq_url, dlq_arn = queue("fn-dlq")
    events.put_targets(Rule=source, Targets=[{"Id": "f", "Arn": fn["FunctionArn"],
                                              "DeadLetterConfig": {"Arn": dlq_arn}}])
    # Without a permission for events.amazonaws.com the function is not invoked: the
    # event goes to the dead-letter queue as EventBridge's NO_PERMISSIONS.
    refused = events.put_events(Entries=[entry(source, "Refused", {"who": "nobody"})])
    [dead] = drain(sqs, dlq_url, 1)
    assert json.loads(dead["Body"])["id"] == refused["Entries"][0]["EventId"]
    assert dead["MessageAttributes"]["ERROR_CODE"]["StringValue"] == "NO_PERMISSIONS", dead
    lam.add_permission(FunctionName=fn["FunctionName"], StatementId="from-the-rule",
                       Action="lambda:InvokeFunction", Principal="events.amazonaws.com",
                       SourceArn=rule_arn)
    out = events.put_events(Entries=[entry(source, "Hello", {"who": "bus"})])
    event_id = out["Entries"][0]["EventId"]
    logs = support.wait_for_logs(server.endpoint, fn["FunctionName"],
                                 lambda evs: any("got " in e["message"] for e in evs), timeout=20)
    line = next(e["message"] for e in logs if "got " in e["message"])
    got = json.loads(line.split("got ", 1)[1])
    assert got["id"] == event_id and got["detail"] == {"who": "bus"} and got["source"] == source
    events.remove_targets(Rule=source, Ids=["f"])
    events.delete_rule(Name=source)


def test_a_rule_forwards_events_to_another_bus(events, sqs, queue):
    source = support.unique_name("fwd")
    second = support.unique_name("second")
    second_arn = events.create_event_bus(Name=second)["EventBusArn"]
    url, qarn = queue("fwd")
    events.put_rule(Name=source, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=source, Targets=[{"Id": "bus", "Arn": second_arn}])
    events.put_rule(Name="sink", EventBusName=second,
                    EventPattern=json.dumps({"detail": {"keep": [True]}}))
    events.put_targets(Rule="sink", EventBusName=second, Targets=[{"Id": "q", "Arn": qarn}])
    out = events.put_events(Entries=[entry(source, "Fwd", {"keep": True}),
                                     entry(source, "Fwd", {"keep": False})])
    [got] = drain(sqs, url, 1)
    body = json.loads(got["Body"])
    assert body["id"] == out["Entries"][0]["EventId"] and body["detail"] == {"keep": True}
    assert drain(sqs, url, 1, timeout=1.5) == []
    missing = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/nosuchbus"
    failed = events.put_targets(Rule=source, Targets=[{"Id": "gone", "Arn": missing}])
    assert failed["FailedEntryCount"] == 1
    events.remove_targets(Rule=source, Ids=["bus"])
    events.delete_rule(Name=source)
    events.remove_targets(Rule="sink", EventBusName=second, Ids=["q"])
    events.delete_rule(Name="sink", EventBusName=second)
    events.delete_event_bus(Name=second)


def test_a_target_that_cannot_take_events_sends_them_to_its_dead_letter_queue(events, sqs, queue):
    source = support.unique_name("dlq")
    gone_url, gone_arn = queue("gone")
    dlq_url, dlq_arn = queue("dead")
    events.put_rule(Name=source, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=source, Targets=[{
        "Id": "gone", "Arn": gone_arn, "DeadLetterConfig": {"Arn": dlq_arn},
        "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60}}])
    sqs.delete_queue(QueueUrl=gone_url)
    out = events.put_events(Entries=[entry(source, "Lost", {"k": 1})])
    [dead] = drain(sqs, dlq_url, 1)
    body = json.loads(dead["Body"])
    assert body["id"] == out["Entries"][0]["EventId"] and body["detail"] == {"k": 1}
    attrs = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attrs["RULE_ARN"] == f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{source}"
    assert attrs["TARGET_ARN"] == gone_arn
    assert attrs["ERROR_CODE"] == "RESOURCE_NOT_FOUND" and attrs["ERROR_MESSAGE"]
    events.remove_targets(Rule=source, Ids=["gone"])
    events.delete_rule(Name=source)


# --------------------------------------------------------------------------- durability


def test_events_accepted_before_a_kill_9_are_all_delivered(server_factory):
    srv = server_factory()
    ev, q = client("events", srv.endpoint), client("sqs", srv.endpoint)
    url = q.create_queue(QueueName="sink")["QueueUrl"]
    ev.put_rule(Name="all", EventPattern=json.dumps({"source": ["load"]}))
    ev.put_targets(Rule="all", Targets=[{"Id": "q", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:sink"}])
    accepted: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def send() -> None:
        n = 0
        while not stop.is_set():
            try:
                out = ev.put_events(Entries=[entry("load", "Tick", {"n": n + k}) for k in range(10)])
            except Exception:
                return
            with lock:
                accepted.update(e["EventId"] for e in out["Entries"] if "EventId" in e)
            n += 10

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    support.wait_for(lambda: len(accepted), lambda n: n >= 500, timeout=60, what="500 accepted")
    srv.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    support.started(srv)
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while not accepted <= seen and time.monotonic() < deadline:
        for m in q.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                   VisibilityTimeout=300).get("Messages", []):
            seen.add(json.loads(m["Body"])["id"])
    lost = accepted - seen
    print(f"event bus kill -9: {len(accepted)} events accepted, {len(seen)} delivered, {len(lost)} lost")
    assert not lost, f"accepted events lost: {sorted(lost)[:10]}"


# --------------------------------------------------------------------------- bad input


def test_bad_input_gets_eventbridges_errors(events, events_nv, server):
    def code(call, **kwargs):
        return support.client_error(call, **kwargs).response["Error"]["Code"]

    for pattern in ["not json", "{}", '{"source": "shop"}', '{"source": [{"prefix": 1}]}',
                    '{"detail": {"n": [{"numeric": [">", "x"]}]}}']:
        assert code(events.put_rule, Name="bad", EventPattern=pattern) == "InvalidEventPatternException", pattern
        assert code(events.test_event_pattern, EventPattern=pattern,
                    Event='{"id":"1","account":"1","source":"s","time":"t","region":"r","detail-type":"d"}'
                    ) == "InvalidEventPatternException", pattern
    assert code(events.put_rule, Name="bad") == "ValidationException"
    assert code(events.put_rule, Name="sched", ScheduleExpression="rate(1 fortnight)") == "ValidationException"
    assert code(events_nv.put_rule, Name="bad name!", EventPattern='{"source":["x"]}') == "ValidationException"
    assert code(events.put_rule, Name="x", EventBusName="nosuchbus",
                EventPattern='{"source":["x"]}') == "ResourceNotFoundException"
    assert code(events.put_targets, Rule="nosuchrule", Targets=[{"Id": "a", "Arn": "arn:aws:sqs:us-east-1:000000000000:q"}]) == "ResourceNotFoundException"
    events.put_rule(Name="tgt-checks", EventPattern='{"source":["x"]}')
    out = events_nv.put_targets(Rule="tgt-checks", Targets=[
        {"Id": "k", "Arn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/s"},
        {"Id": "two", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:q", "Input": "{}", "InputPath": "$"},
        {"Id": "tx", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:q", "InputTransformer": {"InputTemplate": ""}},
    ])
    assert out["FailedEntryCount"] == 3, out
    assert "stream" in out["FailedEntries"][0]["ErrorMessage"]
    events.delete_rule(Name="tgt-checks")

    out = events.put_events(Entries=[
        {"Source": "s", "DetailType": "d"},
        {"Source": "s", "DetailType": "d", "Detail": "not json"},
        {"Source": "s", "DetailType": "d", "Detail": "{}", "EventBusName": "nosuchbus"},
        {"Source": "aws.ec2", "DetailType": "d", "Detail": "{}"},
        {"Source": "s", "DetailType": "d", "Detail": "{}"},
    ])
    assert out["FailedEntryCount"] == 4
    assert [e.get("ErrorCode") for e in out["Entries"]] == [
        "InvalidArgument", "MalformedDetail", "NotFoundException",
        "NotAuthorizedForSourceException", None]
    assert code(events_nv.put_events, Entries=[entry("s", "d", {})] * 11) == "ValidationException"
    big = {"Source": "s", "DetailType": "d", "Detail": json.dumps({"x": "y" * (600 * 1024)})}
    assert code(events_nv.put_events, Entries=[big, big]) == "ValidationException"
    assert code(events.delete_event_bus, Name="default") == "ValidationException"
    # The AWS CLI speaks the same.
    from conftest import aws_env
    out = subprocess.run(["aws", "events", "list-event-buses", "--endpoint-url", server.endpoint,
                          "--region", REGION, "--output", "json"], capture_output=True, text=True,
                         timeout=120, env=aws_env(), stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert "default" in [b["Name"] for b in json.loads(out.stdout)["EventBuses"]]


# --------------------------------------------------------------------------- schedules


def test_scheduled_rules_fire_on_time_and_a_restart_neither_loses_nor_repeats(tmp_path):
    # Schedule time runs 60 times faster: a minute is a second.
    srv = support.started(support.ShoalServer(
        data_dir=tmp_path / "data", log_dir=tmp_path / "logs",
        extra_env={"SHOAL_SCHEDULE_SPEEDUP": "60"}))
    try:
        ev, q = client("events", srv.endpoint), client("sqs", srv.endpoint)
        rate_url = q.create_queue(QueueName="rate")["QueueUrl"]
        cron_url = q.create_queue(QueueName="cron")["QueueUrl"]
        rate_arn = ev.put_rule(Name="every-minute", ScheduleExpression="rate(1 minute)")["RuleArn"]
        ev.put_targets(Rule="every-minute", Targets=[{"Id": "q", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:rate"}])
        ev.put_rule(Name="even-minutes", ScheduleExpression="cron(0/2 * * * ? *)")
        ev.put_targets(Rule="even-minutes", Targets=[{"Id": "q", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:cron"}])
        assert ev.describe_rule(Name="every-minute")["ScheduleExpression"] == "rate(1 minute)"

        def times(url: str, expect: int, timeout: float, arn: str | None = None) -> list[str]:
            got = drain(q, url, expect, timeout=timeout)
            bodies = [json.loads(m["Body"]) for m in got]
            for b in bodies:
                assert b["detail-type"] == "Scheduled Event" and b["source"] == "aws.events"
                assert b["detail"] == {}
                assert arn is None or b["resources"] == [arn]
            return [b["time"] + " " + b["id"][:8] for b in bodies]

        before = times(rate_url, 3, timeout=10, arn=rate_arn)
        assert len(before) >= 3
        crons = times(cron_url, 2, timeout=10)
        assert len(crons) >= 2
        for t in crons:  # cron(0/2 ...) fires on even minutes only, at second 0
            assert int(t[14:16]) % 2 == 0 and t[17:19] == "00", crons

        # kill -9, three schedule minutes down, then back.
        srv.kill()
        time.sleep(3.2)
        support.started(srv)
        after = times(rate_url, 4, timeout=10, arn=rate_arn)
        stamps = sorted(set(t.split()[0] for t in before + after))
        assert len(stamps) == len(before + after), f"a firing was repeated: {before} {after}"
        secs = [crate_seconds(t) for t in stamps]
        gaps = [b - a for a, b in zip(secs, secs[1:])]
        assert all(g % 60 == 0 for g in gaps), gaps
        assert max(gaps) >= 180, f"the missed minutes fired once, not one by one: {gaps}"
        assert gaps.count(60) >= len(gaps) - 2, gaps

        # Disabled: it stops.
        ev.disable_rule(Name="every-minute")
        time.sleep(0.5)
        drain(q, rate_url, 100, timeout=1)
        assert drain(q, rate_url, 1, timeout=2.5) == []
        for bad in ["rate(1 week)", "cron(0 0 * * * *)", "cron(61 * * * ? *)", "every day"]:
            e = support.client_error(ev.put_rule, Name="bad", ScheduleExpression=bad)
            assert e.response["Error"]["Code"] == "ValidationException", bad
        ev.create_event_bus(Name="other")
        e = support.client_error(ev.put_rule, Name="x", EventBusName="other",
                                 ScheduleExpression="rate(1 minute)")
        assert e.response["Error"]["Code"] == "ValidationException"
    finally:
        srv.stop()


def crate_seconds(iso: str) -> int:
    """Epoch seconds of an EventBridge time (`2026-01-01T00:00:00Z`)."""
    import calendar
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))
