"""The gate and the promote/reject/notify routing of the REAL rendered state machine.

One real execution (upload -> Manifest -> ETL -> training -> first model promoted through
CreateEndpoint) provides a model the endpoints can serve. Each case then runs the deployed
definition itself, unchanged but for StartAt = GetProduction, on the state that execution
produced, with an evaluation of chosen accuracy, against the local cloud's DynamoDB, Lambdas,
SageMaker and SNS. Failures are provoked the way they happen on AWS (a name already taken, a
missing object, a broken setting, a deleted endpoint); each must be notified naming the failed
state and leave production (the registry's PRODUCTION item and the endpoint's config) as it was.
Races between promotions are staged the same way: a run resumed at a later state of the same
definition, on the state it really reached, after another run took production meanwhile; and an
endpoint held busy by an update whose model loads only when the test lets it.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from lambdas import _aws
from pipeline import data, run
from pipeline.demo import SAMPLE, Inbox

pytestmark = pytest.mark.slow

IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")


# --- fixtures: one real execution, the gate machine, the inbox ---------------------------


class Notifications:
    """What reached the topic, read through the demo's SQS inbox, per execution."""

    def __init__(self, cfg):
        self.inbox = Inbox(cfg)
        self.seen: list[dict[str, str]] = []

    def _drain(self) -> None:
        sqs, url = self.inbox.sqs, self.inbox.url
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in messages:
                self.seen.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def of(self, execution_arn: str) -> list[str]:
        """Subjects of the messages about `execution_arn` (the notify Lambda names it)."""
        self._drain()
        return [m["Subject"] for m in self.seen if f"execution: {execution_arn}\n" in m["Message"]]


@pytest.fixture(scope="module")
def notifications(cfg, deployed) -> Notifications:
    return Notifications(cfg)


@pytest.fixture(scope="module")
def first_run(cfg, deployed, notifications) -> dict[str, Any]:
    """The one real training: the S3 rule starts it when the drop lands under raw/."""
    since = time.time()
    prefix, _ = data.push(cfg, SAMPLE / "drop-002", "gate-drop")
    arn = run.triggered_executions(cfg, prefix, since)[0]
    summary = run.follow(cfg, arn)
    output = boto3.client("stepfunctions").describe_execution(executionArn=arn)["output"]
    return {"summary": summary, "state": json.loads(output)}


@pytest.fixture(scope="module")
def gate_machine(cfg, first_run) -> str:
    """The deployed definition (substitutions applied), unchanged but for StartAt."""
    sfn = boto3.client("stepfunctions")
    described = sfn.describe_state_machine(stateMachineArn=run.state_machine_arn(cfg, sfn))
    definition = json.loads(described["definition"])
    assert "GetProduction" in definition["States"]
    definition["StartAt"] = "GetProduction"
    created = sfn.create_state_machine(
        name=f"{cfg.names['state_machine']}-gate",
        definition=json.dumps(definition),
        roleArn=described["roleArn"],
    )
    return created["stateMachineArn"]


@pytest.fixture(scope="module")
def real_evaluation(first_run) -> dict[str, Any]:
    """evaluation.json as the training job of the first run wrote it."""
    bucket, key = _aws.parse_s3_uri(first_run["state"]["manifest"]["evaluation_uri"])
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        return json.load(archive.extractfile("evaluation.json"))


# --- helpers ----------------------------------------------------------------------------


def _upload_evaluation(cfg, evaluation: dict[str, Any], value: float, case: str) -> str:
    """SageMaker's output.tar.gz with the real evaluation.json, its gate metric set to `value`."""
    doc = json.loads(json.dumps(evaluation))
    doc["metrics"][cfg.settings.gate.metric] = value
    body = json.dumps(doc, indent=2).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        info = tarfile.TarInfo("evaluation.json")
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
    key = f"models/gate-{case}/output/output.tar.gz"
    boto3.client("s3").put_object(Bucket=cfg.names["bucket"], Key=key, Body=buf.getvalue())
    return f"s3://{cfg.names['bucket']}/{key}"


