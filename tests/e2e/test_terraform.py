"""Terraform with the hashicorp/aws provider against Shoal: a stack of a zip function, an
alias, an event invoke config, provisioned concurrency, queues (one the dead-letter queue of
another, by redrive policy; a FIFO queue with content-based deduplication; one with a queue
policy letting the topic send to it), an event source mapping from a queue to the function,
a topic with two subscriptions (the function; the queue, raw and with a filter policy), a
layer and a function using it, a public function URL on the alias (CORS, its permission),
an HTTP API (a Lambda route with a path parameter, a storage-first route into a queue,
an auto-deploying stage, API Gateway's permission), and on the event bus a custom bus with
a rule by event pattern whose targets are the function and a queue (by input transformer),
a scheduled rule on the default bus targeting the function, and EventBridge's permissions,
is applied, planned again without changes, used (a publish reaches the queue and the
function, a message sent to the mapped queue reaches the function, the URL and the API's
routes answer curl, an event put on the custom bus reaches the function and, reshaped, the
queue), and destroyed.
A step that runs past its time fails with the provider's last requests (TF_LOG).

Needs `terraform` on PATH (or $SHOAL_TERRAFORM) and the hashicorp/aws provider in a local
filesystem mirror ($SHOAL_TF_PLUGINS, default /opt/tf-plugins, laid out as
registry.terraform.io/hashicorp/aws/<version>/<os_arch>/): nothing is downloaded. The test
skips, saying which, when either is absent.

Most of its time is the provider's own: after creating a queue, or setting or removing a
queue policy, it polls the queue's attributes until six answers in a row (5 s apart) match,
as it does on AWS; the work queue waits for its dead-letter queue, the mapping for the work
queue, and on destroy the inbox queue for its policy's removal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

import support
from support import ACCOUNT, REGION

TERRAFORM = os.environ.get("SHOAL_TERRAFORM") or shutil.which("terraform")
PLUGINS = Path(os.environ.get("SHOAL_TF_PLUGINS", "/opt/tf-plugins"))
PROVIDER_DIR = PLUGINS / "registry.terraform.io" / "hashicorp" / "aws"
STEP_TIMEOUT_S = 240


def provider_version() -> str | None:
    """The newest hashicorp/aws version in the mirror that has a build for this machine."""
    if not PROVIDER_DIR.is_dir():
        return None
    versions = [p.name for p in PROVIDER_DIR.iterdir()
                if (p / "linux_amd64").is_dir() or (p / "linux_arm64").is_dir()]
    key = lambda v: tuple(int(x) if x.isdigit() else 0 for x in v.split("."))  # noqa: E731
    return max(versions, key=key, default=None)


VERSION = provider_version()
pytestmark = [
    pytest.mark.skipif(TERRAFORM is None,
                       reason="terraform is not installed (not on PATH, $SHOAL_TERRAFORM unset)"),
    pytest.mark.skipif(VERSION is None,
                       reason=f"no hashicorp/aws provider in the filesystem mirror {PROVIDER_DIR} "
                              "(set $SHOAL_TF_PLUGINS to the mirror's folder)"),
]

# Prints the event it gets, on one line, for the test to read from the function's log.
HANDLER = """
import json

def handler(event, context):
    print("event", json.dumps(event))
    return {"echo": event, "version": context.function_version,
            "arn": context.invoked_function_arn}
"""

CLI_CONFIG = """
provider_installation {{
  filesystem_mirror {{
    path    = "{plugins}"
    include = ["registry.terraform.io/hashicorp/aws"]
  }}
  direct {{
    exclude = ["registry.terraform.io/hashicorp/aws"]
  }}
}}
"""

STACK = """
terraform {{
  required_providers {{
    aws = {{ source = "hashicorp/aws", version = "{version}" }}
  }}
}}

provider "aws" {{
  region                      = "{region}"
  access_key                  = "shoal"
  secret_key                  = "shoal"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {{
    lambda       = "{endpoint}"
    sns          = "{endpoint}"
    sqs          = "{endpoint}"
    apigatewayv2 = "{endpoint}"
    events       = "{endpoint}"
    scheduler    = "{endpoint}"
  }}
}}

