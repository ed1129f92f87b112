"""EventBridge Scheduler with boto3 and the AWS CLI: schedule groups and tags; `rate`,
`cron` in a non-UTC zone and one-time `at` schedules firing on time (schedule time runs
300 times faster in the private server: a minute is 0.2 s), with the Scheduler's context
attributes in the target's input; StartDate/EndDate; ActionAfterCompletion DELETE; a
target that cannot take its firing dead-letters it; a `kill -9` neither loses nor repeats
a firing; bad input gets the Scheduler's errors.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import time
from zoneinfo import ZoneInfo

import boto3
import pytest
from botocore.config import Config

import support
from conftest import aws_env

REGION = support.REGION
ACCOUNT = "000000000000"
SPEEDUP = 300
OFF = {"Mode": "OFF"}
INPUT = '{"arn": "<aws.scheduler.schedule-arn>", "at": "<aws.scheduler.scheduled-time>", "id": "<aws.scheduler.execution-id>"}'


def client(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 0}))


def schedule_now(srv) -> datetime.datetime:
    """The server's schedule clock now (it runs from the time in its `schedule-clock`)."""
    base = int((srv.data_dir / "schedule-clock").read_text())
    real = int(time.time() * 1000)
    ms = base + (real - base) * SPEEDUP
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


def parse(at: str) -> datetime.datetime:
    return datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scheduler")
    server = support.started(support.ShoalServer(
        data_dir=tmp / "data", log_dir=tmp / "logs",
        extra_env={"SHOAL_SCHEDULE_SPEEDUP": str(SPEEDUP)}))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def scheduler(srv):
    return client("scheduler", srv.endpoint)


@pytest.fixture(scope="module")
def sqs(srv):
    return client("sqs", srv.endpoint)