def _endpoint(cfg) -> dict[str, Any] | None:
    """The endpoint once no transition is in progress, or None when there is none."""
    sagemaker = boto3.client("sagemaker")
    deadline = time.monotonic() + 60
    while True:
        try:
            described = sagemaker.describe_endpoint(EndpointName=cfg.names["endpoint"])
        except sagemaker.exceptions.ClientError as exc:
            if "Could not find endpoint" in str(exc):
                return None
            raise
        if described["EndpointStatus"] not in IN_PROGRESS:
            return described
        assert time.monotonic() < deadline, f"endpoint stuck: {described}"
        time.sleep(0.05)


def _pointer(cfg) -> dict[str, Any] | None:
    item = boto3.client("dynamodb").get_item(
        TableName=cfg.names["table"], Key={"pk": {"S": "PRODUCTION"}}, ConsistentRead=True
    )
    return _aws.from_item(item["Item"]) if "Item" in item else None


def _production(cfg) -> tuple[dict[str, Any] | None, str | None]:
    """What production is: the whole PRODUCTION item and the config the endpoint serves."""
    endpoint = _endpoint(cfg)
    return _pointer(cfg), endpoint["EndpointConfigName"] if endpoint else None


def _model(cfg, version: int) -> dict[str, Any]:
    item = boto3.client("dynamodb").get_item(
        TableName=cfg.names["table"], Key={"pk": {"S": f"MODEL#{version}"}}, ConsistentRead=True
    )
    return _aws.from_item(item["Item"])


def _production_value(cfg) -> float:
    return _pointer(cfg)["metrics"][cfg.settings.gate.metric]


def _better(cfg) -> float:
    """A value of the gate metric that beats production by more than the required improvement."""
    assert cfg.settings.gate.direction == "maximize"
    current = _production_value(cfg)
    assert current < 1.0, "production is perfect already: no candidate can beat it"
    return max((current + 1.0) / 2, current + 2 * cfg.settings.gate.min_improvement)


def _state(first_run, evaluation_uri: str) -> dict[str, Any]:
    """The state document as Manifest, ETL and Train left it, pointing at another evaluation."""
    before = json.loads(json.dumps(first_run["state"]))
    manifest = {**before["manifest"], "evaluation_uri": evaluation_uri}
    return {
        "data_prefix": manifest["data_prefix"],
        "commit": manifest["commit"],
        "manifest": manifest,
        "etl": before["etl"],
        "training": before["training"],
    }


def _gate_run(cfg, *args: Any, **kwargs: Any) -> run.RunSummary:
    """Start a gate run (see _start_gate_run) and follow it to its end."""
    return run.follow(cfg, _start_gate_run(cfg, *args, **kwargs), timeout=120)


def _start_gate_run(
    cfg,
    gate_machine: str,
    first_run,
    real_evaluation,
    case: str,
    value: float | None = None,
    evaluation_uri: str | None = None,
    artifact: str | None = None,
) -> str:
    """Start a gate run without following it; returns the execution ARN."""
    uri = evaluation_uri or _upload_evaluation(cfg, real_evaluation, value, case)
    state = _state(first_run, uri)
    if artifact:
        state["training"]["model_artifact"] = artifact
    return boto3.client("stepfunctions").start_execution(
        stateMachineArn=gate_machine, name=f"gate-{case}", input=json.dumps(state)
    )["executionArn"]


def _next_model_name(cfg) -> str:
    """The name the Register Lambda will give the next candidate (COUNTER + 1)."""
    counter = boto3.client("dynamodb").get_item(
        TableName=cfg.names["table"], Key={"pk": {"S": "COUNTER"}}, ConsistentRead=True
    )
    return f"{cfg.names['model_prefix']}-v{int(counter['Item']['last_version']['N']) + 1}"


@contextmanager
def _lambda_env(cfg, function: str, **changes: str) -> Iterator[None]:
    """A function's environment changed as a bad deploy would, then put back."""
    client = boto3.client("lambda")
    name = cfg.names[f"lambda_{function}"]
    env = client.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {**env, **changes}}
    )
    try:
        yield
    finally:
        client.update_function_configuration(FunctionName=name, Environment={"Variables": env})


def _entered(sfn_arn: str, state: str) -> dict[str, Any]:
    """The input of the last time the execution entered `state`."""
    events = run.history(boto3.client("stepfunctions"), sfn_arn)
    for event in reversed(events):
        details = event.get("stateEnteredEventDetails")
        if details and details["name"] == state:
            return json.loads(details["input"])
    raise AssertionError(f"{sfn_arn} never entered {state}")


