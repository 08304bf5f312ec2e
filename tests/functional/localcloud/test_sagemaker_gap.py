"""The SageMaker gap: training jobs run, endpoints serve, Step Functions integrates both.

Most tests use tests/fixtures/localcloud/sagemaker/majority.py, a standard-library script that
follows the script-mode contract (train and serve), so they do not depend on src/train; the
slow test at the end runs the real src/train bundle on the sample data.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tarfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from pipeline import package
from pipeline.localcloud import sagemaker_serving, sagemaker_sfn, sagemaker_training

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "localcloud" / "sagemaker"
BUCKET = "sagemaker-gap-bucket"
REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-gap"
CODE_URI = f"s3://{BUCKET}/code/majority.tar.gz"
CHANNELS = ("train", "validation", "test")
METRICS = [
    {"Name": "validation:accuracy", "Regex": "validation:accuracy=([0-9\\.]+)"},
    {"Name": "test:accuracy", "Regex": "test:accuracy=([0-9\\.]+)"},
]
INSTANCES = json.dumps({"instances": [{"mean_radius": 14.1, "mean_texture": 19.3}] * 2})


def tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def untar(body: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}


@pytest.fixture
def aws(localcloud_running: Any) -> dict[str, Any]:
    """Clients of a fresh local cloud; the bucket holds majority.py's code and three channels."""
    clients = {
        name: boto3.client(name)
        for name in ("s3", "sagemaker", "sagemaker-runtime", "logs", "stepfunctions")
    }
    s3 = clients["s3"]
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    code = tar_gz({"majority.py": (FIXTURES / "majority.py").read_bytes()})
    s3.put_object(Bucket=BUCKET, Key="code/majority.tar.gz", Body=code)
    for channel in CHANNELS:
        body = (FIXTURES / "channels" / f"{channel}.csv").read_bytes()
        s3.put_object(Bucket=BUCKET, Key=f"data/{channel}/part-00000.csv", Body=body)
    return clients


def hyperparameters(**extra: str) -> dict[str, str]:
    """As the SageMaker SDK sends them: every value JSON-encoded."""
    values = {
        "label_column": "diagnosis",
        "sagemaker_program": "majority.py",
        "sagemaker_submit_directory": CODE_URI,
        **extra,
    }
    return {key: json.dumps(value) for key, value in values.items()}


def channel_config(prefix: str = "data") -> list[dict[str, Any]]:
    return [
        {
            "ChannelName": name,
            "ContentType": "text/csv",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"s3://{BUCKET}/{prefix}/{name}",
                }
            },
        }
        for name in CHANNELS
    ]


def create_training_job(sagemaker: Any, name: str, hps: dict[str, str], **overrides: Any) -> None:
    request = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": "sagemaker-scikit-learn:1.2-1-cpu-py3",
            "TrainingInputMode": "File",
            "MetricDefinitions": METRICS,
        },
        "RoleArn": ROLE,
        "HyperParameters": hps,
        "InputDataConfig": channel_config(),
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        **overrides,
    }
    sagemaker.create_training_job(**request)


def wait_job(wait: Callable[..., Any], sagemaker: Any, name: str, timeout: float = 30) -> dict:
    return wait(
        lambda: sagemaker.describe_training_job(TrainingJobName=name),
        lambda job: job["TrainingJobStatus"] in sagemaker_training.TERMINAL,
        timeout=timeout,
    )


def wait_endpoint(wait: Callable[..., Any], sagemaker: Any, name: str, timeout: float = 60) -> dict:
    return wait(
        lambda: sagemaker.describe_endpoint(EndpointName=name),
        lambda endpoint: endpoint["EndpointStatus"] not in ("Creating", "Updating"),
        timeout=timeout,
    )


def put_model(aws: dict[str, Any], name: str, files: dict[str, bytes], code_uri: str = CODE_URI):
    """Upload a model.tar.gz holding `files` and create a SageMaker Model serving it."""
    key = f"models/{name}/model.tar.gz"
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=tar_gz(files))
    aws["sagemaker"].create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": "sagemaker-scikit-learn:1.2-1-cpu-py3",
            "ModelDataUrl": f"s3://{BUCKET}/{key}",
            "Environment": {
                "SAGEMAKER_PROGRAM": "majority.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": code_uri,
            },
        },
    )
    aws["sagemaker"].create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": "ml.t2.medium",
                "InitialInstanceCount": 1,
            }
        ],
    )


