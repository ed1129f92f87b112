"""Acceptance of the event bus (EventBridge) as a whole.

1. A table of patterns covering every operator of "Content filtering in Amazon EventBridge
   event patterns", each case with an event and whether the pattern matches it: each case
   goes through TestEventPattern and through a real rule with a queue target, and the queue
   gets exactly the events of the cases that match.
2. A custom bus with 50 rules whose patterns use every operator, and targets of every kind:
   standard queues, a FIFO queue, a topic with a queue subscribed (raw delivery), another
   bus (whose own rule sends on to a queue), a function (which sends each event it gets to
   a queue), targets shaped by Input, InputPath and two InputTransformers, a target that
   refuses what it is sent (a queue whose messages may not be that large) and one that no
   longer exists (a deleted queue), both with a retry policy and a dead-letter queue.
   10,000 events go through PutEvents in batches of 10 from a few threads, and the server
   is `kill -9`-ed and restarted in the middle. Every event's content is made from its
   number, and every rule has a predicate of its own written in plain Python beside its
   pattern, so the test knows by construction which targets each event must reach. Every
   event PutEvents answered with an id must reach every target it matches (at least once:
   a crash may repeat a delivery, except into the FIFO queue, which deduplicates by event
   id), and no target may get an event it does not match. The events of the batches that
   were under way at the kill have no answer: they may or may not arrive, but only where
   they match. The transformers' output is checked exactly against the documented rules,
   and the dead-letter queues get the events of the failing targets with EventBridge's
   attributes, after the retries their policy allows.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import calendar
import datetime
import ipaddress
import json
import queue as queue_module
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import boto3
from botocore.config import Config

import support

REGION = support.REGION
ACCOUNT = support.ACCOUNT

EVENTS = 10_000
BATCH = 10
SENDERS = 4
DRAINERS = 8
# The server is killed once this many events have been accepted.
KILL_AFTER = 4_000


def client(service: str, endpoint: str, **config):
    """A boto3 client of a session of its own (so that threads may make them at once)."""
    return boto3.session.Session().client(
        service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 0}, read_timeout=30, connect_timeout=5, **config))


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def rule_arn(bus: str, rule: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{bus}/{rule}"


def compact(value) -> str:
    """A value as JSON text without spaces (how a transformer writes a non-string)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# =========================================================================== the pattern table

