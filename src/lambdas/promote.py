"""Promote Lambda: the model registry in DynamoDB and the PRODUCTION pointer.

Items of the table (hash key `pk`, a string):
  COUNTER          last_version, raised with an atomic ADD (ItemCount lags by hours: never use it)
  MODEL#<version>  every candidate, promoted or not, with its metrics, lineage and status
  PRODUCTION       the pointer to the model in production, with the metrics it is compared on

Statuses of a model: candidate -> production -> retired, or rejected (by the gate), superseded (a
better model reached production first), failed (the endpoint update after promotion failed).

Event {"action": "register" | "promote" | "revert", ...}; see the functions of the same names.
The pointer only ever moves in a transaction whose condition re-checks the gate rule inside
DynamoDB, so two executions promoting at once can never leave the worse model in production.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from lambdas import _aws
from lambdas.gate import GateRule, beats, bounds

COUNTER_KEY = "COUNTER"
POINTER_KEY = "PRODUCTION"
CANDIDATE, REJECTED, PRODUCTION = "candidate", "rejected", "production"
RETIRED, SUPERSEDED, FAILED = "retired", "superseded", "failed"
# Each retry follows a change of the pointer by another execution, so a few are plenty.
MAX_ATTEMPTS = 8


class ModelNotFoundError(LookupError):
    """The registry has no MODEL#<version> item for the version in the event."""

    def __str__(self) -> str:  # LookupError would print the message in quotes
        return str(self.args[0])


class RegistryStateError(RuntimeError):
    """The registry is in a state the requested action cannot proceed from."""


# --- the handler ---------------------------------------------------------------------------


@_aws.retryable_aws_errors
def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    action = _aws.field(event, "action")
    registry = Registry(_aws.client("dynamodb"), _aws.env("TABLE_NAME"))
    if action == "register":
        return register(registry, event, _aws.env("MODEL_PREFIX"))
    if action == "promote":
        return promote(registry, parse_version(event), GateRule.from_env())
    if action == "revert":
        return revert(registry, parse_version(event), _aws.field(event, "reason"))
    raise _aws.EventError(
        f"event field action {action!r} must be one of 'register', 'promote', 'revert'"
    )


def parse_version(event: Mapping[str, Any]) -> int:
    raw = _aws.field(event, "version", (int, str))
    if isinstance(raw, str):
        if not raw.strip().isdigit():
            raise _aws.EventError(f"event field version {raw!r} must be a positive integer")
        raw = int(raw)
    if raw < 1:
        raise _aws.EventError(f"event field version {raw} must be a positive integer")
    return raw


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- pure parts: keys, items, conditions, plans ------------------------------------------


def model_key(version: int) -> str:
    return f"MODEL#{version}"


def new_model_item(
    version: int, event: Mapping[str, Any], model_prefix: str, created_at: str
) -> dict[str, Any]:
    """The MODEL#<version> item of the candidate in a register event (validated on the way)."""
    artifact_uri = _aws.field(event, "candidate.artifact_uri")
    _aws.parse_s3_uri(artifact_uri, what="event field candidate.artifact_uri")
    promote_ok = _aws.field(event, "candidate.evaluation.promote", bool)
    metrics = _aws.field(event, "candidate.evaluation.candidate_metrics", dict)
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _aws.EventError(
                f"event field candidate.evaluation.candidate_metrics.{name} must be a number"
            )
    return {
        "pk": model_key(version),
        "version": version,
        "status": CANDIDATE if promote_ok else REJECTED,
        "metric_name": _aws.field(event, "candidate.evaluation.metric"),
        "metric_value": float(
            _aws.field(event, "candidate.evaluation.candidate_value", (int, float))
        ),
        "metrics": {str(k): float(v) for k, v in metrics.items()},
        "artifact_uri": artifact_uri,
        "training_job": _aws.field(event, "candidate.training_job"),
        "data_version": _aws.field(event, "run.data_version"),
        "commit": _aws.field(event, "run.commit"),
        "execution_id": _aws.field(event, "run.execution_id"),
        "model_name": f"{model_prefix}-v{version}",
        "reason": _aws.field(event, "candidate.evaluation.reason"),
        "created_at": created_at,
    }


