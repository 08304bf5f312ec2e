"""Notification text per outcome from the state machine's state data, SNS subject limits, and the
Cause messages of Step Functions."""

from __future__ import annotations

import json

import pytest

from lambdas._aws import ConfigurationError, EventError
from lambdas.notify import (
    clean_subject,
    failure_message,
    format_message,
    from_state_machine,
    parse_notify_on,
)

ALL_FIXTURES = [
    "notify_promoted",
    "notify_rejected",
    "notify_superseded",
    "notify_failed_glue",
    "notify_failed_sagemaker",
    "notify_failed_lambda",
    "notify_failed_endpoint",
]


def fmt(event):
    """The notification for one event as the state machine sends it."""
    return format_message(from_state_machine(event), "tumor-triage", "dev")


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_every_subject_is_valid_for_sns(load_event, name):
    subject, body = fmt(load_event(name))
    assert 0 < len(subject) <= 100
    assert subject.isascii() and subject.isprintable()
    assert subject.startswith("[tumor-triage/dev] ")
    assert body.startswith("tumor-triage (dev): ")


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_every_body_identifies_the_run(load_event, name):
    event = load_event(name)
    state = event["input"]
    _, body = fmt(event)
    assert f"execution: {event['execution_id']}" in body
    assert state.get("data_prefix", state.get("data_key")) in body
    assert f"commit: {state['commit']}" in body
    if "manifest" in state:
        assert f"(data version {state['manifest']['data_version']})" in body


def test_a_run_that_failed_before_its_manifest_is_identified_by_its_execution_input(load_event):
    event = load_event("notify_failed_lambda")
    _, body = fmt(event)
    assert "data: raw/drop-009/ (data version n/a)" in body
    assert "commit: s3-event" in body


def test_promoted_message_names_version_metric_and_why(load_event):
    subject, body = fmt(load_event("notify_promoted"))
    assert subject == "[tumor-triage/dev] promoted v4, accuracy 0.9412 (production v3 0.9123)"
    assert "v4 is now the production model." in body
    assert "Gate: accuracy 0.9412 beats production 0.9123 (v3) by 0.0289 >= 0.0000" in body
    assert "Registry: v4 (accuracy 0.9412) replaces v3 (accuracy 0.9123) in production" in body
    assert "Candidate metrics: accuracy 0.9412, f1_macro 0.9371," in body
    # The status recorded at registration ("candidate") is stale once the claim ran.
    assert "Model: tumor-triage-dev-v4\n" in body


def test_promoted_first_model_says_so(load_event):
    event = load_event("notify_promoted")
    event["input"]["gate"].update(production_value=None, production_version=None)
    subject, _ = fmt(event)
    assert subject == "[tumor-triage/dev] promoted v4, accuracy 0.9412 (first model)"


def test_rejected_message_gives_both_values_and_the_gate_reason(load_event):
    subject, body = fmt(load_event("notify_rejected"))
    assert subject == "[tumor-triage/dev] rejected v5, accuracy 0.9059 (production v3 0.9123)"
    assert "the production model is unchanged" in body
    assert "Gate: accuracy 0.9059 does not beat production 0.9123 (v3)" in body
    assert "Model: tumor-triage-dev-v5, status rejected" in body


def test_superseded_message_says_which_model_holds_production(load_event):
    subject, body = fmt(load_event("notify_superseded"))
    assert subject == (
        "[tumor-triage/dev] not promoted v4: v6 (accuracy 0.9647) is already in production"
    )
    assert "Registry: v6 (accuracy 0.9647) is already in production" in body


def test_promoted_outcome_with_a_registry_that_did_not_promote_is_not_called_promoted(load_event):
    event = load_event("notify_superseded")
    event["outcome"] = "promoted"
    subject, _ = fmt(event)
    assert "not promoted v4" in subject


def test_failed_glue_message_extracts_the_job_run_error_message(load_event):
    subject, body = fmt(load_event("notify_failed_glue"))
    assert subject.startswith(
        "[tumor-triage/dev] retraining failed in ETL: ValueError: column mean_radius: 3 values"
    )
    assert subject.endswith("...")
    assert "Error: States.TaskFailed" in body
    assert (
        "Message: ValueError: column mean_radius: 3 values are not numbers (first: 'twelve')"
        in (body)
    )
    assert "AllocatedCapacity" not in body


def test_failed_sagemaker_message_extracts_the_failure_reason(load_event):
    subject, body = fmt(load_event("notify_failed_sagemaker"))
    assert subject == (
        "[tumor-triage/dev] retraining failed in Train: AlgorithmError: framework error:"
    )
    assert "need at least two, exit code: 1" in body
    assert "TrainingJobArn" not in body


def test_failed_lambda_message_uses_the_error_name_and_the_error_message(load_event):
    subject, body = fmt(load_event("notify_failed_lambda"))
    assert subject == "[tumor-triage/dev] retraining failed in Manifest: EmptyDataDropError"
    assert "Message: s3://tumor-triage-dev-data/raw/drop-009/ holds no objects" in body
    assert "stackTrace" not in body


def test_failed_after_promotion_reports_the_restored_production_model(load_event):
    _, body = fmt(load_event("notify_failed_endpoint"))
    assert "Production: v3 (the promotion of this run was reverted)" in body
    assert "Error Code: ResourceLimitExceeded" in body
    assert "Gate: accuracy 0.9412 beats production 0.9123 (v3)" in body