# (pattern, event, whether the pattern matches the event). An event names its `detail`
# (an object, or JSON text when the way a number is written matters), and may name its
# `source`, `detail-type`, `resources` and `time`.
PATTERN_CASES: list[tuple[dict, dict, bool]] = [
    # exact values, any-of arrays, null, empty strings, booleans, numbers, nesting
    ({"detail": {"state": ["running"]}}, {"detail": {"state": "running"}}, True),
    ({"detail": {"state": ["running"]}}, {"detail": {"state": "Running"}}, False),
    ({"detail": {"state": ["stopped", "running"]}}, {"detail": {"state": "running"}}, True),
    ({"detail": {"state": ["running"]}}, {"detail": {"other": "running"}}, False),
    ({"detail": {"v": [None]}}, {"detail": {"v": None}}, True),
    ({"detail": {"v": [None]}}, {"detail": {"v": ""}}, False),
    ({"detail": {"v": [""]}}, {"detail": {"v": ""}}, True),
    ({"detail": {"v": [None, "x"]}}, {"detail": {"w": 1}}, False),
    ({"detail": {"ok": [True]}}, {"detail": {"ok": True}}, True),
    ({"detail": {"ok": [True]}}, {"detail": {"ok": "true"}}, False),
    ({"detail": {"ok": [False]}}, {"detail": {"ok": True}}, False),
    ({"detail": {"n": [300]}}, {"detail": '{"n": 3.0e2}'}, True),
    ({"detail": {"n": [1]}}, {"detail": {"n": "1"}}, False),
    ({"detail": {"order": {"customer": {"tier": ["gold"]}}}},
     {"detail": {"order": {"customer": {"tier": "gold"}}}}, True),
    ({"detail": {"tier": ["gold"]}}, {"detail": {"order": {"tier": "gold"}}}, False),
    ({"source": ["com.shop"], "detail": {"a": [1], "b": [2]}},
     {"source": "com.shop", "detail": {"a": 1, "b": 3}}, False),
    # arrays in events
    ({"detail": {"tags": ["vip"]}}, {"detail": {"tags": ["new", "vip"]}}, True),
    ({"detail": {"tags": ["vip"]}}, {"detail": {"tags": ["new"]}}, False),
    ({"resources": ["arn:aws:s3:::bucket-a"]},
     {"resources": ["arn:aws:s3:::bucket-b", "arn:aws:s3:::bucket-a"], "detail": {}}, True),
    ({"detail": {"items": {"sku": ["A"], "qty": [2]}}},
     {"detail": {"items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]}}, True),
    ({"detail": {"items": {"sku": ["A"], "qty": [2]}}},
     {"detail": {"items": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}]}}, False),
    # prefix, and prefix equals-ignore-case
    ({"source": [{"prefix": "com.shop"}]}, {"source": "com.shop.orders", "detail": {}}, True),
    ({"detail": {"region": [{"prefix": "eu-"}]}}, {"detail": {"region": "eu-west-1"}}, True),
    ({"detail": {"region": [{"prefix": "eu-"}]}}, {"detail": {"region": "us-east-1"}}, False),
    ({"detail": {"region": [{"prefix": {"equals-ignore-case": "EU-"}}]}},
     {"detail": {"region": "eu-west-1"}}, True),
    ({"detail": {"region": [{"prefix": {"equals-ignore-case": "EU-"}}]}},
     {"detail": {"region": "xeu-west-1"}}, False),
    ({"detail": {"code": [{"prefix": "1"}]}}, {"detail": {"code": 123}}, False),
    ({"time": [{"prefix": "2024-05-06"}]}, {"time": "2024-05-06T07:08:09Z", "detail": {}}, True),
    ({"time": [{"prefix": "2024-05-06"}]}, {"time": "2024-05-07T07:08:09Z", "detail": {}}, False),
    # suffix, and suffix equals-ignore-case
    ({"detail": {"file": [{"suffix": ".png"}]}}, {"detail": {"file": "a.png"}}, True),
    ({"detail": {"file": [{"suffix": ".png"}]}}, {"detail": {"file": "a.PNG"}}, False),
    ({"detail": {"file": [{"suffix": {"equals-ignore-case": ".png"}}]}},
     {"detail": {"file": "a.PNG"}}, True),
    ({"detail": {"file": [{"suffix": {"equals-ignore-case": ".png"}}]}},
     {"detail": {"file": "a.PNG.txt"}}, False),
    # equals-ignore-case
    ({"detail": {"name": [{"equals-ignore-case": "alice"}]}}, {"detail": {"name": "ALICE"}}, True),
    ({"detail": {"name": [{"equals-ignore-case": "alice"}]}}, {"detail": {"name": "alicex"}}, False),
    ({"detail": {"name": [{"equals-ignore-case": "ÉTÉ"}]}}, {"detail": {"name": "été"}}, True),
    ({"detail-type": [{"equals-ignore-case": "order placed"}]},
     {"detail-type": "Order Placed", "detail": {}}, True),
    # anything-but: a value, a list, numbers, prefix, suffix, equals-ignore-case, wildcard
    ({"detail": {"state": [{"anything-but": "initializing"}]}}, {"detail": {"state": "running"}}, True),
    ({"detail": {"state": [{"anything-but": "initializing"}]}},
     {"detail": {"state": "initializing"}}, False),
    ({"detail": {"state": [{"anything-but": "initializing"}]}}, {"detail": {"other": 1}}, False),
    ({"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}},
     {"detail": {"state": "stopped"}}, False),
    ({"detail": {"x": [{"anything-but": [100, 200]}]}}, {"detail": {"x": 150}}, True),
    ({"detail": {"x": [{"anything-but": [100, 200]}]}}, {"detail": {"x": 200}}, False),
    ({"detail": {"x": [{"anything-but": 5}]}}, {"detail": {"x": 6}}, True),
    ({"detail": {"env": [{"anything-but": {"prefix": "test-"}}]}}, {"detail": {"env": "test-1"}}, False),
    ({"detail": {"env": [{"anything-but": {"prefix": "test-"}}]}}, {"detail": {"env": "prod-1"}}, True),
    ({"detail": {"file": [{"anything-but": {"suffix": ".tmp"}}]}}, {"detail": {"file": "x.tmp"}}, False),
    ({"detail": {"file": [{"anything-but": {"suffix": ".tmp"}}]}}, {"detail": {"file": "x.txt"}}, True),
    ({"detail": {"a": [{"anything-but": {"equals-ignore-case": ["yes", "please"]}}]}},
     {"detail": {"a": "YES"}}, False),
    ({"detail": {"a": [{"anything-but": {"equals-ignore-case": ["yes", "please"]}}]}},
     {"detail": {"a": "maybe"}}, True),
    ({"detail": {"path": [{"anything-but": {"wildcard": "*/lib/*"}}]}},
     {"detail": {"path": "/usr/lib/x.so"}}, False),
    ({"detail": {"path": [{"anything-but": {"wildcard": "*/lib/*"}}]}},
     {"detail": {"path": "/usr/bin/x"}}, True),
    ({"detail": {"sport": [{"anything-but": ["rugby", "tennis"]}]}},
     {"detail": {"sport": ["rugby", "baseball"]}}, True),
    # numeric
    ({"detail": {"c": [{"numeric": [">", 0, "<=", 5]}]}}, {"detail": {"c": 5}}, True),
    ({"detail": {"c": [{"numeric": [">", 0, "<=", 5]}]}}, {"detail": {"c": 0}}, False),
    ({"detail": {"c": [{"numeric": [">", 0, "<=", 5]}]}}, {"detail": {"c": 5.0000001}}, False),
    ({"detail": {"d": [{"numeric": ["<", 10]}]}}, {"detail": {"d": 9.999}}, True),
    ({"detail": {"z": [{"numeric": [">=", 0, "<=", 1]}]}}, {"detail": {"z": 1}}, True),
    ({"detail": {"x": [{"numeric": ["=", 301.8]}]}}, {"detail": '{"x": 3.018e2}'}, True),
    ({"detail": {"c": [{"numeric": [">", 0]}]}}, {"detail": {"c": "5"}}, False),
    ({"detail": {"vals": [{"numeric": [">", 0, "<", 10]}]}}, {"detail": {"vals": [100, 5, 200]}}, True),
    # exists
    ({"detail": {"a": [{"exists": True}]}}, {"detail": {"a": 1}}, True),
    ({"detail": {"a": [{"exists": True}]}}, {"detail": {"b": 1}}, False),
    ({"detail": {"a": [{"exists": False}]}}, {"detail": {"b": 1}}, True),
    ({"detail": {"a": [{"exists": False}]}}, {"detail": {"a": 1}}, False),
    ({"detail": {"a": [{"exists": True}]}}, {"detail": {"a": None}}, True),
    ({"detail": {"c": [{"exists": True}]}}, {"detail": {"c": {"x": 1}}}, False),
    # cidr, IPv4 and IPv6
    ({"detail": {"ip": [{"cidr": "10.0.0.0/24"}]}}, {"detail": {"ip": "10.0.0.33"}}, True),
    ({"detail": {"ip": [{"cidr": "10.0.0.0/24"}]}}, {"detail": {"ip": "10.0.1.1"}}, False),
    ({"detail": {"ip": [{"cidr": "2001:db8::/32"}]}}, {"detail": {"ip": "2001:db8:1::1"}}, True),
    ({"detail": {"ip": [{"cidr": "2001:db8::/32"}]}}, {"detail": {"ip": "2001:db9::1"}}, False),
    ({"detail": {"ip": [{"cidr": "10.0.0.0/8"}]}}, {"detail": {"ip": "not-an-address"}}, False),
    ({"detail": {"ip": [{"cidr": "1.2.3.4/32"}]}}, {"detail": {"ip": "1.2.3.4"}}, True),
    # wildcard
    ({"detail": {"f": [{"wildcard": "dir/*.png"}]}}, {"detail": {"f": "dir/a.png"}}, True),
    ({"detail": {"f": [{"wildcard": "dir/*.png"}]}}, {"detail": {"f": "other/a.png"}}, False),
    ({"detail": {"f": [{"wildcard": "a*b*c"}]}}, {"detail": {"f": "aXbYc"}}, True),
    ({"detail": {"f": [{"wildcard": "a*b*c"}]}}, {"detail": {"f": "acb"}}, False),
    ({"detail": {"f": [{"wildcard": "a\\*c"}]}}, {"detail": {"f": "a*c"}}, True),
    ({"detail": {"f": [{"wildcard": "a\\*c"}]}}, {"detail": {"f": "abc"}}, False),
    # $or, in detail and at the top
    ({"detail": {"$or": [{"c": [{"numeric": [">", 0, "<=", 5]}]}, {"d": [{"numeric": ["<", 10]}]}]}},
     {"detail": {"c": 10, "d": 3}}, True),
    ({"detail": {"$or": [{"c": [{"numeric": [">", 0, "<=", 5]}]}, {"d": [{"numeric": ["<", 10]}]}]}},
     {"detail": {"c": 10, "d": 20}}, False),
    ({"$or": [{"detail": {"a": ["x"]}}, {"detail": {"b": ["y"]}}]}, {"detail": {"b": "y"}}, True),
    ({"detail": {"$or": [{"a": [{"exists": False}]}, {"a": ["x"]}]}}, {"detail": {"a": "y"}}, False),
]


def case_rule_and_event(i: int, pattern: dict, spec: dict, tag: str) -> tuple[dict, dict, str, str]:
    """The rule pattern of case `i` (the case's pattern with a marker field that only its
    own event has), its PutEvents entry, and the TestEventPattern event text."""
    marker = f"case-{i:02d}-{tag}"
    marker_field = "source" if "detail-type" in pattern else "detail-type"
    assert marker_field not in pattern
    rule_pattern = {**pattern, marker_field: [marker]}
    source = spec.get("source", "acceptance.table")
    detail_type = spec.get("detail-type", "Case")
    if marker_field == "source":
        source = marker
    else:
        detail_type = marker
    detail = spec["detail"]
    detail_text = detail if isinstance(detail, str) else json.dumps(detail)
    entry = {"Source": source, "DetailType": detail_type, "Detail": detail_text,
             "Resources": spec.get("resources", [])}
    when = spec.get("time") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if "time" in spec:
        entry["Time"] = datetime.datetime.strptime(spec["time"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
    envelope = {"version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type,
                "source": source, "account": ACCOUNT, "time": when, "region": REGION,
                "resources": spec.get("resources", [])}
    event_text = json.dumps(envelope)[:-1] + ', "detail": ' + detail_text + "}"
    return rule_pattern, entry, event_text, marker


def test_every_pattern_case_through_test_event_pattern_and_a_real_rule(server):
    ev, sqs = client("events", server.endpoint), client("sqs", server.endpoint)
    tag = uuid.uuid4().hex[:8]
    bus = f"patterns-{tag}"
    ev.create_event_bus(Name=bus)
    url = sqs.create_queue(QueueName=f"patterns-{tag}")["QueueUrl"]
    problems: list[str] = []
    entries, expected, markers = [], set(), {}
    for i, (pattern, spec, matches) in enumerate(PATTERN_CASES):
        rule_pattern, entry, event_text, marker = case_rule_and_event(i, pattern, spec, tag)
        for tested in (pattern, rule_pattern):
            result = ev.test_event_pattern(EventPattern=json.dumps(tested), Event=event_text)["Result"]
            if result != matches:
                problems.append(f"case {i}: TestEventPattern({json.dumps(tested)}, {event_text}) "
                                f"is {result}, expected {matches}")
        ev.put_rule(Name=f"case-{i:02d}", EventBusName=bus, EventPattern=json.dumps(rule_pattern))
        ev.put_targets(Rule=f"case-{i:02d}", EventBusName=bus,
                       Targets=[{"Id": "queue", "Arn": queue_arn(f"patterns-{tag}")}])
        entries.append({**entry, "EventBusName": bus})
        markers[marker] = i
        if matches:
            expected.add(i)
    for start in range(0, len(entries), BATCH):
        out = ev.put_events(Entries=entries[start:start + BATCH])
        assert out["FailedEntryCount"] == 0, out
    got: dict[int, int] = {}
    deadline = time.monotonic() + 20
    quiet = False
    while time.monotonic() < deadline:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                   VisibilityTimeout=300).get("Messages", [])
        for m in msgs:
            body = json.loads(m["Body"])
            i = markers.get(body["detail-type"], markers.get(body["source"]))
            if i is None:
                problems.append(f"an event of no case arrived: {m['Body'][:300]}")
                continue
            got[i] = got.get(i, 0) + 1
        if not msgs:
            if quiet and expected <= set(got):
                break
            quiet = expected <= set(got)
    for i in sorted(expected - set(got)):
        problems.append(f"case {i}: the rule did not deliver its matching event: {PATTERN_CASES[i]}")
    for i in sorted(set(got) - expected):
        problems.append(f"case {i}: the rule delivered an event it does not match: {PATTERN_CASES[i]}")
    for i, count in sorted(got.items()):
        if count > 1:
            problems.append(f"case {i}: delivered {count} times")
    assert not problems, "\n".join(problems)
    for i in range(len(PATTERN_CASES)):
        ev.remove_targets(Rule=f"case-{i:02d}", EventBusName=bus, Ids=["queue"])
        ev.delete_rule(Name=f"case-{i:02d}", EventBusName=bus)
    ev.delete_event_bus(Name=bus)
    sqs.delete_queue(QueueUrl=url)


# =========================================================================== the events

SOURCES = ["shop.orders", "shop.payments", "shop.users", "inventory.stock", "Shop.Orders",
           "audit.trail"]
TYPES = ["OrderPlaced", "OrderShipped", "PaymentFailed", "UserSignedUp", "StockLow",
         "order placed"]
AMOUNTS = [0, 5, 42.5, 99.99, 100, 250, 1000, -7, None]
REGIONS = ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-south-1", "EU-North-1"]
TIERS = ["gold", "silver", "bronze", "GOLD", None]
EMAILS = ["a@example.com", "b@Example.COM", "c@corp.org", "d@shop.net"]
IPS = ["10.0.0.5", "10.0.1.200", "192.168.1.7", "2001:db8::1", "2001:db9::2", "172.16.5.4",
       "not-an-ip"]
TAGS = ["vip", "gift", "promo", "test"]
ABSENT = "absent"
FLAGS = [ABSENT, True, False, None]
FILES = ["photo.png", "PHOTO.PNG", "notes.txt", "archive.tar.gz", "report.pdf", "img/cat.png"]
STATUSES = ["active", "pending", "closed", "ACTIVE", "suspended"]
SKUS = ["A-1", "B-2", "C-3"]
RESOURCES = ["arn:aws:shop:::store/1", "arn:aws:shop:::store/2"]
# A field this large makes an event too large for the queue that takes at most 1,024 bytes.
BLOB = "x" * 1200


@dataclass
class Event:
    """One event of the run, made from its number alone."""
    n: int
    source: str
    detail_type: str
    detail: dict
    resources: list[str]

    def entry(self, bus: str) -> dict:
        return {"Source": self.source, "DetailType": self.detail_type,
                "Detail": json.dumps(self.detail), "Resources": self.resources,
                "EventBusName": bus}

    # The accessors the rules' predicates read.
    @property
    def amount(self):
        return self.detail.get("amount")

    @property
    def customer(self) -> dict:
        return self.detail["customer"]


def make_event(n: int) -> Event:
    r = random.Random(n * 7919 + 17)
    detail: dict = {"n": n}
    amount = r.choice(AMOUNTS)
    if amount is not None:
        detail["amount"] = amount
    detail["region"] = r.choice(REGIONS)
    customer = {"email": r.choice(EMAILS)}
    tier = r.choice(TIERS)
    if tier is not None:
        customer["tier"] = tier
    detail["customer"] = customer
    detail["ip"] = r.choice(IPS)
    detail["tags"] = [t for t in TAGS if r.random() < 0.3]
    flag = r.choice(FLAGS)
    if flag != ABSENT:
        detail["flag"] = flag
    detail["file"] = r.choice(FILES)
    detail["status"] = r.choice(STATUSES)
    detail["items"] = [{"sku": r.choice(SKUS), "qty": r.randint(1, 3)}
                       for _ in range(r.randint(0, 2))]
    if r.random() < 0.02:
        detail["blob"] = BLOB
    resources = [res for res in RESOURCES if r.random() < 0.3]
    return Event(n, r.choice(SOURCES), r.choice(TYPES), detail, resources)


# ----- what the predicates use


def in_cidr(value, network: str) -> bool:
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(network)
    except (TypeError, ValueError):
        return False


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def amount_in(e: Event, low=None, high=None, low_open=False, high_open=False) -> bool:
    a = e.amount
    if not is_number(a):
        return False
    if low is not None and (a <= low if low_open else a < low):
        return False
    if high is not None and (a >= high if high_open else a > high):
        return False
    return True


# =========================================================================== the rules


@dataclass
class Rule:
    name: str
    pattern: dict
    matches: Callable[[Event], bool]
    # What the rule's targets are, besides a plain queue (`queue` False: none).
    extras: tuple[str, ...] = ()
    queue: bool = True


RULES: list[Rule] = [
    # exact values and arrays of alternatives
    Rule("orders-placed",
         {"source": ["shop.orders"], "detail-type": ["OrderPlaced"]},
         lambda e: e.source == "shop.orders" and e.detail_type == "OrderPlaced",
         extras=("fifo",)),
    Rule("payments-any-of",
         {"source": ["shop.payments"], "detail-type": ["PaymentFailed", "OrderPlaced"]},
         lambda e: e.source == "shop.payments" and e.detail_type in ("PaymentFailed", "OrderPlaced")),
    Rule("capital-source",
         {"source": ["Shop.Orders"], "detail": {"region": ["us-east-1"]}},
         lambda e: e.source == "Shop.Orders" and e.detail["region"] == "us-east-1"),
    Rule("shop-99-99",
         {"source": [{"prefix": "shop."}],
          "detail-type": [{"anything-but": ["StockLow", "UserSignedUp"]}],
          "detail": {"amount": [99.99]}},
         lambda e: e.source.startswith("shop.") and e.detail_type not in ("StockLow", "UserSignedUp")
         and is_number(e.amount) and e.amount == 99.99),
    Rule("store-one-users",
         {"source": ["shop.users"], "resources": ["arn:aws:shop:::store/1"]},
         lambda e: e.source == "shop.users" and "arn:aws:shop:::store/1" in e.resources),
    Rule("signups",
         {"source": ["shop.users"], "detail-type": ["UserSignedUp"]},
         lambda e: e.source == "shop.users" and e.detail_type == "UserSignedUp",
         extras=("gone",)),
    Rule("nobody",
         {"source": ["nobody.sends.this"]},
         lambda e: False),
    # booleans and null
    Rule("flag-true-pending",
         {"source": [{"anything-but": {"prefix": "shop."}}],
          "detail": {"flag": [True], "status": ["pending"]}},
         lambda e: not e.source.startswith("shop.") and e.detail.get("flag") is True
         and e.detail["status"] == "pending"),
    Rule("flag-null-ap",
         {"detail": {"flag": [None], "region": ["ap-south-1"]}},
         lambda e: "flag" in e.detail and e.detail["flag"] is None
         and e.detail["region"] == "ap-south-1"),
    Rule("stock-flag-false",
         {"source": [{"suffix": ".stock"}], "detail": {"flag": [False]}},
         lambda e: e.source.endswith(".stock") and e.detail.get("flag") is False),
    # prefix, suffix and their equals-ignore-case forms
    Rule("eu-orders",
         {"source": ["shop.orders"],
          "detail": {"region": [{"prefix": "eu-"}], "amount": [{"exists": True}]}},
         lambda e: e.source == "shop.orders" and e.detail["region"].startswith("eu-")
         and "amount" in e.detail,
         extras=("transform-json", "transform-text")),
    Rule("eu-users-any-case",
         {"source": ["shop.users"], "detail-type": ["UserSignedUp", "OrderPlaced"],
          "detail": {"region": [{"prefix": {"equals-ignore-case": "EU-"}}]}},
         lambda e: e.source == "shop.users" and e.detail_type in ("UserSignedUp", "OrderPlaced")
         and e.detail["region"].lower().startswith("eu-")),
    Rule("order-types-us-west",
         {"detail-type": [{"prefix": "Order"}], "detail": {"region": ["us-west-2"]}},
         lambda e: e.detail_type.startswith("Order") and e.detail["region"] == "us-west-2"),
    Rule("corp-email-stock",
         {"detail-type": ["StockLow"], "detail": {"customer": {"email": [{"prefix": "c@"}]}}},
         lambda e: e.detail_type == "StockLow" and e.customer["email"].startswith("c@")),
    Rule("payments-stock-low",
         {"source": ["shop.payments"], "detail-type": ["StockLow"],
          "detail": {"status": [{"prefix": "p"}]}},
         lambda e: e.source == "shop.payments" and e.detail_type == "StockLow"
         and e.detail["status"].startswith("p"),
         extras=("function",)),
    Rule("png-orders",
         {"source": ["shop.orders"], "detail": {"file": [{"suffix": ".png"}]}},
         lambda e: e.source == "shop.orders" and e.detail["file"].endswith(".png")),
    Rule("png-audit-any-case",
         {"source": ["audit.trail"],
          "detail": {"file": [{"suffix": {"equals-ignore-case": ".PNG"}}],
                     "status": ["active", "closed"]}},
         lambda e: e.source == "audit.trail" and e.detail["file"].lower().endswith(".png")
         and e.detail["status"] in ("active", "closed")),
    # equals-ignore-case
    Rule("gold-any-case-suspended",
         {"source": [{"prefix": "shop."}],
          "detail": {"customer": {"tier": [{"equals-ignore-case": "GOLD"}]},
                     "status": ["suspended"]}},
         lambda e: e.source.startswith("shop.") and e.customer.get("tier", "").lower() == "gold"
         and e.detail["status"] == "suspended"),
    Rule("orders-any-case-active",
         {"source": [{"equals-ignore-case": "SHOP.orders"}],
          "detail-type": ["OrderPlaced", "OrderShipped", "order placed"],
          "detail": {"status": ["active"]}},
         lambda e: e.source.lower() == "shop.orders" and e.detail["status"] == "active"
         and e.detail_type in ("OrderPlaced", "OrderShipped", "order placed")),
    Rule("audit-order-placed",
         {"source": ["audit.trail"], "detail-type": [{"equals-ignore-case": "ORDER PLACED"}]},
         lambda e: e.source == "audit.trail" and e.detail_type.lower() == "order placed",
         extras=("constant",)),
    # anything-but: values, numbers, prefix, suffix, equals-ignore-case, wildcard
    Rule("not-shop-closed",
         {"source": [{"anything-but": ["shop.orders", "shop.payments", "shop.users",
                                       "Shop.Orders", "audit.trail"]}],
          "detail": {"status": ["closed"]}},
         lambda e: e.source not in ("shop.orders", "shop.payments", "shop.users", "Shop.Orders",
                                    "audit.trail") and e.detail["status"] == "closed"),
    Rule("suspended-central",
         {"detail": {"status": [{"anything-but": ["active", "pending", "closed", "ACTIVE"]}],
                     "region": ["eu-central-1"]}},
         lambda e: e.detail["status"] not in ("active", "pending", "closed", "ACTIVE")
         and e.detail["region"] == "eu-central-1"),
    Rule("orders-odd-amounts",
         {"source": ["shop.orders"], "detail-type": ["OrderShipped"],
          "detail": {"amount": [{"anything-but": [0, 100]}]}},
         lambda e: e.source == "shop.orders" and e.detail_type == "OrderShipped"
         and is_number(e.amount) and e.amount not in (0, 100)),
    Rule("placed-not-five",
         {"source": ["shop.orders", "Shop.Orders"], "detail-type": ["order placed"],
          "detail": {"amount": [{"anything-but": 5}]}},
         lambda e: e.source in ("shop.orders", "Shop.Orders") and e.detail_type == "order placed"
         and is_number(e.amount) and e.amount != 5),
    Rule("payments-outside-us",
         {"source": ["shop.payments"], "detail-type": ["PaymentFailed"],
          "detail": {"region": [{"anything-but": {"prefix": "us-"}}]}},
         lambda e: e.source == "shop.payments" and e.detail_type == "PaymentFailed"
         and not e.detail["region"].startswith("us-")),
    Rule("stock-not-png",
         {"source": ["inventory.stock"], "detail-type": ["StockLow"],
          "detail": {"file": [{"anything-but": {"suffix": ".png"}}]}},
         lambda e: e.source == "inventory.stock" and e.detail_type == "StockLow"
         and not e.detail["file"].endswith(".png")),
    Rule("stock-not-active",
         {"source": ["inventory.stock"], "detail-type": ["StockLow", "OrderShipped"],
          "detail": {"status": [{"anything-but": {"equals-ignore-case": "active"}}]}},
         lambda e: e.source == "inventory.stock" and e.detail_type in ("StockLow", "OrderShipped")
         and e.detail["status"].lower() != "active"),
    Rule("shipped-no-dot-p",
         {"source": ["shop.orders", "Shop.Orders"], "detail-type": ["OrderShipped"],
          "detail": {"file": [{"anything-but": {"wildcard": "*.p*"}}]}},
         lambda e: e.source in ("shop.orders", "Shop.Orders") and e.detail_type == "OrderShipped"
         and ".p" not in e.detail["file"]),
    # numeric
    Rule("payments-small-amounts",
         {"source": ["shop.payments"], "detail-type": ["PaymentFailed", "OrderPlaced", "StockLow"],
          "detail": {"amount": [{"numeric": [">", 0, "<=", 100]}]}},
         lambda e: e.source == "shop.payments"
         and e.detail_type in ("PaymentFailed", "OrderPlaced", "StockLow")
         and amount_in(e, 0, 100, low_open=True),
         extras=("path",)),
    Rule("gold-thousands",
         {"detail": {"amount": [{"numeric": [">=", 1000]}], "customer": {"tier": ["gold"]}}},
         lambda e: amount_in(e, 1000) and e.customer.get("tier") == "gold"),
    Rule("negative-silver-amounts",
         {"detail": {"amount": [{"numeric": ["<", 0]}], "customer": {"tier": ["silver"]}}},
         lambda e: amount_in(e, high=0, high_open=True) and e.customer.get("tier") == "silver"),
    Rule("exactly-42-5",
         {"detail-type": ["UserSignedUp", "StockLow"],
          "detail": {"amount": [{"numeric": ["=", 42.5]}]}},
         lambda e: e.detail_type in ("UserSignedUp", "StockLow")
         and is_number(e.amount) and e.amount == 42.5),
    Rule("over-a-thousand",
         {"detail": {"amount": [{"numeric": [">", 1000]}]}},
         lambda e: False),
    Rule("pending-to-second-bus",
         {"source": ["shop.orders", "inventory.stock"], "detail": {"status": ["pending"]}},
         lambda e: e.source in ("shop.orders", "inventory.stock") and e.detail["status"] == "pending",
         extras=("bus",), queue=False),
    # exists (a null exists; an empty array has no value)
    Rule("signups-with-flag",
         {"source": ["shop.users"], "detail-type": ["UserSignedUp"],
          "detail": {"flag": [{"exists": True}]}},
         lambda e: e.source == "shop.users" and e.detail_type == "UserSignedUp" and "flag" in e.detail),
    Rule("shipped-without-flag",
         {"detail-type": ["OrderShipped"], "detail": {"flag": [{"exists": False}]}},
         lambda e: e.detail_type == "OrderShipped" and "flag" not in e.detail),
    Rule("payments-no-tier",
         {"source": ["shop.payments"], "detail": {"customer": {"tier": [{"exists": False}]}}},
         lambda e: e.source == "shop.payments" and "tier" not in e.customer),
    Rule("shipped-untagged",
         {"detail-type": ["OrderShipped"], "detail": {"tags": [{"exists": False}]}},
         lambda e: e.detail_type == "OrderShipped" and not e.detail["tags"]),
    Rule("large-events",
         {"detail": {"blob": [{"exists": True}]}},
         lambda e: "blob" in e.detail,
         extras=("too-small",)),
    # wildcard
    Rule("example-emails",
         {"source": ["shop.users"],
          "detail": {"customer": {"email": [{"wildcard": "*@example.com"}]}}},
         lambda e: e.source == "shop.users" and e.customer["email"].endswith("@example.com"),
         extras=("topic",)),
    Rule("fail-bronze",
         {"detail-type": [{"wildcard": "*Fail*"}], "detail": {"customer": {"tier": ["bronze"]}}},
         lambda e: "Fail" in e.detail_type and e.customer.get("tier") == "bronze"),
    # cidr
    Rule("private-ipv4-placed",
         {"detail-type": ["OrderPlaced"], "detail": {"ip": [{"cidr": "10.0.0.0/16"}]}},
         lambda e: e.detail_type == "OrderPlaced" and in_cidr(e.detail["ip"], "10.0.0.0/16")),
    Rule("doc-ipv6",
         {"source": ["shop.payments", "shop.users"], "detail": {"ip": [{"cidr": "2001:db8::/32"}]}},
         lambda e: e.source in ("shop.payments", "shop.users")
         and in_cidr(e.detail["ip"], "2001:db8::/32")),
    # $or, at the top and in detail
    Rule("stock-or",
         {"source": ["inventory.stock"],
          "$or": [{"detail-type": ["StockLow"]},
                  {"detail": {"amount": [{"numeric": [">", 500]}]}}]},
         lambda e: e.source == "inventory.stock"
         and (e.detail_type == "StockLow" or amount_in(e, 500, low_open=True))),
    Rule("audit-flag-or",
         {"source": ["audit.trail"], "detail-type": ["OrderShipped", "StockLow"],
          "$or": [{"detail": {"flag": [{"exists": False}]}}, {"detail": {"flag": [True]}}]},
         lambda e: e.source == "audit.trail" and e.detail_type in ("OrderShipped", "StockLow")
         and ("flag" not in e.detail or e.detail["flag"] is True)),
    Rule("detail-or",
         {"source": [{"prefix": "shop."}],
          "detail": {"$or": [{"status": ["closed"], "region": [{"prefix": "us-"}]},
                             {"tags": ["gift"], "customer": {"tier": ["silver"]}}]}},
         lambda e: e.source.startswith("shop.") and (
             (e.detail["status"] == "closed" and e.detail["region"].startswith("us-"))
             or ("gift" in e.detail["tags"] and e.customer.get("tier") == "silver"))),
    # arrays in events: any element; the fields of one pattern object on the same element
    Rule("failed-vip-or-promo",
         {"detail-type": ["PaymentFailed"],
          "detail": {"tags": ["vip", "promo"], "region": [{"prefix": "us-"}]}},
         lambda e: e.detail_type == "PaymentFailed"
         and any(t in ("vip", "promo") for t in e.detail["tags"])
         and e.detail["region"].startswith("us-")),
    Rule("two-of-a1",
         {"source": [{"prefix": "shop."}], "detail-type": ["OrderPlaced", "OrderShipped"],
          "detail": {"items": {"sku": ["A-1"], "qty": [{"numeric": [">=", 2]}]}}},
         lambda e: e.source.startswith("shop.") and e.detail_type in ("OrderPlaced", "OrderShipped")
         and any(i["sku"] == "A-1" and i["qty"] >= 2 for i in e.detail["items"])),
    Rule("vip-lan-c3",
         {"detail": {"tags": ["vip"], "ip": [{"cidr": "192.168.0.0/16"}],
                     "items": {"sku": ["C-3"]}}},
         lambda e: "vip" in e.detail["tags"] and in_cidr(e.detail["ip"], "192.168.0.0/16")
         and any(i["sku"] == "C-3" for i in e.detail["items"])),
    # many operators at once
    Rule("big-eu-gold-orders",
         {"source": ["shop.orders"], "detail-type": ["OrderPlaced"],
          "detail": {"amount": [{"numeric": [">=", 100]}], "region": [{"prefix": "eu-"}],
                     "customer": {"tier": ["gold", "silver"]}}},
         lambda e: e.source == "shop.orders" and e.detail_type == "OrderPlaced" and amount_in(e, 100)
         and e.detail["region"].startswith("eu-") and e.customer.get("tier") in ("gold", "silver")),
]

# The rule of the second bus, on what the first bus forwards to it.
SECOND_BUS_PATTERN = {"detail": {"amount": [{"numeric": [">=", 100]}]}}


def second_bus_matches(e: Event) -> bool:
    return amount_in(e, 100)


# The targets' input shapes.
CONSTANT_INPUT = {"constant": True, "note": "the same for every event"}
JSON_TEMPLATE = (
    '{"id": <id>, "n": <n>, "source": <source>, "amount": <amount>, "customer": <customer>, '
    '"tags": <tags>, "text": "<source> sent <n> from <region> for <amount>", '
    '"mixed": [9, <region>, true], "rule": "<aws.events.rule-name>", '
    '"ruleArn": "<aws.events.rule-arn>", "ingested": "<aws.events.event.ingestion-time>", '
    '"event": <aws.events.event>, "eventJson": <aws.events.event.json>}')
JSON_PATHS = {"id": "$.id", "n": "$.detail.n", "source": "$.source", "amount": "$.detail.amount",
              "customer": "$.detail.customer", "tags": "$.detail.tags", "region": "$.detail.region"}
TEXT_TEMPLATE = '"<aws.events.rule-name> triggered by <source> for order <n>"'
TEXT_PATHS = {"source": "$.source", "n": "$.detail.n"}
TEXT_OUTPUT = re.compile(r"^(?P<rule>[\w.-]+) triggered by (?P<source>\S+) for order (?P<n>\d+)$")
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

# Forwards every event it is invoked with to a queue, through the platform API endpoint
# every environment has (SQS's JSON protocol, on a server without keys).
FORWARDER = r'''
import json
import os
import urllib.request

def handler(event, context):
    body = json.dumps({"QueueUrl": os.environ["SINK_URL"], "MessageBody": json.dumps(event)})
    request = urllib.request.Request(
        os.environ["AWS_ENDPOINT_URL"], data=body.encode(), method="POST",
        headers={"Content-Type": "application/x-amz-json-1.0",
                 "X-Amz-Target": "AmazonSQS.SendMessage"})
    with urllib.request.urlopen(request, timeout=20) as response:
        response.read()
    return {}
'''


# =========================================================================== the sinks


@dataclass
class Sink:
    """A queue where one target's deliveries land, which events belong there, and the
    shape they arrive in."""
    name: str
    url: str
    form: str  # event | detail | transform-json | transform-text | constant | dead-letter
    belongs: Callable[[Event], bool]
    rule: Rule
    fifo: bool = False
    target_arn: str = ""
    retries: int = 0
    messages: list[dict] = field(default_factory=list)


class Run:
    """What happened to the 10,000 events: which were accepted (with their ids) and which
    were in batches that got no answer."""

    def __init__(self):
        self.events = [make_event(n) for n in range(EVENTS)]
        self.accepted: dict[int, str] = {}
        self.unanswered: set[int] = set()
        self.refused: list[dict] = []
        self.errors_before_kill: list[str] = []
        self.lock = threading.Lock()
        self.killed = False
        self.restarted = threading.Event()
        self.first_put = self.last_put = 0.0


def build_bus(ev, sqs, sns, lam, bus: str, second_bus: str) -> list[Sink]:
    """The bus, its 50 rules and every target (and what each target's deliveries look like)."""
    ev.create_event_bus(Name=bus)
    second_arn = ev.create_event_bus(Name=second_bus)["EventBusArn"]
    sinks: list[Sink] = []

    def make_queue(name: str, **attributes) -> str:
        kwargs = {"Attributes": attributes} if attributes else {}
        return sqs.create_queue(QueueName=name, **kwargs)["QueueUrl"]

    def sink(name: str, form: str, rule: Rule, belongs=None, **extra) -> Sink:
        s = Sink(name=name, url=make_queue(name, **({"FifoQueue": "true"} if extra.get("fifo") else {})),
                 form=form, belongs=belongs or rule.matches, rule=rule, **extra)
        sinks.append(s)
        return s

    for rule in RULES:
        ev.put_rule(Name=rule.name, EventBusName=bus, EventPattern=json.dumps(rule.pattern))
        targets = []
        if rule.queue:
            sink(f"q-{rule.name}", "event", rule)
            targets.append({"Id": "queue", "Arn": queue_arn(f"q-{rule.name}")})
        for kind in rule.extras:
            if kind == "fifo":
                s = sink(f"fifo-{rule.name}.fifo", "event", rule, fifo=True)
                targets.append({"Id": "fifo", "Arn": queue_arn(s.name),
                                "SqsParameters": {"MessageGroupId": "orders"}})
            elif kind == "topic":
                topic = sns.create_topic(Name=f"topic-{rule.name}")["TopicArn"]
                s = sink(f"sub-{rule.name}", "event", rule)
                sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn(s.name),
                              Attributes={"RawMessageDelivery": "true"})
                targets.append({"Id": "topic", "Arn": topic})
            elif kind == "bus":
                s = sink(f"second-{rule.name}", "event", rule,
                         belongs=lambda e, r=rule: r.matches(e) and second_bus_matches(e))
                ev.put_rule(Name="big-amounts", EventBusName=second_bus,
                            EventPattern=json.dumps(SECOND_BUS_PATTERN))
                ev.put_targets(Rule="big-amounts", EventBusName=second_bus,
                               Targets=[{"Id": "queue", "Arn": queue_arn(s.name)}])
                targets.append({"Id": "bus", "Arn": second_arn})
            elif kind == "function":
                s = sink(f"fn-{rule.name}", "event", rule)
                name = support.unique_name("forwarder")
                fn = lam.create_function(
                    FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                    Role=support.ROLE, Code={"ZipFile": support.py_zip(FORWARDER)},
                    Environment={"Variables": {"SINK_URL": s.url}})
                lam.add_permission(FunctionName=name, StatementId="events", Action="lambda:InvokeFunction",
                                   Principal="events.amazonaws.com", SourceArn=rule_arn(bus, rule.name))
                targets.append({"Id": "function", "Arn": fn["FunctionArn"]})
            elif kind == "path":
                s = sink(f"path-{rule.name}", "detail", rule)
                targets.append({"Id": "path", "Arn": queue_arn(s.name), "InputPath": "$.detail"})
            elif kind == "transform-json":
                s = sink(f"tx-json-{rule.name}", "transform-json", rule)
                targets.append({"Id": "tx-json", "Arn": queue_arn(s.name), "InputTransformer": {
                    "InputPathsMap": JSON_PATHS, "InputTemplate": JSON_TEMPLATE}})
            elif kind == "transform-text":
                s = sink(f"tx-text-{rule.name}", "transform-text", rule)
                targets.append({"Id": "tx-text", "Arn": queue_arn(s.name), "InputTransformer": {
                    "InputPathsMap": TEXT_PATHS, "InputTemplate": TEXT_TEMPLATE}})
            elif kind == "constant":
                s = sink(f"const-{rule.name}", "constant", rule)
                targets.append({"Id": "constant", "Arn": queue_arn(s.name),
                                "Input": json.dumps(CONSTANT_INPUT)})
            elif kind == "too-small":
                small = f"small-{rule.name}"
                make_queue(small, MaximumMessageSize="1024")
                s = sink(f"dlq-{small}", "dead-letter", rule, target_arn=queue_arn(small), retries=1)
                targets.append({"Id": "too-small", "Arn": queue_arn(small),
                                "RetryPolicy": {"MaximumRetryAttempts": 1,
                                                "MaximumEventAgeInSeconds": 60},
                                "DeadLetterConfig": {"Arn": queue_arn(s.name)}})
            elif kind == "gone":
                gone = f"gone-{rule.name}"
                gone_url = make_queue(gone)
                s = sink(f"dlq-{gone}", "dead-letter", rule, target_arn=queue_arn(gone), retries=0)
                targets.append({"Id": "gone", "Arn": queue_arn(gone),
                                "RetryPolicy": {"MaximumRetryAttempts": 0,
                                                "MaximumEventAgeInSeconds": 60},
                                "DeadLetterConfig": {"Arn": queue_arn(s.name)}})
            else:
                raise AssertionError(f"unknown target kind {kind}")
        out = ev.put_targets(Rule=rule.name, EventBusName=bus, Targets=targets)
        assert out["FailedEntryCount"] == 0, (rule.name, out)
        if "gone" in rule.extras:
            sqs.delete_queue(QueueUrl=gone_url)
    return sinks


# =========================================================================== sending


def send_all(run: Run, srv, bus: str) -> None:
    """PutEvents for every event, BATCH at a time from SENDERS threads; the server is
    killed and restarted once KILL_AFTER have been accepted."""
    batches: queue_module.Queue = queue_module.Queue()
    for start in range(0, EVENTS, BATCH):
        batches.put(list(range(start, min(start + BATCH, EVENTS))))

    def sender() -> None:
        ev = client("events", srv.endpoint)
        while True:
            try:
                ns = batches.get_nowait()
            except queue_module.Empty:
                return
            try:
                out = ev.put_events(Entries=[run.events[n].entry(bus) for n in ns])
            except Exception as e:  # noqa: BLE001 - no answer: the batch's fate is unknown
                with run.lock:
                    run.unanswered.update(ns)
                    if not run.killed:
                        run.errors_before_kill.append(repr(e))
                run.restarted.wait(timeout=60)
                ev = client("events", srv.endpoint)
                continue
            with run.lock:
                for n, answer in zip(ns, out["Entries"]):
                    if "EventId" in answer:
                        run.accepted[n] = answer["EventId"]
                    else:
                        run.refused.append({"n": n, **answer})

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(SENDERS)]
    run.first_put = time.time()
    for t in threads:
        t.start()
    support.wait_for(lambda: len(run.accepted), lambda n: n >= KILL_AFTER, timeout=60,
                     interval=0.01, what=f"{KILL_AFTER} events accepted")
    with run.lock:
        run.killed = True
    srv.kill()
    support.started(srv)
    run.restarted.set()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a sender is stuck"
    run.last_put = time.time()


# =========================================================================== draining


def drain_all(endpoint: str, run: Run, sinks: list[Sink], deadline_s: float) -> None:
    """Receives every sink's messages, DRAINERS queues at a time, until each has every
    accepted event that belongs there; then, a second later, sweeps every queue once more
    for anything that came late."""
    work: queue_module.Queue = queue_module.Queue()
    for s in sinks:
        work.put(s)
    deadline = time.monotonic() + deadline_s
    wanted = {s.name: {n for n in run.accepted if s.belongs(run.events[n])} for s in sinks}

    def complete(s: Sink) -> bool:
        if s.form == "constant":
            return len(s.messages) >= len(wanted[s.name])
        got = {message_number(s, m) for m in s.messages}
        return wanted[s.name] <= got

    def receive_all(sqs, s: Sink) -> None:
        """Receives from `s` until a receive finds nothing."""
        while True:
            extra = {"MessageAttributeNames": ["All"]} if s.form == "dead-letter" else {}
            got = sqs.receive_message(QueueUrl=s.url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                      VisibilityTimeout=900, **extra).get("Messages", [])
            if not got:
                return
            s.messages.extend(got)
            if s.fifo:
                sqs.delete_message_batch(QueueUrl=s.url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])

    def drainer() -> None:
        sqs = client("sqs", endpoint)
        while time.monotonic() < deadline:
            try:
                s = work.get(timeout=0.5)
            except queue_module.Empty:
                return
            receive_all(sqs, s)
            if not complete(s):
                work.put(s)
                time.sleep(0.2)

    def sweeper(part: list[Sink]) -> None:
        sqs = client("sqs", endpoint)
        for s in part:
            receive_all(sqs, s)

    in_threads(drainer, [()] * DRAINERS, timeout=deadline_s + 30)
    time.sleep(1.0)
    in_threads(sweeper, [(sinks[i::DRAINERS],) for i in range(DRAINERS)], timeout=30)


