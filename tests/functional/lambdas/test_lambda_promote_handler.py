"""The promote handler against a moto DynamoDB registry: register, promote, revert, and races."""

from __future__ import annotations

import threading
import uuid

import boto3
import pytest

from lambdas import _aws, promote
from lambdas.gate import GateRule, decide
from lambdas.promote import ModelNotFoundError, Registry, RegistryStateError

TABLE = "tumor-triage-dev-models"  # $TABLE_NAME in the functional conftest
MAXIMIZE = GateRule("maximize", 0.0)


def register_event(load_event, accuracy: float, *, promote_ok: bool = True, run: str = "a"):
    event = load_event("promote_register")
    evaluation = event["candidate"]["evaluation"]
    evaluation.update(candidate_value=accuracy, promote=promote_ok)
    evaluation["candidate_metrics"]["accuracy"] = accuracy
    event["run"]["execution_id"] = event["run"]["execution_id"].replace("1a2b3c", run)
    event["candidate"]["training_job"] = f"tumor-triage-dev-{run}"
    return event


def registered(load_event, accuracy: float, **kwargs) -> int:
    return promote.handler(register_event(load_event, accuracy, **kwargs), None)["version"]


def item(ddb, pk: str, table: str = TABLE) -> dict | None:
    response = ddb.get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True)
    return _aws.from_item(response["Item"]) if "Item" in response else None


def status(ddb, version: int, table: str = TABLE) -> str:
    return item(ddb, f"MODEL#{version}", table)["status"]


def pointer_version(ddb, table: str = TABLE) -> int | None:
    pointer = item(ddb, "PRODUCTION", table)
    return None if pointer is None else pointer["version"]


# --- register ---------------------------------------------------------------------------------


def test_register_writes_a_candidate_with_lineage_and_a_new_version(ddb, load_event):
    out = promote.handler(load_event("promote_register"), None)
    assert out == {"version": 1, "model_name": "tumor-triage-dev-v1", "status": "candidate"}
    model = item(ddb, "MODEL#1")
    assert model["metric_name"] == "accuracy"
    assert model["metric_value"] == 0.9412
    assert model["metrics"]["f1_macro"] == 0.9371
    assert model["training_job"] == "tumor-triage-dev-20250101T120000Z-1a2b3c"
    assert model["data_version"] == "9f2c4e1a7b3d5c60"
    assert model["commit"] == "4e1d2c3b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d"
    assert model["execution_id"].endswith(":run-20250101T120000Z-1a2b3c")
    assert model["reason"].startswith("accuracy 0.9412 beats production 0.9123 (v3)")
    assert model["created_at"].endswith("Z") and model["created_at"][10] == "T"
    assert item(ddb, "COUNTER")["last_version"] == 1


def test_register_records_a_rejected_candidate_too(ddb, load_event):
    out = promote.handler(register_event(load_event, 0.80, promote_ok=False), None)
    assert out["status"] == "rejected"
    assert status(ddb, out["version"]) == "rejected"
    assert pointer_version(ddb) is None


def test_versions_come_from_the_counter_and_are_never_reused(ddb, load_event):
    assert registered(load_event, 0.9) == 1
    assert registered(load_event, 0.9) == 2
    ddb.delete_item(TableName=TABLE, Key={"pk": {"S": "MODEL#2"}})
    assert registered(load_event, 0.9) == 3


def test_register_with_a_bad_event_spends_no_version(ddb, load_event):
    event = load_event("promote_register")
    del event["run"]["data_version"]
    with pytest.raises(_aws.EventError, match="run.data_version is missing"):
        promote.handler(event, None)
    assert item(ddb, "COUNTER") is None


def test_register_over_an_existing_model_item_refuses_to_overwrite_it(ddb, load_event):
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "MODEL#1"}, "status": {"S": "production"}})
    with pytest.raises(RegistryStateError, match="MODEL#1 already exists"):
        promote.handler(load_event("promote_register"), None)
    assert status(ddb, 1) == "production"


# --- promote ----------------------------------------------------------------------------------