resource "aws_sqs_queue" "dlq" {{
  name = "{prefix}-dlq"
}}

resource "aws_sqs_queue" "work" {{
  name                       = "{prefix}-work"
  visibility_timeout_seconds = 60
  redrive_policy = jsonencode({{
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = 3
  }})
  tags = {{ team = "shoal" }}
}}

resource "aws_lambda_function" "fn" {{
  function_name    = "{prefix}-fn"
  role             = "arn:aws:iam::{account}:role/terraform"
  runtime          = "python3.12"
  handler          = "app.handler"
  filename         = "fn.zip"
  source_code_hash = filebase64sha256("fn.zip")
  publish          = true
  timeout          = 5
  memory_size      = 128
  tags             = {{ team = "shoal" }}
}}

# A layer, and a function that imports a module from it.
resource "aws_lambda_layer_version" "deps" {{
  layer_name          = "{prefix}-deps"
  filename            = "layer.zip"
  source_code_hash    = filebase64sha256("layer.zip")
  compatible_runtimes = ["python3.12"]
}}

resource "aws_lambda_function" "layered" {{
  function_name    = "{prefix}-layered"
  role             = "arn:aws:iam::{account}:role/terraform"
  runtime          = "python3.12"
  handler          = "uses_layer.handler"
  filename         = "layered.zip"
  source_code_hash = filebase64sha256("layered.zip")
  layers           = [aws_lambda_layer_version.deps.arn]
}}

resource "aws_lambda_alias" "live" {{
  name             = "live"
  function_name    = aws_lambda_function.fn.function_name
  function_version = aws_lambda_function.fn.version
}}

resource "aws_lambda_function_event_invoke_config" "live" {{
  function_name                = aws_lambda_function.fn.function_name
  qualifier                    = aws_lambda_alias.live.name
  maximum_retry_attempts       = 1
  maximum_event_age_in_seconds = 120
  destination_config {{
    on_failure {{
      destination = aws_sqs_queue.dlq.arn
    }}
  }}
}}

resource "aws_lambda_provisioned_concurrency_config" "live" {{
  function_name                     = aws_lambda_function.fn.function_name
  qualifier                         = aws_lambda_alias.live.name
  provisioned_concurrent_executions = 1
}}

resource "aws_lambda_event_source_mapping" "work" {{
  event_source_arn = aws_sqs_queue.work.arn
  function_name    = aws_lambda_function.fn.arn
  batch_size       = 10
  tags             = {{ team = "shoal" }}
}}

resource "aws_sqs_queue" "orders" {{
  name                        = "{prefix}-orders.fifo"
  fifo_queue                  = true
  content_based_deduplication = true
}}

resource "aws_sns_topic" "events" {{
  name = "{prefix}-events"
  tags = {{ team = "shoal" }}
}}

resource "aws_sqs_queue" "inbox" {{
  name = "{prefix}-inbox"
}}

resource "aws_sqs_queue_policy" "inbox" {{
  queue_url = aws_sqs_queue.inbox.id
  policy = jsonencode({{
    Version = "2012-10-17"
    Statement = [{{
      Effect    = "Allow"
      Principal = {{ Service = "sns.amazonaws.com" }}
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.inbox.arn
      Condition = {{ ArnEquals = {{ "aws:SourceArn" = aws_sns_topic.events.arn }} }}
    }}]
  }})
}}

resource "aws_sns_topic_subscription" "inbox" {{
  topic_arn            = aws_sns_topic.events.arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.inbox.arn
  raw_message_delivery = true
  filter_policy        = jsonencode({{ kind = ["order"] }})
}}

resource "aws_lambda_permission" "sns" {{
  statement_id  = "sns"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn.function_name
  principal     = "sns.amazonaws.com"
  source_arn    = aws_sns_topic.events.arn
}}