def in_threads(target, args: list[tuple], timeout: float) -> None:
    """Runs target(*a) for each `a` of `args`, each on a thread of its own, and waits."""
    threads = [threading.Thread(target=target, args=a, daemon=True) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)


def message_number(s: Sink, m: dict) -> int | None:
    """The number of the event a message of sink `s` carries (None: it carries none)."""
    try:
        body = json.loads(m["Body"])
        if s.form in ("event", "dead-letter"):
            return body["detail"]["n"]
        if s.form in ("detail", "transform-json"):
            return body["n"]
        if s.form == "transform-text":
            match = TEXT_OUTPUT.match(body)
            return int(match["n"]) if match else None
    except (ValueError, KeyError, TypeError):
        return None
    return None


# =========================================================================== checking


def check_sink(s: Sink, run: Run, bus: str, problems: list[str]) -> dict:
    """Compares what sink `s` got with what belongs there; appends what is wrong."""
    belongs_accepted = {n for n in run.accepted if s.belongs(run.events[n])}
    belongs_maybe = {n for n in run.unanswered if s.belongs(run.events[n])}
    label = f"{s.name} ({s.form})"

    if s.form == "constant":
        bad = [m["Body"] for m in s.messages if json.loads(m["Body"]) != CONSTANT_INPUT]
        if bad:
            problems.append(f"{label}: bodies other than the constant input: {bad[:3]}")
        if len(s.messages) < len(belongs_accepted):
            problems.append(f"{label}: {len(s.messages)} messages, fewer than the "
                            f"{len(belongs_accepted)} accepted events that match")
        return {"sink": s.name, "expected": len(belongs_accepted), "got": len(s.messages)}

    got: dict[int, int] = {}
    by_kind: dict[str, list[str]] = {}
    for m in s.messages:
        n = message_number(s, m)
        if n is None or not 0 <= n < EVENTS:
            by_kind.setdefault("a message names no event of the run", []).append(m["Body"][:300])
            continue
        got[n] = got.get(n, 0) + 1
        wrong_message = check_message(s, m, run.events[n], run, bus)
        if wrong_message:
            what, example = wrong_message
            by_kind.setdefault(what, []).append(f"event {n}: {example}")
    for what, examples in by_kind.items():
        problems.append(f"{label}: {what}: {len(examples)} messages, e.g. {examples[0]}")
    received = set(got)
    missing = belongs_accepted - received
    wrong = received - belongs_accepted - belongs_maybe
    if missing:
        problems.append(f"{label}: {len(missing)} of {len(belongs_accepted)} accepted events "
                        f"that match never arrived, e.g. {sorted(missing)[:10]}")
    if wrong:
        problems.append(f"{label}: {len(wrong)} events that do not match arrived, e.g. "
                        f"{[(n, run.events[n]) for n in sorted(wrong)[:2]]}")
    repeated = sum(c - 1 for c in got.values())
    if s.fifo and repeated:
        problems.append(f"{label}: {repeated} events arrived twice in a FIFO queue, whose "
                        f"deduplication id is the event's id")
    return {"sink": s.name, "expected": len(belongs_accepted), "got": len(s.messages),
            "repeated": repeated}


