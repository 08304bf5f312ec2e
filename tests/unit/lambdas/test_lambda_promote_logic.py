"""The registry's pure parts: items, the pointer condition, update requests and promotion plans."""

from __future__ import annotations

import pytest

from lambdas._aws import EventError
from lambdas.gate import GateRule
from lambdas.promote import (
    CANDIDATE,
    REJECTED,
    SUPERSEDED,
    RegistryStateError,
    new_model_item,
    parse_version,
    plan_promotion,
    pointer_condition,
    pointer_item,
    promotion_writes,
    update_request,
)

MAXIMIZE = GateRule("maximize", 0.0)
NOW = "2025-01-01T12:30:00.000000Z"


def model(version, value, status=CANDIDATE, metric="accuracy"):
    return {
        "pk": f"MODEL#{version}",
        "version": version,
        "status": status,
        "metric_name": metric,
        "metric_value": value,
        "metrics": {metric: value},
        "artifact_uri": f"s3://b/models/job-{version}/output/model.tar.gz",
        "model_name": f"tumor-triage-dev-v{version}",
        "execution_id": f"arn:aws:states:eu-west-1:1:execution:sm:run-{version}",
    }


def test_register_event_becomes_a_candidate_item(load_event):
    item = new_model_item(4, load_event("promote_register"), "tumor-triage-dev", NOW)
    assert item == {
        "pk": "MODEL#4",
        "version": 4,
        "status": CANDIDATE,
        "metric_name": "accuracy",
        "metric_value": 0.9412,
        "metrics": {
            "accuracy": 0.9412,
            "f1_macro": 0.9371,
            "precision_macro": 0.9398,
            "recall_macro": 0.9347,
        },
        "artifact_uri": (
            "s3://tumor-triage-dev-data/models/tumor-triage-dev-20250101T120000Z-1a2b3c/output/"
            "model.tar.gz"
        ),
        "training_job": "tumor-triage-dev-20250101T120000Z-1a2b3c",
        "data_version": "9f2c4e1a7b3d5c60",
        "commit": "4e1d2c3b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d",
        "execution_id": (
            "arn:aws:states:eu-west-1:123456789012:execution:tumor-triage-dev-retrain:"
            "run-20250101T120000Z-1a2b3c"
        ),
        "model_name": "tumor-triage-dev-v4",
        "reason": "accuracy 0.9412 beats production 0.9123 (v3) by 0.0289 >= 0.0000 "
        "(higher is better)",
        "created_at": NOW,
    }


def test_a_candidate_the_gate_refused_is_registered_as_rejected(load_event):
    event = load_event("promote_register")
    event["candidate"]["evaluation"]["promote"] = False
    assert new_model_item(5, event, "p", NOW)["status"] == REJECTED


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("candidate", "artifact_uri"), None, "candidate.artifact_uri is missing"),
        (("candidate", "artifact_uri"), "models/x.tar.gz", "must start with s3://"),
        (("candidate", "evaluation", "promote"), "yes", "candidate.evaluation.promote must be a"),
        (("candidate", "evaluation", "metric"), None, "candidate.evaluation.metric is missing"),
        (("candidate", "evaluation", "candidate_value"), True, "got a boolean"),
        (("run", "commit"), "", "run.commit is an empty string"),
        (("run",), None, "run is missing"),
    ],
)
def test_register_event_errors_name_the_full_field_path(load_event, path, value, message):
    event = load_event("promote_register")
    target = event
    for part in path[:-1]:
        target = target[part]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    with pytest.raises(EventError, match=message):
        new_model_item(1, event, "p", NOW)


def test_non_numeric_candidate_metric_is_an_event_error(load_event):
    event = load_event("promote_register")
    event["candidate"]["evaluation"]["candidate_metrics"]["labels"] = ["a"]
    with pytest.raises(EventError, match="candidate_metrics.labels must be a number"):
        new_model_item(1, event, "p", NOW)


@pytest.mark.parametrize(("raw", "version"), [(4, 4), ("12", 12)])
def test_version_is_accepted_as_integer_or_digit_string(raw, version):
    assert parse_version({"version": raw}) == version


@pytest.mark.parametrize("raw", [0, -1, "v4", "4.0", 4.0, True])
def test_version_that_is_not_a_positive_integer_is_an_event_error(raw):
    with pytest.raises(EventError, match="version"):
        parse_version({"version": raw})


def test_pointer_condition_without_a_pointer_requires_there_still_is_none():
    assert pointer_condition(None, "accuracy", 0.95, MAXIMIZE) == {
        "ConditionExpression": "attribute_not_exists(pk)"
    }


def test_pointer_condition_maximize_requires_same_pointer_and_a_worse_value():
    condition = pointer_condition(3, "accuracy", 0.95, GateRule("maximize", 0.01))
    assert condition["ConditionExpression"] == (
        "#version = :expected AND #metrics.#metric < :strict AND #metrics.#metric <= :margin"
    )
    assert condition["ExpressionAttributeNames"] == {
        "#version": "version",
        "#metrics": "metrics",
        "#metric": "accuracy",
    }
    values = condition["ExpressionAttributeValues"]
    assert values[":expected"] == {"N": "3"}
    assert float(values[":strict"]["N"]) == pytest.approx(0.95 - 1e-12, abs=0)
    assert float(values[":margin"]["N"]) == pytest.approx(0.94 + 1e-12, abs=1e-15)


def test_pointer_condition_minimize_uses_greater_than():
    condition = pointer_condition(3, "log_loss", 0.2, GateRule("minimize", 0.0))
    assert (
        "#metrics.#metric > :strict AND #metrics.#metric >= :margin"
        in (condition["ConditionExpression"])
    )
    assert condition["ExpressionAttributeNames"]["#metric"] == "log_loss"