resource "aws_sns_topic_subscription" "fn" {{
  topic_arn = aws_sns_topic.events.arn
  protocol  = "lambda"
  endpoint  = aws_lambda_function.fn.arn
}}

# A public function URL on the alias, with the permission that opens it, and CORS.
resource "aws_lambda_function_url" "live" {{
  function_name      = aws_lambda_function.fn.function_name
  qualifier          = aws_lambda_alias.live.name
  authorization_type = "NONE"
  cors {{
    allow_origins  = ["https://app.example"]
    allow_methods  = ["GET", "POST"]
    expose_headers = ["x-version"]
    max_age        = 60
  }}
}}

# (The provider's aws_lambda_function_url adds a statement "FunctionURLAllowPublicAccess"
# by itself for auth type NONE; a permission of the same id would conflict with it, on AWS
# as here, and the provider retries a conflict until its timeout.)
resource "aws_lambda_permission" "url" {{
  statement_id           = "AllowPublicUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.fn.function_name
  qualifier              = aws_lambda_alias.live.name
  principal              = "*"
  function_url_auth_type = "NONE"
}}

output "url" {{
  value = aws_lambda_function_url.live.function_url
}}

# An HTTP API: a route with a path parameter to the function (payload 2.0), and a
# storage-first route that puts the request's body into a queue.
resource "aws_apigatewayv2_api" "web" {{
  name          = "{prefix}-web"
  protocol_type = "HTTP"
  cors_configuration {{
    allow_origins = ["https://app.example"]
    allow_methods = ["GET", "POST"]
  }}
  tags = {{ team = "shoal" }}
}}

resource "aws_apigatewayv2_integration" "fn" {{
  api_id                 = aws_apigatewayv2_api.web.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.fn.invoke_arn
  payload_format_version = "2.0"
}}

resource "aws_apigatewayv2_route" "item" {{
  api_id    = aws_apigatewayv2_api.web.id
  route_key = "GET /items/{{id}}"
  target    = "integrations/${{aws_apigatewayv2_integration.fn.id}}"
}}

resource "aws_sqs_queue" "intake" {{
  name = "{prefix}-intake"
}}

resource "aws_apigatewayv2_integration" "intake" {{
  api_id              = aws_apigatewayv2_api.web.id
  integration_type    = "AWS_PROXY"
  integration_subtype = "SQS-SendMessage"
  credentials_arn     = "arn:aws:iam::{account}:role/terraform"
  request_parameters = {{
    QueueUrl    = aws_sqs_queue.intake.url
    MessageBody = "$request.body"
  }}
}}

resource "aws_apigatewayv2_route" "intake" {{
  api_id    = aws_apigatewayv2_api.web.id
  route_key = "POST /intake"
  target    = "integrations/${{aws_apigatewayv2_integration.intake.id}}"
}}

resource "aws_apigatewayv2_stage" "default" {{
  api_id      = aws_apigatewayv2_api.web.id
  name        = "$default"
  auto_deploy = true
}}

resource "aws_lambda_permission" "apigw" {{
  statement_id  = "apigw"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "arn:aws:execute-api:{region}:{account}:${{aws_apigatewayv2_api.web.id}}/*/*"
}}

output "api" {{
  value = aws_apigatewayv2_api.web.api_endpoint
}}

# The event bus: on a custom bus, a rule whose pattern picks orders, with two targets (the
# function; a queue, the event reshaped by an input transformer) and the permission that
# lets the rule invoke the function; on the default bus, a scheduled rule invoking the
# function with a constant input.
resource "aws_cloudwatch_event_bus" "shop" {{
  name = "{prefix}-bus"
  tags = {{ team = "shoal" }}
}}

resource "aws_cloudwatch_event_rule" "orders" {{
  name           = "{prefix}-orders"
  description    = "orders placed in the shop"
  event_bus_name = aws_cloudwatch_event_bus.shop.name
  event_pattern = jsonencode({{
    source        = ["shoal.shop"]
    "detail-type" = ["order placed"]
  }})
  tags = {{ team = "shoal" }}
}}

resource "aws_sqs_queue" "placed" {{
  name = "{prefix}-placed"
}}