def test_the_first_model_becomes_production(ddb, load_event):
    version = registered(load_event, 0.9412)
    out = promote.handler({"action": "promote", "version": version}, None)
    assert out == {
        "promoted": True,
        "version": 1,
        "previous_version": None,
        "reason": "v1 (accuracy 0.9412) is the first model",
    }
    pointer = item(ddb, "PRODUCTION")
    model = item(ddb, "MODEL#1")
    assert pointer == {
        "pk": "PRODUCTION",
        "version": 1,
        "metric_name": "accuracy",
        "metric_value": 0.9412,
        "metrics": model["metrics"],
        "artifact_uri": model["artifact_uri"],
        "model_name": "tumor-triage-dev-v1",
        "promoted_at": model["promoted_at"],
        "execution_id": model["execution_id"],
        "previous_version": None,
    }
    assert model["status"] == "production"


def test_a_better_model_replaces_production_and_retires_it(ddb, load_event):
    old = registered(load_event, 0.91)
    promote.handler({"action": "promote", "version": old}, None)
    new = registered(load_event, 0.95, run="b")
    out = promote.handler({"action": "promote", "version": new}, None)
    assert out["promoted"] is True
    assert out["previous_version"] == old
    assert out["reason"] == "v2 (accuracy 0.9500) replaces v1 (accuracy 0.9100) in production"
    assert pointer_version(ddb) == new
    assert item(ddb, "PRODUCTION")["previous_version"] == old
    assert (status(ddb, old), status(ddb, new)) == ("retired", "production")


@pytest.mark.parametrize("accuracy", [0.95, 0.94], ids=["equal", "worse"])
def test_a_model_not_better_than_production_is_superseded(ddb, load_event, accuracy):
    best = registered(load_event, 0.95)
    promote.handler({"action": "promote", "version": best}, None)
    other = registered(load_event, accuracy, run="b")
    out = promote.handler({"action": "promote", "version": other}, None)
    assert out == {
        "promoted": False,
        "version": other,
        "previous_version": None,
        "reason": "v1 (accuracy 0.9500) is already in production",
    }
    assert pointer_version(ddb) == best
    assert (status(ddb, best), status(ddb, other)) == ("production", "superseded")
    assert item(ddb, f"MODEL#{other}")["status_reason"] == out["reason"]


def test_min_improvement_from_the_environment_guards_the_pointer(ddb, load_event, monkeypatch):
    monkeypatch.setenv("GATE_MIN_IMPROVEMENT", "0.05")
    first = registered(load_event, 0.90)
    promote.handler({"action": "promote", "version": first}, None)
    small_gain = registered(load_event, 0.93, run="b")
    assert promote.handler({"action": "promote", "version": small_gain}, None)["promoted"] is False
    big_gain = registered(load_event, 0.96, run="c")
    assert promote.handler({"action": "promote", "version": big_gain}, None)["promoted"] is True
    assert pointer_version(ddb) == big_gain


def test_minimize_direction_promotes_the_lower_value(ddb, load_event, monkeypatch):
    monkeypatch.setenv("GATE_DIRECTION", "minimize")
    first = registered(load_event, 0.30)
    promote.handler({"action": "promote", "version": first}, None)
    lower = registered(load_event, 0.20, run="b")
    assert promote.handler({"action": "promote", "version": lower}, None)["promoted"] is True
    higher = registered(load_event, 0.25, run="c")
    assert promote.handler({"action": "promote", "version": higher}, None)["promoted"] is False
    assert pointer_version(ddb) == lower


def test_promoting_twice_is_idempotent(ddb, load_event):
    old = registered(load_event, 0.91)
    promote.handler({"action": "promote", "version": old}, None)
    new = registered(load_event, 0.95, run="b")
    first = promote.handler({"action": "promote", "version": new}, None)
    again = promote.handler({"action": "promote", "version": new}, None)
    assert (again["promoted"], again["previous_version"]) == (True, first["previous_version"])
    assert (status(ddb, old), status(ddb, new)) == ("retired", "production")


def test_a_superseded_model_stays_superseded_when_promoted_again(ddb, load_event):
    best = registered(load_event, 0.95)
    promote.handler({"action": "promote", "version": best}, None)
    worse = registered(load_event, 0.90, run="b")
    promote.handler({"action": "promote", "version": worse}, None)
    again = promote.handler({"action": "promote", "version": worse}, None)
    assert again["promoted"] is False
    assert again["reason"] == "v1 (accuracy 0.9500) is already in production"
    assert status(ddb, worse) == "superseded"


