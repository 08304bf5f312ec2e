"""The gate and the promote/reject/notify routing of the REAL rendered state machine.

One real execution (upload -> ETL -> training -> first model promoted through CreateEndpoint)
provides a served model. Each case then runs the deployed definition itself, started at
GetProduction, with that execution's state and an evaluation of chosen accuracy, against the
local cloud's DynamoDB, Lambdas, SageMaker and SNS. Failures are provoked the way they happen
on AWS (a name already taken, a missing object, a broken setting) and must be notified with
the failing state, leaving production (registry pointer and endpoint) as it was.
"""

from __future__ import annotations

import io
import json
import tarfile
import time

import boto3
import pytest

from pipeline import data, registry, run
from pipeline.demo import SAMPLE, Inbox

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first_run(cfg, deployed):
    inbox = Inbox(cfg)
    since = time.time()
    prefix, _ = data.push(cfg, SAMPLE / "drop-002", "gate-drop")
    summary = run.follow(cfg, run.triggered_executions(cfg, prefix, since)[0])
    sfn = boto3.client("stepfunctions")
    state = json.loads(sfn.describe_execution(executionArn=summary.execution_arn)["output"])
    inbox.show()
    return {"summary": summary, "state": state, "inbox": inbox}


@pytest.fixture(scope="module")
def gate_machine(cfg, first_run):
    """The deployed definition, unchanged but for StartAt."""
    sfn = boto3.client("stepfunctions")
    deployed = sfn.describe_state_machine(stateMachineArn=run.state_machine_arn(cfg, sfn))
    definition = json.loads(deployed["definition"])
    definition["StartAt"] = "GetProduction"
    created = sfn.create_state_machine(
        name=f"{cfg.names['state_machine']}-gate",
        definition=json.dumps(definition),
        roleArn=deployed["roleArn"],
    )
    return created["stateMachineArn"]


def _evaluation_uri(cfg, accuracy: float, name: str) -> str:
    doc = {
        "metrics": {
            "accuracy": accuracy,
            "f1_macro": accuracy,
            "precision_macro": accuracy,
            "recall_macro": accuracy,
        }
    }
    body = json.dumps(doc).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        info = tarfile.TarInfo("evaluation.json")
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
    key = f"models/gate-cases/{name}/output/output.tar.gz"
    boto3.client("s3").put_object(Bucket=cfg.names["bucket"], Key=key, Body=buf.getvalue())
    return f"s3://{cfg.names['bucket']}/{key}"


def _production(cfg) -> tuple[int | None, str]:
    pointer = registry.list_models(cfg)["production"]
    endpoint = boto3.client("sagemaker").describe_endpoint(EndpointName=cfg.names["endpoint"])
    return pointer, endpoint["EndpointConfigName"]


def _gate_run(
    cfg,
    gate_machine,
    first_run,
    name: str,
    accuracy: float | None = None,
    evaluation_uri: str | None = None,
):
    state = json.loads(json.dumps(first_run["state"]))
    keep = {k: state[k] for k in ("data_prefix", "manifest", "etl", "training") if k in state}
    keep["commit"] = f"gate-{name}"
    keep["manifest"]["evaluation_uri"] = evaluation_uri or _evaluation_uri(cfg, accuracy, name)
    sfn = boto3.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=gate_machine, name=name, input=json.dumps(keep))[
        "executionArn"
    ]
    return run.follow(cfg, arn)


def _notified(first_run) -> list[str]:
    time.sleep(0.2)
    return first_run["inbox"].show()


def _wait_in_service(cfg, config: str) -> None:
    sagemaker = boto3.client("sagemaker")
    for _ in range(100):
        described = sagemaker.describe_endpoint(EndpointName=cfg.names["endpoint"])
        if described["EndpointStatus"] == "InService" and described["EndpointConfigName"] == config:
            return
        time.sleep(0.1)
    raise AssertionError(f"endpoint never served {config}: {described}")


def test_first_model_is_promoted_through_create_endpoint(cfg, first_run):
    summary = first_run["summary"]
    assert summary.outcome == "promoted"
    assert "CreateEndpoint" in summary.path and "UpdateEndpoint" not in summary.path
    assert registry.list_models(cfg)["production"] == summary.model_version