def check_event_body(body: dict, e: Event, run: Run) -> tuple[str, str] | None:
    """What is wrong with a delivered event (what, an example), or None."""
    want = {"version": "0", "detail-type": e.detail_type, "source": e.source, "account": ACCOUNT,
            "region": REGION, "resources": e.resources, "detail": e.detail}
    have = {k: body.get(k) for k in want}
    if have != want:
        return "the event is not the one sent", f"{have} != {want}"
    if e.n in run.accepted and body.get("id") != run.accepted[e.n]:
        return "the id is not the one PutEvents answered", f"{body.get('id')} != {run.accepted[e.n]}"
    if not ISO_TIME.match(str(body.get("time"))):
        return "the time is not an ISO-8601 UTC time", repr(body.get("time"))
    return None


def check_message(s: Sink, m: dict, e: Event, run: Run, bus: str) -> tuple[str, str] | None:
    """What is wrong with message `m` of sink `s`, which carries event `e`, or None."""
    body = json.loads(m["Body"])
    if s.form == "event":
        return check_event_body(body, e, run)
    if s.form == "dead-letter":
        problem = check_event_body(body, e, run)
        if problem:
            return problem
        attrs = {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()}
        want = {"RULE_ARN": rule_arn(bus, s.rule.name), "TARGET_ARN": s.target_arn,
                "RETRY_ATTEMPTS": str(s.retries)}
        if s.retries == 0:
            want["ERROR_CODE"] = "RESOURCE_NOT_FOUND"
        have = {k: attrs.get(k) for k in want}
        if have != want:
            return "wrong dead-letter attributes", f"{have} != {want}"
        if not attrs.get("ERROR_CODE") or not attrs.get("ERROR_MESSAGE"):
            return "dead-letter attributes without an error code or message", str(attrs)
        if s.retries and "MaximumRetryAttempts" not in (attrs.get("EXHAUSTED_RETRY_CONDITION") or ""):
            return ("EXHAUSTED_RETRY_CONDITION does not name the retry limit",
                    repr(attrs.get("EXHAUSTED_RETRY_CONDITION")))
        return None
    if s.form == "detail":
        if body != e.detail:
            return "InputPath $.detail gave something else", f"{body} != {e.detail}"
        return None
    if s.form == "transform-text":
        want = f"{s.rule.name} triggered by {e.source} for order {e.n}"
        if body != want:
            return "the text template gave something else", f"{body!r} != {want!r}"
        return None
    if s.form == "transform-json":
        return check_json_transform(body, s, e, run, bus)
    return "unknown form", s.form