def majority_model(label: str) -> dict[str, bytes]:
    return {"model.json": json.dumps({"label": label}).encode()}


def predict(runtime: Any, endpoint: str, body: str = INSTANCES) -> dict[str, Any]:
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint, Body=body, ContentType="application/json", Accept="application/json"
    )
    assert answer["ContentType"] == "application/json"
    return json.loads(answer["Body"].read())


def run_state_machine(
    wait: Callable[..., Any], sfn: Any, asl: str, name: str, payload: dict[str, Any]
) -> dict[str, Any]:
    machine = sfn.create_state_machine(
        name=name, definition=(FIXTURES / asl).read_text(), roleArn=ROLE
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload))
    return wait(
        lambda: sfn.describe_execution(executionArn=execution["executionArn"]),
        lambda described: described["status"] != "RUNNING",
        timeout=60,
    )


# ---------------------------------------------------------------- pure contract helpers


def test_hyperparameters_are_json_decoded_and_passed_as_sorted_key_value_args_without_sagemaker_keys():
    decoded = sagemaker_training.decode_hyperparameters(
        {
            "model": '"random_forest"',
            "max_depth": "6",
            "label": "plain",
            "sagemaker_program": '"e.py"',
        }
    )
    assert decoded == {
        "model": "random_forest",
        "max_depth": 6,
        "label": "plain",
        "sagemaker_program": "e.py",
    }
    args = sagemaker_training.cli_args(sagemaker_training.user_hyperparameters(decoded))
    assert args == ["--label", "plain", "--max_depth", "6", "--model", "random_forest"]


def test_final_metrics_take_the_last_match_of_each_definition_and_skip_unmatched_ones():
    lines = ["test:accuracy=0.5", "noise", "test:accuracy=0.75 and more"]
    metrics = sagemaker_training.final_metrics(
        METRICS + [{"Name": "absent", "Regex": "absent=([0-9]+)"}], lines, "now"
    )
    assert metrics == [{"MetricName": "test:accuracy", "Value": 0.75, "Timestamp": "now"}]


def test_failure_reason_prefers_the_failure_file_then_the_last_stderr_line():
    assert sagemaker_training.failure_reason("bad label\n", ["x"], 1) == "AlgorithmError: bad label"
    assert (
        sagemaker_training.failure_reason(None, ["Traceback", "KeyError: 'y'", ""], 1)
        == "AlgorithmError: KeyError: 'y'"
    )
    assert len(sagemaker_training.failure_reason("x" * 5000, [], 1)) == 1024


def test_step_functions_error_names_follow_the_java_sdk_exception_classes():
    modeled = frozenset({"ResourceInUse", "ResourceLimitExceeded"})
    assert sagemaker_sfn.error_name("ResourceInUse", modeled) == "SageMaker.ResourceInUseException"
    assert sagemaker_sfn.error_name("ValidationException", modeled) == (
        "SageMaker.AmazonSageMakerException"
    )


def test_install_patches_what_moto_lacks_and_only_that(localcloud_running):
    # A moto upgrade that adds any of these natively should make this fail and the patch go.
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_factory as factory,
    )

    patched = {
        SageMakerModelBackend: [
            "create_training_job",
            "stop_training_job",
            "create_endpoint",
            "update_endpoint",
            "delete_endpoint",
        ],
        SageMakerResponse: ["stop_training_job", "update_endpoint"],
        SageMakerRuntimeResponse: ["invoke_endpoint"],
    }
    for owner, names in patched.items():
        for name in names:
            assert getattr(getattr(owner, name), "mlops_sagemaker", False), (owner, name)
    wrapped = ("create_training_job", "create_endpoint", "delete_endpoint")
    assert all(hasattr(getattr(SageMakerModelBackend, n), "__wrapped__") for n in wrapped)
    added = [
        SageMakerModelBackend.stop_training_job,
        SageMakerModelBackend.update_endpoint,
        SageMakerResponse.stop_training_job,
        SageMakerResponse.update_endpoint,
    ]
    assert [f.mlops_replaced for f in added] == [None] * 4  # moto 5.2.5 has none of these
    assert SageMakerRuntimeResponse.invoke_endpoint.mlops_replaced is not None
    assert state_task_factory.state_task_service_for.mlops_sagemaker
    assert "sagemaker" in factory._UNSUPPORTED_SERVICE_NAMES
    service = state_task_factory.state_task_service_for(service_name="sagemaker")
    assert isinstance(service, sagemaker_sfn.StateTaskServiceSageMaker)