def make_queue(sqs, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def receive(sqs, url: str, expect: int, timeout: float = 15.0) -> list[dict]:
    """Message bodies (JSON) until `expect` came or the time is up, deleted as read."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < expect and time.monotonic() < deadline:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                   MessageAttributeNames=["All"]).get("Messages", [])
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        got.extend(msgs)
    return got


def target(queue_arn: str, **extra) -> dict:
    return {"Arn": queue_arn, "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/scheduler", **extra}


def test_groups_and_their_tags(scheduler):
    arn = scheduler.create_schedule_group(Name="team-a", Tags=[{"Key": "team", "Value": "a"}])["ScheduleGroupArn"]
    assert arn == f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/team-a"
    names = [g["Name"] for g in scheduler.list_schedule_groups()["ScheduleGroups"]]
    assert "default" in names and "team-a" in names
    assert scheduler.get_schedule_group(Name="team-a")["State"] == "ACTIVE"
    scheduler.tag_resource(ResourceArn=arn, Tags=[{"Key": "env", "Value": "test"}])
    tags = {t["Key"]: t["Value"] for t in scheduler.list_tags_for_resource(ResourceArn=arn)["Tags"]}
    assert tags == {"team": "a", "env": "test"}
    scheduler.untag_resource(ResourceArn=arn, TagKeys=["team"])
    assert scheduler.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "env", "Value": "test"}]
    with pytest.raises(scheduler.exceptions.ConflictException):
        scheduler.create_schedule_group(Name="team-a")


def test_rate_and_zoned_cron_schedules_fire_on_time_with_their_context(scheduler, sqs):
    rate_url, rate_arn = make_queue(sqs, "sched-rate")
    cron_url, cron_arn = make_queue(sqs, "sched-cron")
    made = scheduler.create_schedule(
        Name="every-minute", GroupName="team-a", ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow=OFF, Target=target(rate_arn, Input=INPUT))
    arn = made["ScheduleArn"]
    assert arn == f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/team-a/every-minute"
    # Kathmandu is UTC+05:45: minute 5, 15, ... there is minute 20, 30, ... in UTC.
    scheduler.create_schedule(
        Name="kathmandu", ScheduleExpression="cron(5/10 * * * ? *)",
        ScheduleExpressionTimezone="Asia/Kathmandu", FlexibleTimeWindow=OFF,
        Target=target(cron_arn, Input=INPUT))
    got = scheduler.get_schedule(Name="kathmandu")
    assert (got["ScheduleExpressionTimezone"], got["GroupName"], got["State"]) == ("Asia/Kathmandu", "default", "ENABLED")
    assert got["Target"]["Input"] == INPUT and got["FlexibleTimeWindow"] == OFF

    bodies = [json.loads(m["Body"]) for m in receive(sqs, rate_url, 10)]
    assert len(bodies) >= 10
    assert all(b["arn"] == arn for b in bodies)
    assert len({b["id"] for b in bodies}) == len(bodies)
    times = sorted(parse(b["at"]) for b in bodies)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert all(g % 60 == 0 and g > 0 for g in gaps), gaps
    # A busy machine may let a firing slip past the next: those collapse into one.
    assert gaps.count(60) >= len(gaps) - 2, gaps

    crons = [json.loads(m["Body"]) for m in receive(sqs, cron_url, 3, timeout=20)]
    assert len(crons) >= 3
    for b in crons:
        at = parse(b["at"])
        assert at.minute % 10 == 0 and at.second == 0, b["at"]
        local = at.astimezone(ZoneInfo("Asia/Kathmandu"))
        assert local.minute % 10 == 5, local

    listed = scheduler.list_schedules(GroupName="team-a")["Schedules"]
    assert [(s["Name"], s["Target"]["Arn"]) for s in listed] == [("every-minute", rate_arn)]
    scheduler.update_schedule(Name="every-minute", GroupName="team-a", ScheduleExpression="rate(1 minute)",
                              FlexibleTimeWindow=OFF, State="DISABLED", Target=target(rate_arn, Input=INPUT))
    time.sleep(0.5)
    receive(sqs, rate_url, 100, timeout=1)
    assert receive(sqs, rate_url, 1, timeout=1.5) == []
    scheduler.delete_schedule(Name="kathmandu")
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name="kathmandu")


def test_one_time_schedules_fire_once_in_their_zone_and_delete_themselves(scheduler, sqs, srv):
    url, queue_arn = make_queue(sqs, "sched-once")
    zone = ZoneInfo("America/New_York")
    when = (schedule_now(srv) + datetime.timedelta(minutes=30)).astimezone(zone).replace(microsecond=0)
    scheduler.create_schedule(
        Name="once", ScheduleExpression=f"at({when.strftime('%Y-%m-%dT%H:%M:%S')})",
        ScheduleExpressionTimezone="America/New_York", FlexibleTimeWindow=OFF,
        ActionAfterCompletion="DELETE",
        Target=target(queue_arn, Input="once, at <aws.scheduler.scheduled-time>"))
    bodies = [m["Body"] for m in receive(sqs, url, 1, timeout=15)]
    assert len(bodies) == 1
    # An input that is not JSON is handed as it is.
    assert bodies[0].startswith("once, at "), bodies
    assert parse(bodies[0][len("once, at "):]) == when.astimezone(datetime.timezone.utc)
    support.wait_for(lambda: scheduler.list_schedules(NamePrefix="once")["Schedules"], lambda s: s == [],
                     timeout=5, what="the completed schedule deleted")
    assert receive(sqs, url, 1, timeout=1.5) == []

    # A window: StartDate to EndDate, and no more after it.
    url2, arn2 = make_queue(sqs, "sched-window")
    start = schedule_now(srv) + datetime.timedelta(minutes=20)
    end = start + datetime.timedelta(minutes=5)
    scheduler.create_schedule(
        Name="windowed", ScheduleExpression="rate(1 minute)", StartDate=start, EndDate=end,
        FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 1},
        Target=target(arn2, Input=INPUT))
    time.sleep(7)
    bodies = [json.loads(m["Body"]) for m in receive(sqs, url2, 10, timeout=3)]
    assert 4 <= len(bodies) <= 6, [b["at"] for b in bodies]
    for b in bodies:
        assert start - datetime.timedelta(seconds=1) <= parse(b["at"]) <= end, (b["at"], start, end)
    # ActionAfterCompletion NONE: it stays.
    assert scheduler.get_schedule(Name="windowed")["ActionAfterCompletion"] == "NONE"


def test_a_target_that_cannot_take_a_firing_dead_letters_it(scheduler, sqs):
    gone_url, gone_arn = make_queue(sqs, "sched-gone")
    dlq_url, dlq_arn = make_queue(sqs, "sched-dlq")
    scheduler.create_schedule(
        Name="to-nowhere", ScheduleExpression="rate(1 minute)", FlexibleTimeWindow=OFF,
        Target=target(gone_arn, Input='{"n": 1}', RetryPolicy={"MaximumRetryAttempts": 0},
                      DeadLetterConfig={"Arn": dlq_arn}))
    sqs.delete_queue(QueueUrl=gone_url)
    dead = receive(sqs, dlq_url, 1, timeout=10)
    assert dead, "nothing reached the dead-letter queue"
    assert json.loads(dead[0]["Body"]) == {"n": 1}
    scheduler.delete_schedule(Name="to-nowhere")


def test_bad_input_gets_the_schedulers_errors(scheduler, sqs):
    _, queue_arn = make_queue(sqs, "sched-bad")
    good = dict(Name="bad", ScheduleExpression="rate(1 minute)", FlexibleTimeWindow=OFF,
                Target=target(queue_arn))

    def error(**changes) -> str:
        e = support.client_error(scheduler.create_schedule, **{**good, **changes})
        return e.response["Error"]["Code"]

    for expression in ["rate(1 week)", "cron(0 0 * * * *)", "at(2026-13-01T00:00:00)", "every day"]:
        assert error(ScheduleExpression=expression) == "ValidationException", expression
    assert error(ScheduleExpressionTimezone="Mars/Olympus_Mons") == "ValidationException"
    assert error(FlexibleTimeWindow={"Mode": "FLEXIBLE"}) == "ValidationException"
    assert error(FlexibleTimeWindow={"Mode": "OFF", "MaximumWindowInMinutes": 5}) == "ValidationException"
    start = datetime.datetime(2030, 1, 2, tzinfo=datetime.timezone.utc)
    assert error(StartDate=start, EndDate=start - datetime.timedelta(days=1)) == "ValidationException"
    assert error(GroupName="no-such-group") == "ResourceNotFoundException"
    assert error(Target=target(f"arn:aws:sqs:{REGION}:{ACCOUNT}:no-such-queue")) == "ValidationException"
    scheduler.create_schedule(**good)
    assert error() == "ConflictException"
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.delete_schedule(Name="never-made")
    scheduler.delete_schedule(Name="bad")


def test_a_kill_9_neither_loses_nor_repeats_a_firing(scheduler, sqs, srv):
    url, queue_arn = make_queue(sqs, "sched-restart")
    arn = scheduler.create_schedule(Name="steady", ScheduleExpression="rate(1 minute)", FlexibleTimeWindow=OFF,
                                    Target=target(queue_arn, Input=INPUT))["ScheduleArn"]
    before = [json.loads(m["Body"]) for m in receive(sqs, url, 5)]
    srv.kill()
    time.sleep(2.0)  # ten schedule minutes down
    srv.start()
    after = [json.loads(m["Body"]) for m in receive(sqs, url, 5)]
    stamps = [parse(b["at"]) for b in before + after if b["arn"] == arn]
    assert len(stamps) == len(set(stamps)), "a firing was repeated"
    ordered = sorted(stamps)
    gaps = [(b - a).total_seconds() / 60 for a, b in zip(ordered, ordered[1:])]
    assert max(gaps) >= 5, f"the missed minutes fired once, not one by one: {gaps}"
    assert sum(1 for g in gaps if g > 1) <= 2, gaps
    scheduler.delete_schedule(Name="steady")


def test_the_aws_cli_manages_schedules(server):
    env = aws_env()

    def aws(*args: str) -> dict:
        out = subprocess.run(["aws", "scheduler", *args, "--endpoint-url", server.endpoint,
                              "--region", REGION, "--output", "json"],
                             capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    sqs = client("sqs", server.endpoint)
    name = support.unique_name("cli-sched")
    _, queue_arn = make_queue(sqs, name)
    made = aws("create-schedule", "--name", name, "--schedule-expression", "at(2099-01-01T00:00:00)",
               "--flexible-time-window", "Mode=OFF",
               "--target", json.dumps(target(queue_arn)))
    assert made["ScheduleArn"].endswith(f":schedule/default/{name}")
    assert aws("get-schedule", "--name", name)["ScheduleExpression"] == "at(2099-01-01T00:00:00)"
    assert name in [s["Name"] for s in aws("list-schedules")["Schedules"]]
    aws("delete-schedule", "--name", name)
    assert name not in [s["Name"] for s in aws("list-schedules")["Schedules"]]
