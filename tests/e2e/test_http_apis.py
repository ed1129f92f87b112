"""HTTP APIs (API Gateway v2): the configuration operations (boto3 and the AWS CLI),
requests by host name (curl resolves `*.localhost` to loopback) and by path, route
choice with path parameters and `{proxy+}`, payload formats 1.0 and 2.0, stages and
deployments, Lambda authorizers (allowed, denied, cached), CORS, storage-first routes
into a queue (with a `kill -9` of the server mid-run), and bad input.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import urllib.parse

import boto3
import pytest
from botocore.config import Config

import support
from support import http, py_zip

REGION = support.REGION
ACCOUNT = "000000000000"

APP = py_zip('''
import base64, json

def handler(event, context):
    if event.get("version") == "1.0":
        return {"statusCode": 200, "headers": {"content-type": "application/json"},
                "multiValueHeaders": {"x-multi": ["a", "b"]},
                "body": json.dumps({"event": event})}
    q = event.get("queryStringParameters") or {}
    mode = q.get("mode", "echo")
    if mode == "plain":
        return {"hello": "world"}
    if mode == "binary":
        raw = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event["body"].encode()
        return {"statusCode": 201, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(raw[::-1]).decode(), "isBase64Encoded": True}
    if mode == "fail":
        raise RuntimeError("boom")
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "cookies": ["s=1; Path=/"], "body": json.dumps({"event": event})}
''')

AUTHORIZER = py_zip('''
import json
calls = 0

def handler(event, context):
    global calls
    calls += 1
    token = (event.get("headers") or {}).get("authorization", "")
    if event.get("version") == "1.0":
        effect = "Allow" if token.startswith("allow") else "Deny"
        return {"principalId": "user-" + token,
                "policyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}]},
                "context": {"calls": calls}}
    return {"isAuthorized": token.startswith("allow"),
            "context": {"user": token, "calls": calls}}
''')


def v2_client(endpoint: str, **config):
    return boto3.client(
        "apigatewayv2", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id="x", aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 0}, read_timeout=60, connect_timeout=5, **config))


@pytest.fixture(scope="module")
def apigw(server):
    return v2_client(server.endpoint)


@pytest.fixture(scope="module")
def apigw_nv(server):
    return v2_client(server.endpoint, parameter_validation=False)


@pytest.fixture(scope="module")
def sqs(server):
    return boto3.client("sqs", endpoint_url=server.endpoint, region_name=REGION,
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 0}))


@pytest.fixture
def make_api(apigw):
    made = []

    def create(**kwargs):
        api = apigw.create_api(ProtocolType="HTTP", Name=kwargs.pop("Name", support.unique_name("api")),
                               **kwargs)
        made.append(api["ApiId"])
        return api
    yield create
    for api_id in made:
        try:
            apigw.delete_api(ApiId=api_id)
        except Exception:
            pass


def execution_arn(api_id: str) -> str:
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}"


def allow_gateway(lam, name: str, api_id: str, sid: str = "apigw") -> None:
    lam.add_permission(FunctionName=name, StatementId=sid, Action="lambda:InvokeFunction",
                       Principal="apigateway.amazonaws.com",
                       SourceArn=f"{execution_arn(api_id)}/*")


def call(server, api_id: str, method: str, path: str, body=None, headers=None):
    """A request in the path form (`/execute-api/<id>/...`)."""
    return http(server.endpoint, method, f"/execute-api/{api_id}{path}", body=body, headers=headers)


def curl(url: str, *args: str):
    out = subprocess.run(["curl", "-sS", "-D", "-", *args, url], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), headers, body


def integration(apigw, api_id: str, name: str, version: str = "2.0") -> str:
    return apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY",
                                    IntegrationUri=support.function_arn(name),
                                    PayloadFormatVersion=version)["IntegrationId"]


# --------------------------------------------------------------------------- quick create


def test_quick_create_serves_a_function_by_host_name_and_by_path(server, lam, apigw, make_fn,
                                                                 make_api):
    name = make_fn(APP)["FunctionName"]
    api = make_api(Target=support.function_arn(name))
    api_id = api["ApiId"]
    assert api["ApiEndpoint"] == f"http://{api_id}.execute-api.localhost:{server.port}"
    assert api["ProtocolType"] == "HTTP"
    assert api["RouteSelectionExpression"] == "$request.method $request.path"
    routes = apigw.get_routes(ApiId=api_id)["Items"]
    assert [r["RouteKey"] for r in routes] == ["$default"] and routes[0]["ApiGatewayManaged"]
    stages = apigw.get_stages(ApiId=api_id)["Items"]
    assert stages[0]["StageName"] == "$default" and stages[0]["AutoDeploy"]

    # Without API Gateway's permission on the function: 500, as API Gateway answers.
    r = call(server, api_id, "GET", "/anything")
    assert r.status == 500 and r.json() == {"message": "Internal Server Error"}
    allow_gateway(lam, name, api_id)

    status, headers, body = curl(api["ApiEndpoint"] + "/some/path?x=1&x=2",
                                 "-H", "Cookie: a=1; b=2", "-H", "X-Multi: one")
    assert status == 200, body
    assert headers["set-cookie"] == ["s=1; Path=/"]
    assert headers["apigw-requestid"][0]
    event = json.loads(body)["event"]
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/some/path" and event["rawQueryString"] == "x=1&x=2"
    assert event["queryStringParameters"] == {"x": "1,2"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["headers"]["x-multi"] == "one"
    ctx = event["requestContext"]
    assert ctx["apiId"] == api_id and ctx["stage"] == "$default"
    assert ctx["domainName"] == f"{api_id}.execute-api.localhost"
    assert ctx["http"]["method"] == "GET" and ctx["http"]["sourceIp"] == "127.0.0.1"
    assert ctx["requestId"] == headers["apigw-requestid"][0]

    # The path form, a plain JSON answer, a binary body and a failing function.
    r = call(server, api_id, "GET", "/x?mode=plain")
    assert r.status == 200 and r.json() == {"hello": "world"}
    assert r.headers["content-type"] == "application/json"
    r = call(server, api_id, "POST", "/x?mode=binary", body=bytes([0, 1, 2, 255]),
             headers={"content-type": "application/octet-stream"})
    assert r.status == 201 and r.body == bytes([255, 2, 1, 0])
    r = call(server, api_id, "GET", "/x?mode=fail")
    assert r.status == 500 and r.json() == {"message": "Internal Server Error"}

    # An unknown API, and a deleted one.
    r = call(server, "zzzzzzzzzz", "GET", "/")
    assert r.status == 404 and r.json() == {"message": "Not Found"}
    apigw.delete_api(ApiId=api_id)
    assert call(server, api_id, "GET", "/").status == 404


# --------------------------------------------------------------------------- configuration


def test_apis_and_their_parts_are_created_read_updated_listed_and_deleted(server, apigw, make_fn,
                                                                          make_api):
    name = make_fn(APP)["FunctionName"]
    api = make_api(Description="first", Tags={"team": "web"},
                   CorsConfiguration={"AllowOrigins": ["https://app.example"]})
    api_id = api["ApiId"]
    assert api["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert api["Tags"] == {"team": "web"} and api["Description"] == "first"
    got = apigw.get_api(ApiId=api_id)
    assert got["Name"] == api["Name"] and got["CorsConfiguration"]["AllowOrigins"] == ["https://app.example"]
    assert "CreatedDate" in got
    updated = apigw.update_api(ApiId=api_id, Description="second")
    assert updated["Description"] == "second" and updated["Name"] == api["Name"]
    assert any(a["ApiId"] == api_id for a in apigw.get_apis()["Items"])

    iid = integration(apigw, api_id, name)
    got = apigw.get_integration(ApiId=api_id, IntegrationId=iid)
    assert got["IntegrationType"] == "AWS_PROXY" and got["PayloadFormatVersion"] == "2.0"
    assert got["TimeoutInMillis"] == 30000
    upd = apigw.update_integration(ApiId=api_id, IntegrationId=iid, TimeoutInMillis=5000)
    assert upd["TimeoutInMillis"] == 5000
    route = apigw.create_route(ApiId=api_id, RouteKey="GET /pets/{id}", Target=f"integrations/{iid}")
    assert route["AuthorizationType"] == "NONE" and route["Target"] == f"integrations/{iid}"
    assert apigw.get_route(ApiId=api_id, RouteId=route["RouteId"])["RouteKey"] == "GET /pets/{id}"
    upd = apigw.update_route(ApiId=api_id, RouteId=route["RouteId"], RouteKey="GET /pets/{petId}")
    assert upd["RouteKey"] == "GET /pets/{petId}"
    e = support.client_error(apigw.create_route, ApiId=api_id, RouteKey="GET /pets/{petId}")
    assert e.response["Error"]["Code"] == "ConflictException"
    # An integration a route targets is not deleted.
    e = support.client_error(apigw.delete_integration, ApiId=api_id, IntegrationId=iid)
    assert e.response["Error"]["Code"] == "ConflictException"

    stage = apigw.create_stage(ApiId=api_id, StageName="prod", StageVariables={"color": "blue"})
    assert stage["StageName"] == "prod" and not stage.get("AutoDeploy")
    assert "DeploymentId" not in stage
    deployment = apigw.create_deployment(ApiId=api_id, StageName="prod", Description="v1")
    assert deployment["DeploymentStatus"] == "DEPLOYED"
    assert apigw.get_stage(ApiId=api_id, StageName="prod")["DeploymentId"] == deployment["DeploymentId"]
    assert [d["DeploymentId"] for d in apigw.get_deployments(ApiId=api_id)["Items"]] == [
        deployment["DeploymentId"]]
    e = support.client_error(apigw.delete_deployment, ApiId=api_id,
                             DeploymentId=deployment["DeploymentId"])
    assert e.response["Error"]["Code"] == "ConflictException"
    upd = apigw.update_stage(ApiId=api_id, StageName="prod", StageVariables={"color": "red"})
    assert upd["StageVariables"] == {"color": "red"}

    # Tags, by the API's ARN.
    arn = f"arn:aws:apigateway:{REGION}::/apis/{api_id}"
    apigw.tag_resource(ResourceArn=arn, Tags={"env": "test"})
    assert apigw.get_tags(ResourceArn=arn)["Tags"] == {"team": "web", "env": "test"}
    apigw.untag_resource(ResourceArn=arn, TagKeys=["team"])
    assert apigw.get_api(ApiId=api_id)["Tags"] == {"env": "test"}

    # The AWS CLI reads the same.
    from conftest import aws_env
    out = subprocess.run(["aws", "apigatewayv2", "get-routes", "--api-id", api_id,
                          "--endpoint-url", server.endpoint, "--region", REGION, "--output", "json"],
                         capture_output=True, text=True, timeout=120, env=aws_env(),
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Items"][0]["RouteKey"] == "GET /pets/{petId}"

    apigw.delete_route(ApiId=api_id, RouteId=route["RouteId"])
    apigw.delete_integration(ApiId=api_id, IntegrationId=iid)
    apigw.delete_stage(ApiId=api_id, StageName="prod")
    for call_, kwargs in [(apigw.get_route, {"RouteId": route["RouteId"]}),
                          (apigw.get_integration, {"IntegrationId": iid}),
                          (apigw.get_stage, {"StageName": "prod"})]:
        e = support.client_error(call_, ApiId=api_id, **kwargs)
        assert e.response["Error"]["Code"] == "NotFoundException"
    apigw.delete_api(ApiId=api_id)
    e = support.client_error(apigw.get_api, ApiId=api_id)
    assert e.response["Error"]["Code"] == "NotFoundException"


# --------------------------------------------------------------------------- routing


def test_routes_choose_by_path_parameters_and_proxy_with_both_payload_versions(
        server, lam, apigw, make_fn, make_api):
    name = make_fn(APP)["FunctionName"]
    api_id = make_api()["ApiId"]
    allow_gateway(lam, name, api_id)
    v2 = integration(apigw, api_id, name, "2.0")
    v1 = integration(apigw, api_id, name, "1.0")
    for key, target in [("GET /pets", v2), ("GET /pets/{id}", v2),
                        ("POST /owners/{owner}/pets/{pet}", v1),
                        ("ANY /files/{path+}", v2), ("GET /pets/special", v1)]:
        apigw.create_route(ApiId=api_id, RouteKey=key, Target=f"integrations/{target}")
    # Nothing is served before a stage serves a deployment.
    assert call(server, api_id, "GET", "/pets").status == 404
    apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)

    def event_of(method, path, **kw):
        r = call(server, api_id, method, path, **kw)
        assert r.status == 200, (method, path, r)
        return r, r.json()["event"]

    _, e = event_of("GET", "/pets")
    assert e["routeKey"] == "GET /pets" and "pathParameters" not in e
    _, e = event_of("GET", "/pets/cat%20one")
    assert e["routeKey"] == "GET /pets/{id}" and e["pathParameters"] == {"id": "cat one"}
    r, e = event_of("GET", "/pets/special")
    assert e["version"] == "1.0" and e["resource"] == "/pets/special"
    assert r.headers["x-multi"] == "a, b" or r.headers["x-multi"] == "b"
    r, e = event_of("POST", "/owners/ann/pets/rex?a=1&a=2", body='{"k":1}',
                    headers={"content-type": "application/json"})
    assert e["version"] == "1.0" and e["httpMethod"] == "POST"
    assert e["resource"] == "/owners/{owner}/pets/{pet}"
    assert e["pathParameters"] == {"owner": "ann", "pet": "rex"}
    assert e["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert e["queryStringParameters"] == {"a": "2"}
    assert e["body"] == '{"k":1}' and e["isBase64Encoded"] is False
    assert e["requestContext"]["stage"] == "$default"
    _, e = event_of("DELETE", "/files/a/b/c.txt")
    assert e["routeKey"] == "ANY /files/{path+}" and e["pathParameters"] == {"path": "a/b/c.txt"}

    for method, path in [("POST", "/pets"), ("GET", "/nothing"), ("GET", "/pets/1/2"),
                         ("GET", "/files")]:
        r = call(server, api_id, method, path)
        assert r.status == 404 and r.json() == {"message": "Not Found"}, (method, path)

    # A stage without auto-deploy serves what was deployed to it, under its name.
    apigw.create_stage(ApiId=api_id, StageName="v1", StageVariables={"color": "blue"})
    assert call(server, api_id, "GET", "/v1/pets").status == 404
    apigw.create_deployment(ApiId=api_id, StageName="v1")
    r, e = event_of("GET", "/v1/pets/7")
    assert e["requestContext"]["stage"] == "v1" and e["rawPath"] == "/v1/pets/7"
    assert e["stageVariables"] == {"color": "blue"}
    apigw.create_route(ApiId=api_id, RouteKey="GET /new", Target=f"integrations/{v2}")
    assert call(server, api_id, "GET", "/new").status == 200, "auto-deploy serves it at once"
    assert call(server, api_id, "GET", "/v1/new").status == 404, "v1 waits for a deployment"


# --------------------------------------------------------------------------- authorizers


def test_a_lambda_authorizer_allows_denies_and_caches(server, lam, apigw, make_fn, make_api):
    name = make_fn(APP)["FunctionName"]
    auth = make_fn(AUTHORIZER)["FunctionName"]
    api_id = make_api()["ApiId"]
    allow_gateway(lam, name, api_id)
    allow_gateway(lam, auth, api_id)
    iid = integration(apigw, api_id, name)
    uri = (f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/"
           f"{support.function_arn(auth)}/invocations")
    simple = apigw.create_authorizer(ApiId=api_id, Name="simple", AuthorizerType="REQUEST",
                                     AuthorizerUri=uri, AuthorizerPayloadFormatVersion="2.0",
                                     EnableSimpleResponses=True,
                                     IdentitySource=["$request.header.Authorization"],
                                     AuthorizerResultTtlInSeconds=300)
    policy = apigw.create_authorizer(ApiId=api_id, Name="policy", AuthorizerType="REQUEST",
                                     AuthorizerUri=uri, AuthorizerPayloadFormatVersion="1.0",
                                     IdentitySource=["$request.header.Authorization"],
                                     AuthorizerResultTtlInSeconds=0)
    apigw.create_route(ApiId=api_id, RouteKey="GET /simple", Target=f"integrations/{iid}",
                       AuthorizationType="CUSTOM", AuthorizerId=simple["AuthorizerId"])
    apigw.create_route(ApiId=api_id, RouteKey="GET /policy", Target=f"integrations/{iid}",
                       AuthorizationType="CUSTOM", AuthorizerId=policy["AuthorizerId"])
    apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)

    # No identity: refused before the authorizer runs.
    r = call(server, api_id, "GET", "/simple")
    assert r.status == 401 and r.json() == {"message": "Unauthorized"}
    r = call(server, api_id, "GET", "/simple", headers={"Authorization": "deny-1"})
    assert r.status == 403 and r.json() == {"message": "Forbidden"}
    r = call(server, api_id, "GET", "/simple", headers={"Authorization": "allow-1"})
    assert r.status == 200, r
    first = r.json()["event"]["requestContext"]["authorizer"]["lambda"]
    assert first["user"] == "allow-1"
    # Cached: the same identity is not asked again (the authorizer's count stays).
    again = call(server, api_id, "GET", "/simple", headers={"Authorization": "allow-1"})
    assert again.json()["event"]["requestContext"]["authorizer"]["lambda"] == first
    other = call(server, api_id, "GET", "/simple", headers={"Authorization": "allow-2"})
    assert other.json()["event"]["requestContext"]["authorizer"]["lambda"]["calls"] > first["calls"]

    # A policy answer (payload 1.0, no cache): asked every time.
    r = call(server, api_id, "GET", "/policy", headers={"Authorization": "allow-x"})
    assert r.status == 200, r
    a1 = r.json()["event"]["requestContext"]["authorizer"]["lambda"]
    assert a1["principalId"] == "user-allow-x"
    r = call(server, api_id, "GET", "/policy", headers={"Authorization": "allow-x"})
    assert r.json()["event"]["requestContext"]["authorizer"]["lambda"]["calls"] > a1["calls"]
    r = call(server, api_id, "GET", "/policy", headers={"Authorization": "deny-x"})
    assert r.status == 403


# --------------------------------------------------------------------------- CORS


def test_cors_preflight_and_headers_come_from_the_api(server, lam, apigw, make_fn, make_api):
    name = make_fn(APP)["FunctionName"]
    api = make_api(Target=support.function_arn(name),
                   CorsConfiguration={"AllowOrigins": ["https://app.example"],
                                      "AllowMethods": ["GET", "POST"],
                                      "AllowHeaders": ["content-type"], "MaxAge": 60,
                                      "ExposeHeaders": ["x-total"]})
    allow_gateway(lam, name, api["ApiId"])
    r = call(server, api["ApiId"], "OPTIONS", "/x",
             headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                      "Access-Control-Request-Headers": "content-type"})
    assert r.status == 204
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["access-control-max-age"] == "60"
    r = call(server, api["ApiId"], "GET", "/x", headers={"Origin": "https://app.example"})
    assert r.status == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
    r = call(server, api["ApiId"], "GET", "/x", headers={"Origin": "https://evil.example"})
    assert r.status == 200 and "access-control-allow-origin" not in r.headers


# --------------------------------------------------------------------------- storage first


def queue_route(apigw, make_api, queue_url: str) -> str:
    api_id = make_api()["ApiId"]
    iid = apigw.create_integration(
        ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationSubtype="SQS-SendMessage",
        PayloadFormatVersion="1.0",
        RequestParameters={"QueueUrl": queue_url, "MessageBody": "$request.body",
                           "MessageAttributes": '{"tenant": {"DataType": "String", '
                                                '"StringValue": "${request.header.x-tenant}"}}'},
    )["IntegrationId"]
    apigw.create_route(ApiId=api_id, RouteKey="POST /orders", Target=f"integrations/{iid}")
    apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    return api_id


def test_a_storage_first_route_puts_requests_into_a_queue(server, apigw, sqs, make_api):
    queue_url = sqs.create_queue(QueueName=support.unique_name("orders"))["QueueUrl"]
    api_id = queue_route(apigw, make_api, queue_url)
    r = call(server, api_id, "POST", "/orders", body='{"order": 1}',
             headers={"x-tenant": "acme", "content-type": "application/json"})
    assert r.status == 200, r
    result = r.json()["SendMessageResponse"]["SendMessageResult"]
    assert result["MessageId"] and result["MD5OfMessageBody"]
    got = sqs.receive_message(QueueUrl=queue_url, MessageAttributeNames=["All"],
                              WaitTimeSeconds=1)["Messages"]
    assert got[0]["MessageId"] == result["MessageId"]
    assert got[0]["Body"] == '{"order": 1}'
    assert got[0]["MessageAttributes"]["tenant"]["StringValue"] == "acme"
    # An empty body is SQS's MissingParameter, passed on.
    r = call(server, api_id, "POST", "/orders", body="")
    assert r.status == 400 and r.json()["Error"]["Code"] == "MissingParameter"
    sqs.delete_queue(QueueUrl=queue_url)


def test_a_storage_first_route_puts_requests_on_the_event_bus(server, apigw, sqs, make_api):
    events = boto3.client("events", endpoint_url=server.endpoint, region_name=REGION,
                          aws_access_key_id="x", aws_secret_access_key="x")
    source = support.unique_name("web")
    queue_url = sqs.create_queue(QueueName=support.unique_name("bus-sink"))["QueueUrl"]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_url.rsplit('/', 1)[1]}"
    events.put_rule(Name=source, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=source, Targets=[{"Id": "q", "Arn": queue_arn}])
    api_id = make_api()["ApiId"]
    iid = apigw.create_integration(
        ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationSubtype="EventBridge-PutEvents",
        PayloadFormatVersion="1.0",
        RequestParameters={"Source": source, "DetailType": "${request.path.kind}",
                           "Detail": "$request.body"})["IntegrationId"]
    apigw.create_route(ApiId=api_id, RouteKey="POST /events/{kind}", Target=f"integrations/{iid}")
    apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    r = call(server, api_id, "POST", "/events/OrderPlaced", body='{"order": 7}',
             headers={"content-type": "application/json"})
    assert r.status == 200, r
    assert r.json()["FailedEntryCount"] == 0
    event_id = r.json()["Entries"][0]["EventId"]
    got = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)["Messages"]
    event = json.loads(got[0]["Body"])
    assert (event["id"], event["source"], event["detail-type"], event["detail"]) == (
        event_id, source, "OrderPlaced", {"order": 7})
    # A body that is not a JSON object is EventBridge's MalformedDetail, passed on.
    r = call(server, api_id, "POST", "/events/X", body="not json")
    assert r.status == 200 and r.json()["Entries"][0]["ErrorCode"] == "MalformedDetail"
    events.remove_targets(Rule=source, Ids=["q"])
    events.delete_rule(Name=source)
    sqs.delete_queue(QueueUrl=queue_url)


def test_storage_first_keeps_every_acknowledged_request_through_kill_9(server_factory):
    srv = server_factory()
    api = v2_client(srv.endpoint)
    queues = boto3.client("sqs", endpoint_url=srv.endpoint, region_name=REGION,
                          aws_access_key_id="x", aws_secret_access_key="x",
                          config=Config(retries={"max_attempts": 0}))
    queue_url = queues.create_queue(QueueName="ingest")["QueueUrl"]
    api_id = queue_route(api, lambda: api.create_api(ProtocolType="HTTP", Name="ingest"),
                         queue_url)

    total, senders = 1000, 4
    acked: dict[str, int] = {}
    refused = 0
    lock = threading.Lock()
    next_i = iter(range(total))

    def send() -> None:
        nonlocal refused
        while True:
            with lock:
                i = next(next_i, None)
            if i is None:
                return
            # Each request is sent until it is acknowledged (the server is down for a while).
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    r = call(srv, api_id, "POST", "/orders", body=json.dumps({"i": i}),
                             headers={"x-tenant": "t"})
                except Exception:
                    with lock:
                        refused += 1
                    time.sleep(0.02)
                    continue
                if 200 <= r.status < 300:
                    with lock:
                        acked[r.json()["SendMessageResponse"]["SendMessageResult"]["MessageId"]] = i
                    break

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for t in threads:
        t.start()
    support.wait_for(lambda: len(acked), lambda n: n >= 300, timeout=60, what="300 acknowledged")
    srv.kill()
    at_kill = len(acked)
    time.sleep(0.3)
    support.started(srv)
    for t in threads:
        t.join(timeout=120)
    seen: dict[str, int] = {}
    while True:
        got = queues.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                     VisibilityTimeout=300).get("Messages", [])
        if not got:
            break
        for m in got:
            seen[m["MessageId"]] = json.loads(m["Body"])["i"]
    lost = [mid for mid in acked if mid not in seen]
    print(f"storage-first kill -9: {at_kill} acknowledged at the kill, {refused} attempts refused "
          f"while down, {len(acked)} acknowledged in all, {len(seen)} messages in the queue, "
          f"{len(lost)} lost")
    assert at_kill < total, "the kill landed mid-run"
    assert len(acked) == total, "every request was acknowledged once the server was back"
    assert not lost, f"acknowledged requests lost: {lost[:10]}"
    assert set(seen.values()) == set(range(total))


# --------------------------------------------------------------------------- bad input


def test_bad_configurations_are_refused_in_api_gateways_shape(apigw_nv, make_fn, make_api):
    apigw = apigw_nv
    name = make_fn(APP)["FunctionName"]
    api_id = make_api()["ApiId"]

    def code(call_, **kwargs) -> str:
        e = support.client_error(call_, **kwargs)
        assert e.response["Error"]["Message"], e.response
        return e.response["Error"]["Code"]

    for key in ["GET", "FETCH /x", "GET pets", "GET /a//b", "GET /{proxy+}/more", "GET /a{b}",
                "get /x"]:
        assert code(apigw.create_route, ApiId=api_id, RouteKey=key) == "BadRequestException", key
    assert code(apigw.create_route, ApiId=api_id, RouteKey="GET /x",
                Target="integrations/nosuch") == "BadRequestException"
    assert code(apigw.create_integration, ApiId=api_id, IntegrationType="AWS_PROXY",
                IntegrationSubtype="SQS-Teleport", PayloadFormatVersion="1.0",
                RequestParameters={"QueueUrl": "q", "MessageBody": "b"}) == "BadRequestException"
    e = support.client_error(apigw.create_integration, ApiId=api_id, IntegrationType="AWS_PROXY",
                             IntegrationSubtype="Kinesis-PutRecord", PayloadFormatVersion="1.0",
                             RequestParameters={"Data": "$request.body"})
    assert e.response["Error"]["Code"] == "BadRequestException"
    assert "streams" in e.response["Error"]["Message"]
    assert code(apigw.create_integration, ApiId=api_id, IntegrationType="AWS_PROXY",
                IntegrationSubtype="EventBridge-PutEvents", PayloadFormatVersion="1.0",
                RequestParameters={"Detail": "$request.body"}) == "BadRequestException"
    assert code(apigw.create_integration, ApiId=api_id, IntegrationType="AWS_PROXY",
                IntegrationSubtype="SQS-SendMessage", PayloadFormatVersion="1.0",
                RequestParameters={"QueueUrl": "q"}) == "BadRequestException"
    assert code(apigw.create_integration, ApiId=api_id, IntegrationType="AWS_PROXY",
                IntegrationSubtype="SQS-SendMessage", PayloadFormatVersion="1.0",
                RequestParameters={"QueueUrl": "q", "MessageBody": "$request.cookie.x"}
                ) == "BadRequestException"
    assert code(apigw.create_integration, ApiId=api_id, IntegrationType="AWS_PROXY",
                IntegrationUri="not-an-arn", PayloadFormatVersion="2.0") == "BadRequestException"
    assert code(apigw.create_integration, ApiId=api_id, IntegrationType="AWS_PROXY",
                IntegrationUri=support.function_arn(name),
                PayloadFormatVersion="3.0") == "BadRequestException"
    assert code(apigw.create_integration, ApiId=api_id, IntegrationType="MOCK") == "BadRequestException"
    assert code(apigw.create_integration, ApiId=api_id, IntegrationType="AWS_PROXY",
                IntegrationUri=support.function_arn(name), PayloadFormatVersion="2.0",
                TimeoutInMillis=40000) == "BadRequestException"
    for cors in ({"AllowMethods": ["FETCH"]}, {"AllowOrigins": ["app.example"]},
                 {"MaxAge": 100000}):
        assert code(apigw.create_api, Name="x", ProtocolType="HTTP",
                    CorsConfiguration=cors) == "BadRequestException", cors
    assert code(apigw.create_api, Name="x", ProtocolType="WEBSOCKET") == "BadRequestException"
    assert code(apigw.create_api, Name="x", ProtocolType="HTTP",
                Target="http://example.com") == "BadRequestException"
    assert code(apigw.create_authorizer, ApiId=api_id, Name="j", AuthorizerType="JWT",
                IdentitySource=["$request.header.Authorization"]) == "BadRequestException"
    assert code(apigw.create_authorizer, ApiId=api_id, Name="a", AuthorizerType="REQUEST",
                AuthorizerUri=support.function_arn(name), AuthorizerPayloadFormatVersion="2.0",
                IdentitySource=["Authorization"]) == "BadRequestException"
    assert code(apigw.create_stage, ApiId=api_id, StageName="bad name") == "BadRequestException"
    assert code(apigw.get_api, ApiId="nosuchapi0") == "NotFoundException"
    assert code(apigw.get_route, ApiId=api_id, RouteId="nosuch") == "NotFoundException"
    assert apigw.get_routes(ApiId=api_id)["Items"] == []
    assert apigw.get_integrations(ApiId=api_id)["Items"] == []


def test_oversize_bodies_and_garbage_requests_get_api_gateways_answers(server, lam, apigw, make_fn,
                                                                        make_api):
    name = make_fn(APP)["FunctionName"]
    api_id = make_api(Target=support.function_arn(name))["ApiId"]
    allow_gateway(lam, name, api_id)
    r = call(server, api_id, "POST", "/big", body=b"x" * (10 * 1024 * 1024 + 1))
    assert r.status == 413 and r.json() == {"message": "Request Entity Too Large"}
    # Over Lambda's 6 MB event, under the API's 10 MB: refused, the function not run.
    r = call(server, api_id, "POST", "/big", body=b"x" * (7 * 1024 * 1024))
    assert r.status == 413
    r = call(server, api_id, "GET", "/%zz%00?%%%=&&")
    assert r.status in (200, 400), r
    # The control API still answers after all of it.
    assert apigw.get_api(ApiId=api_id)["ApiId"] == api_id