# ---------------------------------------------------------------- training jobs


def test_training_job_runs_the_script_and_reports_metrics_artifacts_and_logs(aws, localcloud_wait):
    sagemaker, s3 = aws["sagemaker"], aws["s3"]
    create_training_job(sagemaker, "majority-ok", hyperparameters())
    first = sagemaker.describe_training_job(TrainingJobName="majority-ok")
    assert first["TrainingJobStatus"] == "InProgress"

    job = wait_job(localcloud_wait, sagemaker, "majority-ok")

    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    # 5 of 7 training rows are malignant; validation has 2 of 4, test 3 of 5.
    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert metrics == {"validation:accuracy": 0.5, "test:accuracy": 0.6}
    assert job["AlgorithmSpecification"]["MetricDefinitions"] == METRICS
    model_uri = f"s3://{BUCKET}/models/majority-ok/output/model.tar.gz"
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == model_uri
    assert job["TrainingStartTime"] <= job["TrainingEndTime"]
    assert job["TrainingTimeInSeconds"] >= 1
    model = untar(
        s3.get_object(Bucket=BUCKET, Key="models/majority-ok/output/model.tar.gz")["Body"].read()
    )
    assert json.loads(model["model.json"]) == {"label": "malignant"}
    output = untar(
        s3.get_object(Bucket=BUCKET, Key="models/majority-ok/output/output.tar.gz")["Body"].read()
    )
    assert json.loads(output["evaluation.json"]) == {"validation": 0.5, "test": 0.6}
    assert json.loads(output["contract.json"]) == {
        "hps": {"label_column": "diagnosis"},
        "channels": ["test", "train", "validation"],
        "hosts": ["algo-1"],
        "config_files": ["hyperparameters.json", "inputdataconfig.json", "resourceconfig.json"],
        "cwd_files": ["majority.py"],
        "argv": ["--label_column", "diagnosis"],
    }
    streams = aws["logs"].describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs")
    stream = streams["logStreams"][0]["logStreamName"]
    assert stream.startswith("majority-ok/algo-1-")
    events = aws["logs"].get_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream
    )
    assert "test:accuracy=0.600000" in [e["message"] for e in events["events"]]


def test_training_job_failure_reports_failed_with_the_reason_the_script_wrote(aws, localcloud_wait):
    sagemaker = aws["sagemaker"]
    create_training_job(
        sagemaker, "majority-fails", hyperparameters(fail_with="label column is empty")
    )

    job = wait_job(localcloud_wait, sagemaker, "majority-fails")

    assert job["TrainingJobStatus"] == "Failed"
    assert job["SecondaryStatus"] == "Failed"
    assert job["FailureReason"] == "AlgorithmError: label column is empty"
    assert "ModelArtifacts" not in job
    assert (
        aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="models/majority-fails/").get("KeyCount")
        == 0
    )


def test_training_job_that_crashes_reports_the_last_stderr_line(aws, localcloud_wait):
    sagemaker = aws["sagemaker"]
    create_training_job(
        sagemaker, "majority-crashes", hyperparameters(label_column="no_such_column")
    )

    job = wait_job(localcloud_wait, sagemaker, "majority-crashes")

    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"] == "AlgorithmError: KeyError: 'no_such_column'"


def test_training_job_with_an_empty_channel_fails_with_a_client_error(aws, localcloud_wait):
    sagemaker = aws["sagemaker"]
    create_training_job(
        sagemaker, "majority-no-data", hyperparameters(), InputDataConfig=channel_config("nothing")
    )

    job = wait_job(localcloud_wait, sagemaker, "majority-no-data")

    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ClientError: Data download failed:No S3 objects found")
    assert f"s3://{BUCKET}/nothing/train" in job["FailureReason"]