# --- routing: promoted and rejected -----------------------------------------------------


def test_first_model_is_promoted_through_create_endpoint(cfg, first_run, notifications):
    summary = first_run["summary"]
    assert summary.outcome == "promoted", run.text(summary)
    assert summary.path[0] == "Manifest"
    assert "CreateEndpoint" in summary.path and "UpdateEndpoint" not in summary.path
    pointer, serving = _production(cfg)
    assert pointer["version"] == summary.model_version
    assert pointer["previous_version"] is None
    assert serving == pointer["model_name"] == f"{cfg.names['model_prefix']}-v{pointer['version']}"
    assert _endpoint(cfg)["EndpointStatus"] == "InService"
    subjects = notifications.of(summary.execution_arn)
    assert len(subjects) == 1 and f"promoted v{summary.model_version}" in subjects[0]


def test_better_model_is_promoted_through_update_endpoint(
    cfg, gate_machine, first_run, real_evaluation, notifications
):
    before, _ = _production(cfg)
    value = _better(cfg)
    summary = _gate_run(cfg, gate_machine, first_run, real_evaluation, "better", value)
    assert summary.outcome == "promoted", run.text(summary)
    assert summary.path[0] == "GetProduction"
    assert "UpdateEndpoint" in summary.path and "CreateEndpoint" not in summary.path
    assert summary.production_version == before["version"]
    pointer, serving = _production(cfg)
    assert pointer["version"] == summary.model_version
    assert pointer["previous_version"] == before["version"]
    assert pointer["metrics"][cfg.settings.gate.metric] == value
    assert serving == pointer["model_name"]
    assert _model(cfg, before["version"])["status"] == "retired"
    subjects = notifications.of(summary.execution_arn)
    assert len(subjects) == 1 and f"promoted v{summary.model_version}" in subjects[0]


@pytest.mark.parametrize("case", ["equal", "worse"])
def test_equal_or_worse_model_is_rejected_and_production_stays(
    cfg, gate_machine, first_run, real_evaluation, notifications, case
):
    current = _production_value(cfg)
    value = current if case == "equal" else current - 0.1
    before = _production(cfg)
    summary = _gate_run(cfg, gate_machine, first_run, real_evaluation, case, value)
    assert summary.outcome == "rejected", run.text(summary)
    assert summary.decision == "reject"
    assert "ClaimProduction" not in summary.path and "RevertProduction" not in summary.path
    assert _production(cfg) == before
    assert _model(cfg, summary.model_version)["status"] == "rejected"
    subjects = notifications.of(summary.execution_arn)
    assert len(subjects) == 1 and f"rejected v{summary.model_version}" in subjects[0]


# --- failures in each Task of the gate part ------------------------------------------------


def _squat_model_name(cfg) -> Iterator[None]:
    """A SageMaker model already holds the next model's name (a manual try, a reset COUNTER)."""
    boto3.client("sagemaker").create_model(
        ModelName=_next_model_name(cfg),
        ExecutionRoleArn="arn:aws:iam::123456789012:role/someone-else",
        PrimaryContainer={"Image": "someone-else", "ModelDataUrl": "s3://elsewhere/model.tar.gz"},
    )
    yield


def _squat_endpoint_config_name(cfg) -> Iterator[None]:
    """An endpoint config already holds the next model's name."""
    sagemaker = boto3.client("sagemaker")
    serving = _endpoint(cfg)["EndpointConfigName"]
    variant = sagemaker.describe_endpoint_config(EndpointConfigName=serving)["ProductionVariants"]
    sagemaker.create_endpoint_config(
        EndpointConfigName=_next_model_name(cfg),
        ProductionVariants=[
            {
                "VariantName": "someone-else",
                "ModelName": variant[0]["ModelName"],
                "InitialInstanceCount": 1,
                "InstanceType": cfg.settings.endpoint.instance_type,
            }
        ],
    )
    yield


def _broken_table_name(cfg) -> Iterator[None]:
    """The promote Lambda points at a table that does not exist: Register is its first call."""
    with _lambda_env(cfg, "promote", TABLE_NAME=f"{cfg.names['table']}-missing"):
        yield