resource "aws_cloudwatch_event_target" "fn" {{
  event_bus_name = aws_cloudwatch_event_bus.shop.name
  rule           = aws_cloudwatch_event_rule.orders.name
  target_id      = "fn"
  arn            = aws_lambda_function.fn.arn
}}

resource "aws_cloudwatch_event_target" "placed" {{
  event_bus_name = aws_cloudwatch_event_bus.shop.name
  rule           = aws_cloudwatch_event_rule.orders.name
  target_id      = "placed"
  arn            = aws_sqs_queue.placed.arn
  input_transformer {{
    input_paths = {{
      order  = "$.detail.order"
      source = "$.source"
    }}
    input_template = "{{\\"order\\": <order>, \\"from\\": <source>}}"
  }}
}}

resource "aws_lambda_permission" "events" {{
  statement_id  = "events"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.orders.arn
}}

resource "aws_cloudwatch_event_rule" "tick" {{
  name                = "{prefix}-tick"
  schedule_expression = "rate(1 minute)"
}}

resource "aws_cloudwatch_event_target" "tick" {{
  rule      = aws_cloudwatch_event_rule.tick.name
  target_id = "tick"
  arn       = aws_lambda_function.fn.arn
  input     = jsonencode({{ tick = true }})
}}

resource "aws_lambda_permission" "tick" {{
  statement_id  = "events-tick"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.tick.arn
}}

resource "aws_scheduler_schedule_group" "jobs" {{
  name = "{prefix}-jobs"
  tags = {{ team = "shoal" }}
}}

resource "aws_scheduler_schedule" "morning" {{
  name                         = "{prefix}-morning"
  group_name                   = aws_scheduler_schedule_group.jobs.name
  schedule_expression          = "cron(0 9 ? * MON-FRI *)"
  schedule_expression_timezone = "Europe/Berlin"
  description                  = "weekday mornings in Berlin"

  flexible_time_window {{
    mode                      = "FLEXIBLE"
    maximum_window_in_minutes = 15
  }}

  target {{
    arn      = aws_lambda_function.fn.arn
    role_arn = "arn:aws:iam::{account}:role/scheduler"
    input    = jsonencode({{ job = "report" }})

    retry_policy {{
      maximum_retry_attempts       = 3
      maximum_event_age_in_seconds = 3600
    }}
  }}
}}
"""


@pytest.fixture
def tf_server(tmp_path):
    srv = support.started(support.ShoalServer(
        data_dir=tmp_path / "data", log_dir=tmp_path / "logs", keep_alive="10s",
        extra_env={"SHOAL_LOG": "info,shoal::api=debug"}))
    yield srv
    srv.stop()


def client(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(retries={"max_attempts": 0}, read_timeout=30))


def logged_events(endpoint: str, function: str) -> list[dict]:
    """The events the function printed (`event <json>` lines of its log)."""
    return [json.loads(e["message"][len("event "):])
            for e in support.all_log_events(endpoint, function)
            if e["message"].startswith("event ")]


def records(endpoint: str, function: str, source: str) -> list[dict]:
    """The records from `source` ("aws:sns" or "aws:sqs") the function was invoked with."""
    return [r for event in logged_events(endpoint, function) for r in event.get("Records", [])
            if source in (r.get("EventSource"), r.get("eventSource"))]


def receive(sqs, url: str, want: int, timeout: float = 10.0) -> list[dict]:
    """Receives (and deletes) messages until `want` came or `timeout` passed, then once more
    with a one-second long poll, so that a message too many is seen; all of them."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                    WaitTimeSeconds=1).get("Messages", [])
        for m in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        got += batch
        if len(got) > want or (len(got) == want and not batch) or time.monotonic() > deadline:
            return got