def test_training_job_names_must_be_unique(aws, localcloud_wait):
    sagemaker = aws["sagemaker"]
    create_training_job(sagemaker, "majority-twice", hyperparameters())
    with pytest.raises(ClientError) as raised:
        create_training_job(sagemaker, "majority-twice", hyperparameters())
    assert raised.value.response["Error"]["Code"] == "ResourceInUse"
    wait_job(localcloud_wait, sagemaker, "majority-twice")


def test_stop_training_job_stops_the_script_and_reports_stopped(aws, localcloud_wait):
    sagemaker = aws["sagemaker"]
    create_training_job(sagemaker, "majority-slow", hyperparameters(sleep_seconds=60))
    localcloud_wait(
        lambda: sagemaker.describe_training_job(TrainingJobName="majority-slow"),
        lambda job: job["SecondaryStatus"] == "Training",
    )
    started = time.monotonic()

    sagemaker.stop_training_job(TrainingJobName="majority-slow")
    job = wait_job(localcloud_wait, sagemaker, "majority-slow")

    assert time.monotonic() - started < 10
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "Stopped")
    with pytest.raises(ClientError) as raised:
        sagemaker.stop_training_job(TrainingJobName="majority-slow")
    assert raised.value.response["Error"]["Code"] == "ValidationException"


# ---------------------------------------------------------------- Step Functions


def train_payload(job_name: str, **hps: str) -> dict[str, Any]:
    return {
        "job_name": job_name,
        "hyperparameters": hyperparameters(**hps),
        "channels": {name: f"s3://{BUCKET}/data/{name}" for name in CHANNELS},
        "output_path": f"s3://{BUCKET}/models/",
    }


def test_state_machine_train_sync_waits_for_the_job_and_returns_describe_training_job(
    aws, localcloud_wait
):
    started = time.monotonic()
    execution = run_state_machine(
        localcloud_wait,
        aws["stepfunctions"],
        "train_sync.asl.json",
        "train-ok",
        train_payload("sfn-ok"),
    )
    elapsed = time.monotonic() - started

    assert execution["status"] == "SUCCEEDED", execution
    training = json.loads(execution["output"])["training"]
    assert training["status"] == "Completed"
    assert training["job_name"] == "sfn-ok"
    assert training["model_artifact"] == f"s3://{BUCKET}/models/sfn-ok/output/model.tar.gz"
    assert {m["MetricName"]: m["Value"] for m in training["final_metrics"]} == {
        "validation:accuracy": 0.5,
        "test:accuracy": 0.6,
    }
    assert isinstance(training["created"], int)  # epoch milliseconds, as Step Functions renders
    assert elapsed < 10


def test_state_machine_catches_a_failed_training_job_as_states_task_failed(aws, localcloud_wait):
    payload = train_payload("sfn-fails", fail_with="validation channel is empty")

    execution = run_state_machine(
        localcloud_wait, aws["stepfunctions"], "train_sync.asl.json", "train-fails", payload
    )

    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    assert output["failed"] == {"state": "Train"}
    assert output["error"]["Error"] == "States.TaskFailed"
    cause = json.loads(output["error"]["Cause"])
    assert cause["TrainingJobStatus"] == "Failed"
    assert cause["FailureReason"] == "AlgorithmError: validation channel is empty"


def test_stopping_the_execution_stops_its_training_job(aws, localcloud_wait):
    sfn, sagemaker = aws["stepfunctions"], aws["sagemaker"]
    machine = sfn.create_state_machine(
        name="train-aborted",
        definition=(FIXTURES / "train_sync.asl.json").read_text(),
        roleArn=ROLE,
    )["stateMachineArn"]
    payload = train_payload("sfn-aborted", sleep_seconds=60)
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload))
    localcloud_wait(
        lambda: [
            j["TrainingJobStatus"] for j in sagemaker.list_training_jobs()["TrainingJobSummaries"]
        ],
        lambda statuses: statuses == ["InProgress"],
    )

    sfn.stop_execution(executionArn=execution["executionArn"])

    job = wait_job(localcloud_wait, sagemaker, "sfn-aborted", timeout=10)
    assert job["TrainingJobStatus"] == "Stopped"