def as_text(value) -> str:
    """A value inside a JSON string of a template: a string's content, else its JSON."""
    return value if isinstance(value, str) else compact(value)


def check_json_transform(body: dict, s: Sink, e: Event, run: Run, bus: str) -> tuple[str, str] | None:
    full = body.get("eventJson")
    if not isinstance(full, dict):
        return "<aws.events.event.json> is not an object", repr(full)
    problem = check_event_body(full, e, run)
    if problem:
        return f"<aws.events.event.json>: {problem[0]}", problem[1]
    event_id = full["id"]
    want = {
        "id": event_id, "n": e.n, "source": e.source, "amount": e.amount, "customer": e.customer,
        "tags": e.detail["tags"],
        "text": f"{e.source} sent {e.n} from {e.detail['region']} for {as_text(e.amount)}",
        "mixed": [9, e.detail["region"], True], "rule": s.rule.name,
        "ruleArn": rule_arn(bus, s.rule.name),
    }
    have = {k: body.get(k) for k in want}
    if have != want:
        return "the JSON template gave something else", f"{have} != {want}"
    ingested = body.get("ingested", "")
    if not ISO_TIME.match(ingested):
        return "<aws.events.event.ingestion-time> is not an ISO-8601 UTC time", repr(ingested)
    seconds = calendar.timegm(time.strptime(ingested[:19], "%Y-%m-%dT%H:%M:%S"))
    if not run.first_put - 2 <= seconds <= run.last_put + 2:
        return "<aws.events.event.ingestion-time> is not when the event was put", ingested
    # "aws.events.event: the original event payload as JSON (without the detail field)";
    # "aws.events.event.json: the full original event payload as JSON (with the detail
    # field)" ("Amazon EventBridge input transformation", predefined variables).
    envelope = body.get("event")
    if not isinstance(envelope, dict):
        return "<aws.events.event> is not a JSON object", repr(envelope)
    if "detail" in envelope:
        return ("<aws.events.event> has the detail field (documented: the event without it)",
                compact(envelope)[:300])
    same = {k: envelope.get(k) for k in ("version", "id", "source", "account", "time", "region",
                                          "resources")}
    if same != {k: full[k] for k in same}:
        return "<aws.events.event> is not the event's envelope", f"{envelope} vs {full}"
    return None