def _broken_gate_rule(cfg) -> Iterator[None]:
    """The promote Lambda's gate rule is invalid; only the promote action reads it."""
    with _lambda_env(cfg, "promote", GATE_DIRECTION="upwards"):
        yield


def _unservable_model(cfg, name: str) -> str:
    """A model and endpoint config named `name` that no endpoint can serve (no
    SAGEMAKER_PROGRAM, so the container has no model_fn to load); returns the config name."""
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/someone-else",
        PrimaryContainer={"Image": "someone-else", "ModelDataUrl": "s3://elsewhere/model.tar.gz"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": cfg.settings.endpoint.instance_type,
            }
        ],
    )
    return name


def _replace_endpoint(cfg, config_name: str) -> None:
    """Delete the endpoint and create it again with `config_name`, as an operator would."""
    sagemaker = boto3.client("sagemaker")
    if _endpoint(cfg) is not None:
        sagemaker.delete_endpoint(EndpointName=cfg.names["endpoint"])
    sagemaker.create_endpoint(EndpointName=cfg.names["endpoint"], EndpointConfigName=config_name)


def _endpoint_failed(cfg) -> Iterator[None]:
    """The endpoint is Failed (a creation by hand with a model it could not serve), which
    UpdateEndpoint refuses; afterwards it serves the production model again."""
    serving = _endpoint(cfg)["EndpointConfigName"]
    _replace_endpoint(cfg, _unservable_model(cfg, f"{cfg.names['model_prefix']}-broken"))
    assert _endpoint(cfg)["EndpointStatus"] == "Failed"
    try:
        yield
    finally:
        _replace_endpoint(cfg, serving)
        assert _endpoint(cfg)["EndpointStatus"] == "InService"


def _missing_evaluation(cfg) -> Iterator[None]:
    """Nothing to break: the case's evaluation_uri names an object never written."""
    yield


# case: (the state that fails, how it is made to fail, whether the pointer had moved and must
# be reverted, a piece of the cause proving it failed for that reason and no other)
FAILURES: dict[str, tuple[str, Callable[..., Iterator[None]], bool, str]] = {
    "evaluate": ("Evaluate", _missing_evaluation, False, "does not exist"),
    "register": ("Register", _broken_table_name, False, "ResourceNotFoundException"),
    "claim-production": ("ClaimProduction", _broken_gate_rule, False, "GATE_DIRECTION"),
    "create-model": (
        "CreateModel", _squat_model_name, True, "Cannot create already existing model",
    ),
    "create-endpoint-config": (
        "CreateEndpointConfig", _squat_endpoint_config_name, True,
        "Cannot create already existing endpoint configuration",
    ),
    "update-endpoint": (
        "UpdateEndpoint", _endpoint_failed, True, "Cannot update failed endpoint",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FAILURES))
def test_failure_in_a_gate_task_is_notified_and_production_stays(
    cfg, gate_machine, first_run, real_evaluation, notifications, case
):
    failing, provoke, reverted, cause = FAILURES[case]
    value = _better(cfg)  # a candidate that would be promoted: every Task is on its path
    missing = f"s3://{cfg.names['bucket']}/models/gate-{case}/output/output.tar.gz"
    with contextmanager(provoke)(cfg):
        before = _production(cfg)
        summary = _gate_run(
            cfg,
            gate_machine,
            first_run,
            real_evaluation,
            case,
            value,
            evaluation_uri=missing if failing == "Evaluate" else None,
        )
        after = _production(cfg)
    assert summary.status == "FAILED" and summary.outcome == "failed", run.text(summary)
    assert summary.failed_state == failing
    assert cause in summary.cause, summary.cause
    ending = [f"{failing} failed", *(["RevertProduction"] if reverted else []), "NotifyFailure"]
    assert summary.path[-len(ending) - 1 :] == [*ending, "Failed"], summary.path
    assert after == before
    if reverted:
        assert _entered(summary.execution_arn, "NotifyFailure")["revert"]["reverted"] is True
        assert _model(cfg, summary.model_version)["status"] == "failed"
    subjects = notifications.of(summary.execution_arn)
    assert len(subjects) == 1, subjects
    assert f"retraining failed in {failing}:" in subjects[0]


# --- failures of the notifications themselves ---------------------------------------------


