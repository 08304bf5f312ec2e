"""The notify handler, fed the state machine's events, against a moto SNS topic read back through
a subscribed SQS queue."""

from __future__ import annotations

import json

import boto3
import pytest

from lambdas import notify
from lambdas._aws import ConfigurationError, EventError


def received(queue_url: str) -> list[dict]:
    """The SNS envelopes delivered to the queue (SNS wraps each message in a JSON notification)."""
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    ).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


@pytest.mark.parametrize(
    ("fixture", "outcome"),
    [
        ("notify_promoted", "promoted"),
        ("notify_rejected", "rejected"),
        ("notify_failed_glue", "failed"),
        ("notify_failed_sagemaker", "failed"),
        ("notify_failed_lambda", "failed"),
        ("notify_failed_endpoint", "failed"),
        ("notify_superseded", "rejected"),
    ],
)
def test_each_outcome_is_published_with_subject_body_and_outcome_attribute(
    topic_queue, load_event, fixture, outcome
):
    event = load_event(fixture)
    subject, body = notify.format_message(notify.from_state_machine(event), "tumor-triage", "dev")

    out = notify.handler(event, None)

    assert out["published"] is True
    assert out["subject"] == subject
    [envelope] = received(topic_queue)
    assert envelope["MessageId"] == out["message_id"]
    assert envelope["Subject"] == subject
    assert envelope["Message"] == body
    assert envelope["MessageAttributes"]["outcome"] == {"Type": "String", "Value": outcome}


def test_the_published_failure_carries_the_glue_error_message(topic_queue, load_event):
    notify.handler(load_event("notify_failed_glue"), None)
    [envelope] = received(topic_queue)
    assert envelope["Subject"].startswith("[tumor-triage/dev] retraining failed in ETL: ValueError")
    assert "first: 'twelve'" in envelope["Message"]


def test_a_failure_at_the_very_start_is_still_published(topic_queue):
    # NotifyFailure can be reached with nothing but the execution input in the state data.
    event = {
        "outcome": "failed",
        "execution_id": "arn:aws:states:eu-west-1:123456789012:execution:m:run-1",
        "input": {"data_key": "raw/drop-004/data.csv", "commit": "s3-event"},
    }
    out = notify.handler(event, None)
    assert out["published"] is True
    [envelope] = received(topic_queue)
    assert envelope["Subject"] == (
        "[tumor-triage/dev] retraining failed in an unknown state: unknown error"
    )
    assert "data: raw/drop-004/data.csv (data version n/a)" in envelope["Message"]


def test_an_outcome_not_in_notify_on_is_skipped(topic_queue, load_event, monkeypatch):
    monkeypatch.setenv("NOTIFY_ON", "failed")
    out = notify.handler(load_event("notify_rejected"), None)
    assert out == {
        "published": False,
        "message_id": None,
        "subject": "[tumor-triage/dev] rejected v5, accuracy 0.9059 (production v3 0.9123)",
    }
    assert received(topic_queue) == []


def test_an_empty_notify_on_publishes_nothing(topic_queue, load_event, monkeypatch):
    monkeypatch.setenv("NOTIFY_ON", "")
    assert notify.handler(load_event("notify_failed_lambda"), None)["published"] is False
    assert received(topic_queue) == []


def test_project_and_environment_come_from_the_environment(topic_queue, load_event, monkeypatch):
    monkeypatch.setenv("PROJECT", "churn")
    monkeypatch.setenv("ENVIRONMENT", "prod")
    out = notify.handler(load_event("notify_promoted"), None)
    assert out["subject"].startswith("[churn/prod] promoted v4")
    [envelope] = received(topic_queue)
    assert envelope["Message"].startswith("churn (prod): promoted v4")


@pytest.mark.parametrize("name", ["TOPIC_ARN", "NOTIFY_ON", "PROJECT", "ENVIRONMENT"])
def test_a_missing_setting_is_a_configuration_error_naming_it(
    topic_queue, load_event, monkeypatch, name
):
    monkeypatch.delenv(name)
    with pytest.raises(ConfigurationError, match=name):
        notify.handler(load_event("notify_promoted"), None)
    assert received(topic_queue) == []


def test_an_unknown_outcome_is_an_event_error(topic_queue):
    with pytest.raises(EventError, match="outcome 'done' must be one of"):
        notify.handler({"outcome": "done"}, None)
    assert received(topic_queue) == []