@pytest.mark.parametrize(
    "resource",
    [
        "arn:aws:states:::sagemaker:createModel.sync",
        "arn:aws:states:::sagemaker:createTrainingJob.waitForTaskToken",
        "arn:aws:states:::sagemaker:createProcessingJob",
    ],
)
def test_definitions_with_unsupported_sagemaker_integrations_are_rejected(aws, resource):
    task = {"Type": "Task", "Resource": resource, "Parameters": {"ModelName": "m"}, "End": True}
    definition = json.dumps({"StartAt": "Task", "States": {"Task": task}})
    with pytest.raises(ClientError, match="is not supported"):
        aws["stepfunctions"].create_state_machine(name="bad", definition=definition, roleArn=ROLE)


def test_state_machine_names_sagemaker_api_errors_as_aws_does(aws, localcloud_wait):
    aws["s3"].put_object(
        Bucket=BUCKET, Key="models/m/model.tar.gz", Body=tar_gz(majority_model("x"))
    )
    payload = {
        "model_name": "sfn-model",
        "variant_model_name": "no-such-model",
        "config_name": "sfn-config",
        "endpoint_name": "sfn-endpoint",
        "model_artifact": f"s3://{BUCKET}/models/m/model.tar.gz",
        "program": "majority.py",
        "code_uri": CODE_URI,
        "update": False,
    }

    execution = run_state_machine(
        localcloud_wait, aws["stepfunctions"], "deploy.asl.json", "deploy-bad", payload
    )

    assert execution["status"] == "FAILED"
    assert execution["error"] == "SageMaker.AmazonSageMakerException"
    assert "Could not find model" in execution["cause"]
    assert "Error Code: ValidationException" in execution["cause"]


def test_state_machine_deploys_a_model_that_the_endpoint_then_serves(aws, localcloud_wait):
    artifact = "models/sfn-deployed/model.tar.gz"
    aws["s3"].put_object(Bucket=BUCKET, Key=artifact, Body=tar_gz(majority_model("benign")))
    payload = {
        "model_name": "sfn-deployed",
        "variant_model_name": "sfn-deployed",
        "config_name": "sfn-deployed",
        "endpoint_name": "sfn-endpoint",
        "model_artifact": f"s3://{BUCKET}/{artifact}",
        "program": "majority.py",
        "code_uri": CODE_URI,
        "update": False,
    }

    execution = run_state_machine(
        localcloud_wait, aws["stepfunctions"], "deploy.asl.json", "deploy-ok", payload
    )

    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    assert output["model"]["ModelArn"].endswith(":model/sfn-deployed")
    assert output["endpoint"]["EndpointArn"].endswith(":endpoint/sfn-endpoint")
    endpoint = wait_endpoint(localcloud_wait, aws["sagemaker"], "sfn-endpoint")
    assert endpoint["EndpointStatus"] == "InService", endpoint.get("FailureReason")
    started = time.monotonic()
    assert predict(aws["sagemaker-runtime"], "sfn-endpoint") == {
        "predictions": ["benign", "benign"]
    }
    assert time.monotonic() - started < 1


def test_state_machine_describes_endpoints_through_the_aws_sdk_integration(aws, localcloud_wait):
    # The state machine's endpoint wait reads EndpointStatus this way (no optimized integration).
    put_model(aws, "model-a", majority_model("malignant"))
    deploy(aws, localcloud_wait, "triage", "model-a")
    describe = {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint",
        "Parameters": {"EndpointName.$": "$.name"},
        "ResultPath": "$.endpoint",
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}],
        "End": True,
    }
    definition = {"StartAt": "Describe", "States": {"Describe": describe, "Caught": {
        "Type": "Pass", "End": True
    }}}  # fmt: skip
    sfn = aws["stepfunctions"]
    machine = sfn.create_state_machine(
        name="describe-endpoint", definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]

    def run(name: str) -> dict[str, Any]:
        arn = sfn.start_execution(
            stateMachineArn=machine, name=name, input=json.dumps({"name": name})
        )
        described = localcloud_wait(
            lambda: sfn.describe_execution(executionArn=arn["executionArn"]),
            lambda d: d["status"] != "RUNNING",
        )
        assert described["status"] == "SUCCEEDED", described
        return json.loads(described["output"])

    endpoint = run("triage")["endpoint"]
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == "model-a"
    # Timestamps as aws-sdk results render them (moto's datetimes broke DescribeExecution).
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", endpoint["CreationTime"])
    error = run("no-such-endpoint")["error"]
    assert error["Error"] == "SageMaker.SageMakerException"  # unmodeled: ValidationException
    assert "Could not find endpoint" in error["Cause"] and "Service: SageMaker" in error["Cause"]