def _unknown_topic(cfg) -> str:
    return f"arn:aws:sns:{cfg.settings.project.region}:123456789012:{cfg.names['topic']}-deleted"


def test_failed_rejection_notice_fails_the_run_and_production_stays(
    cfg, gate_machine, first_run, real_evaluation, notifications
):
    before = _production(cfg)
    with _lambda_env(cfg, "notify", TOPIC_ARN=_unknown_topic(cfg)):
        value = _production_value(cfg) - 0.1
        summary = _gate_run(cfg, gate_machine, first_run, real_evaluation, "notify-rej", value)
    assert summary.status == "FAILED" and summary.outcome == "failed", run.text(summary)
    assert summary.failed_state == "NotifyRejected"
    assert _production(cfg) == before
    # The failure notice goes through the same Lambda and topic: it fails too, and is caught so
    # the execution still ends in Failed (its FAILED status is the remaining signal).
    assert "notify_error" in _entered(summary.execution_arn, "Failed")
    assert notifications.of(summary.execution_arn) == []


def test_failed_promotion_notice_fails_the_run_with_the_new_model_serving(
    cfg, gate_machine, first_run, real_evaluation, notifications
):
    before, _ = _production(cfg)
    with _lambda_env(cfg, "notify", TOPIC_ARN=_unknown_topic(cfg)):
        value = _better(cfg)
        summary = _gate_run(cfg, gate_machine, first_run, real_evaluation, "notify-pro", value)
    assert summary.status == "FAILED" and summary.outcome == "failed", run.text(summary)
    assert summary.failed_state == "NotifyPromoted"
    # The endpoint took the model before the notice failed, and nothing reverts it: registry and
    # endpoint both name the new model, so they still agree.
    pointer, serving = _production(cfg)
    assert pointer["version"] == summary.model_version != before["version"]
    assert serving == pointer["model_name"]
    assert "notify_error" in _entered(summary.execution_arn, "Failed")
    assert notifications.of(summary.execution_arn) == []


# --- the endpoint update fails after UpdateEndpoint returned --------------------------------


def _assert_unservable_model_reverted(cfg, summary, call: str, notifications) -> None:
    """The run failed in `call` because the endpoint could not serve the model: promotion was
    never announced, the pointer was reverted, the model marked failed, the failure notified."""
    assert summary.status == "FAILED" and summary.outcome == "failed", run.text(summary)
    assert summary.failed_state == call and summary.error == "EndpointNotServing"
    assert "did not pass the ping health check" in summary.cause, summary.cause
    assert "NotifyPromoted" not in summary.path
    assert summary.path[-5:] == [
        "EndpointNotServing", "EndpointFailed", "RevertProduction", "NotifyFailure", "Failed",
    ]  # fmt: skip
    failed = _model(cfg, summary.model_version)
    assert failed["status"] == "failed"
    assert failed["status_reason"] == f"{call} failed: EndpointNotServing"
    subjects = notifications.of(summary.execution_arn)
    assert subjects == [
        f"[{cfg.settings.project.name}/{cfg.env}] retraining failed in {call}: EndpointNotServing"
    ], subjects


def test_model_the_endpoint_cannot_serve_is_reverted_and_notified(
    cfg, gate_machine, first_run, real_evaluation, notifications
):
    # A real tar.gz without model.joblib: CreateModel and UpdateEndpoint accept it; SageMaker
    # then fails to serve it and rolls the endpoint back to the old config (FailureReason set).
    not_a_model = _upload_evaluation(cfg, real_evaluation, 0.5, "not-a-model")
    before = _production(cfg)
    summary = _gate_run(
        cfg, gate_machine, first_run, real_evaluation, "unservable", _better(cfg),
        artifact=not_a_model,
    )  # fmt: skip
    endpoint = _endpoint(cfg)
    assert endpoint["EndpointStatus"] == "InService" and endpoint.get("FailureReason"), endpoint
    # The wait loop saw the rolled-back endpoint and reverted.
    _assert_unservable_model_reverted(cfg, summary, "UpdateEndpoint", notifications)
    assert _production(cfg) == before
    assert _pointer(cfg)["model_name"] == endpoint["EndpointConfigName"]


# --- the endpoint as SageMaker has it, not as the registry implies --------------------------


