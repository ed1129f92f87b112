"""Tags: CreateFunction's Tags, TagResource, UntagResource, ListTags and GetFunction's Tags,
with Lambda's rules (functions only, at most 50, no `aws:` keys)."""

from __future__ import annotations

import botocore.exceptions
import pytest

import support


def _error(call) -> tuple[str, str, int]:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    err = e.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def tagged(lam):
    name = support.unique_name("tags")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": support.py_zip(
                            "def handler(e, c):\n    return 'ok'\n")},
                        Tags={"team": "payments", "env": "test"})
    yield name
    try:
        lam.delete_function(FunctionName=name)
    except Exception:
        pass


def test_tags_round_trip(lam, tagged):
    arn = support.function_arn(tagged)
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "payments", "env": "test"}
    assert lam.get_function(FunctionName=tagged)["Tags"] == {"team": "payments", "env": "test"}

    lam.tag_resource(Resource=arn, Tags={"env": "prod", "cost-center": "42"})
    assert lam.list_tags(Resource=arn)["Tags"] == {
        "team": "payments", "env": "prod", "cost-center": "42"}
    lam.untag_resource(Resource=arn, TagKeys=["team", "cost-center", "not-there"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"env": "prod"}
    # Tags are not configuration: the function stays as it was.
    assert lam.invoke(FunctionName=tagged)["Payload"].read() == b'"ok"'


def test_a_function_without_tags_has_none(lam):
    name = support.unique_name("tags")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": support.py_zip("x = 1\n")})
    try:
        assert lam.list_tags(Resource=support.function_arn(name))["Tags"] == {}
        assert "Tags" not in lam.get_function(FunctionName=name)
    finally:
        lam.delete_function(FunctionName=name)


def test_tag_rules(lam, tagged):
    arn = support.function_arn(tagged)
    code, message, status = _error(lambda: lam.tag_resource(Resource=arn, Tags={"aws:x": "1"}))
    assert (code, status) == ("InvalidParameterValueException", 400) and "aws:" in message
    code, _, _ = _error(lambda: lam.tag_resource(Resource=arn, Tags={"k" * 129: "v"}))
    assert code == "InvalidParameterValueException"
    code, _, _ = _error(lambda: lam.tag_resource(Resource=arn, Tags={"k": "v" * 257}))
    assert code == "InvalidParameterValueException"
    many = {f"tag{i}": "v" for i in range(49)}
    code, message, _ = _error(lambda: lam.tag_resource(Resource=arn, Tags=many))
    assert code == "InvalidParameterValueException" and "50" in message
    # Nothing of a refused change was applied.
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "payments", "env": "test"}
    lam.tag_resource(Resource=arn, Tags={f"tag{i}": "v" for i in range(48)})
    assert len(lam.list_tags(Resource=arn)["Tags"]) == 50


def test_tags_belong_to_functions_only(lam, tagged):
    code, message, _ = _error(lambda: lam.list_tags(Resource=support.function_arn(tagged) + ":1"))
    assert code == "InvalidParameterValueException" and "versions or aliases" in message
    code, _, status = _error(lambda: lam.tag_resource(
        Resource=support.function_arn(support.unique_name("missing")), Tags={"a": "b"}))
    assert (code, status) == ("ResourceNotFoundException", 404)
    code, message, _ = _error(lambda: lam.list_tags(Resource=tagged))
    assert code == "InvalidParameterValueException" and "ARN" in message


def test_create_with_bad_tags_creates_nothing(lam):
    name = support.unique_name("tags")
    code, _, _ = _error(lambda: lam.create_function(
        FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
        Role=support.ROLE, Code={"ZipFile": support.py_zip("x = 1\n")},
        Tags={"shoal:network": "everywhere"}))
    assert code == "InvalidParameterValueException"
    code, _, _ = _error(lambda: lam.get_function(FunctionName=name))
    assert code == "ResourceNotFoundException"