def test_a_rejected_model_cannot_be_promoted(ddb, load_event):
    version = registered(load_event, 0.99, promote_ok=False)
    with pytest.raises(RegistryStateError, match="v1 has status 'rejected'"):
        promote.handler({"action": "promote", "version": version}, None)
    assert pointer_version(ddb) is None


def test_promoting_an_unknown_version_names_it(ddb):
    with pytest.raises(ModelNotFoundError, match="has no MODEL#7"):
        promote.handler({"action": "promote", "version": 7}, None)


def test_the_fixture_promote_event_promotes_version_4(ddb, load_event):
    for run in "abcd":
        registered(load_event, 0.9, run=run)
    out = promote.handler(load_event("promote_promote"), None)
    assert (out["promoted"], out["version"]) == (True, 4)


def test_the_condition_itself_refuses_a_worse_model_whatever_the_plan_said(ddb, load_event):
    # Forge the plan a stale read would give: "v2 beats v1". DynamoDB must still say no.
    best = registered(load_event, 0.95)
    promote.handler({"action": "promote", "version": best}, None)
    worse = registered(load_event, 0.90, run="b")
    registry = Registry(ddb, TABLE)
    stale = promote.Plan("promote", True, "stale", previous_version=best)
    writes = promote.promotion_writes(TABLE, registry.model(worse), stale, MAXIMIZE, "now")
    codes = registry.transact(writes)
    assert codes is not None and codes[0] == "ConditionalCheckFailed"
    assert pointer_version(ddb) == best
    assert (status(ddb, best), status(ddb, worse)) == ("production", "candidate")


@pytest.mark.parametrize(
    ("production", "candidate", "direction", "min_improvement"),
    [
        (0.9123, 0.9412, "maximize", 0.0),
        (0.9123, 0.9123, "maximize", 0.0),
        (0.3, 0.1 + 0.2, "maximize", 0.0),
        (0.1 + 0.2, 0.3, "maximize", 0.0),
        (0.9, 0.9 + 1e-13, "maximize", 0.0),
        (0.9, 0.9 + 1e-9, "maximize", 0.0),
        (0.82, 0.83, "maximize", 0.01),
        (0.82, 0.8299, "maximize", 0.01),
        (0.25, 0.20, "minimize", 0.0),
        (0.83, 0.82, "minimize", 0.01),
        (0.3, 0.1 + 0.2, "minimize", 0.0),
    ],
)
def test_dynamodb_condition_decides_like_the_gate_rule(
    ddb, load_event, production, candidate, direction, min_improvement
):
    rule = GateRule(direction, min_improvement)
    incumbent = registered(load_event, production)
    promote.promote(Registry(ddb, TABLE), incumbent, rule)
    challenger = registered(load_event, candidate, run="b")
    registry = Registry(ddb, TABLE)
    forced = promote.Plan("promote", True, "test", previous_version=incumbent)
    writes = promote.promotion_writes(TABLE, registry.model(challenger), forced, rule, "now")
    accepted = registry.transact(writes) is None
    assert accepted is decide(candidate, production, direction, min_improvement).promote


# --- revert -----------------------------------------------------------------------------------


def test_revert_restores_the_displaced_model_exactly(ddb, load_event):
    old = registered(load_event, 0.91)
    promote.handler({"action": "promote", "version": old}, None)
    before = item(ddb, "PRODUCTION")
    new = registered(load_event, 0.95, run="b")
    promote.handler({"action": "promote", "version": new}, None)

    out = promote.handler({"action": "revert", "version": new, "reason": "endpoint failed"}, None)

    assert out == {"reverted": True, "production_version": old}
    assert item(ddb, "PRODUCTION") == before
    assert (status(ddb, old), status(ddb, new)) == ("production", "failed")
    assert item(ddb, f"MODEL#{new}")["status_reason"] == "endpoint failed"
    assert "retired_at" not in item(ddb, f"MODEL#{old}")