def test_endpoint_deleted_by_hand_is_created_again_by_the_next_promotion(
    cfg, gate_machine, first_run, real_evaluation, notifications
):
    before, _ = _production(cfg)
    boto3.client("sagemaker").delete_endpoint(EndpointName=cfg.names["endpoint"])
    assert _endpoint(cfg) is None
    summary = _gate_run(cfg, gate_machine, first_run, real_evaluation, "recreate", _better(cfg))
    assert summary.outcome == "promoted", run.text(summary)
    # FindEndpoint found none, so this promotion created it although a model was in production.
    assert "CreateEndpoint" in summary.path and "UpdateEndpoint" not in summary.path
    pointer, serving = _production(cfg)
    assert pointer["version"] == summary.model_version
    assert pointer["previous_version"] == before["version"]
    assert serving == pointer["model_name"]
    assert _endpoint(cfg)["EndpointStatus"] == "InService"


@contextmanager
def _first_model_state(cfg) -> Iterator[None]:
    """No endpoint and no PRODUCTION item, as before the first promotion; afterwards the
    production model serves again and PRODUCTION names it, for the tests that follow."""
    ddb, key = boto3.client("dynamodb"), {"pk": {"S": "PRODUCTION"}}
    saved = ddb.get_item(TableName=cfg.names["table"], Key=key, ConsistentRead=True)["Item"]
    serving = _endpoint(cfg)["EndpointConfigName"]
    boto3.client("sagemaker").delete_endpoint(EndpointName=cfg.names["endpoint"])
    ddb.delete_item(TableName=cfg.names["table"], Key=key)
    assert _production(cfg) == (None, None)
    try:
        yield
    finally:
        ddb.put_item(TableName=cfg.names["table"], Item=saved)
        _replace_endpoint(cfg, serving)
        assert _endpoint(cfg)["EndpointStatus"] == "InService"


def test_first_model_the_new_endpoint_cannot_serve_fails_create_endpoint_and_is_reverted(
    cfg, gate_machine, first_run, real_evaluation, notifications
):
    # A real tar.gz without model.joblib: CreateModel and CreateEndpoint accept it; SageMaker
    # then fails to serve it and, with no old config to roll back to, the endpoint turns Failed.
    not_a_model = _upload_evaluation(cfg, real_evaluation, 0.5, "first-not-a-model")
    value = _better(cfg)
    with _first_model_state(cfg):
        summary = _gate_run(
            cfg, gate_machine, first_run, real_evaluation, "first-unservable", value,
            artifact=not_a_model,
        )  # fmt: skip
        pointer, endpoint = _pointer(cfg), _endpoint(cfg)
        with pytest.raises(ClientError, match="ValidationError"):
            boto3.client("sagemaker-runtime").invoke_endpoint(
                EndpointName=cfg.names["endpoint"], ContentType="text/csv", Body=b"1"
            )
    _assert_unservable_model_reverted(cfg, summary, "CreateEndpoint", notifications)
    assert summary.production_version is None, "the gate must have seen no production"
    # FindEndpoint found none, so this first model went through CreateEndpoint.
    assert "CreateEndpoint" in summary.path and "UpdateEndpoint" not in summary.path
    # The claim is undone: there was no production before, so there is no PRODUCTION item now.
    assert pointer is None
    revert = _entered(summary.execution_arn, "NotifyFailure")["revert"]
    assert revert == {"reverted": True, "production_version": None}, revert
    # The endpoint the call created serves nothing (the invocation above was refused).
    assert endpoint["EndpointStatus"] == "Failed" and endpoint.get("FailureReason"), endpoint


def test_production_deleted_by_hand_is_taken_by_updating_the_live_endpoint(
    cfg, gate_machine, first_run, real_evaluation, notifications
):
    # PRODUCTION deleted "to start afresh" (what the promote Lambda's errors advise) while the
    # endpoint keeps serving: the registry says first model, SageMaker says update.
    before, serving_before = _production(cfg)
    value = _better(cfg)
    boto3.client("dynamodb").delete_item(
        TableName=cfg.names["table"], Key={"pk": {"S": "PRODUCTION"}}
    )
    assert _pointer(cfg) is None and _endpoint(cfg)["EndpointStatus"] == "InService"
    summary = _gate_run(cfg, gate_machine, first_run, real_evaluation, "afresh", value)
    assert summary.outcome == "promoted", run.text(summary)
    assert summary.production_version is None, "the gate must have seen no production"
    assert "UpdateEndpoint" in summary.path and "CreateEndpoint" not in summary.path
    assert "RevertProduction" not in summary.path
    pointer, serving = _production(cfg)
    assert pointer["version"] == summary.model_version != before["version"]
    assert pointer["previous_version"] is None
    assert serving == pointer["model_name"] != serving_before
    assert _endpoint(cfg)["EndpointStatus"] == "InService"
    subjects = notifications.of(summary.execution_arn)
    assert len(subjects) == 1 and f"promoted v{summary.model_version}" in subjects[0], subjects


