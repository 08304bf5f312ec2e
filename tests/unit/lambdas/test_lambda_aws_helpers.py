"""Shared Lambda helpers: settings, event fields, S3 URIs, DynamoDB typed attributes."""

from __future__ import annotations

import json
import math

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from lambdas._aws import (
    ConfigurationError,
    EventError,
    TransientError,
    env,
    env_float,
    field,
    from_item,
    parse_s3_uri,
    retryable_aws_errors,
    s3_uri,
    to_item,
)


def test_env_is_read_at_call_time(monkeypatch):
    monkeypatch.setenv("BUCKET", "first")
    assert env("BUCKET") == "first"
    monkeypatch.setenv("BUCKET", "second")
    assert env("BUCKET") == "second"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_env_names_the_variable(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("TABLE_NAME", raising=False)
    else:
        monkeypatch.setenv("TABLE_NAME", value)
    with pytest.raises(ConfigurationError, match="environment variable TABLE_NAME is not set"):
        env("TABLE_NAME")


@pytest.mark.parametrize("value", ["abc", "nan", "inf"])
def test_env_float_refuses_non_finite_or_non_numbers(monkeypatch, value):
    monkeypatch.setenv("GATE_MIN_IMPROVEMENT", value)
    with pytest.raises(ConfigurationError, match="GATE_MIN_IMPROVEMENT"):
        env_float("GATE_MIN_IMPROVEMENT")


def test_field_walks_dotted_paths_and_checks_types():
    event = {"run": {"execution_id": "arn", "count": 3}}
    assert field(event, "run.execution_id") == "arn"
    assert field(event, "run.count", int) == 3
    with pytest.raises(EventError, match="event field run.count must be a string, got int"):
        field(event, "run.count")
    with pytest.raises(EventError, match="event field run.commit is missing"):
        field(event, "run.commit")
    with pytest.raises(EventError, match="event field run.execution_id must be an object"):
        field(event, "run.execution_id.x")
    with pytest.raises(EventError, match="the event must be a JSON object"):
        field(["not", "an", "object"], "run")


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("s3://bucket/key/with/parts.json", ("bucket", "key/with/parts.json")),
        ("s3://bucket/prefix/", ("bucket", "prefix/")),
        ("s3://bucket", ("bucket", "")),
    ],
)
def test_parse_s3_uri_splits_bucket_and_key(uri, parsed):
    assert parse_s3_uri(uri) == parsed
    assert s3_uri(*parsed) == (uri if uri.count("/") > 2 else uri + "/")


@pytest.mark.parametrize("uri", ["bucket/key", "https://bucket/key", "s3:///key", 7])
def test_parse_s3_uri_refuses_other_shapes(uri):
    with pytest.raises(EventError, match="evaluation_uri"):
        parse_s3_uri(uri, what="event field evaluation_uri")


def test_items_round_trip_to_plain_json_without_decimal():
    plain = {
        "pk": "MODEL#3",
        "version": 3,
        "metric_value": 0.9412,
        "metrics": {"accuracy": 0.9412, "f1_macro": 0.1 + 0.2},
        "previous_version": None,
        "tags": ["a", "b"],
        "promoted": True,
    }
    typed = to_item(plain)
    assert typed["metric_value"] == {"N": "0.9412"}
    assert typed["metrics"]["M"]["f1_macro"] == {"N": "0.30000000000000004"}
    assert typed["previous_version"] == {"NULL": True}
    back = from_item(typed)
    assert back == plain
    assert json.loads(json.dumps(back)) == plain


def test_to_item_refuses_numbers_dynamodb_cannot_store():
    with pytest.raises(ValueError, match="cannot store the number nan"):
        to_item({"metric_value": math.nan})


def raising(exc: Exception):
    @retryable_aws_errors
    def handler(event, context=None):
        raise exc

    return handler


@pytest.mark.parametrize(
    "code", ["ThrottlingException", "ProvisionedThroughputExceededException", "SlowDown"]
)
def test_throttling_client_errors_become_transient_errors(code):
    error = ClientError({"Error": {"Code": code, "Message": "Rate exceeded"}}, "PutItem")
    with pytest.raises(
        TransientError, match=f"PutItem failed with {code}: Rate exceeded"
    ) as caught:
        raising(error)({})
    assert caught.value.__cause__ is error


def test_a_lost_connection_becomes_a_transient_error():
    with pytest.raises(TransientError, match="lost the connection to AWS"):
        raising(EndpointConnectionError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com"))(
            {}
        )


@pytest.mark.parametrize(
    "exc",
    [
        ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutItem"),
        EventError("event field x is missing"),
    ],
    ids=["access-denied", "event-error"],
)
def test_other_errors_pass_through_unchanged(exc):
    with pytest.raises(type(exc)) as caught:
        raising(exc)({})
    assert caught.value is exc


def test_the_wrapped_handler_keeps_its_result_and_name():
    @retryable_aws_errors
    def handler(event, context=None):
        return {"echo": event}

    assert handler({"a": 1}) == {"echo": {"a": 1}}
    assert handler.__name__ == "handler"
