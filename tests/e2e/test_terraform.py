"""Terraform with the hashicorp/aws provider against Shoal: a stack of a zip function, an
alias, an event invoke config, provisioned concurrency and two queues (one the other's
dead-letter queue, by redrive policy) is applied, planned again without changes, used,
and destroyed.

Needs `terraform` on PATH (or $SHOAL_TERRAFORM) and the hashicorp/aws provider in a local
filesystem mirror ($SHOAL_TF_PLUGINS, default /opt/tf-plugins, laid out as
registry.terraform.io/hashicorp/aws/<version>/<os_arch>/): nothing is downloaded. The test
skips, saying which, when either is absent.

Most of its time is the provider's own: after creating a queue it polls its attributes
until six answers in a row (5 s apart) match, as it does on AWS, and the second queue waits
for the first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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

HANDLER = """
import os

def handler(event, context):
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
    lambda = "{endpoint}"
    sqs    = "{endpoint}"
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


def terraform(stack: Path, env: dict, *args: str, ok_codes=(0,)) -> subprocess.CompletedProcess:
    proc = subprocess.run([TERRAFORM, *args, "-no-color", "-input=false"], cwd=stack, env=env,
                          capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
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
    (stack / "main.tf").write_text(STACK.format(
        version=VERSION, region=REGION, endpoint=endpoint, prefix=prefix, account=ACCOUNT))
    cli_config = tmp_path / "cli.tfrc"
    cli_config.write_text(CLI_CONFIG.format(plugins=PLUGINS))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env.update(TF_CLI_CONFIG_FILE=str(cli_config), TF_IN_AUTOMATION="1",
               CHECKPOINT_DISABLE="1", AWS_EC2_METADATA_DISABLED="true",
               HOME=str(tmp_path))

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

    terraform(stack, env, "destroy", "-auto-approve")
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert fn not in names, names
    assert sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []) == []
    state = json.loads((stack / "terraform.tfstate").read_text())
    assert state["resources"] == [], state["resources"]
