"""The logs API: GET /shoal/v1/functions/{name}/logs?after=SEQ&limit=N."""

import re

import pytest

import support
from support import get_logs, invoke, wait_for_logs


@pytest.fixture
def printer(make_fn, fixture_zip):
    return make_fn(fixture_zip("py-echo"), handler="app.printer")["FunctionName"]


def test_printed_lines_in_order_between_start_and_report(lam, endpoint, printer):
    lines = [f"line {i}" for i in range(10)]
    resp = invoke(lam, printer, {"lines": 10}, LogType="Tail")
    assert "FunctionError" not in resp, resp["raw"]
    rid = support.request_id_from_tail(resp["LogResult"])
    events = wait_for_logs(endpoint, printer, lambda ev: any(
        e["message"].startswith(f"REPORT RequestId: {rid}") for e in ev))
    messages = support.messages_for_request(events, rid)
    assert messages[0] == f"START RequestId: {rid} Version: $LATEST", messages
    assert messages[-1].startswith(f"REPORT RequestId: {rid}\tDuration: "), messages
    assert messages[-2] == f"END RequestId: {rid}", messages
    printed = [m for m in messages if m.startswith("line ")]
    assert printed == lines, messages


def test_event_fields(lam, endpoint, printer):
    invoke(lam, printer, {"lines": 1})
    events = wait_for_logs(endpoint, printer, lambda ev: any(
        e["message"].startswith("REPORT RequestId:") for e in ev))
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    for e in events:
        assert isinstance(e["seq"], int)
        assert isinstance(e["timestamp"], int) and e["timestamp"] > 1_600_000_000_000, e
        assert re.match(r"^\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]+$", e["logStream"]), e
        assert isinstance(e["message"], str)
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)


def test_after_and_limit(lam, endpoint, printer):
    invoke(lam, printer, {"lines": 3})
    events = wait_for_logs(endpoint, printer, lambda ev: any(
        e["message"].startswith("REPORT RequestId:") for e in ev))
    page = get_logs(endpoint, printer, after=0, limit=2)
    assert [e["seq"] for e in page["events"]] == [e["seq"] for e in events[:2]]
    rest = get_logs(endpoint, printer, after=page["nextAfter"], limit=1000)
    assert [e["seq"] for e in rest["events"]] == [e["seq"] for e in events[2:]]
    empty = get_logs(endpoint, printer, after=events[-1]["seq"])
    assert empty["events"] == []
    assert empty["nextAfter"] == events[-1]["seq"]


def test_logs_of_missing_function_is_404(endpoint, unique_name):
    r = support.http(endpoint, "GET", f"/shoal/v1/functions/{unique_name('missing')}/logs")
    assert r.status == 404, r
    assert r.headers.get("x-amzn-errortype", "").startswith("ResourceNotFoundException"), r


def test_logs_are_per_function(lam, endpoint, make_fn, fixture_zip, printer):
    other = make_fn(fixture_zip("py-echo"), handler="app.printer")["FunctionName"]
    first = invoke(lam, printer, {"lines": 1}, LogType="Tail")
    second = invoke(lam, other, {"lines": 1}, LogType="Tail")
    rid1 = support.request_id_from_tail(first["LogResult"])
    rid2 = support.request_id_from_tail(second["LogResult"])
    ev1 = wait_for_logs(endpoint, printer, lambda ev: any(rid1 in e["message"] for e in ev))
    ev2 = wait_for_logs(endpoint, other, lambda ev: any(rid2 in e["message"] for e in ev))
    assert not any(rid2 in e["message"] for e in ev1)
    assert not any(rid1 in e["message"] for e in ev2)


def test_bad_query_is_a_json_error(endpoint, printer):
    r = support.http(endpoint, "GET", f"/shoal/v1/functions/{printer}/logs?after=abc")
    assert r.status == 400, r
    assert r.headers.get("x-amzn-errortype"), r
    assert r.headers.get("content-type", "").startswith("application/json"), r
    assert r.json().get("message"), r


def test_output_without_final_newline_is_logged_with_its_invocation(lam, make_fn):
    src = ("import sys\n"
           "def handler(event, context):\n"
           "    sys.stdout.write('partial-no-newline')\n"
           "    sys.stdout.flush()\n"
           "    return 'ok'\n")
    name = make_fn(support.py_zip(src))["FunctionName"]
    resp = invoke(lam, name, {}, LogType="Tail")
    assert "FunctionError" not in resp, resp["raw"]
    before_end = resp["log"].split("END RequestId:")[0]
    assert "partial-no-newline" in before_end, resp["log"]