def queue_depth(sqs, url: str) -> tuple[int, int]:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def terraform(stack: Path, env: dict, *args: str, ok_codes=(0,)) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run([TERRAFORM, *args, "-no-color", "-input=false"], cwd=stack,
                              env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        # What the provider was doing when it stopped answering: its last requests.
        log = Path(env["TF_LOG_PATH"]).read_text(errors="replace").splitlines()
        requests = [l for l in log if "HTTP Request Sent" in l or "HTTP Response Received" in l
                    or "[DEBUG] provider" in l or "Still " in l]
        server_log = env.get("SHOAL_SERVER_STDERR")
        server_tail = Path(server_log).read_text(errors="replace")[-6000:] if server_log else ""
        pytest.fail(f"terraform {' '.join(args)} ran past {STEP_TIMEOUT_S}s; its log's last "
                    f"requests:\n" + "\n".join(r[:400] for r in requests[-40:])
                    + f"\nstdout:\n{(e.stdout or b'')[-4000:]!r}"
                    + f"\nthe server's log:\n{server_tail}", pytrace=False)
    assert proc.returncode in ok_codes, (
        f"terraform {' '.join(args)} exited with {proc.returncode}\n"
        f"stdout:\n{proc.stdout[-6000:]}\nstderr:\n{proc.stderr[-6000:]}")
    return proc


def test_terraform_apply_plan_destroy(tf_server, tmp_path):
    endpoint = tf_server.endpoint
    stack = tmp_path / "stack"
    stack.mkdir()
    prefix = support.unique_name("tf")
    (stack / "fn.zip").write_bytes(support.py_zip(HANDLER))
    (stack / "layer.zip").write_bytes(support.zip_files(
        {"python/tf_layer_mod.py": "GREETING = 'hello from a terraform layer'\n"}))
    (stack / "layered.zip").write_bytes(support.py_zip(
        "import tf_layer_mod\n\ndef handler(event, context):\n"
        "    return tf_layer_mod.GREETING\n", module="uses_layer"))
    (stack / "main.tf").write_text(STACK.format(
        version=VERSION, region=REGION, endpoint=endpoint, prefix=prefix, account=ACCOUNT))
    cli_config = tmp_path / "cli.tfrc"
    cli_config.write_text(CLI_CONFIG.format(plugins=PLUGINS))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env.update(TF_CLI_CONFIG_FILE=str(cli_config), TF_IN_AUTOMATION="1",
               CHECKPOINT_DISABLE="1", AWS_EC2_METADATA_DISABLED="true",
               HOME=str(tmp_path), TF_LOG="DEBUG", TF_LOG_PATH=str(tmp_path / "terraform.log"),
               SHOAL_SERVER_STDERR=str(tf_server._stderr_path))

    terraform(stack, env, "init")
    terraform(stack, env, "apply", "-auto-approve")
    # A second plan sees what was applied: exit code 0 is "no changes" (2 would be changes).
    plan = terraform(stack, env, "plan", "-detailed-exitcode", ok_codes=(0, 2))
    assert plan.returncode == 0, f"the second plan wants changes:\n{plan.stdout[-6000:]}"

    lam, sqs = client("lambda", endpoint), client("sqs", endpoint)
    fn = f"{prefix}-fn"
    out = support.invoke(lam, fn, {"hello": "terraform"}, Qualifier="live")
    assert out["StatusCode"] == 200 and "FunctionError" not in out, out
    assert out["json"]["echo"] == {"hello": "terraform"}, out["json"]
    assert out["json"]["version"] == "1", out["json"]
    assert lam.get_provisioned_concurrency_config(
        FunctionName=fn, Qualifier="live")["RequestedProvisionedConcurrentExecutions"] == 1
    cfg = lam.get_function_event_invoke_config(FunctionName=fn, Qualifier="live")
    assert cfg["MaximumRetryAttempts"] == 1, cfg
    assert lam.get_function_code_signing_config(FunctionName=fn)["CodeSigningConfigArn"] == ""
    work_url = sqs.get_queue_url(QueueName=f"{prefix}-work")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=work_url, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "60", attrs
    assert json.loads(attrs["RedrivePolicy"]) == {
        "deadLetterTargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{prefix}-dlq",
        "maxReceiveCount": 3}, attrs
    assert sqs.list_queue_tags(QueueUrl=work_url)["Tags"] == {"team": "shoal"}

    # The layered function imports its module from the layer at /opt/python.
    out = support.invoke(lam, f"{prefix}-layered", {})
    assert out["json"] == "hello from a terraform layer", out["raw"]
    layer_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{prefix}-deps:1"
    assert [l["Arn"] for l in lam.get_function_configuration(
        FunctionName=f"{prefix}-layered")["Layers"]] == [layer_arn]

    # The alias's URL answers a browser-like request with the function's answer and CORS.
    url = lam.get_function_url_config(FunctionName=fn, Qualifier="live")["FunctionUrl"]
    state = json.loads((stack / "terraform.tfstate").read_text())
    assert state["outputs"]["url"]["value"] == url, state["outputs"]
    got = subprocess.run(["curl", "-sS", "-H", "Origin: https://app.example",
                          "-D", "-", url + "?from=tf"], capture_output=True, text=True, timeout=30)
    assert got.returncode == 0, got.stderr
    head, _, body = got.stdout.partition("\n\n")  # (text mode: \r\n read as \n)
    assert head.startswith("HTTP/1.1 200"), got.stdout
    assert "access-control-allow-origin: https://app.example" in head.lower(), head
    assert head.lower().count("content-type:") == 1, head
    echoed = json.loads(body)
    assert echoed["version"] == "1" and echoed["echo"]["rawQueryString"] == "from=tf", echoed
    policy = json.loads(lam.get_policy(FunctionName=fn, Qualifier="live")["Policy"])
    assert sorted(s["Sid"] for s in policy["Statement"]) == [
        "AllowPublicUrl", "FunctionURLAllowPublicAccess"], policy
    assert sorted(s["Sid"] for s in json.loads(lam.get_policy(FunctionName=fn)["Policy"])[
        "Statement"]) == ["apigw", "events", "events-tick", "sns"]

    # The HTTP API: the function behind a route with a path parameter, and the
    # storage-first route into the intake queue.
    api_endpoint = state["outputs"]["api"]["value"]
    assert api_endpoint.endswith(f".execute-api.localhost:{tf_server.port}"), api_endpoint
    got = subprocess.run(["curl", "-sS", "-f", api_endpoint + "/items/42?x=1"],
                         capture_output=True, text=True, timeout=30)
    assert got.returncode == 0, got.stderr
    echoed = json.loads(got.stdout)["echo"]
    assert echoed["routeKey"] == "GET /items/{id}" and echoed["pathParameters"] == {"id": "42"}
    got = subprocess.run(["curl", "-sS", "-f", "-X", "POST", "-d", "from terraform",
                          api_endpoint + "/intake"], capture_output=True, text=True, timeout=30)
    assert got.returncode == 0, got.stderr
    message_id = json.loads(got.stdout)["SendMessageResponse"]["SendMessageResult"]["MessageId"]
    intake_url = sqs.get_queue_url(QueueName=f"{prefix}-intake")["QueueUrl"]
    [m] = receive(sqs, intake_url, 1)
    assert (m["MessageId"], m["Body"]) == (message_id, "from terraform"), m

    # The FIFO queue deduplicates by content: the same body twice is one message.
    orders_url = sqs.get_queue_url(QueueName=f"{prefix}-orders.fifo")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=orders_url, AttributeNames=["All"])["Attributes"]
    assert (attrs["FifoQueue"], attrs["ContentBasedDeduplication"]) == ("true", "true"), attrs
    for _ in range(2):
        sqs.send_message(QueueUrl=orders_url, MessageBody="order 1", MessageGroupId="g")
    assert [m["Body"] for m in receive(sqs, orders_url, 1)] == ["order 1"]

    # The topic's two subscriptions: a publish reaches the function, and the queue when
    # the filter policy lets it through (raw: the bare message, not SNS's envelope).
    sns = client("sns", endpoint)
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:{prefix}-events"
    inbox_url = sqs.get_queue_url(QueueName=f"{prefix}-inbox")["QueueUrl"]
    subs = {s["Protocol"]: s for s in sns.list_subscriptions_by_topic(TopicArn=topic)[
        "Subscriptions"]}
    assert sorted(subs) == ["lambda", "sqs"], subs
    assert subs["lambda"]["Endpoint"] == support.function_arn(fn), subs
    assert subs["sqs"]["Endpoint"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{prefix}-inbox", subs
    attrs = sns.get_subscription_attributes(
        SubscriptionArn=subs["sqs"]["SubscriptionArn"])["Attributes"]
    assert attrs["RawMessageDelivery"] == "true", attrs
    assert json.loads(attrs["FilterPolicy"]) == {"kind": ["order"]}, attrs
    kind = lambda v: {"kind": {"DataType": "String", "StringValue": v}}  # noqa: E731
    order = sns.publish(TopicArn=topic, Message='{"order": 2}', MessageAttributes=kind("order"))
    note = sns.publish(TopicArn=topic, Message="just a note", MessageAttributes=kind("note"))
    assert [m["Body"] for m in receive(sqs, inbox_url, 1)] == ['{"order": 2}']
    got = support.wait_for(lambda: records(endpoint, fn, "aws:sns"), lambda rs: len(rs) >= 2,
                           timeout=30, interval=0.2, what="2 SNS records in the function's log")
    assert sorted((r["Sns"]["MessageId"], r["Sns"]["Message"], r["Sns"]["TopicArn"])
                  for r in got) == sorted([(order["MessageId"], '{"order": 2}', topic),
                                           (note["MessageId"], "just a note", topic)]), got

    # The event source mapping hands what is sent to the work queue to the function, and
    # deletes it once the function succeeded.
    [mapping] = lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"]
    assert (mapping["State"], mapping["BatchSize"]) == ("Enabled", 10), mapping
    assert mapping["EventSourceArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{prefix}-work", mapping
    assert lam.list_tags(Resource=mapping["EventSourceMappingArn"])["Tags"] == {"team": "shoal"}
    sent = sqs.send_message(QueueUrl=work_url, MessageBody="via the mapping")
    [record] = support.wait_for(lambda: records(endpoint, fn, "aws:sqs"), lambda rs: len(rs) >= 1,
                                timeout=30, interval=0.2, what="an SQS record in the function's log")
    assert (record["messageId"], record["body"], record["eventSourceARN"]) == (
        sent["MessageId"], "via the mapping", mapping["EventSourceArn"]), record
    support.wait_for(lambda: queue_depth(sqs, work_url), lambda d: d == (0, 0), timeout=15,
                     interval=0.2, what="the work queue emptied by the mapping")

    # The event bus: the custom bus, its rule and targets, the scheduled rule on the
    # default bus, as applied; an order put on the custom bus reaches the function as the
    # event and the queue as the transformer made it; an event the pattern does not match
    # (put with it) does not reach the queue.
    events = client("events", endpoint)
    bus_name, rule_name, tick_name = f"{prefix}-bus", f"{prefix}-orders", f"{prefix}-tick"
    bus_arn = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus_name}"
    rule_arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{bus_name}/{rule_name}"
    tick_arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{tick_name}"
    assert events.describe_event_bus(Name=bus_name)["Arn"] == bus_arn
    assert events.list_tags_for_resource(ResourceARN=bus_arn)["Tags"] == [
        {"Key": "team", "Value": "shoal"}]
    rule = events.describe_rule(Name=rule_name, EventBusName=bus_name)
    assert (rule["Arn"], rule["State"], rule["EventBusName"]) == (
        rule_arn, "ENABLED", bus_name), rule
    assert json.loads(rule["EventPattern"]) == {
        "source": ["shoal.shop"], "detail-type": ["order placed"]}, rule
    tick = events.describe_rule(Name=tick_name)
    assert (tick["Arn"], tick["ScheduleExpression"], tick["EventBusName"]) == (
        tick_arn, "rate(1 minute)", "default"), tick
    placed_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{prefix}-placed"
    targets = {t["Id"]: t for t in events.list_targets_by_rule(
        Rule=rule_name, EventBusName=bus_name)["Targets"]}
    assert sorted(targets) == ["fn", "placed"], targets
    assert targets["fn"]["Arn"] == support.function_arn(fn), targets
    assert targets["placed"]["Arn"] == placed_arn, targets
    assert targets["placed"]["InputTransformer"]["InputPathsMap"] == {
        "order": "$.detail.order", "source": "$.source"}, targets
    [tick_target] = events.list_targets_by_rule(Rule=tick_name)["Targets"]
    assert (tick_target["Id"], json.loads(tick_target["Input"])) == ("tick", {"tick": True})
    scheduler = client("scheduler", endpoint)
    morning = scheduler.get_schedule(Name=f"{prefix}-morning", GroupName=f"{prefix}-jobs")
    assert (morning["ScheduleExpression"], morning["ScheduleExpressionTimezone"]) == (
        "cron(0 9 ? * MON-FRI *)", "Europe/Berlin"), morning
    assert morning["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}
    assert (morning["Target"]["Arn"], json.loads(morning["Target"]["Input"])) == (
        support.function_arn(fn), {"job": "report"}), morning
    assert morning["Target"]["RetryPolicy"] == {
        "MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600}, morning
    [allow] = [s for s in json.loads(lam.get_policy(FunctionName=fn)["Policy"])["Statement"]
               if s["Sid"] == "events"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}, allow
    assert allow["Condition"]["ArnLike"]["AWS:SourceArn"] == rule_arn, allow

    put = events.put_events(Entries=[
        {"EventBusName": bus_name, "Source": "shoal.shop", "DetailType": "order placed",
         "Detail": json.dumps({"order": 7})},
        {"EventBusName": bus_name, "Source": "shoal.shop", "DetailType": "order cancelled",
         "Detail": json.dumps({"order": 8})}])
    assert put["FailedEntryCount"] == 0, put
    placed_url = sqs.get_queue_url(QueueName=f"{prefix}-placed")["QueueUrl"]
    assert [json.loads(m["Body"]) for m in receive(sqs, placed_url, 1)] == [
        {"order": 7, "from": "shoal.shop"}]
    [got] = support.wait_for(
        lambda: [e for e in logged_events(endpoint, fn) if e.get("source") == "shoal.shop"],
        lambda es: len(es) >= 1, timeout=30, interval=0.2,
        what="the order event in the function's log")
    assert (got["id"], got["detail-type"], got["detail"], got["resources"]) == (
        put["Entries"][0]["EventId"], "order placed", {"order": 7}, []), got

    terraform(stack, env, "destroy", "-auto-approve")
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert fn not in names, names
    assert sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []) == []
    assert lam.list_layer_versions(LayerName=f"{prefix}-deps")["LayerVersions"] == []
    apis = client("apigatewayv2", endpoint).get_apis()["Items"]
    assert f"{prefix}-web" not in [a["Name"] for a in apis], apis
    assert topic not in [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    assert [s for s in sns.list_subscriptions()["Subscriptions"] if s["TopicArn"] == topic] == []
    assert lam.list_event_source_mappings(
        EventSourceArn=mapping["EventSourceArn"])["EventSourceMappings"] == []
    for call, kwargs in [(events.describe_event_bus, {"Name": bus_name}),
                         (events.describe_rule, {"Name": rule_name, "EventBusName": bus_name}),
                         (events.describe_rule, {"Name": tick_name})]:
        with pytest.raises(events.exceptions.ResourceNotFoundException):
            call(**kwargs)
    assert events.list_rule_names_by_target(TargetArn=support.function_arn(fn))[
        "RuleNames"] == []
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule_group(Name=f"{prefix}-jobs")
    with pytest.raises(scheduler.exceptions.ResourceNotFoundException):
        scheduler.get_schedule(Name=f"{prefix}-morning", GroupName=f"{prefix}-jobs")
    state = json.loads((stack / "terraform.tfstate").read_text())
    assert state["resources"] == [], state["resources"]
