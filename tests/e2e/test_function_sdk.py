"""Functions that call the platform from inside, as on Lambda: plain boto3, no endpoint or
keys in the code.

Every environment gets temporary credentials of its own (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), revoked when it ends, and `AWS_ENDPOINT_URL`
naming its platform API endpoint: a listener of its own (inside its network namespace when
isolated) that serves the whole API. Here a function sends to a queue and invokes another
function, on open and keyed servers, isolated (network mode `none`) and not; credentials
taken out of a function stop working once its environment is gone; the server's own keys
never reach a function.

boto3 is the one the runtimes provide (`shoal sdk install`, the `runtime_sdks` fixture).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import support
from support import invoke

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="isolated environments need root")

CODE = support.zip_dir(support.FIXTURES / "py-sdk")

# The server's own key (keyed servers), given through the server's environment so that a
# function that inherited it would show it.
AKID = "AKIDSHOALE2E0000MAIN"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


# --------------------------------------------------------------------------- fixtures


def _server(folder: Path, sdks: Path, isolation: str = "namespaces", keyed: bool = False,
            keep_alive: str = "30s") -> support.ShoalServer:
    env = {"SHOAL_LOG": "info,shoal::api=debug"}
    if keyed:
        env.update({"SHOAL_ACCESS_KEY_ID": AKID, "SHOAL_SECRET_ACCESS_KEY": SECRET})
    return support.started(support.ShoalServer(
        data_dir=support.with_sdks(sdks, folder / "data"), log_dir=folder / "logs",
        keep_alive=keep_alive, extra_args=["--isolation", isolation], extra_env=env))


def _clients(srv: support.ShoalServer, key: str = "x", secret: str = "x",
             token: str | None = None):
    config = Config(retries={"max_attempts": 0}, read_timeout=60, connect_timeout=5)
    make = lambda service: boto3.client(  # noqa: E731
        service, endpoint_url=srv.endpoint, region_name=support.REGION,
        aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token,
        config=config)
    return make("lambda"), make("sqs")


def _serving(tmp_path_factory, sdks: Path, folder: str, **options):
    srv = _server(tmp_path_factory.mktemp(folder), sdks, **options)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory, runtime_sdks):
    yield from _serving(tmp_path_factory, runtime_sdks, "sdk-open")


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory, runtime_sdks):
    yield from _serving(tmp_path_factory, runtime_sdks, "sdk-keyed", keyed=True,
                        keep_alive="3s")


def _function(lam, **extra) -> str:
    name = support.unique_name("sdk")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": CODE}, Timeout=30,
                        **extra)
    return name


def _call(lam, name: str, event: dict):
    result = invoke(lam, name, event, LogType="Tail")
    assert result.get("FunctionError") is None, (result["raw"], result["log"])
    return result["json"]


def _sends_and_invokes(srv: support.ShoalServer, lam, sqs) -> str:
    """A function sends to a queue and invokes another function; its name."""
    queue = support.unique_name("sdk-q")
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    sender, target = _function(lam), _function(lam)

    sent = _call(lam, sender, {"op": "send", "queue": queue, "body": "from inside"})
    received = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"]
    assert [(m["MessageId"], m["Body"]) for m in received] == [(sent["MessageId"], "from inside")]

    # The queue URL the public listener made, given to the function, works inside too.
    sent = _call(lam, sender, {"op": "send", "url": url, "body": "by its public URL"})
    assert sent["QueueUrl"] == url
    received = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"]
    assert [m["Body"] for m in received] == ["by its public URL"]

    answer = _call(lam, sender, {"op": "invoke", "target": target,
                                 "payload": {"n": 7}})
    assert answer == {"status": 200, "payload": {"echo": {"n": 7}, "from": target}}
    return sender


# --------------------------------------------------------------------------- tests


def test_a_function_sends_to_a_queue_and_invokes_another(open_server):
    lam, sqs = _clients(open_server)
    sender = _sends_and_invokes(open_server, lam, sqs)
    environ = _call(lam, sender, {"op": "environ"})
    assert environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9002"
    assert environ["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert len(environ["AWS_SECRET_ACCESS_KEY"]) == 40 and environ["AWS_SESSION_TOKEN"]
    # The API's request log names the environment the calls came from.
    support.wait_for(open_server.stderr_text, lambda text: f"caller={sender}:$LATEST/" in text,
                     what="a request line naming the calling function")


def test_keyed_server_accepts_the_functions_own_credentials(keyed_server):
    lam, sqs = _clients(keyed_server, AKID, SECRET)
    sender = _sends_and_invokes(keyed_server, lam, sqs)
    support.wait_for(keyed_server.stderr_text,
                     lambda text: f"principal={sender}:$LATEST/" in text,
                     what="a request line naming the credentials' environment")


def test_the_servers_keys_never_reach_a_function(keyed_server):
    lam, _ = _clients(keyed_server, AKID, SECRET)
    environ = _call(lam, _function(lam), {"op": "environ"})
    assert environ["AWS_ACCESS_KEY_ID"] != AKID
    leaked = {k: v for k, v in environ.items() if AKID in v or SECRET in v}
    assert leaked == {}
    assert not any(k.startswith("SHOAL_") for k in environ), sorted(environ)


def _still_accepted(srv, credentials: dict) -> bool:
    lam, _ = _clients(srv, credentials["AWS_ACCESS_KEY_ID"],
                      credentials["AWS_SECRET_ACCESS_KEY"], credentials["AWS_SESSION_TOKEN"])
    try:
        lam.list_functions()
        return True
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403, e.response
        assert e.response["Error"]["Code"] == "UnrecognizedClientException", e.response
        return False


def test_credentials_are_refused_once_their_environment_is_gone(keyed_server):
    lam, _ = _clients(keyed_server, AKID, SECRET)
    deleted, reaped = _function(lam), _function(lam)
    taken = {name: {k: v for k, v in _call(lam, name, {"op": "environ"}).items()
                    if k in CREDENTIAL_VARIABLES}
             for name in (deleted, reaped)}
    for credentials in taken.values():
        assert _still_accepted(keyed_server, credentials)
    # The session token is part of the credentials: the key and secret alone are refused.
    without_token = dict(taken[deleted], AWS_SESSION_TOKEN=None)
    assert not _still_accepted(keyed_server, without_token)

    lam.delete_function(FunctionName=deleted)
    support.wait_for(lambda: _still_accepted(keyed_server, taken[deleted]),
                     lambda accepted: not accepted, timeout=10,
                     what="the deleted function's credentials to be refused")
    # The other one ends with its environment, past the keep-alive (3 s).
    support.wait_for(lambda: _still_accepted(keyed_server, taken[reaped]),
                     lambda accepted: not accepted, timeout=20, interval=0.5,
                     what="the reaped environment's credentials to be refused")


def test_network_none_reaches_its_endpoint_and_nothing_else(open_server):
    lam, _ = _clients(open_server)
    name = _function(lam)
    with socket.socket() as host_service:
        host_service.bind(("127.0.0.1", 0))
        host_service.listen()
        port = host_service.getsockname()[1]
        for target in (port, open_server.port):
            assert _call(lam, name, {"op": "connect", "port": target}).startswith("refused")
    assert _call(lam, name, {"op": "connect", "port": 9002}) == "connected"


def test_unisolated_functions_reach_the_api_and_outsiders_do_not_reach_their_endpoint(
        tmp_path, runtime_sdks):
    srv = _server(tmp_path, runtime_sdks, isolation="none")
    try:
        lam, sqs = _clients(srv)
        sender = _sends_and_invokes(srv, lam, sqs)
        endpoint = _call(lam, sender, {"op": "environ"})["AWS_ENDPOINT_URL"]
        host, port = endpoint.removeprefix("http://").split(":")
        assert host == "127.0.0.1" and int(port) != srv.port
        # The endpoint is on the host's loopback, but serves the environment's processes only.
        with socket.create_connection((host, int(port)), timeout=5) as outsider:
            outsider.sendall(b"GET /2015-03-31/functions HTTP/1.1\r\nhost: x\r\n\r\n")
            outsider.settimeout(5)
            try:
                answer = outsider.recv(4096)
            except ConnectionResetError:  # closed with the request unread
                answer = b""
            assert answer == b""
    finally:
        srv.stop()