def test_revert_restores_a_chain_one_step_at_a_time(ddb, load_event):
    versions = [registered(load_event, acc, run=run) for acc, run in [(0.9, "a"), (0.92, "b")]]
    for version in versions:
        promote.handler({"action": "promote", "version": version}, None)
    third = registered(load_event, 0.95, run="c")
    promote.handler({"action": "promote", "version": third}, None)
    promote.handler({"action": "revert", "version": third, "reason": "x"}, None)
    # v2 is back, still knowing it displaced v1.
    assert item(ddb, "PRODUCTION")["previous_version"] == versions[0]


def test_revert_of_the_first_model_deletes_the_pointer(ddb, load_event):
    version = registered(load_event, 0.9)
    promote.handler({"action": "promote", "version": version}, None)
    out = promote.handler({"action": "revert", "version": version, "reason": "boom"}, None)
    assert out == {"reverted": True, "production_version": None}
    assert pointer_version(ddb) is None
    assert status(ddb, version) == "failed"


def test_revert_is_idempotent(ddb, load_event):
    old = registered(load_event, 0.91)
    promote.handler({"action": "promote", "version": old}, None)
    new = registered(load_event, 0.95, run="b")
    promote.handler({"action": "promote", "version": new}, None)
    event = load_event("promote_revert") | {"version": new}
    promote.handler(event, None)
    pointer = item(ddb, "PRODUCTION")
    again = promote.handler(event, None)
    assert again == {"reverted": False, "production_version": old}
    assert item(ddb, "PRODUCTION") == pointer
    assert (status(ddb, old), status(ddb, new)) == ("production", "failed")


def test_revert_of_a_model_no_longer_in_production_leaves_the_pointer(ddb, load_event):
    first = registered(load_event, 0.91)
    promote.handler({"action": "promote", "version": first}, None)
    second = registered(load_event, 0.93, run="b")
    promote.handler({"action": "promote", "version": second}, None)
    third = registered(load_event, 0.95, run="c")
    promote.handler({"action": "promote", "version": third}, None)
    out = promote.handler({"action": "revert", "version": second, "reason": "late"}, None)
    assert out == {"reverted": False, "production_version": third}
    assert status(ddb, second) == "failed"
    assert status(ddb, third) == "production"


def test_revert_of_an_unknown_version_names_it(ddb):
    with pytest.raises(ModelNotFoundError, match="MODEL#9"):
        promote.handler({"action": "revert", "version": 9, "reason": "x"}, None)


def test_revert_with_the_displaced_model_missing_names_it_and_changes_nothing(ddb, load_event):
    old = registered(load_event, 0.91)
    promote.handler({"action": "promote", "version": old}, None)
    new = registered(load_event, 0.95, run="b")
    promote.handler({"action": "promote", "version": new}, None)
    ddb.delete_item(TableName=TABLE, Key={"pk": {"S": f"MODEL#{old}"}})
    with pytest.raises(RegistryStateError, match=f"MODEL#{old} is not in"):
        promote.handler({"action": "revert", "version": new, "reason": "x"}, None)
    assert pointer_version(ddb) == new
    assert status(ddb, new) == "production"


def test_promote_over_a_pointer_to_a_missing_model_names_it(ddb, load_event):
    old = registered(load_event, 0.91)
    promote.handler({"action": "promote", "version": old}, None)
    ddb.delete_item(TableName=TABLE, Key={"pk": {"S": f"MODEL#{old}"}})
    new = registered(load_event, 0.95, run="b")
    with pytest.raises(RegistryStateError, match=f"names v{old}, but MODEL#{old} is not in"):
        promote.handler({"action": "promote", "version": new}, None)
    assert pointer_version(ddb) == old
    assert status(ddb, new) == "candidate"


# --- handler errors -----------------------------------------------------------------------------


def test_an_unknown_action_is_an_event_error(ddb):
    with pytest.raises(_aws.EventError, match="action 'deploy' must be one of"):
        promote.handler({"action": "deploy"}, None)


def test_a_missing_table_setting_is_a_configuration_error(ddb, monkeypatch, load_event):
    monkeypatch.delenv("TABLE_NAME")
    with pytest.raises(_aws.ConfigurationError, match="TABLE_NAME"):
        promote.handler(load_event("promote_register"), None)


# --- races ----------------------------------------------------------------------------------------