# =========================================================================== the run


def test_ten_thousand_events_through_fifty_rules_to_every_kind_of_target_across_a_kill_9(
        server_factory):
    started = time.monotonic()
    srv = server_factory()
    endpoint = srv.endpoint
    ev, sqs = client("events", endpoint), client("sqs", endpoint)
    sns, lam = client("sns", endpoint), client("lambda", endpoint)
    bus, second_bus = "acceptance", "acceptance-second"
    sinks = build_bus(ev, sqs, sns, lam, bus, second_bus)
    assert len(RULES) == 50 and len(ev.list_rules(EventBusName=bus, Limit=100)["Rules"]) == 50
    set_up = time.monotonic()

    run = Run()
    send_all(run, srv, bus)
    sent = time.monotonic()

    drain_all(srv.endpoint, run, sinks, deadline_s=60)
    drained = time.monotonic()

    problems: list[str] = []
    if run.errors_before_kill:
        problems.append(f"PutEvents failed before the kill: {run.errors_before_kill[:3]}")
    if run.refused:
        problems.append(f"PutEvents refused {len(run.refused)} entries: {run.refused[:3]}")
    if len(run.accepted) + len(run.unanswered) + len(run.refused) != EVENTS:
        problems.append(f"{len(run.accepted)} accepted + {len(run.unanswered)} unanswered "
                        f"!= {EVENTS} sent")
    if len(run.unanswered) > 10 * BATCH * SENDERS:
        problems.append(f"{len(run.unanswered)} events got no answer: more than the kill explains")
    rows = [check_sink(s, run, bus, problems) for s in sinks]
    for row in rows:
        if row["expected"] == 0 and row["sink"] not in ("q-nobody", "q-over-a-thousand"):
            problems.append(f"{row['sink']}: no event of the run matches it, so it tests nothing")
    print(f"\n[event bus acceptance] {len(run.accepted)} accepted, {len(run.unanswered)} "
          f"unanswered at the kill; {sum(r['got'] for r in rows)} messages in {len(sinks)} "
          f"queues, {sum(r.get('repeated', 0) for r in rows)} repeated; set-up "
          f"{set_up - started:.1f}s, sending {sent - set_up:.1f}s, draining "
          f"{drained - sent:.1f}s")
    assert not problems, "\n".join(problems)
