"""Network modes of isolated environments (`shoal:network` tag): `none` and `egress`.

A function tagged `shoal:network=egress` reaches what the host reaches through user-mode
NAT (slirp4netns), but never the host's loopback: not the Shoal API, not other
environments' Runtime APIs. The host it reaches here is a test host of the suite's own (a
network namespace behind a veth pair, support.NetnsHost), so no packet leaves the machine.

Every server here isolates its environments whatever SHOAL_ISOLATION says (the flag wins).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess

import botocore.exceptions
import pytest

import support
from support import invoke

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="isolated environments and test hosts need root"),
    pytest.mark.skipif(shutil.which("slirp4netns") is None
                       and not os.environ.get("SHOAL_E2E_REQUIRE_EGRESS"),
                       reason="slirp4netns (network mode egress) is not installed"),
]

CODE = support.zip_dir(support.FIXTURES / "isolation")
BLOB = os.urandom(3 * 1024 * 1024 + 17)
NETWORK_TAG = "shoal:network"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def test_host():
    with support.NetnsHost({"/blob": BLOB, "/hello": b"hello from the test host\n"}) as host:
        yield host


def _isolated_server(folder, *flags: str) -> support.ShoalServer:
    return support.started(support.ShoalServer(
        data_dir=folder / "data", log_dir=folder / "logs", keep_alive="30s",
        extra_args=["--isolation", "namespaces", *flags]))


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    srv = _isolated_server(tmp_path_factory.mktemp("network"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def nlam(net, client_for):
    return client_for(net)


@pytest.fixture(scope="module")
def make_fn(nlam):
    """make_fn(network=None|"none"|"egress") -> the name of a new probe function."""
    maker = support.FunctionMaker(nlam, "net")

    def make(network: str | None = None) -> str:
        extra = {"Tags": {NETWORK_TAG: network}} if network else {}
        return maker.create(CODE, Timeout=20, **extra)["FunctionName"]

    yield make
    maker.delete_all()


def probe(lam, fn: str, what: str, **event) -> dict:
    r = invoke(lam, fn, {"probe": what, **event})
    assert r["StatusCode"] == 200 and "FunctionError" not in r, \
        f"probe {what} of {fn}: {r.get('FunctionError')} {r['raw'][:2000]!r}"
    return r["json"]


def helpers() -> set[int]:
    """Live slirp4netns processes."""
    out = subprocess.run(["pgrep", "-x", "slirp4netns"], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


UNREACHABLE = ("ENETUNREACH", "EHOSTUNREACH", "TimeoutError: timed out")


# --------------------------------------------------------------------------- tests


def test_egress_reaches_the_test_host_and_none_does_not(nlam, make_fn, test_host):
    open_fn, closed_fn, default_fn = make_fn("egress"), make_fn("none"), make_fn()

    got = probe(nlam, open_fn, "fetch", url=test_host.url("/blob"))
    assert got == {"status": 200, "length": len(BLOB),
                   "sha256": hashlib.sha256(BLOB).hexdigest()}, got
    me = probe(nlam, open_fn, "identity")
    assert sorted(me["interfaces"]) == ["lo", "tap0"], me["interfaces"]
    resolv = probe(nlam, open_fn, "read", paths=["/etc/resolv.conf"])["/etc/resolv.conf"]
    assert resolv == {"ok": "nameserver 10.0.2.3\n"}, resolv

    target = f"{test_host.address}:{test_host.port}"
    for fn in (closed_fn, default_fn):
        got = probe(nlam, fn, "connect", targets=[target])
        assert got[target].get("error") in UNREACHABLE, (fn, got)
        assert probe(nlam, fn, "identity")["interfaces"] == ["lo"]
    # The test host does serve: the refusals above are the sandbox's doing.
    with socket.create_connection((test_host.address, test_host.port), timeout=2):
        pass


def test_egress_never_reaches_the_hosts_loopback(net, nlam, make_fn):
    fn = make_fn("egress")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        port = listener.getsockname()[1]
        targets = {
            # 10.0.2.2 is the NAT's gateway, which would be the host's loopback.
            f"10.0.2.2:{net.port}": UNREACHABLE + ("ECONNREFUSED",),
            f"10.0.2.2:{port}": UNREACHABLE + ("ECONNREFUSED",),
            "10.0.2.2:9001": UNREACHABLE + ("ECONNREFUSED",),
            "10.0.2.2:9002": UNREACHABLE + ("ECONNREFUSED",),
            f"127.0.0.1:{net.port}": ("ECONNREFUSED",),
            f"127.0.0.1:{port}": ("ECONNREFUSED",),
        }
        got = probe(nlam, fn, "connect",
                    targets=[*targets, "127.0.0.1:9001", "127.0.0.1:9002"])
        for target, allowed in targets.items():
            assert got[target].get("error") in allowed, f"{target}: {got[target]}"
        assert got["127.0.0.1:9001"] == {"ok": True}, got  # its own Runtime API
        assert got["127.0.0.1:9002"] == {"ok": True}, got  # its own platform API endpoint
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        listener.close()


def test_the_tag_switches_new_environments_and_retires_old_ones(nlam, make_fn, test_host):
    fn = make_fn()
    arn = support.function_arn(fn)
    target = f"{test_host.address}:{test_host.port}"
    assert nlam.list_tags(Resource=arn)["Tags"] == {}
    first = probe(nlam, fn, "connect", targets=[target])
    assert first[target].get("error") in UNREACHABLE
    before = probe(nlam, fn, "noop")["env_id"]

    nlam.tag_resource(Resource=arn, Tags={NETWORK_TAG: "egress", "team": "net"})
    assert nlam.list_tags(Resource=arn)["Tags"] == {NETWORK_TAG: "egress", "team": "net"}
    assert nlam.get_function(FunctionName=fn)["Tags"][NETWORK_TAG] == "egress"
    opened = probe(nlam, fn, "connect", targets=[target])
    assert opened[target] == {"ok": True}, opened
    egress_env = probe(nlam, fn, "noop")["env_id"]
    assert egress_env != before, "the environment of mode none was reused"
    assert helpers(), "no egress helper runs for the egress environment"

    # A tag that is not the network's changes nothing: the environment stays warm.
    nlam.tag_resource(Resource=arn, Tags={"owner": "someone"})
    assert probe(nlam, fn, "noop")["env_id"] == egress_env

    nlam.untag_resource(Resource=arn, TagKeys=[NETWORK_TAG])
    closed = probe(nlam, fn, "connect", targets=[target])
    assert closed[target].get("error") in UNREACHABLE, closed
    assert probe(nlam, fn, "noop")["env_id"] != egress_env
    assert nlam.list_tags(Resource=arn)["Tags"] == {"team": "net", "owner": "someone"}


def _cgroups_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return f.read()
    except OSError:
        return None


def helpers_of(name: str) -> set[int]:
    """The egress helpers of function `name`'s environments (they share their cgroups)."""
    groups = {_cgroups_of(pid) for pid in support.function_pids(name)} - {None}
    return {pid for pid in helpers() if _cgroups_of(pid) in groups}


