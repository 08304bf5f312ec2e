"""Notify Lambda: one SNS message per execution, saying what happened and why.

Event (the state machine's Notify* tasks): {"outcome": "promoted" | "rejected" | "failed",
"execution_id": "<ARN>", "input": <the whole state data at that point>}. The state data holds, as
far as the execution got: "data_prefix"/"data_key" and "commit" (the execution input), "manifest",
"etl", "training", "production", "gate" (evaluate), "registry" (promote register), "promotion"
(promote promote), "revert" (promote revert), "error" {"Error", "Cause"} and "failed_state"
{"state"}. `from_state_machine` turns that into the flat shape `format_message` renders:
        {"outcome", "run": {"execution_id", "data_version", "commit", "data_prefix"},
         "gate": <evaluate output>, "registry": <register + promotion + revert outputs>,
         "error": {"Error", "Cause"}, "failed_state": "ETL"}
This function is on every failure path, which can start anywhere, so beyond `outcome` it renders
whatever it is given and leaves out what is missing, rather than fail and lose the alert.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Mapping
from typing import Any

from lambdas import _aws

OUTCOMES = ("promoted", "rejected", "failed")
# SNS rejects a Subject over 100 characters, with a line break, or with non-ASCII characters.
SUBJECT_LIMIT = 100
CAUSE_LIMIT = 4000
# Where the services put the human-readable part of the Cause Step Functions passes on: Glue
# (JobRun.ErrorMessage), SageMaker (FailureReason), Lambda (errorMessage), others (Message).
MESSAGE_KEYS = ("ErrorMessage", "FailureReason", "errorMessage", "StatusMessage", "Message")


@_aws.retryable_aws_errors
def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    notify_on = parse_notify_on(os.environ.get("NOTIFY_ON"))
    topic_arn = _aws.env("TOPIC_ARN")
    message = from_state_machine(event)
    subject, body = format_message(message, _aws.env("PROJECT"), _aws.env("ENVIRONMENT"))
    outcome = message["outcome"]
    if outcome not in notify_on:
        return {"published": False, "message_id": None, "subject": subject}
    response = _aws.client("sns").publish(
        TopicArn=topic_arn,
        Subject=subject,
        Message=body,
        MessageAttributes={"outcome": {"DataType": "String", "StringValue": outcome}},
    )
    return {"published": True, "message_id": response["MessageId"], "subject": subject}


def parse_notify_on(raw: str | None) -> frozenset[str]:
    """The outcomes to publish, from a comma list; an empty list (set but blank) publishes none."""
    if raw is None:
        raise _aws.ConfigurationError(
            "environment variable NOTIFY_ON is not set on this function; the stack sets it from "
            "notifications.notify_on in config/project.yaml (e.g. 'promoted,rejected,failed')"
        )
    outcomes = frozenset(part.strip() for part in raw.split(",") if part.strip())
    unknown = sorted(outcomes - set(OUTCOMES))
    if unknown:
        raise _aws.ConfigurationError(
            f"environment variable NOTIFY_ON={raw!r} names {unknown}; allowed are {OUTCOMES}"
        )
    return outcomes


def format_message(event: Mapping[str, Any], project: str, environment: str) -> tuple[str, str]:
    """(subject, body) of the notification for one execution's outcome."""
    outcome = _aws.field(event, "outcome")
    if outcome not in OUTCOMES:
        raise _aws.EventError(f"event field outcome {outcome!r} must be one of {OUTCOMES}")
    run, gate, registry = (_section(event, name) for name in ("run", "gate", "registry"))
    if outcome == "failed":
        headline, details = _failed(event)
    elif outcome == "promoted" and registry.get("promoted") is not False:
        headline, details = _promoted(gate, registry)
    else:
        headline, details = _rejected(gate, registry)
    lines = [f"{project} ({environment}): {headline}", "", *details, "", "Run:"]
    lines += [
        f"  execution: {run.get('execution_id', 'n/a')}",
        f"  data: {run.get('data_prefix', 'n/a')} (data version {run.get('data_version', 'n/a')})",
        f"  commit: {run.get('commit', 'n/a')}",
    ]
    return clean_subject(f"[{project}/{environment}] {headline}"), "\n".join(lines) + "\n"


def from_state_machine(event: Mapping[str, Any]) -> dict[str, Any]:
    """The state machine's event as the shape `format_message` renders; pure, and any section of
    the state data may be missing (the failure path can start in any state)."""
    if not isinstance(event, Mapping):
        raise _aws.EventError("the event must be a JSON object")
    state = _section(event, "input")
    manifest, failed = (_section(state, name, "input.") for name in ("manifest", "failed_state"))
    registry, promotion, revert = (
        _section(state, name, "input.") for name in ("registry", "promotion", "revert")
    )
    if promotion:
        # The status recorded at registration ("candidate") is stale once ClaimProduction ran.
        registry = {key: value for key, value in registry.items() if key != "status"}
    run = {
        "execution_id": event.get("execution_id"),
        "data_version": manifest.get("data_version"),
        "commit": manifest.get("commit") or state.get("commit"),
        # Before the Manifest state succeeded, the execution input is all there is.
        "data_prefix": manifest.get("data_prefix")
        or state.get("data_prefix")
        or state.get("data_key"),
    }
    message: dict[str, Any] = {
        "outcome": event.get("outcome"),
        "run": {key: value for key, value in run.items() if value is not None},
        "gate": _section(state, "gate", "input."),
        # One view of the model: its registration, then what the claim and the revert did.
        "registry": {**registry, **promotion, **revert},
        "error": _section(state, "error", "input."),
    }
    if failed.get("state"):
        message["failed_state"] = failed["state"]
    return message