def test_better_model_is_promoted_through_update_endpoint(cfg, gate_machine, first_run):
    summary = _gate_run(cfg, gate_machine, first_run, "better", accuracy=0.999)
    assert summary.outcome == "promoted"
    assert "UpdateEndpoint" in summary.path
    _wait_in_service(cfg, f"{cfg.names['model_prefix']}-v{summary.model_version}")
    assert _production(cfg)[0] == summary.model_version
    assert any("promoted" in s for s in _notified(first_run))


@pytest.mark.parametrize(("case", "accuracy"), [("equal", 0.999), ("worse", 0.5)])
def test_equal_or_worse_model_is_rejected_and_production_stays(
    cfg, gate_machine, first_run, case, accuracy
):
    before = _production(cfg)
    summary = _gate_run(cfg, gate_machine, first_run, case, accuracy=accuracy)
    assert summary.outcome == "rejected", summary
    assert summary.decision == "reject"
    assert _production(cfg) == before
    assert any(
        s.startswith(f"[{cfg.settings.project.name}/dev] rejected") for s in _notified(first_run)
    )


def _next_model_name(cfg) -> str:
    counter = boto3.client("dynamodb").get_item(
        TableName=cfg.names["table"], Key={"pk": {"S": "COUNTER"}}
    )
    return f"{cfg.names['model_prefix']}-v{int(counter['Item']['last_version']['N']) + 1}"


def _take_model_name(cfg, first_run) -> None:
    boto3.client("sagemaker").create_model(
        ModelName=_next_model_name(cfg),
        ExecutionRoleArn="arn:aws:iam::123456789012:role/squatter",
        PrimaryContainer={
            "Image": "squatter",
            "ModelDataUrl": first_run["state"]["training"]["model_artifact"],
        },
    )


def _take_endpoint_config_name(cfg, first_run) -> None:
    sagemaker = boto3.client("sagemaker")
    current = sagemaker.describe_endpoint(EndpointName=cfg.names["endpoint"])["EndpointConfigName"]
    model = sagemaker.describe_endpoint_config(EndpointConfigName=current)["ProductionVariants"][0][
        "ModelName"
    ]
    sagemaker.create_endpoint_config(
        EndpointConfigName=_next_model_name(cfg),
        ProductionVariants=[
            {
                "VariantName": "x",
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.t2.medium",
            }
        ],
    )


FAILURES = {
    # case: (state expected to fail, how to make it fail)
    "evaluate": ("Evaluate", None),
    "create_model": ("CreateModel", _take_model_name),
    "create_endpoint_config": ("CreateEndpointConfig", _take_endpoint_config_name),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_failure_in_a_task_is_notified_and_production_stays(cfg, gate_machine, first_run, case):
    state, provoke = FAILURES[case]
    if provoke:
        provoke(cfg, first_run)
    before = _production(cfg)
    missing = f"s3://{cfg.names['bucket']}/models/gate-cases/none/output.tar.gz"
    summary = _gate_run(
        cfg,
        gate_machine,
        first_run,
        f"fail-{case}",
        accuracy=0.9999,
        evaluation_uri=missing if state == "Evaluate" else None,
    )
    assert summary.outcome == "failed"
    assert summary.failed_state == state
    assert _production(cfg) == before
    if state != "Evaluate":
        assert "RevertProduction" in summary.path  # the pointer had moved: it was put back
    assert any(f"failed in {state}" in s for s in _notified(first_run))


def test_failure_of_a_lambda_task_is_notified_and_production_stays(cfg, gate_machine, first_run):
    client = boto3.client("lambda")
    name = cfg.names["lambda_promote"]
    env = client.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {**env, "TABLE_NAME": "no-such-table"}}
    )
    before = _production(cfg)
    try:
        summary = _gate_run(cfg, gate_machine, first_run, "fail-register", accuracy=0.9999)
    finally:
        client.update_function_configuration(FunctionName=name, Environment={"Variables": env})
    assert summary.outcome == "failed"
    assert summary.failed_state == "Register"
    assert _production(cfg) == before
    assert any("failed in Register" in s for s in _notified(first_run))
