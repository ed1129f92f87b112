"""No setting silently ignored: every CreateFunction / UpdateFunctionConfiguration field
is honoured, kept and returned, or refused with a clear error."""

import json
import subprocess

import botocore.exceptions
import pytest

import support
from support import invoke

SEES = ("import os\n"
        "def handler(event, context):\n"
        "    keys = ['_X_AMZN_TRACE_ID', 'AWS_LAMBDA_LOG_GROUP_NAME', 'AWS_LAMBDA_LOG_FORMAT',\n"
        "            'AWS_LAMBDA_LOG_LEVEL']\n"
        "    return {k: os.environ.get(k) for k in keys}\n")


@pytest.fixture
def fn(lam, unique_name, zip_dir, tmp_path):
    """fn(**create_args) -> name of a function that reports what it sees; deleted after."""
    made = []
    (tmp_path / "app.py").write_text(SEES)
    code = zip_dir(tmp_path)

    def create(**extra):
        name = unique_name("settings")
        lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Role=support.ROLE,
                            Handler="app.handler", Code={"ZipFile": code}, **extra)
        made.append(name)
        return name

    yield create
    for name in made:
        try:
            lam.delete_function(FunctionName=name)
        except Exception:
            pass


def test_settings_are_kept_returned_and_updated(server, lam, fn):
    name = fn(TracingConfig={"Mode": "Active"},
              VpcConfig={"SubnetIds": ["subnet-0abc"], "SecurityGroupIds": ["sg-0abc"]},
              KMSKeyArn="arn:aws:kms:us-east-1:000000000000:key/1234",
              LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG",
                             "LogGroup": "/custom/group"},
              SnapStart={"ApplyOn": "PublishedVersions"})
    cfg = lam.get_function_configuration(FunctionName=name)
    assert cfg["TracingConfig"] == {"Mode": "Active"}
    assert cfg["VpcConfig"]["SubnetIds"] == ["subnet-0abc"]
    assert cfg["VpcConfig"]["SecurityGroupIds"] == ["sg-0abc"]
    assert cfg["KMSKeyArn"] == "arn:aws:kms:us-east-1:000000000000:key/1234"
    assert cfg["LoggingConfig"] == {"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG",
                                    "SystemLogLevel": "INFO", "LogGroup": "/custom/group"}
    assert cfg["SnapStart"]["ApplyOn"] == "PublishedVersions"
    # What the function sees of them.
    seen = invoke(lam, name, {})["json"]
    assert seen["AWS_LAMBDA_LOG_GROUP_NAME"] == "/custom/group"
    assert seen["AWS_LAMBDA_LOG_FORMAT"] == "JSON" and seen["AWS_LAMBDA_LOG_LEVEL"] == "DEBUG"
    assert seen["_X_AMZN_TRACE_ID"].startswith("Root=1-") and "Sampled=1" in seen["_X_AMZN_TRACE_ID"]
    # An incoming trace header is followed as it is.
    header = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"
    got = support.invoke_http(server.endpoint, name, {},
                              headers={"X-Amzn-Trace-Id": header})
    assert json.loads(got.body)["_X_AMZN_TRACE_ID"] == header
    # An update replaces what it names and keeps the rest.
    lam.update_function_configuration(FunctionName=name, TracingConfig={"Mode": "PassThrough"},
                                      VpcConfig={"SubnetIds": [], "SecurityGroupIds": []},
                                      KMSKeyArn="")
    cfg = lam.get_function_configuration(FunctionName=name)
    assert cfg["TracingConfig"] == {"Mode": "PassThrough"}
    assert "VpcConfig" not in cfg or not cfg["VpcConfig"].get("SubnetIds")
    assert "KMSKeyArn" not in cfg
    assert cfg["LoggingConfig"]["LogGroup"] == "/custom/group"
    assert "Sampled=0" in invoke(lam, name, {})["json"]["_X_AMZN_TRACE_ID"]
    # Published versions keep their settings.
    version = lam.publish_version(FunctionName=name)
    assert version["LoggingConfig"]["LogFormat"] == "JSON"