# --- concurrent promotions: a busy endpoint, a superseded run ---------------------------------

HOLD_PROGRAM = '''\
"""A model that loads only once the file HOLD_UNTIL exists (at most 50 s): an endpoint update
to it stays Updating as long as a test needs."""
import os
import time


def model_fn(model_dir):
    deadline = time.monotonic() + 50
    while not os.path.exists(os.environ["HOLD_UNTIL"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return "held"


def predict_fn(data, model):
    return [model for _ in data]
'''


def _tar_gz(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for name, text in files.items():
            body = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return buf.getvalue()


@contextmanager
def _endpoint_held_updating(cfg, release: Path) -> Iterator[None]:
    """Another update (an operator's, another run's) in progress until `release` exists."""
    s3, sagemaker = boto3.client("s3"), boto3.client("sagemaker")
    bucket, name = cfg.names["bucket"], f"{cfg.names['model_prefix']}-held"
    s3.put_object(
        Bucket=bucket, Key="models/held/code.tar.gz", Body=_tar_gz({"hold.py": HOLD_PROGRAM})
    )
    s3.put_object(Bucket=bucket, Key="models/held/model.tar.gz", Body=_tar_gz({"README": "-"}))
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/someone-else",
        PrimaryContainer={
            "Image": "someone-else",
            "ModelDataUrl": f"s3://{bucket}/models/held/model.tar.gz",
            "Environment": {
                "SAGEMAKER_PROGRAM": "hold.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{bucket}/models/held/code.tar.gz",
                "HOLD_UNTIL": str(release),
            },
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": cfg.settings.endpoint.instance_type,
            }
        ],
    )
    sagemaker.update_endpoint(EndpointName=cfg.names["endpoint"], EndpointConfigName=name)
    try:
        yield
    finally:
        release.touch()


def _wait_until_entered(arn: str, state: str, timeout: float = 120) -> None:
    sfn = boto3.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while True:
        events = run.history(sfn, arn)
        if any((e.get("stateEnteredEventDetails") or {}).get("name") == state for e in events):
            return
        status = sfn.describe_execution(executionArn=arn)["status"]
        assert status == "RUNNING", f"{arn} ended ({status}) without entering {state}"
        assert time.monotonic() < deadline, f"{arn} did not enter {state}"
        time.sleep(0.1)


def test_update_refused_while_another_is_in_progress_is_retried_and_promotes(
    cfg, gate_machine, first_run, real_evaluation, notifications, tmp_path
):
    before, _ = _production(cfg)
    value = _better(cfg)
    with _endpoint_held_updating(cfg, tmp_path / "release"):
        assert _endpoint_status(cfg) == "Updating"
        arn = _start_gate_run(cfg, gate_machine, first_run, real_evaluation, "busy", value)
        # SageMaker refused the update ("Cannot update in-progress endpoint"): the run waits.
        _wait_until_entered(arn, "WaitToRetry")
        refused = _entered(arn, "UpdateEndpoint refused")["error"]
        assert "Cannot update in-progress endpoint" in refused["Cause"], refused
    summary = run.follow(cfg, arn, timeout=120)
    assert summary.outcome == "promoted", run.text(summary)
    # Refused, waited, read the pointer again (still this run's), then updated the endpoint.
    assert summary.path.count("UpdateEndpoint") >= 2
    assert summary.path.count("CheckProduction") >= 2
    assert "RevertProduction" not in summary.path
    pointer, serving = _production(cfg)
    assert pointer["version"] == summary.model_version
    assert pointer["previous_version"] == before["version"]
    assert serving == pointer["model_name"]
    assert _model(cfg, before["version"])["status"] == "retired"
    subjects = notifications.of(summary.execution_arn)
    assert len(subjects) == 1 and f"promoted v{summary.model_version}" in subjects[0]