# ---------------------------------------------------------------- endpoints


def deploy(aws: dict[str, Any], wait: Callable[..., Any], endpoint: str, config: str) -> dict:
    aws["sagemaker"].create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    return wait_endpoint(wait, aws["sagemaker"], endpoint)


def test_endpoint_is_creating_then_in_service_and_serves_its_model(aws, localcloud_wait):
    put_model(aws, "model-a", majority_model("malignant"))
    aws["sagemaker"].create_endpoint(EndpointName="triage", EndpointConfigName="model-a")
    assert aws["sagemaker"].describe_endpoint(EndpointName="triage")["EndpointStatus"] == "Creating"

    endpoint = wait_endpoint(localcloud_wait, aws["sagemaker"], "triage")

    assert endpoint["EndpointStatus"] == "InService"
    answer = aws["sagemaker-runtime"].invoke_endpoint(
        EndpointName="triage", Body=INSTANCES, ContentType="application/json"
    )
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert json.loads(answer["Body"].read()) == {"predictions": ["malignant", "malignant"]}


def test_update_endpoint_switches_to_the_new_configs_model(aws, localcloud_wait):
    put_model(aws, "model-a", majority_model("malignant"))
    put_model(aws, "model-b", majority_model("benign"))
    deploy(aws, localcloud_wait, "triage", "model-a")
    assert predict(aws["sagemaker-runtime"], "triage")["predictions"][0] == "malignant"

    aws["sagemaker"].update_endpoint(EndpointName="triage", EndpointConfigName="model-b")
    assert aws["sagemaker"].describe_endpoint(EndpointName="triage")["EndpointStatus"] == "Updating"
    endpoint = wait_endpoint(localcloud_wait, aws["sagemaker"], "triage")

    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == "model-b"
    assert "FailureReason" not in endpoint
    assert predict(aws["sagemaker-runtime"], "triage")["predictions"][0] == "benign"


def test_failed_update_keeps_the_old_model_serving(aws, localcloud_wait):
    put_model(aws, "model-a", majority_model("malignant"))
    put_model(aws, "model-broken", {"README.txt": b"model.json is missing"})
    deploy(aws, localcloud_wait, "triage", "model-a")

    aws["sagemaker"].update_endpoint(EndpointName="triage", EndpointConfigName="model-broken")
    endpoint = wait_endpoint(localcloud_wait, aws["sagemaker"], "triage")

    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == "model-a"
    assert "did not pass the ping health check" in endpoint["FailureReason"]
    assert "model.json" in endpoint["FailureReason"]  # model_fn's FileNotFoundError
    assert predict(aws["sagemaker-runtime"], "triage")["predictions"][0] == "malignant"


def test_endpoint_whose_model_cannot_load_is_failed_with_a_reason(aws, localcloud_wait):
    put_model(aws, "model-broken", {"README.txt": b"model.json is missing"})

    endpoint = deploy(aws, localcloud_wait, "broken", "model-broken")

    assert endpoint["EndpointStatus"] == "Failed"
    assert "FileNotFoundError" in endpoint["FailureReason"]
    with pytest.raises(ClientError) as raised:
        predict(aws["sagemaker-runtime"], "broken")
    assert raised.value.response["Error"]["Code"] == "ValidationError"


def test_model_errors_reach_the_caller_as_model_error(aws, localcloud_wait):
    put_model(aws, "model-a", majority_model("malignant"))
    deploy(aws, localcloud_wait, "triage", "model-a")

    with pytest.raises(ClientError) as raised:
        aws["sagemaker-runtime"].invoke_endpoint(
            EndpointName="triage", Body="1,2", ContentType="text/csv"
        )

    error = raised.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 500
    assert "content type text/csv is not supported" in error["OriginalMessage"]
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424


