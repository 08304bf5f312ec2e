"""Functional-test fixtures for the Lambda handlers: moto-backed S3, DynamoDB, SNS and SQS.

The handlers run unchanged: their deployment constants come from environment variables set here
with the names the stack derives from config/project.yaml, their clients from lambdas._aws.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from lambdas import _aws

REGION = "eu-west-1"
BUCKET = "tumor-triage-dev-data"
TABLE = "tumor-triage-dev-models"
TOPIC = "tumor-triage-dev-events"
DEPLOYED_COMMIT = (
    "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"  # pragma: allowlist secret (a fake commit SHA)
)
EVENTS = Path(__file__).resolve().parents[2] / "fixtures" / "events"


@pytest.fixture
def load_event() -> Callable[[str], dict[str, Any]]:
    """Read tests/fixtures/events/<name>.json (a fresh copy per call, safe to modify)."""

    def load(name: str) -> dict[str, Any]:
        return json.loads((EVENTS / f"{name}.json").read_text())

    return load


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials, the project region, and a fresh moto account for one test."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    # Clients cached by an earlier test belong to an earlier mock.
    _aws.reset_clients()
    with mock_aws():
        yield
    _aws.reset_clients()


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The deployment constants of the four functions, as the dev stack sets them."""
    values = {
        "BUCKET": BUCKET,
        "TABLE_NAME": TABLE,
        "RAW_PREFIX": "raw/",
        "MANIFEST_PREFIX": "manifests/",
        "PROCESSED_PREFIX": "processed/",
        "MODELS_PREFIX": "models/",
        "TRAINING_JOB_PREFIX": "tumor-triage-dev",
        "MODEL_PREFIX": "tumor-triage-dev",
        "GATE_METRIC": "accuracy",
        "GATE_DIRECTION": "maximize",
        "GATE_MIN_IMPROVEMENT": "0.0",
        "NOTIFY_ON": "promoted,rejected,failed",
        "PROJECT": "tumor-triage",
        "ENVIRONMENT": "dev",
        # The git commit the stack was deployed from; runs started by new data train it.
        "CODE_VERSION": DEPLOYED_COMMIT,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def s3(aws: None, lambda_env: dict[str, str]) -> Any:
    """An S3 client, with the data bucket ($BUCKET) created."""
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return client


@pytest.fixture
def create_table(aws: None) -> Callable[[str], None]:
    """Create a registry table (hash key `pk`, a string) by name."""

    def create(name: str) -> None:
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

    return create


@pytest.fixture
def ddb(create_table: Callable[[str], None], lambda_env: dict[str, str]) -> Any:
    """A DynamoDB client, with the registry table ($TABLE_NAME) created."""
    create_table(TABLE)
    return boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def topic_queue(aws: None, lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """An SNS topic (its ARN in TOPIC_ARN) with an SQS queue subscribed; returns the queue URL."""
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic_arn = sns.create_topic(Name=TOPIC)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"{TOPIC}-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("TOPIC_ARN", topic_arn)
    return queue_url


@pytest.fixture
def serialised_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto handle one request at a time, as DynamoDB applies each request atomically.

    moto's backends take no lock: a transaction that fails restores a copy of the whole table taken
    when it started, erasing whatever another thread wrote meanwhile. Real DynamoDB has no such
    window. Serialising moto's request handling removes it, while the requests of the threads
    still interleave freely with each other, which is the race the tests are about.
    """
    lock = threading.Lock()
    original = BotocoreStubber.process_request

    def one_at_a_time(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return original(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", one_at_a_time)
