"""Lambda layers, the API part: publishing versions, reading, listing, deleting, their
permissions, and their survival across a restart (boto3 and the AWS CLI).

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.request

import pytest

import support

LAYER_ZIP = support.zip_files({"python/shoal_layer_mod.py": "VALUE = 'from a layer'\n"})


@pytest.fixture
def layer_name(lam, unique_name):
    name = unique_name("layer")
    yield name
    for v in lam.list_layer_versions(LayerName=name)["LayerVersions"]:
        lam.delete_layer_version(LayerName=name, VersionNumber=v["Version"])


def publish(lam, name, **extra):
    return lam.publish_layer_version(LayerName=name, Content={"ZipFile": LAYER_ZIP}, **extra)


def test_versions_are_published_read_listed_and_deleted(lam, layer_name):
    one = publish(lam, layer_name, Description="first", CompatibleRuntimes=["python3.12"],
                  CompatibleArchitectures=["x86_64"], LicenseInfo="MIT")
    assert one["ResponseMetadata"]["HTTPStatusCode"] == 201
    arn = f"arn:aws:lambda:{support.REGION}:{support.ACCOUNT}:layer:{layer_name}"
    assert (one["Version"], one["LayerArn"], one["LayerVersionArn"]) == (1, arn, arn + ":1")
    assert one["Content"]["CodeSha256"] == base64.b64encode(
        hashlib.sha256(LAYER_ZIP).digest()).decode()
    assert one["Content"]["CodeSize"] == len(LAYER_ZIP)
    with urllib.request.urlopen(one["Content"]["Location"], timeout=10) as r:
        assert r.read() == LAYER_ZIP
    assert (one["Description"], one["LicenseInfo"]) == ("first", "MIT")
    two = publish(lam, layer_name, CompatibleRuntimes=["nodejs20.x"])
    assert two["Version"] == 2

    got = lam.get_layer_version(LayerName=layer_name, VersionNumber=1)
    assert got["LayerVersionArn"] == arn + ":1" and got["CompatibleRuntimes"] == ["python3.12"]
    by_arn = lam.get_layer_version_by_arn(Arn=arn + ":2")
    assert by_arn["Version"] == 2
    assert [v["Version"] for v in lam.list_layer_versions(LayerName=layer_name)[
        "LayerVersions"]] == [2, 1]
    assert [v["Version"] for v in lam.list_layer_versions(
        LayerName=layer_name, CompatibleRuntime="python3.12")["LayerVersions"]] == [1]
    listed = {l["LayerName"]: l for l in lam.list_layers()["Layers"]}
    assert listed[layer_name]["LatestMatchingVersion"]["Version"] == 2
    listed = {l["LayerName"]: l for l in lam.list_layers(CompatibleRuntime="python3.12")["Layers"]}
    assert listed[layer_name]["LatestMatchingVersion"]["Version"] == 1

    lam.delete_layer_version(LayerName=layer_name, VersionNumber=1)
    lam.delete_layer_version(LayerName=layer_name, VersionNumber=1)  # again: nothing to do
    e = support.client_error(lam.get_layer_version, LayerName=layer_name, VersionNumber=1)
    assert e.response["Error"]["Code"] == "ResourceNotFoundException"
    lam.delete_layer_version(LayerName=layer_name, VersionNumber=2)
    assert layer_name not in [l["LayerName"] for l in lam.list_layers()["Layers"]]
    # Version numbers are never reused.
    assert publish(lam, layer_name)["Version"] == 3


def test_layer_permissions(lam, aws, layer_name):
    publish(lam, layer_name)
    e = support.client_error(lam.get_layer_version_policy, LayerName=layer_name, VersionNumber=1)
    assert e.response["Error"]["Code"] == "ResourceNotFoundException"
    added = lam.add_layer_version_permission(LayerName=layer_name, VersionNumber=1,
                                             StatementId="everyone", Action="lambda:GetLayerVersion",
                                             Principal="*")
    statement = json.loads(added["Statement"])
    assert statement["Principal"] == "*" and statement["Action"] == "lambda:GetLayerVersion"
    assert statement["Resource"].endswith(f":layer:{layer_name}:1")
    out = aws("add-layer-version-permission", "--layer-name", layer_name, "--version-number", "1",
              "--statement-id", "acct", "--action", "lambda:GetLayerVersion",
              "--principal", "123456789012")
    assert out.returncode == 0, out.stderr
    policy = lam.get_layer_version_policy(LayerName=layer_name, VersionNumber=1)
    assert [s["Sid"] for s in json.loads(policy["Policy"])["Statement"]] == ["everyone", "acct"]
    e = support.client_error(lam.add_layer_version_permission, LayerName=layer_name,
                             VersionNumber=1, StatementId="everyone",
                             Action="lambda:GetLayerVersion", Principal="*")
    assert e.response["Error"]["Code"] == "ResourceConflictException"
    e = support.client_error(lam.add_layer_version_permission, LayerName=layer_name,
                             VersionNumber=1, StatementId="x", Action="lambda:GetLayerVersion",
                             Principal="*", RevisionId="stale")
    assert e.response["Error"]["Code"] == "PreconditionFailedException"
    lam.remove_layer_version_permission(LayerName=layer_name, VersionNumber=1,
                                        StatementId="everyone")
    e = support.client_error(lam.remove_layer_version_permission, LayerName=layer_name,
                             VersionNumber=1, StatementId="everyone")
    assert e.response["Error"]["Code"] == "ResourceNotFoundException"


def test_bad_layer_requests_are_refused(lam_nv, layer_name):
    lam = lam_nv

    def code(call, **kwargs):
        return support.client_error(call, **kwargs).response["Error"]["Code"]

    assert code(lam.publish_layer_version, LayerName="bad name",
                Content={"ZipFile": LAYER_ZIP}) == "InvalidParameterValueException"
    assert code(lam.publish_layer_version, LayerName=layer_name, Content={"ZipFile": LAYER_ZIP},
                CompatibleArchitectures=["sparc"]) == "InvalidParameterValueException"
    assert code(lam.publish_layer_version, LayerName=layer_name,
                Content={"ZipFile": b"not a zip"}) == "InvalidParameterValueException"
    assert code(lam.publish_layer_version, LayerName=layer_name,
                Content={"S3Bucket": "b", "S3Key": "k"}) == "InvalidParameterValueException"
    assert code(lam.get_layer_version_by_arn,
                Arn="arn:aws:lambda:us-east-1:000000000000:function:f") == \
        "InvalidParameterValueException"
    assert code(lam.get_layer_version, LayerName="nosuch-layer",
                VersionNumber=1) == "ResourceNotFoundException"
    assert lam.list_layer_versions(LayerName=layer_name)["LayerVersions"] == []


def test_layers_survive_a_restart(own_server, client_for, unique_name):
    lam = client_for(own_server)
    name = unique_name("layer-restart")
    publish(lam, name)
    publish(lam, name)
    lam.delete_layer_version(LayerName=name, VersionNumber=2)
    own_server.restart()
    lam = client_for(own_server)
    assert [v["Version"] for v in lam.list_layer_versions(LayerName=name)["LayerVersions"]] == [1]
    got = lam.get_layer_version(LayerName=name, VersionNumber=1)
    with urllib.request.urlopen(got["Content"]["Location"], timeout=10) as r:
        assert r.read() == LAYER_ZIP
    assert publish(lam, name)["Version"] == 3


# --------------------------------------------------------------------------- functions

PY_APP = support.py_zip('''
import os, shoal_layer_mod

def handler(event, context):
    return {"value": shoal_layer_mod.VALUE, "tool": open("/opt/bin/tool.txt").read()
            if os.path.exists("/opt/bin/tool.txt") else None}
''')

NODE_APP = support.zip_files({"index.js": '''
const pkg = require("shoal-layer-pkg");
exports.handler = async () => ({ value: pkg.value, overridden: require("shoal-layer-pkg/extra").extra });
'''})

NODE_LAYER_1 = support.zip_files({
    "nodejs/node_modules/shoal-layer-pkg/index.js": "module.exports = { value: 'node layer' };\n",
    "nodejs/node_modules/shoal-layer-pkg/extra.js": "module.exports = { extra: 'first' };\n",
})
NODE_LAYER_2 = support.zip_files({
    "nodejs/node_modules/shoal-layer-pkg/extra.js": "module.exports = { extra: 'second' };\n",
})
PY_LAYER = support.zip_files({
    "python/shoal_layer_mod.py": "VALUE = 'from a layer'\n",
    "bin/tool.txt": "a tool",
})


def test_functions_use_their_layers_under_opt(lam, make_fn, layer_name, unique_name):
    py_layer = lam.publish_layer_version(LayerName=layer_name,
                                         Content={"ZipFile": PY_LAYER})["LayerVersionArn"]
    fn = make_fn(PY_APP, Layers=[py_layer])
    assert fn["Layers"] == [{"Arn": py_layer, "CodeSize": len(PY_LAYER)}], fn
    out = support.invoke(lam, fn["FunctionName"], {})
    assert "FunctionError" not in out, out["raw"]
    assert out["json"]["value"] == "from a layer", out["json"]

    # Node: a package from one layer, a file of it replaced by a later layer.
    node_a, node_b = unique_name("nl-a"), unique_name("nl-b")
    arn_a = lam.publish_layer_version(LayerName=node_a,
                                      Content={"ZipFile": NODE_LAYER_1})["LayerVersionArn"]
    arn_b = lam.publish_layer_version(LayerName=node_b,
                                      Content={"ZipFile": NODE_LAYER_2})["LayerVersionArn"]
    try:
        node = make_fn(NODE_APP, runtime=support.NODE_RUNTIME, handler="index.handler",
                       Layers=[arn_a, arn_b])["FunctionName"]
        out = support.invoke(lam, node, {})
        assert out["json"] == {"value": "node layer", "overridden": "second"}, out["raw"]
        # Deleting the layer versions keeps the function working (it keeps their code).
        lam.delete_layer_version(LayerName=node_a, VersionNumber=1)
        lam.delete_layer_version(LayerName=node_b, VersionNumber=1)
        lam.update_function_configuration(FunctionName=node, Environment={"Variables": {"CHANGED": "1"}})
        out = support.invoke(lam, node, {})
        assert out["json"] == {"value": "node layer", "overridden": "second"}, out["raw"]
        assert [l["Arn"] for l in lam.get_function_configuration(FunctionName=node)["Layers"]] \
            == [arn_a, arn_b]
    finally:
        for name in (node_a, node_b):
            for v in lam.list_layer_versions(LayerName=name)["LayerVersions"]:
                lam.delete_layer_version(LayerName=name, VersionNumber=v["Version"])

    # Layers are removed by an update with an empty list.
    lam.update_function_configuration(FunctionName=fn["FunctionName"], Layers=[])
    assert "Layers" not in lam.get_function_configuration(FunctionName=fn["FunctionName"])
    out = support.invoke(lam, fn["FunctionName"], {})
    assert out.get("FunctionError") == "Unhandled", out["raw"]


def test_bad_layer_lists_are_refused(lam, make_fn, layer_name):
    arn = lam.publish_layer_version(LayerName=layer_name,
                                    Content={"ZipFile": PY_LAYER})["LayerVersionArn"]
    two = lam.publish_layer_version(LayerName=layer_name,
                                    Content={"ZipFile": PY_LAYER})["LayerVersionArn"]

    def code(layers):
        e = support.client_error(lam.create_function, FunctionName=support.unique_name("bad"),
                                 Runtime=support.PY_RUNTIME, Handler="app.handler",
                                 Role=support.ROLE, Code={"ZipFile": PY_APP}, Layers=layers)
        return e.response["Error"]["Code"], e.response["Error"]["Message"]

    assert code([arn + "0"])[0] == "InvalidParameterValueException"
    assert "does not exist" in code([arn[:-1] + "9"])[1]
    assert "same layer" in code([arn, two])[1]
    assert code([arn] * 6)[0] == "InvalidParameterValueException"


def test_code_and_layers_together_stay_within_250_mb(lam, make_fn, layer_name):
    """Lambda's unzipped limit counts a function's code and its layers together."""
    mb = 1024 * 1024
    big_layer = support.zip_files({"python/blob.bin": b"\0" * (150 * mb)})
    arn = lam.publish_layer_version(LayerName=layer_name,
                                    Content={"ZipFile": big_layer})["LayerVersionArn"]
    big_code = support.zip_files({"app.py": "def handler(e, c):\n    return 1\n",
                                  "blob.bin": b"\0" * (120 * mb)})
    e = support.client_error(lam.create_function, FunctionName=support.unique_name("big"),
                             Runtime=support.PY_RUNTIME, Handler="app.handler",
                             Role=support.ROLE, Code={"ZipFile": big_code}, Layers=[arn])
    assert e.response["Error"]["Code"] == "InvalidParameterValueException", e.response
    assert "combined with layers exceeds the maximum allowed size of 262144000" in \
        e.response["Error"]["Message"], e.response
    # A small function takes the layer; its code cannot then grow past the limit.
    fn = make_fn(PY_APP, Layers=[arn])["FunctionName"]
    e = support.client_error(lam.update_function_code, FunctionName=fn, ZipFile=big_code)
    assert "combined with layers" in e.response["Error"]["Message"], e.response