def test_endpoint_calls_with_unknown_names_are_validation_errors(aws, localcloud_wait):
    put_model(aws, "model-a", majority_model("malignant"))
    deploy(aws, localcloud_wait, "triage", "model-a")
    sagemaker = aws["sagemaker"]

    cases = [
        lambda: sagemaker.update_endpoint(EndpointName="absent", EndpointConfigName="model-a"),
        lambda: sagemaker.update_endpoint(EndpointName="triage", EndpointConfigName="absent"),
        lambda: sagemaker.create_endpoint(EndpointName="triage", EndpointConfigName="model-a"),
        lambda: aws["sagemaker-runtime"].invoke_endpoint(EndpointName="absent", Body=INSTANCES),
    ]
    codes = []
    for call in cases:
        with pytest.raises(ClientError) as raised:
            call()
        codes.append(raised.value.response["Error"]["Code"])

    assert codes == ["ValidationException"] * 3 + ["ValidationError"]


def test_deleting_an_endpoint_stops_its_model_server(aws, localcloud_wait):
    put_model(aws, "model-a", majority_model("benign"))
    deploy(aws, localcloud_wait, "triage", "model-a")
    server = sagemaker_serving.bound(("123456789012", REGION, "triage"))
    assert server is not None and server.running

    aws["sagemaker"].delete_endpoint(EndpointName="triage")

    assert server.process.poll() is not None
    assert sagemaker_serving.bound(("123456789012", REGION, "triage")) is None