def pointer_item(
    model: Mapping[str, Any], promoted_at: str, previous_version: int | None
) -> dict[str, Any]:
    """The PRODUCTION item naming `model`."""
    return {
        "pk": POINTER_KEY,
        "version": model["version"],
        "metric_name": model["metric_name"],
        "metric_value": model["metric_value"],
        "metrics": model["metrics"],
        "artifact_uri": model["artifact_uri"],
        "model_name": model["model_name"],
        "promoted_at": promoted_at,
        "execution_id": model["execution_id"],
        "previous_version": previous_version,
    }


def pointer_condition(
    expected_version: int | None, metric: str, candidate_value: float, rule: GateRule
) -> dict[str, Any]:
    """The condition under which a write may move the pointer to a candidate.

    With no pointer expected, there must still be none. Otherwise the pointer must still name the
    version the plan displaces (so that model is the one retired) AND its value of the candidate's
    metric must lose to the candidate by the gate rule. The second clause is what makes the race
    safe: whatever was read before, DynamoDB itself refuses to replace a better model. The value
    is taken from the pointer's metrics map rather than metric_value, so a gate metric changed in
    config still compares like with like.
    """
    if expected_version is None:
        return {"ConditionExpression": "attribute_not_exists(pk)"}
    limits = bounds(candidate_value, rule.direction, rule.min_improvement)
    strict_op, margin_op = ("<", "<=") if rule.direction == "maximize" else (">", ">=")
    return {
        "ConditionExpression": (
            f"#version = :expected AND #metrics.#metric {strict_op} :strict "
            f"AND #metrics.#metric {margin_op} :margin"
        ),
        "ExpressionAttributeNames": {
            "#version": "version",
            "#metrics": "metrics",
            "#metric": metric,
        },
        "ExpressionAttributeValues": {
            ":expected": _aws.to_attribute_value(expected_version),
            ":strict": _aws.to_attribute_value(limits.strict),
            ":margin": _aws.to_attribute_value(limits.margin),
        },
    }


