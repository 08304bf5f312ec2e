"""The evaluate step's pure parts: reading metrics, the production record, the gate output."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from lambdas._aws import EventError
from lambdas.evaluate import (
    EvaluationFileError,
    MissingMetricError,
    ProductionRecordError,
    evaluate,
    extract_from_tarball,
    parse_metrics,
    production_record,
)
from lambdas.gate import GateRule

MAXIMIZE = GateRule("maximize", 0.0)


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_metrics_are_read_from_the_metrics_object(load_event):
    raw = json.dumps(load_event("evaluation")).encode()
    assert parse_metrics(raw, source="x") == {
        "accuracy": 0.9412,
        "f1_macro": 0.9371,
        "precision_macro": 0.9398,
        "recall_macro": 0.9347,
    }


def test_a_flat_file_gives_its_numeric_entries_as_metrics():
    raw = json.dumps({"accuracy": 1, "f1_macro": 0.5, "labels": ["a", "b"], "ok": True}).encode()
    assert parse_metrics(raw, source="x") == {"accuracy": 1.0, "f1_macro": 0.5}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "is not valid JSON"),
        (b"[0.9]", "must hold a JSON object"),
        (b'{"metrics": [0.9]}', '"metrics" must be an object'),
        (b'{"metrics": {"accuracy": NaN}}', "metric 'accuracy' is nan"),
        (b'{"metrics": {"labels": ["a"]}}', "holds no numeric metrics"),
    ],
)
def test_unreadable_evaluation_files_raise_naming_the_source(raw, message):
    with pytest.raises(EvaluationFileError, match=message) as caught:
        parse_metrics(raw, source="s3://b/evaluation.json")
    assert "s3://b/evaluation.json" in str(caught.value)


def test_evaluation_json_is_found_in_a_sagemaker_output_tarball():
    data = tarball({"./evaluation.json": b'{"accuracy": 0.9}', "./confusion.csv": b"1,2\n"})
    assert extract_from_tarball(data, source="x") == b'{"accuracy": 0.9}'


def test_a_tarball_without_evaluation_json_lists_what_it_holds():
    data = tarball({"model.joblib": b"..."})
    with pytest.raises(EvaluationFileError, match=r"exactly one evaluation.json.*model.joblib"):
        extract_from_tarball(data, source="s3://b/output.tar.gz")


def test_a_corrupt_tarball_raises_evaluation_file_error():
    with pytest.raises(EvaluationFileError, match="not a readable tar archive"):
        extract_from_tarball(b"\x1f\x8bnot really gzip", source="s3://b/output.tar.gz")


def test_production_record_of_an_empty_get_item_result_is_none(load_event):
    assert production_record(load_event("evaluate_first_model")["production"]) is None
    assert production_record({}) is None


def test_production_record_is_deserialised_to_plain_numbers(load_event):
    record = production_record(load_event("evaluate_with_production")["production"])
    assert record["version"] == 3
    assert record["metrics"]["accuracy"] == 0.9123
    assert isinstance(record["metric_value"], float)


def test_production_record_that_is_not_typed_attributes_raises_event_error():
    with pytest.raises(EventError, match="production.Item is not DynamoDB typed attributes"):
        production_record({"Item": {"version": 3}})


def test_evaluate_output_against_production(load_event):
    metrics = parse_metrics(json.dumps(load_event("evaluation")).encode(), source="x")
    production = production_record(load_event("evaluate_with_production")["production"])
    out = evaluate(metrics, production, "accuracy", MAXIMIZE)
    assert out == {
        "promote": True,
        "reason": out["reason"],
        "metric": "accuracy",
        "direction": "maximize",
        "candidate_value": 0.9412,
        "production_value": 0.9123,
        "production_version": 3,
        "candidate_metrics": metrics,
    }
    assert out["reason"].startswith("accuracy 0.9412 beats production 0.9123 (v3) by 0.0289")
    json.dumps(out)  # what the state machine receives must be plain JSON


def test_evaluate_output_for_the_first_model_has_null_production():
    out = evaluate({"accuracy": 0.8}, None, "accuracy", MAXIMIZE)
    assert out["promote"] is True
    assert out["production_value"] is None
    assert out["production_version"] is None


def test_evaluate_compares_the_gate_metric_not_the_one_production_was_gated_on():
    production = {
        "version": 2,
        "metric_name": "accuracy",
        "metric_value": 0.99,
        "metrics": {"accuracy": 0.99, "f1_macro": 0.80},
    }
    out = evaluate({"accuracy": 0.90, "f1_macro": 0.85}, production, "f1_macro", MAXIMIZE)
    assert out["promote"] is True
    assert out["production_value"] == 0.80


def test_a_gate_metric_missing_from_the_evaluation_raises_naming_it():
    with pytest.raises(MissingMetricError, match=r"gate metric 'accuracy' is not in .*'f1_macro'"):
        evaluate({"f1_macro": 0.9}, None, "accuracy", MAXIMIZE)


def test_a_production_record_without_the_gate_metric_raises_naming_the_version():
    production = {"version": 4, "metrics": {"f1_macro": 0.9}}
    with pytest.raises(ProductionRecordError, match=r"PRODUCTION record \(v4\) has no 'accuracy'"):
        evaluate({"accuracy": 0.9}, production, "accuracy", MAXIMIZE)