def test_model_servers_stop_with_the_local_cloud(localcloud_fake_aws, localcloud_wait):
    from pipeline.localcloud.server import LocalCloud

    with LocalCloud() as cloud:
        try:
            clients = {n: boto3.client(n) for n in ("s3", "sagemaker", "sagemaker-runtime")}
            clients["s3"].create_bucket(
                Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
            code = tar_gz({"majority.py": (FIXTURES / "majority.py").read_bytes()})
            clients["s3"].put_object(Bucket=BUCKET, Key="code/majority.tar.gz", Body=code)
            put_model(clients, "model-a", majority_model("benign"))
            deploy(clients, localcloud_wait, "triage", "model-a")
            process = sagemaker_serving.bound(("123456789012", REGION, "triage")).process
            assert process.poll() is None
        finally:  # moto's backends outlive the server: leave them empty for the next test
            reset = urllib.request.Request(f"{cloud.url}/moto-api/reset", data=b"", method="POST")
            urllib.request.urlopen(reset, timeout=10).close()

    assert process.poll() is not None


# ---------------------------------------------------------------- the real training code


def _sample_channels() -> dict[str, str]:
    """data/sample/drop-002 as the ETL would split it: numeric features + label, clean rows."""
    with (REPO / "data" / "sample" / "drop-002" / "data.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = [c for c in rows[0] if c not in ("id", "clinic")]
    seen, splits = set(), {name: [] for name in CHANNELS}
    for n, row in enumerate(rows):
        values = tuple(row[c] for c in columns)
        if "" in values or values in seen:
            continue
        seen.add(values)
        splits["test" if n % 5 == 0 else "validation" if n % 5 == 1 else "train"].append(values)
    texts = {}
    for name, split in splits.items():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(split)
        texts[name] = buf.getvalue()
    return texts


def _real_states(code_uri: str) -> str:
    """The deployed ASL's Train -> CreateModel -> CreateEndpointConfig -> CreateEndpoint states.

    Taken from pipeline/statemachine.dev.asl.json with the stack's substitutions applied, chained
    directly (their Catch branches lead into the rest of the workflow, left out here).
    """
    definition = json.loads((REPO / "pipeline" / "statemachine.dev.asl.json").read_text())
    chain = ["Train", "CreateModel", "CreateEndpointConfig", "CreateEndpoint"]
    states = {}
    for name, following in zip(chain, chain[1:] + [None], strict=True):
        state = dict(definition["States"][name])
        state.pop("Catch", None)
        state.pop("Next", None)
        state.update({"Next": following} if following else {"End": True})
        states[name] = state
    text = json.dumps({"StartAt": chain[0], "States": states})
    return text.replace("${TrainingCodeUri}", code_uri).replace("${SageMakerRoleArn}", ROLE)


@pytest.mark.slow
def test_real_workflow_states_train_the_real_bundle_on_sample_data_and_serve_it(
    aws, localcloud_wait
):
    bundle = package.training_bundle()
    s3, sagemaker = aws["s3"], aws["sagemaker"]
    data_bucket = "tumor-triage-dev-data"  # the Train state's S3OutputPath names it
    s3.create_bucket(Bucket=data_bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=data_bucket, Key=bundle.key, Body=bundle.body)
    code_uri = f"s3://{data_bucket}/{bundle.key}"
    for name, text in _sample_channels().items():
        s3.put_object(
            Bucket=data_bucket, Key=f"processed/v1/{name}/part-00000.csv", Body=text.encode()
        )
    machine = aws["stepfunctions"].create_state_machine(
        name="real-states", definition=_real_states(code_uri), roleArn=ROLE
    )["stateMachineArn"]
    payload = {
        "manifest": {
            "training_job_name": "tumor-triage-dev-v1",
            "channels": {n: f"s3://{data_bucket}/processed/v1/{n}/" for n in CHANNELS},
        },
        "registry": {"model_name": "tumor-triage-dev-v1"},
    }

    started = time.monotonic()
    execution = aws["stepfunctions"].start_execution(
        stateMachineArn=machine, input=json.dumps(payload)
    )
    execution = localcloud_wait(
        lambda: aws["stepfunctions"].describe_execution(executionArn=execution["executionArn"]),
        lambda described: described["status"] != "RUNNING",
        timeout=120,
    )
    elapsed = time.monotonic() - started

    assert execution["status"] == "SUCCEEDED", execution
    training = json.loads(execution["output"])["training"]
    metrics = {m["MetricName"]: m["Value"] for m in training["final_metrics"]}
    assert set(metrics) == {
        f"{split}:{name}"
        for split in ("validation", "test")
        for name in ("accuracy", "f1_macro", "precision_macro", "recall_macro")
    }
    assert metrics["test:accuracy"] > 0.8
    assert training["model_artifact"] == (
        f"s3://{data_bucket}/models/tumor-triage-dev-v1/output/model.tar.gz"
    )
    model = untar(
        s3.get_object(Bucket=data_bucket, Key=training["model_artifact"].split("/", 3)[3])[
            "Body"
        ].read()
    )
    assert "model.joblib" in model
    assert elapsed < 15
    endpoint = wait_endpoint(localcloud_wait, sagemaker, "tumor-triage-dev")
    assert endpoint["EndpointStatus"] == "InService", endpoint.get("FailureReason")
    header, first = _sample_channels()["test"].splitlines()[:2]
    features = ",".join(
        v for c, v in zip(header.split(","), first.split(","), strict=True) if c != "diagnosis"
    )
    answer = aws["sagemaker-runtime"].invoke_endpoint(
        EndpointName="tumor-triage-dev", Body=features, ContentType="text/csv"
    )
    predictions = json.loads(answer["Body"].read())["predictions"]
    assert len(predictions) == 1
    assert predictions[0]["label"] in ("benign", "malignant")
    assert set(predictions[0]["probabilities"]) == {"benign", "malignant"}


def test_a_model_or_endpoint_config_name_cannot_be_taken_twice(localcloud_running):
    sagemaker = boto3.client("sagemaker")
    container = {"Image": "image", "ModelDataUrl": "s3://bucket/model.tar.gz"}
    role = "arn:aws:iam::123456789012:role/r"
    sagemaker.create_model(ModelName="twice", ExecutionRoleArn=role, PrimaryContainer=container)
    with pytest.raises(ClientError, match=r'Cannot create already existing model ".*:model/twice"'):
        sagemaker.create_model(ModelName="twice", ExecutionRoleArn=role, PrimaryContainer=container)
    variants = [
        {
            "VariantName": "v",
            "ModelName": "twice",
            "InitialInstanceCount": 1,
            "InstanceType": "ml.t2.medium",
        }
    ]
    sagemaker.create_endpoint_config(EndpointConfigName="twice", ProductionVariants=variants)
    with pytest.raises(
        ClientError,
        match=r'Cannot create already existing endpoint configuration ".*:endpoint-config/twice"',
    ):
        sagemaker.create_endpoint_config(EndpointConfigName="twice", ProductionVariants=variants)
