"""The AWS SDKs the runtimes provide, as Lambda's do: after `shoal sdk install`, a Python
function imports boto3 and a Node function imports `@aws-sdk/client-*` (ES modules and
CommonJS) without bundling them, and calls the platform with them: isolated and not.
"""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

import support
from support import invoke


def test_the_install_holds_boto3_and_the_sdk_v3_clients(runtime_sdks):
    assert (runtime_sdks / "python" / "boto3").is_dir()
    for client in ("lambda", "sqs", "sns", "eventbridge", "sfn", "scheduler"):
        assert (runtime_sdks / "node" / "node_modules" / "@aws-sdk" / f"client-{client}").is_dir()


def _server_with_sdks(sdks: Path, folder: Path, isolation: str) -> support.ShoalServer:
    return support.started(support.ShoalServer(
        data_dir=support.with_sdks(sdks, folder / "data"), log_dir=folder / "logs",
        extra_args=["--isolation", isolation]))


ISOLATIONS = ["none"] + (["namespaces"] if os.geteuid() == 0 else [])


@pytest.fixture(scope="module", params=ISOLATIONS)
def sdk_server(request, runtime_sdks, tmp_path_factory):
    srv = _server_with_sdks(runtime_sdks, tmp_path_factory.mktemp(f"sdk-{request.param}"),
                            request.param)
    srv.isolation = request.param
    yield srv
    srv.stop()


def _clients(srv):
    config = Config(retries={"max_attempts": 0}, read_timeout=60, connect_timeout=5)
    make = lambda service: boto3.client(  # noqa: E731
        service, endpoint_url=srv.endpoint, region_name=support.REGION,
        aws_access_key_id="x", aws_secret_access_key="x", config=config)
    return make("lambda"), make("sqs")


def _create(lam, fixture: str, runtime: str, handler: str) -> str:
    name = support.unique_name(fixture)
    lam.create_function(FunctionName=name, Runtime=runtime, Handler=handler, Role=support.ROLE,
                        Code={"ZipFile": support.zip_dir(support.FIXTURES / fixture)},
                        Timeout=30, MemorySize=256)
    return name


def _call(lam, name: str, event: dict):
    result = invoke(lam, name, event, LogType="Tail")
    assert result.get("FunctionError") is None, (result["raw"], result["log"])
    return result["json"]


def _received(sqs, url: str) -> list[str]:
    return [m["Body"] for m in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2,
                                                   MaxNumberOfMessages=10).get("Messages", [])]


def test_python_functions_import_the_provided_boto3(sdk_server):
    lam, sqs = _clients(sdk_server)
    name = _create(lam, "py-sdk-provided", support.PY_RUNTIME, "app.handler")
    where = _call(lam, name, {"op": "where"})["boto3"]
    assert "/runtimes/sdk/python/boto3/" in where or where.startswith("/var/runtime/sdk/python/"), where
    queue = support.unique_name("sdkq")
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    _call(lam, name, {"op": "send", "queue": queue, "body": "from python"})
    assert _received(sqs, url) == ["from python"]
    echo = _create(lam, "node-sdk-esm", support.NODE_RUNTIME, "index.handler")
    answer = _call(lam, name, {"op": "invoke", "target": echo, "payload": {"n": 1}})
    assert answer == {"status": 200, "payload": {"echo": {"n": 1}}}


def test_node_functions_import_the_sdk_v3_as_es_modules_and_commonjs(sdk_server):
    lam, sqs = _clients(sdk_server)
    esm = _create(lam, "node-sdk-esm", support.NODE_RUNTIME, "index.handler")
    cjs = _create(lam, "node-sdk-cjs", support.NODE_RUNTIME, "index.handler")
    where = _call(lam, esm, {"op": "where"})["sqs"]
    assert "/node_modules/@aws-sdk/client-sqs/" in where, where
    queue = support.unique_name("sdkq")
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    sent = _call(lam, esm, {"op": "send", "queue": queue, "body": "from an ES module"})
    assert sent["MessageId"]
    _call(lam, cjs, {"queue": queue, "body": "from CommonJS"})
    assert sorted(_received(sqs, url) + _received(sqs, url)) == ["from CommonJS",
                                                                 "from an ES module"]
    answer = _call(lam, esm, {"op": "invoke", "target": esm, "payload": {"n": 2}})
    assert answer == {"status": 200, "payload": {"echo": {"n": 2}}}


def test_without_the_sdk_a_node_import_fails_as_on_lambda(server_factory):
    """No `shoal sdk install`: an import of the SDK is the function's ImportModuleError."""
    srv = server_factory()
    lam, _ = _clients(srv)
    name = _create(lam, "node-sdk-esm", support.NODE_RUNTIME, "index.handler")
    result = invoke(lam, name, {"op": "where"})
    assert result.get("FunctionError") == "Unhandled", result["raw"]
    assert result["json"]["errorType"] == "Runtime.ImportModuleError", result["raw"]