def test_helpers_end_with_their_environments(nlam, make_fn):
    fn = make_fn("egress")
    probe(nlam, fn, "noop")
    mine = helpers_of(fn)
    assert len(mine) == 1, mine
    nlam.delete_function(FunctionName=fn)
    support.wait_for(lambda: mine & helpers(), lambda alive: not alive, timeout=5,
                     what="the egress helper to exit after DeleteFunction")


def test_egress_environments_are_made_ahead_once_one_was_needed(net, nlam, make_fn):
    probe(nlam, make_fn("egress"), "noop")
    # Spares for egress, their helper attached, wait for the next egress environments.
    support.wait_for(helpers, lambda h: len(h) >= 2, timeout=10,
                     what="egress spares with their helpers")
    fn = make_fn("egress")
    got = probe(nlam, fn, "identity")
    assert sorted(got["interfaces"]) == ["lo", "tap0"], got["interfaces"]


def test_a_bad_network_value_is_refused(nlam, make_fn):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        make_fn("host")
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "none or egress" in e.value.response["Error"]["Message"]
    fn = make_fn()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        nlam.tag_resource(Resource=support.function_arn(fn), Tags={NETWORK_TAG: "bridge"})
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert nlam.list_tags(Resource=support.function_arn(fn))["Tags"] == {}


def test_without_the_helper_egress_is_refused_and_the_rest_works(tmp_path, client_for):
    srv = _isolated_server(tmp_path, "--slirp4netns", str(tmp_path / "no-such-slirp4netns"))
    try:
        lam = client_for(srv)
        name = support.unique_name("net")
        with pytest.raises(botocore.exceptions.ClientError) as e:
            lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME,
                                Handler="app.handler", Role=support.ROLE,
                                Code={"ZipFile": CODE}, Tags={NETWORK_TAG: "egress"})
        assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
        assert "no-such-slirp4netns" in e.value.response["Error"]["Message"]
        lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME,
                            Handler="app.handler", Role=support.ROLE, Code={"ZipFile": CODE})
        assert probe(lam, name, "noop")["env_id"]
        assert "cannot be given network egress" in srv.stderr_text()
    finally:
        srv.stop()


def test_a_killed_server_leaves_no_helper_behind(tmp_path, client_for):
    srv = _isolated_server(tmp_path)
    lam = client_for(srv)
    baseline = helpers()
    name = support.unique_name("net")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": CODE},
                        Tags={NETWORK_TAG: "egress"})
    probe(lam, name, "noop")
    started = helpers() - baseline
    assert started
    os.kill(srv.proc.pid, signal.SIGKILL)  # the server alone, not its process group
    srv.proc.wait(timeout=5)
    srv.proc = None
    # The helper's exit pipe closed with the server.
    support.wait_for(lambda: started & helpers(), lambda alive: not alive, timeout=5,
                     what="the egress helper to exit after the server was killed")
    srv.start()  # the restart removes what the killed server's environments left
    srv.stop()