def update_request(
    table: str,
    pk: str,
    set_fields: Mapping[str, Any],
    *,
    remove: tuple[str, ...] = (),
    condition: str | None = None,
    names: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An UpdateItem request (also the body of a TransactWriteItems "Update").

    Every field goes through a placeholder, so reserved words (status, version) need no care;
    `condition` uses its own `names` and plain `values`.
    """
    all_names = {f"#f{i}": name for i, name in enumerate(set_fields)}
    all_values = {f":f{i}": _aws.to_attribute_value(v) for i, v in enumerate(set_fields.values())}
    expression = "SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(set_fields)))
    if remove:
        all_names |= {f"#r{i}": name for i, name in enumerate(remove)}
        expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
    request: dict[str, Any] = {
        "TableName": table,
        "Key": {"pk": {"S": pk}},
        "UpdateExpression": expression,
    }
    if condition:
        request["ConditionExpression"] = condition
        all_names |= dict(names or {})
        all_values |= {k: _aws.to_attribute_value(v) for k, v in (values or {}).items()}
    request["ExpressionAttributeNames"] = all_names
    request["ExpressionAttributeValues"] = all_values
    return request


def production_reason(pointer: Mapping[str, Any], metric: str) -> str:
    """ "vN (accuracy x) is already in production", compared on the candidate's metric."""
    value = pointer.get("metrics", {}).get(metric, pointer.get("metric_value"))
    shown = f"{value:.4f}" if isinstance(value, int | float) else "unknown"
    return f"v{pointer['version']} ({metric} {shown}) is already in production"


@dataclass(frozen=True)
class Plan:
    """What to do to promote a model, given the registry as last read.

    action: "promote" (write the pointer, displacing `previous_version`), "supersede" (a model as
    good or better holds the pointer), "done" (nothing to write: the result is already recorded).
    """

    action: str
    promoted: bool
    reason: str
    previous_version: int | None


def plan_promotion(
    model: Mapping[str, Any], pointer: Mapping[str, Any] | None, rule: GateRule
) -> Plan:
    version, metric, value = model["version"], model["metric_name"], model["metric_value"]
    if pointer is not None and pointer["version"] == version:
        # A retry of a promotion that went through: report it again, write nothing.
        previous = pointer.get("previous_version")
        return Plan("done", True, production_reason(pointer, metric), previous)
    status = model["status"]
    if status == SUPERSEDED:
        reason = production_reason(pointer, metric) if pointer else model.get("status_reason", "")
        return Plan("done", False, reason, None)
    if status != CANDIDATE:
        raise RegistryStateError(
            f"v{version} has status {status!r}; only a 'candidate' can be promoted (the gate "
            "rejected it, or it already left production)"
        )
    if pointer is None:
        return Plan("promote", True, f"v{version} ({metric} {value:.4f}) is the first model", None)
    production = pointer.get("metrics", {}).get(metric)
    if not isinstance(production, int | float):
        raise RegistryStateError(
            f"the PRODUCTION pointer (v{pointer['version']}) has no {metric!r} in its metrics, so "
            f"v{version} cannot be compared with it; delete the PRODUCTION item to start afresh"
        )
    if beats(production, bounds(value, rule.direction, rule.min_improvement), rule.direction):
        return Plan(
            "promote",
            True,
            f"v{version} ({metric} {value:.4f}) replaces v{pointer['version']} "
            f"({metric} {production:.4f}) in production",
            pointer["version"],
        )
    return Plan("supersede", False, production_reason(pointer, metric), None)


def promotion_writes(
    table: str, model: Mapping[str, Any], plan: Plan, rule: GateRule, now: str
) -> list[dict[str, Any]]:
    """The TransactWriteItems items that move the pointer and both statuses together."""
    version, previous = model["version"], plan.previous_version
    pointer = {
        "TableName": table,
        "Item": _aws.to_item(pointer_item(model, now, previous)),
        **pointer_condition(previous, model["metric_name"], model["metric_value"], rule),
    }
    writes: list[dict[str, Any]] = [
        {"Put": pointer},
        {
            "Update": update_request(
                table,
                model_key(version),
                # Kept on the model so a revert can rebuild this pointer exactly.
                {"status": PRODUCTION, "promoted_at": now, "previous_version": previous},
                condition="#status = :candidate",
                names={"#status": "status"},
                values={":candidate": CANDIDATE},
            )
        },
    ]
    if previous is not None:
        writes.append(
            {
                "Update": update_request(
                    table,
                    model_key(previous),
                    {"status": RETIRED, "retired_at": now},
                    condition="attribute_exists(pk)",
                )
            }
        )
    return writes


# --- the DynamoDB adapter ------------------------------------------------------------------


class Registry:
    """The registry table through a low-level DynamoDB client (one the caller may configure)."""

    def __init__(self, ddb: Any, table: str) -> None:
        self.ddb = ddb
        self.table = table

    def get(self, pk: str) -> dict[str, Any] | None:
        # Strongly consistent: a decision must not rest on a read that misses the last write.
        response = self.ddb.get_item(
            TableName=self.table, Key={"pk": {"S": pk}}, ConsistentRead=True
        )
        return _aws.from_item(response["Item"]) if "Item" in response else None

    def model(self, version: int) -> dict[str, Any]:
        item = self.get(model_key(version))
        if item is None:
            raise ModelNotFoundError(
                f"the registry {self.table} has no {model_key(version)}; pass a version returned "
                "by the register action"
            )
        return item

    def next_version(self) -> int:
        response = self.ddb.update_item(
            TableName=self.table,
            Key={"pk": {"S": COUNTER_KEY}},
            UpdateExpression="ADD #last :one",
            ExpressionAttributeNames={"#last": "last_version"},
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["last_version"]["N"])

    def put_new(self, item: Mapping[str, Any]) -> None:
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item=_aws.to_item(item),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise
            raise RegistryStateError(
                f"{item['pk']} already exists in {self.table} although the COUNTER just issued "
                "its version; was COUNTER reset? Set COUNTER.last_version to the highest version"
            ) from exc

    def update(self, request: Mapping[str, Any]) -> bool:
        """Apply an UpdateItem request; False when its condition does not hold."""
        try:
            self.ddb.update_item(**request)
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def transact(self, writes: list[dict[str, Any]]) -> list[str] | None:
        """Apply all writes or none; None on success, else one cancellation code per write."""
        try:
            self.ddb.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            if _error_code(exc) != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or [{}] * len(writes)
            return [r.get("Code") or "None" for r in reasons]
        return None


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _retry_pause(codes: list[str], attempt: int) -> None:
    # A TransactionConflict means another transaction held an item just now: wait a moment.
    # A failed condition means the registry changed: re-read at once.
    if "TransactionConflict" in codes:
        time.sleep(0.05 * (attempt + 1))


# --- actions ---------------------------------------------------------------------------------


def register(
    registry: Registry, event: Mapping[str, Any], model_prefix: str, now: str | None = None
) -> dict[str, Any]:
    """Record the evaluated candidate of `event` under a new version, whatever the gate said."""
    # Validate the whole event before a version is spent on it.
    new_model_item(0, event, model_prefix, "")
    version = registry.next_version()
    item = new_model_item(version, event, model_prefix, now or utc_now())
    registry.put_new(item)
    return {"version": version, "model_name": item["model_name"], "status": item["status"]}


def promote(
    registry: Registry, version: int, rule: GateRule, now: str | None = None
) -> dict[str, Any]:
    """Move the PRODUCTION pointer to `version` if it still beats what production holds."""
    for attempt in range(MAX_ATTEMPTS):
        model = registry.model(version)
        plan = plan_promotion(model, registry.get(POINTER_KEY), rule)
        if plan.action == "supersede":
            marked = registry.update(
                update_request(
                    registry.table,
                    model_key(version),
                    {"status": SUPERSEDED, "status_reason": plan.reason},
                    condition="#status = :candidate",
                    names={"#status": "status"},
                    values={":candidate": CANDIDATE},
                )
            )
            if not marked:
                continue  # the model's status changed under us: look again
        elif plan.action == "promote":
            codes = registry.transact(
                promotion_writes(registry.table, model, plan, rule, now or utc_now())
            )
            if codes is not None:
                if codes[0] == "None" and codes[2:] == ["ConditionalCheckFailed"]:
                    raise RegistryStateError(
                        f"the PRODUCTION pointer names v{plan.previous_version}, but "
                        f"{model_key(plan.previous_version or 0)} is not in {registry.table}"
                    )
                _retry_pause(codes, attempt)
                continue
        return {
            "promoted": plan.promoted,
            "version": version,
            "previous_version": plan.previous_version,
            "reason": plan.reason,
        }
    # Named TransientError so the state machine's retry runs the whole promotion again.
    raise _aws.TransientError(
        f"could not promote v{version}: the registry {registry.table} changed on each of "
        f"{MAX_ATTEMPTS} attempts; start the promotion again"
    )


def revert(registry: Registry, version: int, reason: str, now: str | None = None) -> dict[str, Any]:
    """Undo the promotion of `version` after its deployment failed; mark the model failed.

    If the pointer still names `version`, it goes back to the model it displaced (rebuilt from
    that model's item), or is deleted when there was none. Calling this again changes nothing.
    """
    now = now or utc_now()
    failed = update_request(
        registry.table,
        model_key(version),
        {"status": FAILED, "status_reason": reason, "failed_at": now},
        condition="attribute_exists(pk)",
    )
    for attempt in range(MAX_ATTEMPTS):
        registry.model(version)  # raises ModelNotFoundError for a version never registered
        pointer = registry.get(POINTER_KEY)
        if pointer is None or pointer["version"] != version:
            registry.update(failed)
            current = None if pointer is None else pointer["version"]
            return {"reverted": False, "production_version": current}
        previous = pointer.get("previous_version")
        still_ours = {
            "ConditionExpression": "#version = :version",
            "ExpressionAttributeNames": {"#version": "version"},
            "ExpressionAttributeValues": {":version": _aws.to_attribute_value(version)},
        }
        writes: list[dict[str, Any]] = [{"Update": failed}]
        if previous is None:
            key = {"pk": {"S": POINTER_KEY}}
            writes.append({"Delete": {"TableName": registry.table, "Key": key, **still_ours}})
        else:
            displaced = registry.get(model_key(previous))
            if displaced is None:
                raise RegistryStateError(
                    f"v{version} displaced v{previous}, but {model_key(previous)} is not in "
                    f"{registry.table}; restore that item, or delete PRODUCTION to start afresh"
                )
            restored = pointer_item(
                displaced,
                displaced.get("promoted_at") or now,
                displaced.get("previous_version"),
            )
            writes += [
                {
                    "Put": {
                        "TableName": registry.table,
                        "Item": _aws.to_item(restored),
                        **still_ours,
                    }
                },
                {
                    "Update": update_request(
                        registry.table,
                        model_key(previous),
                        {"status": PRODUCTION},
                        remove=("retired_at",),
                    )
                },
            ]
        codes = registry.transact(writes)
        if codes is None:
            return {"reverted": True, "production_version": previous}
        _retry_pause(codes, attempt)
    raise _aws.TransientError(
        f"could not revert v{version}: the registry {registry.table} changed on each of "
        f"{MAX_ATTEMPTS} attempts; run the revert again"
    )