def test_failed_without_error_details_still_renders(load_event):
    event = load_event("notify_failed_lambda")
    for section in ("error", "failed_state"):
        del event["input"][section]
    subject, body = fmt(event)
    assert subject == "[tumor-triage/dev] retraining failed in an unknown state: unknown error"
    assert "Message:" not in body


SECTIONS = ["data_prefix", "commit", "manifest", "etl", "training", "production", "gate"]
SECTIONS += ["registry", "promotion", "revert", "error", "failed_state"]


@pytest.mark.parametrize("name", ["notify_promoted", "notify_failed_endpoint"])
@pytest.mark.parametrize("section", SECTIONS)
def test_any_missing_section_of_the_state_data_still_renders(load_event, name, section):
    event = load_event(name)
    event["input"].pop(section, None)
    subject, body = fmt(event)
    assert subject.startswith("[tumor-triage/dev] ")
    assert event["execution_id"] in body


@pytest.mark.parametrize("outcome", ["promoted", "rejected", "failed"])
def test_an_event_with_no_state_data_at_all_still_renders(outcome):
    subject, body = fmt({"outcome": outcome, "execution_id": "arn:x"})
    assert subject.startswith("[tumor-triage/dev] ")
    assert "execution: arn:x" in body
    assert "data: n/a (data version n/a)" in body


def test_state_data_becomes_run_gate_registry_error_and_failed_state(load_event):
    event = load_event("notify_failed_endpoint")
    state = event["input"]
    assert from_state_machine(event) == {
        "outcome": "failed",
        "run": {
            "execution_id": event["execution_id"],
            "data_version": state["manifest"]["data_version"],
            "commit": state["manifest"]["commit"],
            "data_prefix": state["manifest"]["data_prefix"],
        },
        "gate": state["gate"],
        "registry": {
            "version": 4,
            "model_name": "tumor-triage-dev-v4",
            "promoted": True,
            "previous_version": 3,
            "reason": state["promotion"]["reason"],
            "reverted": True,
            "production_version": 3,
        },
        "error": state["error"],
        "failed_state": "UpdateEndpoint",
    }


def test_a_model_rejected_by_the_gate_keeps_its_registered_status(load_event):
    registry = from_state_machine(load_event("notify_rejected"))["registry"]
    assert registry == {"version": 5, "model_name": "tumor-triage-dev-v5", "status": "rejected"}


def test_from_state_machine_does_not_change_its_event(load_event):
    event = load_event("notify_failed_endpoint")
    from_state_machine(event)
    assert event == load_event("notify_failed_endpoint")


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({}, "outcome is missing"),
        ({"outcome": "succeeded"}, "outcome 'succeeded' must be one of"),
        ({"outcome": "failed", "input": "raw/drop-001/"}, "event field input must be an object"),
        ({"outcome": "failed", "input": {"error": "boom"}}, "event field input.error must be an"),
        ({"outcome": "failed", "input": {"failed_state": "ETL"}}, "input.failed_state must be an"),
    ],
)
def test_bad_events_raise_event_error_naming_the_field(event, message):
    with pytest.raises(EventError, match=message):
        fmt(event)


def test_format_message_refuses_a_section_that_is_not_an_object():
    with pytest.raises(EventError, match="event field error must be an object"):
        format_message({"outcome": "failed", "error": "boom"}, "tumor-triage", "dev")


@pytest.mark.parametrize(
    ("cause", "message"),
    [
        ('{"ErrorMessage": "glue says no"}', "glue says no"),
        ('{"FailureReason": "ClientError: bad data"}', "ClientError: bad data"),
        ('{"errorMessage": "x", "errorType": "E"}', "x"),
        ('{"JobRun": {"ErrorMessage": "nested"}}', "nested"),
        ('{"errorMessage": "{\\"Message\\": \\"wrapped\\"}"}', "wrapped"),
        ("plain text cause", "plain text cause"),
        ('{"no": "message here"}', '{"no": "message here"}'),
        ("", ""),
    ],
)
def test_failure_message_finds_the_human_readable_part_of_a_cause(cause, message):
    assert failure_message({"Error": "States.TaskFailed", "Cause": cause}) == message


def test_failure_message_is_capped_for_the_sns_message_limit():
    found = failure_message({"Cause": json.dumps({"ErrorMessage": "x" * 10000})})
    assert len(found) == 4000
    assert found.endswith("...")


def test_clean_subject_makes_non_ascii_and_multiline_text_valid():
    assert clean_subject("café  déjà\nvu\t✓") == "cafe deja vu"
    assert clean_subject("a" * 150) == "a" * 97 + "..."
    assert clean_subject("\n") == "retraining notification"


@pytest.mark.parametrize(
    ("raw", "outcomes"),
    [
        ("promoted,rejected,failed", {"promoted", "rejected", "failed"}),
        (" failed , promoted ", {"failed", "promoted"}),
        ("", set()),
    ],
)
def test_notify_on_is_a_comma_list_and_may_be_empty(raw, outcomes):
    assert parse_notify_on(raw) == outcomes


def test_notify_on_unset_or_with_unknown_outcomes_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="NOTIFY_ON is not set"):
        parse_notify_on(None)
    with pytest.raises(ConfigurationError, match=r"names \['success'\]"):
        parse_notify_on("promoted,success")