def _endpoint_status(cfg) -> str:
    described = boto3.client("sagemaker").describe_endpoint(EndpointName=cfg.names["endpoint"])
    return described["EndpointStatus"]


@pytest.fixture(scope="module")
def overtaken(cfg, gate_machine, first_run, real_evaluation) -> dict[str, Any]:
    """Run L is promoted, then a better run W is: what L's execution ended with, for resuming
    L's promote path at a later state as if L had been that slow while W overtook it."""
    sfn = boto3.client("stepfunctions")
    slow = _gate_run(cfg, gate_machine, first_run, real_evaluation, "overtaken", _better(cfg))
    assert slow.outcome == "promoted", run.text(slow)
    state = json.loads(sfn.describe_execution(executionArn=slow.execution_arn)["output"])
    winner = _gate_run(cfg, gate_machine, first_run, real_evaluation, "overtaker", _better(cfg))
    assert winner.outcome == "promoted", run.text(winner)
    assert _model(cfg, slow.model_version)["status"] == "retired"
    return {"slow": slow, "state": state, "winner": winner}


def _resume(cfg, overtaken, gate_machine: str, at: str, case: str) -> run.RunSummary:
    """L's promote path from state `at` of the deployed definition, on the state L had there."""
    sfn = boto3.client("stepfunctions")
    described = sfn.describe_state_machine(stateMachineArn=gate_machine)
    definition = {**json.loads(described["definition"]), "StartAt": at}
    machine = sfn.create_state_machine(
        name=f"{cfg.names['state_machine']}-{case}",
        definition=json.dumps(definition),
        roleArn=described["roleArn"],
    )["stateMachineArn"]
    arn = sfn.start_execution(
        stateMachineArn=machine, name=f"gate-{case}", input=json.dumps(overtaken["state"])
    )["executionArn"]
    return run.follow(cfg, arn, timeout=120)


def _assert_superseded(cfg, overtaken, summary, notifications) -> None:
    slow, winner = overtaken["slow"], overtaken["winner"]
    assert summary.status == "SUCCEEDED" and summary.outcome == "rejected", run.text(summary)
    assert summary.path[-3:] == ["Superseded", "NotifyRejected", "Rejected"], summary.path
    assert "RevertProduction" not in summary.path and "NotifyPromoted" not in summary.path
    assert f"v{slow.model_version} waited for the endpoint" in summary.reason
    # Production is the winner's, in the registry and on the endpoint; L stays retired.
    pointer, serving = _production(cfg)
    assert pointer["version"] == winner.model_version
    assert serving == pointer["model_name"]
    assert _model(cfg, slow.model_version)["status"] == "retired"
    subjects = notifications.of(summary.execution_arn)
    assert len(subjects) == 1 and f"not promoted v{slow.model_version}" in subjects[0], subjects


def test_run_superseded_before_its_endpoint_call_skips_it(
    cfg, gate_machine, overtaken, notifications
):
    # L reaches its endpoint calls only after W took production: it must not touch the endpoint.
    summary = _resume(cfg, overtaken, gate_machine, "StartEndpointWait", "superseded-early")
    assert summary.path[:3] == ["StartEndpointWait", "CheckProduction", "StillProduction"]
    assert not {"FindEndpoint", "CreateEndpoint", "UpdateEndpoint"} & set(summary.path)
    _assert_superseded(cfg, overtaken, summary, notifications)


def test_run_superseded_while_waiting_for_the_endpoint_ends_succeeded_not_failed(
    cfg, gate_machine, overtaken, notifications
):
    # L's UpdateEndpoint returned; its wait now finds the endpoint serving W's config. This is
    # not L's update failing (which reverts): W's claim already retired L.
    summary = _resume(cfg, overtaken, gate_machine, "PollEndpointAgain", "superseded-late")
    status = _entered(summary.execution_arn, "ConfirmProduction")["endpoint_status"]
    assert status["EndpointStatus"] == "InService"
    assert status["EndpointConfigName"] == _pointer(cfg)["model_name"]
    assert "EndpointNotServing" not in summary.path
    _assert_superseded(cfg, overtaken, summary, notifications)