def _section(event: Mapping[str, Any], name: str, parent: str = "") -> Mapping[str, Any]:
    value = event.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _aws.EventError(
            f"event field {parent}{name} must be an object, got {type(value).__name__}"
        )
    return value


def _num(value: Any) -> str:
    return (
        f"{value:.4f}" if isinstance(value, int | float) and not isinstance(value, bool) else "n/a"
    )


def _model(registry: Mapping[str, Any]) -> str:
    return f"v{registry['version']}" if "version" in registry else "the new model"


def _versus(gate: Mapping[str, Any]) -> str:
    if gate.get("production_value") is None:
        return "first model"
    return f"production v{gate.get('production_version')} {_num(gate['production_value'])}"


def _gate_lines(gate: Mapping[str, Any], registry: Mapping[str, Any]) -> list[str]:
    lines = []
    if gate.get("reason"):
        lines.append(f"Gate: {gate['reason']}")
    if registry.get("reason"):
        lines.append(f"Registry: {registry['reason']}")
    if "model_name" in registry:
        status = f", status {registry['status']}" if "status" in registry else ""
        lines.append(f"Model: {registry['model_name']}{status}")
    metrics = gate.get("candidate_metrics")
    if isinstance(metrics, Mapping) and metrics:
        shown = ", ".join(f"{name} {_num(value)}" for name, value in sorted(metrics.items()))
        lines.append(f"Candidate metrics: {shown}")
    return lines


def _promoted(gate: Mapping[str, Any], registry: Mapping[str, Any]) -> tuple[str, list[str]]:
    metric = gate.get("metric", "metric")
    headline = (
        f"promoted {_model(registry)}, {metric} {_num(gate.get('candidate_value'))} "
        f"({_versus(gate)})"
    )
    return headline, [
        f"{_model(registry)} is now the production model.",
        *_gate_lines(gate, registry),
    ]


def _rejected(gate: Mapping[str, Any], registry: Mapping[str, Any]) -> tuple[str, list[str]]:
    metric = gate.get("metric", "metric")
    headline = (
        f"rejected {_model(registry)}, {metric} {_num(gate.get('candidate_value'))} "
        f"({_versus(gate)})"
    )
    if registry.get("promoted") is False:
        # The gate passed, but another execution put a model as good or better in production first.
        headline = f"not promoted {_model(registry)}: {registry.get('reason', 'superseded')}"
    summary = f"{_model(registry)} stays out of production; the production model is unchanged."
    return headline, [summary, *_gate_lines(gate, registry)]


def _failed(event: Mapping[str, Any]) -> tuple[str, list[str]]:
    state = event.get("failed_state") or "an unknown state"
    error = _section(event, "error")
    name = error.get("Error") or "unknown error"
    message = failure_message(error)
    # "States.TaskFailed" says nothing; the service's own message does, so it heads the subject.
    summary = message.splitlines()[0] if message and name.startswith("States.") else name
    lines = [f"The execution failed in {state}.", f"Error: {name}"]
    if message:
        lines.append(f"Message: {message}")
    registry = _section(event, "registry")
    if "production_version" in registry:
        version = registry["production_version"]
        shown = f"v{version}" if version is not None else "no model"
        note = " (the promotion of this run was reverted)" if registry.get("reverted") else ""
        lines.append(f"Production: {shown}{note}")
    lines += _gate_lines(_section(event, "gate"), {})
    return f"retraining failed in {state}: {summary}", lines


def failure_message(error: Mapping[str, Any]) -> str:
    """The useful message in a Step Functions error Cause, which is often a service's JSON."""
    cause = error.get("Cause")
    if not isinstance(cause, str) or not cause.strip():
        return ""
    found = _find_message(_json_or_none(cause)) or cause.strip()
    return found if len(found) <= CAUSE_LIMIT else found[: CAUSE_LIMIT - 3] + "..."


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _find_message(value: Any, depth: int = 0) -> str | None:
    if depth > 5:
        return None
    if isinstance(value, Mapping):
        for key in MESSAGE_KEYS:
            text = value.get(key)
            if isinstance(text, str) and text.strip():
                # A message can itself be JSON (a Lambda error wrapping another service's error).
                return _find_message(_json_or_none(text), depth + 1) or text.strip()
        children = list(value.values())
    elif isinstance(value, list):
        children = value
    else:
        return None
    for child in children:
        found = _find_message(child, depth + 1)
        if found:
            return found
    return None


def clean_subject(text: str) -> str:
    """`text` made a valid SNS Subject: printable ASCII, one line, at most 100 characters."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    one_line = " ".join(ascii_text.split())
    printable = "".join(ch for ch in one_line if " " <= ch <= "~")
    if len(printable) > SUBJECT_LIMIT:
        printable = printable[: SUBJECT_LIMIT - 3].rstrip() + "..."
    return printable or "retraining notification"
