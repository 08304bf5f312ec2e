"""Evaluate Lambda: read a candidate's metrics and decide, against production, whether to promote.

Event (from the state machine):
    {"evaluation_uri": "s3://.../evaluation.json" or "s3://.../output.tar.gz",
     "production": <raw result of a Step Functions dynamodb:getItem on pk=PRODUCTION>}
The tarball is SageMaker's output-data archive (what the training script wrote to
/opt/ml/output/data), which holds evaluation.json.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from collections.abc import Mapping
from typing import Any

from lambdas import _aws
from lambdas.gate import Decision, GateRule, decide

# decide and Decision belong to the gate; evaluate is where callers look for them.
__all__ = ["Decision", "decide", "evaluate", "handler", "parse_metrics", "production_record"]

EVALUATION_FILE = "evaluation.json"
GZIP_MAGIC = b"\x1f\x8b"


class EvaluationFileError(ValueError):
    """The evaluation object cannot be read as metrics."""


class MissingMetricError(KeyError):
    """The gate metric is not among the metrics the training job reported."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


class ProductionRecordError(ValueError):
    """The PRODUCTION item of the registry lacks what the gate needs."""


@_aws.retryable_aws_errors
def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    metric = _aws.env("GATE_METRIC")
    rule = GateRule.from_env()
    uri = _aws.field(event, "evaluation_uri")
    production = _aws.field(event, "production", dict)
    metrics = parse_metrics(read_evaluation(uri), source=uri)
    return evaluate(metrics, production_record(production), metric, rule)


def read_evaluation(uri: str) -> bytes:
    """The bytes of evaluation.json at `uri`, unpacked from a tarball when `uri` is one."""
    bucket, key = _aws.parse_s3_uri(uri, what="event field evaluation_uri")
    s3 = _aws.client("s3")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey as exc:
        raise EvaluationFileError(
            f"{uri} does not exist; the training script must write {EVALUATION_FILE} to "
            "/opt/ml/output/data, which SageMaker uploads as output/output.tar.gz"
        ) from exc
    if body[:2] == GZIP_MAGIC or key.endswith((".tar.gz", ".tgz", ".tar")):
        return extract_from_tarball(body, source=uri)
    return body


def extract_from_tarball(data: bytes, *, source: str) -> bytes:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            members = [
                m
                for m in archive.getmembers()
                if m.isfile() and m.name.rsplit("/", 1)[-1] == EVALUATION_FILE
            ]
            if len(members) != 1:
                names = [m.name for m in archive.getmembers() if m.isfile()]
                raise EvaluationFileError(
                    f"{source} must contain exactly one {EVALUATION_FILE}, found "
                    f"{len(members)} among {names}; the training script writes it to "
                    "/opt/ml/output/data/"
                )
            extracted = archive.extractfile(members[0])
            if extracted is None:
                raise EvaluationFileError(f"{source}: {members[0].name} has no content")
            return extracted.read()
    except tarfile.TarError as exc:
        raise EvaluationFileError(f"{source} is not a readable tar archive: {exc}") from exc


def parse_metrics(raw: bytes, *, source: str) -> dict[str, float]:
    """Numeric metrics from evaluation.json: `{"metrics": {name: value}}` or a flat `{name: value}`.

    Non-numeric entries of a flat file (a confusion matrix, a label list) are not metrics and are
    left out; a non-finite metric is an error, because NaN compares false with everything.
    """
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluationFileError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise EvaluationFileError(f"{source} must hold a JSON object of metrics")
    table = document.get("metrics", document)
    if not isinstance(table, dict):
        raise EvaluationFileError(f'{source}: "metrics" must be an object of name -> number')
    metrics: dict[str, float] = {}
    for name, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            raise EvaluationFileError(f"{source}: metric {name!r} is {value}, not a finite number")
        metrics[name] = float(value)
    if not metrics:
        raise EvaluationFileError(f"{source} holds no numeric metrics")
    return metrics


def production_record(get_item_result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The PRODUCTION item as plain values, or None when there is no production model yet."""
    item = get_item_result.get("Item")
    if not item:
        return None
    if not isinstance(item, Mapping):
        raise _aws.EventError("event field production.Item must be an object of typed attributes")
    try:
        return _aws.from_item(item)
    except (TypeError, ValueError, AttributeError) as exc:
        raise _aws.EventError(
            f"event field production.Item is not DynamoDB typed attributes ({exc}); pass the "
            "result of the dynamodb:getItem task unchanged"
        ) from exc


def production_value(record: Mapping[str, Any], metric: str) -> float:
    """Production's value of `metric`: from its full metrics map, so a changed gate metric works."""
    version = record.get("version")
    metrics = record.get("metrics")
    if not isinstance(metrics, Mapping) or metric not in metrics:
        raise ProductionRecordError(
            f"the PRODUCTION record (v{version}) has no {metric!r} in its metrics; it was promoted "
            "before the gate metric was changed. Re-evaluate that model or delete the PRODUCTION "
            "item so the next candidate becomes the first model"
        )
    value = metrics[metric]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProductionRecordError(f"the PRODUCTION record (v{version}) {metric} is {value!r}")
    return float(value)


def evaluate(
    metrics: Mapping[str, float],
    production: Mapping[str, Any] | None,
    metric: str,
    rule: GateRule,
) -> dict[str, Any]:
    """The gate decision for a candidate with `metrics` against the `production` record."""
    if metric not in metrics:
        raise MissingMetricError(
            f"gate metric {metric!r} is not in the evaluation metrics {sorted(metrics)}; "
            "make the training script report it or change gate.metric in config/project.yaml"
        )
    candidate = metrics[metric]
    prod_value = None if production is None else production_value(production, metric)
    prod_version = None if production is None else production.get("version")
    decision = decide(
        candidate,
        prod_value,
        rule.direction,
        rule.min_improvement,
        metric=metric,
        production_version=prod_version,
    )
    return {
        "promote": decision.promote,
        "reason": decision.reason,
        "metric": metric,
        "direction": rule.direction,
        "candidate_value": candidate,
        "production_value": prod_value,
        "production_version": prod_version,
        "candidate_metrics": dict(metrics),
    }