def test_defaults_are_what_lambda_returns(lam, fn):
    name = fn()
    cfg = lam.get_function_configuration(FunctionName=name)
    assert cfg["TracingConfig"] == {"Mode": "PassThrough"}
    assert cfg["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"}
    assert cfg["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    seen = invoke(lam, name, {})["json"]
    assert seen["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert seen["AWS_LAMBDA_LOG_FORMAT"] is None
    assert "Sampled=0" in seen["_X_AMZN_TRACE_ID"]


@pytest.mark.parametrize("extra, says", [
    ({"TracingConfig": {"Mode": "Bogus"}}, "tracingConfig.mode"),
    ({"LoggingConfig": {"LogFormat": "XML"}}, "loggingConfig.logFormat"),
    ({"LoggingConfig": {"ApplicationLogLevel": "DEBUG"}}, "LogFormat must be JSON"),
    ({"LoggingConfig": {"LogGroup": "has spaces"}}, "loggingConfig.logGroup"),
    ({"KMSKeyArn": "not-an-arn"}, "kMSKeyArn"),
    ({"SnapStart": {"ApplyOn": "Always"}}, "snapStart.applyOn"),
    ({"FileSystemConfigs": [{"Arn": "arn:aws:elasticfilesystem:us-east-1:000000000000:access-point/fsap-1",
                             "LocalMountPath": "/mnt/efs"}]}, "FileSystemConfigs"),
    ({"ImageConfig": {"Command": ["app.handler"]}}, "ImageConfig"),
    ({"CodeSigningConfigArn": "arn:aws:lambda:us-east-1:000000000000:code-signing-config:csc-1"},
     "Code signing"),
])
def test_unsupported_or_invalid_settings_are_refused(lam_nv, fn, extra, says):
    # Refused on create...
    with pytest.raises(botocore.exceptions.ClientError) as err:
        lam_nv.create_function(FunctionName=support.unique_name("refused"),
                               Runtime=support.PY_RUNTIME, Role=support.ROLE,
                               Handler="app.handler",
                               Code={"ZipFile": support.py_zip(SEES)}, **extra)
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert says in err.value.response["Error"]["Message"], err.value.response
    # ...and on update, which changes nothing.
    name = fn()
    before = lam_nv.get_function_configuration(FunctionName=name)
    if "CodeSigningConfigArn" not in extra:  # not a member of the update
        with pytest.raises(botocore.exceptions.ClientError) as err:
            lam_nv.update_function_configuration(FunctionName=name, **extra)
        assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    after = lam_nv.get_function_configuration(FunctionName=name)
    assert after["RevisionId"] == before["RevisionId"]


def test_a_qualified_name_cannot_be_created(lam_nv):
    with pytest.raises(botocore.exceptions.ClientError) as err:
        lam_nv.create_function(FunctionName=support.unique_name("q") + ":prod",
                               Runtime=support.PY_RUNTIME, Role=support.ROLE,
                               Handler="app.handler", Code={"ZipFile": support.py_zip(SEES)})
    assert err.value.response["Error"]["Code"] in ("InvalidParameterValueException",
                                                   "ValidationException")


@pytest.mark.parametrize("code, says", [
    ({"S3Bucket": "b", "S3Key": "k.zip"}, "S3"),
    ({"S3Key": "k.zip"}, "S3"),
    ({"ZipFile": support.py_zip(SEES), "SourceKMSKeyArn": "arn:aws:kms:us-east-1:000000000000:key/k"},
     "SourceKMSKeyArn"),
])
def test_code_from_elsewhere_is_refused(lam_nv, code, says):
    with pytest.raises(botocore.exceptions.ClientError) as err:
        lam_nv.create_function(FunctionName=support.unique_name("code"),
                               Runtime=support.PY_RUNTIME, Role=support.ROLE,
                               Handler="app.handler", Code=code)
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert says in err.value.response["Error"]["Message"], err.value.response


LOGS = ("import logging\n"
        "log = logging.getLogger('app')\n"
        "def handler(event, context):\n"
        "    log.info('an info record')\n"
        "    log.warning('a warning record')\n"
        "    print('plain print output')\n"
        "    return 'ok'\n")


def test_json_logs_platform_events_and_level_filtering(server, lam, unique_name):
    name = unique_name("jsonlogs")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Role=support.ROLE,
                        Handler="app.handler", Code={"ZipFile": support.py_zip(LOGS)},
                        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"})
    try:
        request_id = lam.invoke(FunctionName=name)["ResponseMetadata"]["RequestId"]
        events = support.wait_for_logs(server.endpoint, name, lambda ev: any(
            '"platform.report"' in e["message"] for e in ev), timeout=10)
        messages = [e["message"] for e in events]
        parsed = [json.loads(m) for m in messages if m.startswith("{")]
        kinds = [p.get("type") for p in parsed]
        assert "platform.start" in kinds and "platform.report" in kinds, messages
        assert not any(m.startswith(("START ", "END ", "REPORT ")) for m in messages), messages
        report = next(p for p in parsed if p.get("type") == "platform.report")
        assert report["record"]["requestId"] == request_id
        assert report["record"]["metrics"]["billedDurationMs"] >= 1
        records = [p for p in parsed if "level" in p]
        assert [r["message"] for r in records] == ["a warning record"], messages
        assert records[0]["requestId"] == request_id and records[0]["logger"] == "app"
        assert "plain print output" in messages  # print() is not a log record
        # `shoal logs --request-id` finds the request by its JSON platform events.
        out = subprocess.run([str(support.SHOAL_BIN), "logs", name, "--request-id", request_id,
                              "--endpoint", server.endpoint], capture_output=True, text=True,
                             timeout=30)
        assert "a warning record" in out.stdout and "platform.report" in out.stdout, out
        # CloudWatch filter patterns: JSON expressions and terms.
        def logs(pattern):
            done = subprocess.run([str(support.SHOAL_BIN), "logs", name, "--filter", pattern,
                                   "--endpoint", server.endpoint], capture_output=True,
                                  text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            return done.stdout.splitlines()
        [warning] = logs('{ $.level = "WARN*" && $.logger = app }')
        assert json.loads(warning)["message"] == "a warning record"
        [report_line] = logs('{ $.type = "platform.report" && $.record.metrics.billedDurationMs >= 1 }')
        assert json.loads(report_line)["record"]["requestId"] == request_id
        assert logs("?nothing ?\"plain print\"") == ["plain print output"]
        assert logs("plain -print") == []
        bad = subprocess.run([str(support.SHOAL_BIN), "logs", name, "--filter", "{ $.level = ",
                              "--endpoint", server.endpoint], capture_output=True, text=True,
                             timeout=30)
        assert bad.returncode != 0 and "--filter" in bad.stderr, bad
        # SystemLogLevel WARN: no platform events at INFO.
        lam.update_function_configuration(FunctionName=name,
                                          LoggingConfig={"SystemLogLevel": "WARN",
                                                         "ApplicationLogLevel": "DEBUG"})
        second = lam.invoke(FunctionName=name)["ResponseMetadata"]["RequestId"]
        events = support.wait_for_logs(server.endpoint, name, lambda ev: any(
            second in e["message"] and "an info record" in e["message"] for e in ev), timeout=10)
        assert not any(second in e["message"] and "platform." in e["message"] for e in events)
    finally:
        lam.delete_function(FunctionName=name)


def test_node_console_writes_json_records(server, lam, unique_name):
    name = unique_name("jsonnode")
    source = ("exports.handler = async () => {\n"
              "  console.info('node info');\n"
              "  console.warn('node warning', 42);\n"
              "  console.error(new TypeError('node error'));\n"
              "  return 'ok';\n"
              "};\n")
    lam.create_function(FunctionName=name, Runtime=support.NODE_RUNTIME, Role=support.ROLE,
                        Handler="index.handler",
                        Code={"ZipFile": support.zip_files({"index.js": source})},
                        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"})
    try:
        request_id = lam.invoke(FunctionName=name)["ResponseMetadata"]["RequestId"]
        events = support.wait_for_logs(server.endpoint, name, lambda ev: any(
            '"platform.report"' in e["message"] for e in ev), timeout=10)
        records = [json.loads(e["message"]) for e in events
                   if e["message"].startswith("{") and '"level"' in e["message"]]
        assert [(r["level"], r["message"]) for r in records] == [
            ("WARN", "node warning 42"), ("ERROR", "node error")], records
        assert all(r["requestId"] == request_id for r in records)
        assert records[1]["errorType"] == "TypeError" and records[1]["stackTrace"]
    finally:
        lam.delete_function(FunctionName=name)