def expected_after_race(better, worse, worse_committed_first, incumbent=None):
    statuses = {better: "production", worse: "retired" if worse_committed_first else "superseded"}
    if incumbent is not None:
        statuses[incumbent] = "retired"
    previous = worse if worse_committed_first else incumbent
    return statuses, previous


@pytest.mark.parametrize("with_incumbent", [False, True], ids=["no-production", "production-0.90"])
@pytest.mark.parametrize("first_reader", ["better", "worse"])
def test_interleaved_promotions_leave_the_better_model_in_production(
    ddb, load_event, first_reader, with_incumbent
):
    """One promotion reads the registry; the other runs to completion; then the first one writes."""
    incumbent = None
    if with_incumbent:
        incumbent = registered(load_event, 0.90, run="p")
        promote.handler({"action": "promote", "version": incumbent}, None)
    better = registered(load_event, 0.95, run="b")
    worse = registered(load_event, 0.93, run="w")
    reader, interloper = (better, worse) if first_reader == "better" else (worse, better)

    reader_client = boto3.client("dynamodb")
    interloper_registry = Registry(boto3.client("dynamodb"), TABLE)
    interloper_out = {}

    def run_interloper_once(**_):
        # Called by botocore just before the reader's first transaction goes out.
        if not interloper_out:
            interloper_out.update(promote.promote(interloper_registry, interloper, MAXIMIZE))

    reader_client.meta.events.register(
        "before-call.dynamodb.TransactWriteItems", run_interloper_once
    )
    reader_out = promote.promote(Registry(reader_client, TABLE), reader, MAXIMIZE)

    assert interloper_out["promoted"] is True  # it found the registry as the reader had
    assert reader_out["promoted"] is (reader == better)
    statuses, previous = expected_after_race(
        better, worse, worse_committed_first=(interloper == worse), incumbent=incumbent
    )
    assert {v: status(ddb, v) for v in statuses} == statuses
    assert pointer_version(ddb) == better
    assert item(ddb, "PRODUCTION")["previous_version"] == previous


@pytest.mark.parametrize("order", ["better-first", "worse-first"])
def test_sequential_promotions_in_either_order_end_with_the_better_model(ddb, load_event, order):
    better = registered(load_event, 0.95, run="b")
    worse = registered(load_event, 0.93, run="w")
    sequence = [better, worse] if order == "better-first" else [worse, better]
    for version in sequence:
        promote.handler({"action": "promote", "version": version}, None)
    statuses, previous = expected_after_race(
        better, worse, worse_committed_first=sequence[0] == worse
    )
    assert {v: status(ddb, v) for v in statuses} == statuses
    assert item(ddb, "PRODUCTION")["previous_version"] == previous


def run_in_threads(*calls):
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list = []

    def worker(index, call):
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:  # surfaced below, with the thread's own traceback
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    return results


@pytest.mark.usefixtures("serialised_moto")
@pytest.mark.parametrize("round_", range(12))
def test_concurrent_promotions_from_threads_leave_the_better_model(
    create_table, lambda_env, load_event, monkeypatch, round_
):
    table = f"{TABLE}-{uuid.uuid4().hex[:8]}"
    create_table(table)
    monkeypatch.setenv("TABLE_NAME", table)
    accuracies = (0.95, 0.93) if round_ % 2 else (0.93, 0.95)
    events = [register_event(load_event, a, run=f"t{i}") for i, a in enumerate(accuracies)]

    registered_out = run_in_threads(*(lambda e=e: promote.handler(e, None) for e in events))
    versions = [out["version"] for out in registered_out]
    assert sorted(versions) == [1, 2]  # the counter never hands out a version twice
    by_accuracy = dict(zip(accuracies, versions, strict=True))
    better, worse = by_accuracy[0.95], by_accuracy[0.93]

    outs = run_in_threads(
        *(lambda v=v: promote.handler({"action": "promote", "version": v}, None) for v in versions)
    )

    ddb = boto3.client("dynamodb")
    assert pointer_version(ddb, table) == better
    assert {o["version"]: o["promoted"] for o in outs}[better] is True
    worse_status = status(ddb, worse, table)
    assert status(ddb, better, table) == "production"
    assert worse_status in {"retired", "superseded"}
    previous = item(ddb, "PRODUCTION", table)["previous_version"]
    assert previous == (worse if worse_status == "retired" else None)
