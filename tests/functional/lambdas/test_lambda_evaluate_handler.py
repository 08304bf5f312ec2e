"""The evaluate handler against moto S3 and DynamoDB, with SageMaker-shaped output objects."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from lambdas import evaluate, promote
from lambdas._aws import ConfigurationError, EventError
from lambdas.evaluate import EvaluationFileError, MissingMetricError

BUCKET = "tumor-triage-dev-data"  # $BUCKET in the functional conftest


def output_tarball(files: dict[str, bytes]) -> bytes:
    """What SageMaker uploads as output/output.tar.gz from /opt/ml/output/data."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def put(s3, uri: str, body: bytes) -> None:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3.put_object(Bucket=bucket, Key=key, Body=body)


@pytest.fixture
def evaluation_bytes(load_event) -> bytes:
    return json.dumps(load_event("evaluation")).encode()


def test_first_model_is_promoted_from_a_sagemaker_output_tarball(s3, load_event, evaluation_bytes):
    event = load_event("evaluate_first_model")
    put(s3, event["evaluation_uri"], output_tarball({"evaluation.json": evaluation_bytes}))

    out = evaluate.handler(event, None)

    assert out == {
        "promote": True,
        "reason": "accuracy 0.9412: first model, no production model to beat",
        "metric": "accuracy",
        "direction": "maximize",
        "candidate_value": 0.9412,
        "production_value": None,
        "production_version": None,
        "candidate_metrics": {
            "accuracy": 0.9412,
            "f1_macro": 0.9371,
            "precision_macro": 0.9398,
            "recall_macro": 0.9347,
        },
    }
    json.dumps(out)


def test_better_candidate_beats_the_production_item_from_get_item(s3, load_event, evaluation_bytes):
    event = load_event("evaluate_with_production")
    put(s3, event["evaluation_uri"], output_tarball({"./evaluation.json": evaluation_bytes}))

    out = evaluate.handler(event, None)

    assert out["promote"] is True
    assert (out["production_value"], out["production_version"]) == (0.9123, 3)
    assert out["reason"].startswith("accuracy 0.9412 beats production 0.9123 (v3) by 0.0289")


def test_a_plain_evaluation_json_uri_is_read_directly(s3, load_event, evaluation_bytes):
    event = load_event("evaluate_with_production")
    event["evaluation_uri"] = f"s3://{BUCKET}/models/job/evaluation/evaluation.json"
    put(s3, event["evaluation_uri"], evaluation_bytes)
    assert evaluate.handler(event, None)["candidate_value"] == 0.9412


@pytest.mark.parametrize(("min_improvement", "promote_expected"), [("0.0", True), ("0.05", False)])
def test_min_improvement_from_the_environment_is_applied(
    s3, load_event, evaluation_bytes, monkeypatch, min_improvement, promote_expected
):
    monkeypatch.setenv("GATE_MIN_IMPROVEMENT", min_improvement)
    event = load_event("evaluate_with_production")
    put(s3, event["evaluation_uri"], output_tarball({"evaluation.json": evaluation_bytes}))
    assert evaluate.handler(event, None)["promote"] is promote_expected


def test_minimize_direction_turns_the_decision_around(
    s3, load_event, evaluation_bytes, monkeypatch
):
    monkeypatch.setenv("GATE_DIRECTION", "minimize")
    event = load_event("evaluate_with_production")
    put(s3, event["evaluation_uri"], output_tarball({"evaluation.json": evaluation_bytes}))
    out = evaluate.handler(event, None)
    assert (out["promote"], out["direction"]) == (False, "minimize")
    assert "lower" in out["reason"]


def test_the_registry_record_written_by_promote_is_what_evaluate_compares_against(
    s3, ddb, lambda_env, load_event, evaluation_bytes
):
    # The production value travels DynamoDB -> Step Functions getItem -> evaluate unchanged.
    registered = promote.handler(load_event("promote_register"), None)
    promote.handler({"action": "promote", "version": registered["version"]}, None)
    get_item = ddb.get_item(
        TableName=lambda_env["TABLE_NAME"], Key={"pk": {"S": "PRODUCTION"}}, ConsistentRead=True
    )
    same = dict(json.loads(evaluation_bytes), metrics={"accuracy": 0.9412, "f1_macro": 0.95})
    uri = f"s3://{BUCKET}/models/job-2/output/output.tar.gz"
    put(s3, uri, output_tarball({"evaluation.json": json.dumps(same).encode()}))

    out = evaluate.handler({"evaluation_uri": uri, "production": get_item}, None)

    assert (out["production_value"], out["production_version"]) == (0.9412, 1)
    assert out["promote"] is False  # equal accuracy is not an improvement


def test_a_gate_metric_missing_from_evaluation_json_is_a_named_error(s3, load_event, monkeypatch):
    monkeypatch.setenv("GATE_METRIC", "balanced_accuracy")
    event = load_event("evaluate_first_model")
    put(s3, event["evaluation_uri"], output_tarball({"evaluation.json": b'{"accuracy": 0.9}'}))
    with pytest.raises(MissingMetricError, match="gate metric 'balanced_accuracy'"):
        evaluate.handler(event, None)


def test_a_tarball_without_evaluation_json_is_a_named_error(s3, load_event):
    event = load_event("evaluate_first_model")
    put(s3, event["evaluation_uri"], output_tarball({"metrics.txt": b"accuracy=0.9"}))
    with pytest.raises(EvaluationFileError, match=r"must contain exactly one evaluation.json"):
        evaluate.handler(event, None)


def test_a_missing_evaluation_object_is_a_named_error(s3, load_event):
    event = load_event("evaluate_first_model")
    with pytest.raises(EvaluationFileError, match=r"output/output.tar.gz does not exist"):
        evaluate.handler(event, None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"evaluation_uri": "models/x/output.tar.gz"}, "evaluation_uri .* must start with s3://"),
        ({"evaluation_uri": None}, "evaluation_uri is missing"),
        ({"production": None}, "production is missing"),
        ({"production": "none"}, "production must be an object"),
    ],
)
def test_bad_event_fields_are_event_errors(s3, load_event, change, message):
    event = load_event("evaluate_first_model") | change
    with pytest.raises(EventError, match=message):
        evaluate.handler(event, None)


def test_a_missing_gate_metric_setting_is_a_configuration_error(s3, load_event, monkeypatch):
    monkeypatch.delenv("GATE_METRIC")
    with pytest.raises(ConfigurationError, match="GATE_METRIC"):
        evaluate.handler(load_event("evaluate_first_model"), None)