def test_update_request_sets_fields_through_placeholders_and_merges_the_condition():
    request = update_request(
        "t",
        "MODEL#2",
        {"status": "retired", "retired_at": NOW},
        remove=("failed_at",),
        condition="#status = :production",
        names={"#status": "status"},
        values={":production": "production"},
    )
    assert request == {
        "TableName": "t",
        "Key": {"pk": {"S": "MODEL#2"}},
        "UpdateExpression": "SET #f0 = :f0, #f1 = :f1 REMOVE #r0",
        "ConditionExpression": "#status = :production",
        "ExpressionAttributeNames": {
            "#f0": "status",
            "#f1": "retired_at",
            "#r0": "failed_at",
            "#status": "status",
        },
        "ExpressionAttributeValues": {
            ":f0": {"S": "retired"},
            ":f1": {"S": NOW},
            ":production": {"S": "production"},
        },
    }


def test_pointer_item_copies_what_serving_and_the_gate_need():
    item = pointer_item(model(4, 0.95), NOW, 3)
    assert item == {
        "pk": "PRODUCTION",
        "version": 4,
        "metric_name": "accuracy",
        "metric_value": 0.95,
        "metrics": {"accuracy": 0.95},
        "artifact_uri": "s3://b/models/job-4/output/model.tar.gz",
        "model_name": "tumor-triage-dev-v4",
        "promoted_at": NOW,
        "execution_id": "arn:aws:states:eu-west-1:1:execution:sm:run-4",
        "previous_version": 3,
    }


def test_plan_promotes_the_first_model():
    plan = plan_promotion(model(1, 0.9), None, MAXIMIZE)
    assert (plan.action, plan.promoted, plan.previous_version) == ("promote", True, None)
    assert plan.reason == "v1 (accuracy 0.9000) is the first model"


def test_plan_promotes_a_better_model_displacing_production():
    plan = plan_promotion(model(5, 0.95), pointer_item(model(3, 0.91), NOW, None), MAXIMIZE)
    assert (plan.action, plan.previous_version) == ("promote", 3)
    assert plan.reason == "v5 (accuracy 0.9500) replaces v3 (accuracy 0.9100) in production"


@pytest.mark.parametrize("production", [0.95, 0.97], ids=["equal", "better"])
def test_plan_supersedes_when_production_is_as_good_or_better(production):
    plan = plan_promotion(model(5, 0.95), pointer_item(model(6, production), NOW, 3), MAXIMIZE)
    assert (plan.action, plan.promoted) == ("supersede", False)
    assert plan.reason == f"v6 (accuracy {production:.4f}) is already in production"


def test_plan_of_a_model_already_in_production_writes_nothing():
    plan = plan_promotion(
        model(5, 0.95, status="production"), pointer_item(model(5, 0.95), NOW, 3), MAXIMIZE
    )
    assert (plan.action, plan.promoted, plan.previous_version) == ("done", True, 3)


def test_plan_of_a_superseded_model_reports_again_without_writing():
    plan = plan_promotion(
        model(5, 0.9, status=SUPERSEDED), pointer_item(model(6, 0.97), NOW, None), MAXIMIZE
    )
    assert (plan.action, plan.promoted) == ("done", False)
    assert plan.reason == "v6 (accuracy 0.9700) is already in production"


@pytest.mark.parametrize("status", ["rejected", "retired", "failed"])
def test_plan_refuses_models_that_are_not_candidates(status):
    with pytest.raises(RegistryStateError, match=f"v5 has status '{status}'"):
        plan_promotion(model(5, 0.99, status=status), None, MAXIMIZE)


def test_plan_refuses_a_pointer_without_the_candidates_metric():
    pointer = pointer_item(model(3, 0.9, metric="f1_macro"), NOW, None)
    with pytest.raises(RegistryStateError, match=r"\(v3\) has no 'accuracy'"):
        plan_promotion(model(5, 0.95), pointer, MAXIMIZE)


def test_promotion_writes_move_pointer_and_both_statuses_in_one_transaction():
    candidate = model(5, 0.95)
    plan = plan_promotion(candidate, pointer_item(model(3, 0.91), NOW, None), MAXIMIZE)
    writes = promotion_writes("t", candidate, plan, MAXIMIZE, NOW)
    assert [next(iter(w)) for w in writes] == ["Put", "Update", "Update"]
    put, model_update, retire = (next(iter(w.values())) for w in writes)
    assert put["Item"]["version"] == {"N": "5"}
    assert put["Item"]["previous_version"] == {"N": "3"}
    assert put["ExpressionAttributeValues"][":expected"] == {"N": "3"}
    assert model_update["Key"] == {"pk": {"S": "MODEL#5"}}
    assert model_update["ExpressionAttributeValues"][":f0"] == {"S": "production"}
    assert model_update["ConditionExpression"] == "#status = :candidate"
    assert retire["Key"] == {"pk": {"S": "MODEL#3"}}
    assert retire["ExpressionAttributeValues"][":f0"] == {"S": "retired"}


def test_promotion_writes_of_the_first_model_retire_nobody():
    candidate = model(1, 0.9)
    writes = promotion_writes(
        "t", candidate, plan_promotion(candidate, None, MAXIMIZE), MAXIMIZE, NOW
    )
    assert len(writes) == 2
    assert writes[0]["Put"]["ConditionExpression"] == "attribute_not_exists(pk)"
    assert writes[0]["Put"]["Item"]["previous_version"] == {"NULL": True}
