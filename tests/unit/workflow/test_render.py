from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline import workflow
from pipeline.config import load_config

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def dev():
    return load_config("dev", REPO / "config", environ={})


@pytest.fixture(scope="module")
def rendered(dev) -> str:
    return workflow.render(dev)


def test_committed_asl_is_current_for_every_environment():
    for overlay in sorted((REPO / "config" / "env").glob("*.yaml")):
        cfg = load_config(overlay.stem, REPO / "config", environ={})
        assert workflow.check(cfg) == "", f"run `mlops render`: {overlay.stem} is stale"


def test_render_is_byte_identical_across_calls(dev, rendered):
    assert workflow.render(dev) == rendered
    assert rendered.endswith("\n")
    assert rendered == json.dumps(json.loads(rendered), indent=2, sort_keys=True) + "\n"


def test_render_contains_no_timestamps_or_generated_job_names(rendered):
    assert not re.search(r"20\d\d-\d\d-\d\d-\d\d-\d\d-\d\d", rendered)
    assert "sagemaker_job_name" not in rendered


def test_config_change_shows_in_the_diff():
    cfg = load_config(
        "dev", REPO / "config", environ={"MLOPS__TRAINING__INSTANCE_TYPE": "ml.m5.4xlarge"}
    )
    diff = workflow.check(cfg)
    added = [line for line in diff.splitlines() if line.startswith("+") and "InstanceType" in line]
    assert [line.replace(" ", "") for line in added] == ['+"InstanceType":"ml.m5.4xlarge",']
    assert diff.startswith("--- statemachine.dev.asl.json (committed)")


def test_per_execution_values_come_from_the_input(rendered):
    states = json.loads(rendered)["States"]
    train = states["Train"]["Parameters"]
    assert train["TrainingJobName.$"] == "$.manifest.training_job_name"
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri.$"]
        for c in train["InputDataConfig"]
    }
    assert channels == {c: f"$.manifest.channels.{c}" for c in ("train", "validation", "test")}
    assert states["ETL"]["Parameters"]["Arguments"]["--input.$"] == "$.manifest.input_uri"
    assert "raw/drop" not in rendered


def test_training_uses_config_hyperparameters_and_region_image(dev, rendered):
    train = json.loads(rendered)["States"]["Train"]["Parameters"]
    hps = {k: json.loads(v) for k, v in train["HyperParameters"].items()}
    for key, value in dev.settings.training.hyperparameters.items():
        assert hps[key] == value
    assert hps["label_column"] == dev.settings.data.label_column
    assert hps["sagemaker_submit_directory"] == "${TrainingCodeUri}"
    image = train["AlgorithmSpecification"]["TrainingImage"]
    assert dev.settings.project.region in image
    assert image.endswith(
        f"sagemaker-scikit-learn:{dev.settings.training.framework_version}-cpu-py3"
    )
    names = {m["Name"] for m in train["AlgorithmSpecification"]["MetricDefinitions"]}
    assert f"test:{dev.settings.gate.metric}" in names


def test_only_known_placeholders_are_used(rendered):
    assert set(re.findall(r"\$\{(\w+)\}", rendered)) <= set(workflow.SUBSTITUTIONS)


def test_rendering_does_not_change_the_root_logger(dev):
    import logging

    root = logging.getLogger()
    before = root.level
    workflow.render(dev)
    assert root.level == before


def test_render_does_not_depend_on_the_callers_aws_region(dev, rendered, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "cn-north-1")
    assert workflow.render(dev) == rendered


def test_metric_definitions_match_what_the_training_entry_prints(dev):
    from train.entry import metric_definitions as entry_definitions

    assert workflow.metric_definitions(dev) == entry_definitions(
        list(dev.settings.evaluation.metrics)
    )


def test_endpoint_wait_polls_cover_the_timeout_with_growing_waits():
    def cfg(poll: int, timeout: int):
        environ = {
            "MLOPS__ENDPOINT__WAIT__POLL_SECONDS": str(poll),
            "MLOPS__ENDPOINT__WAIT__TIMEOUT_SECONDS": str(timeout),
        }
        return load_config("dev", REPO / "config", environ=environ)

    for poll, timeout in [(1, 3600), (30, 1800), (1, 1), (5, 16)]:
        n = workflow.endpoint_wait_polls(cfg(poll, timeout))
        waited = poll * n * (n + 1) // 2  # the n-th wait is n * poll seconds
        assert waited >= timeout > waited - n * poll, (poll, timeout, n)


def test_promotion_waits_for_the_endpoint_to_serve_the_runs_config(dev, rendered):
    states = json.loads(rendered)["States"]
    for call in ("CreateEndpoint", "UpdateEndpoint"):
        assert states[call]["Next"] == "PollEndpointAgain"
        assert states[call]["ResultSelector"]["action"] == call
        assert states[call]["ResultPath"] == "$.endpoint_call"
    assert states["PollEndpointAgain"]["Next"] == "WaitForEndpoint"
    assert states["WaitForEndpoint"]["Next"] == "DescribeEndpoint"
    assert states["DescribeEndpoint"]["Resource"] == workflow.DESCRIBE_ENDPOINT
    assert states["DescribeEndpoint"]["Next"] == "EndpointChanging"
    (changing,) = states["EndpointChanging"]["Choices"]
    assert {rule["StringEquals"] for rule in changing["Or"]} == set(workflow.ENDPOINT_IN_PROGRESS)
    assert changing["Next"] == "EndpointWaitLeft"
    (again,) = states["EndpointWaitLeft"]["Choices"]
    assert again == {
        "Variable": "$.endpoint.polls",
        "NumericLessThan": workflow.endpoint_wait_polls(dev),
        "Next": "PollEndpointAgain",
    }
    assert states["EndpointWaitLeft"]["Default"] == "EndpointWaitTimedOut"
    # Settled: the pointer is read again before anything is announced.
    assert states["EndpointChanging"]["Default"] == "ConfirmProduction"
    assert states["ConfirmProduction"]["Parameters"]["ConsistentRead"] is True
    assert states["ConfirmProduction"]["Next"] == "EndpointServes"
    superseded, served = states["EndpointServes"]["Choices"]
    assert superseded["Next"] == "Superseded"
    assert served["Next"] == "NotifyPromoted"
    assert {"StringEqualsPath": "$.registry.model_name", "Variable": (
        "$.endpoint_status.EndpointConfigName"
    )} in served["And"]  # fmt: skip
    # Any other status (Failed, OutOfService, InService with the old config) is a failure.
    assert states["EndpointServes"]["Default"] == "EndpointNotServing"
    for failure in ("EndpointNotServing", "EndpointWaitTimedOut"):
        assert states[failure]["ResultPath"] == "$.error"
        assert states[failure]["Next"] == "EndpointFailed"
    assert states["EndpointFailed"]["Parameters"] == {"state.$": "$.endpoint_call.action"}
    assert states["EndpointFailed"]["Next"] == "RevertProduction"
    assert states["DescribeEndpoint failed"]["Next"] == "RevertProduction"


def _owned(rule: dict) -> bool:
    return {"Variable": workflow.POINTER_MODEL, "StringEqualsPath": workflow.RUN_MODEL} in rule.get(
        "And", []
    )


def test_every_endpoint_call_follows_a_fresh_read_of_the_pointer(rendered):
    states = json.loads(rendered)["States"]
    assert states["CreateEndpointConfig"]["Next"] == "StartEndpointWait"
    assert states["StartEndpointWait"]["Result"] == {"polls": 0, "wait_seconds": 0}
    assert states["StartEndpointWait"]["Next"] == "CheckProduction"
    check = states["CheckProduction"]
    assert check["Resource"] == "arn:aws:states:::dynamodb:getItem"
    assert check["Parameters"]["Key"] == {"pk": {"S": "PRODUCTION"}}
    assert check["Parameters"]["ConsistentRead"] is True
    assert check["ResultPath"] == workflow.POINTER_PATH
    (superseded,) = states["StillProduction"]["Choices"]
    assert _owned(superseded["Not"]) and superseded["Next"] == "Superseded"
    assert states["StillProduction"]["Default"] == "FindEndpoint"
    # SageMaker, not the registry, says whether to create or update the endpoint.
    assert states["FindEndpoint"]["Next"] == "UpdateEndpoint"
    missing = states["FindEndpoint refused"]["Choices"][0]
    assert missing == {
        "Variable": "$.error.Cause",
        "StringMatches": workflow.ENDPOINT_MISSING,
        "Next": "CreateEndpoint",
    }
    assert states["Superseded"]["ResultPath"] == "$.promotion"
    assert states["Superseded"]["Parameters"]["promoted"] is False
    assert states["Superseded"]["Next"] == "NotifyRejected"


def test_a_busy_endpoint_is_waited_out_and_the_pointer_read_again(dev, rendered):
    states = json.loads(rendered)["States"]
    (busy,) = states["UpdateEndpoint refused"]["Choices"]
    patterns = {rule["StringMatches"] for rule in busy["Or"]}
    assert "*in-progress*" in patterns
    assert busy["Next"] == "EndpointBusy"
    assert states["UpdateEndpoint refused"]["Default"] == "UpdateEndpoint failed"
    # Never retried in place: a blind retry could land after a better run's update.
    for call in ("FindEndpoint", "CreateEndpoint", "UpdateEndpoint"):
        (retry,) = states[call]["Retry"]
        assert retry["ErrorEquals"] == workflow.ENDPOINT_CALL_RETRY
    (left,) = states["EndpointBusy"]["Choices"]
    assert left["NumericLessThan"] == workflow.endpoint_wait_polls(dev)
    assert left["Next"] == "RetryEndpointCall"
    assert states["RetryEndpointCall"]["Next"] == "WaitToRetry"
    assert states["WaitToRetry"]["SecondsPath"] == "$.endpoint.wait_seconds"
    assert states["WaitToRetry"]["Next"] == "CheckProduction"
    assert states["EndpointBusy"]["Default"] == "EndpointBusyTimedOut"
    assert states["EndpointBusyTimedOut"]["Next"] == "UpdateEndpoint failed"


def test_endpoint_wait_follows_the_config():
    cfg = load_config("dev", REPO / "config", environ={"MLOPS__ENDPOINT__WAIT__POLL_SECONDS": "30"})
    states = json.loads(workflow.render(cfg))["States"]
    for counter in ("PollEndpointAgain", "RetryEndpointCall"):
        step = states[counter]["Parameters"]["wait_seconds.$"]
        assert step == "States.MathAdd($.endpoint.wait_seconds, 30)"
