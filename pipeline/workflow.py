"""The retraining state machine, authored with the Step Functions Data Science SDK.

    Manifest -> ETL (Glue .sync) -> Train (SageMaker .sync) -> GetProduction (DynamoDB)
    -> Evaluate -> Register -> Gate
       Gate: promote -> ClaimProduction -> CreateModel -> CreateEndpointConfig
                        -> CheckProduction (still ours?) -> FindEndpoint -> Create/UpdateEndpoint
                        -> WaitForEndpoint -> DescribeEndpoint -> ConfirmProduction
                        -> EndpointServes? -> NotifyPromoted -> Promoted (Succeed)
             reject  -> NotifyRejected -> Rejected (Succeed)
    A run whose claim another (better) run took meanwhile ends through Superseded ->
    NotifyRejected; an endpoint busy with another run's update is waited out and tried again.
    Any failing Task -> "<State> failed" (Pass, records the state) -> NotifyFailure -> Failed (Fail);
    a failure after the production pointer moved first (including an endpoint that never serves
    the new model) reverts the pointer.

`render(cfg)` returns the ASL text committed as pipeline/statemachine.asl.json. It is
pure and deterministic: sorted keys, no timestamps, the SDK's generated job name
pinned. Account-specific values (ARNs, the content-addressed code URI) are
`${Name}` placeholders filled in by CloudFormation's DefinitionSubstitutions at
deploy time (see SUBSTITUTIONS), so one rendered file serves every account.

The `stepfunctions` and `sagemaker` SDKs are deploy-time only and have known quirks
(stepfunctions sets the root logger to ERROR on import and uses pkg_resources;
sagemaker prints config INFO lines and a v2 deprecation warning). They are
imported only inside `_sdk()`, which contains those side effects; nothing at
runtime imports this module.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pipeline.config import ProjectConfig


def asl_path(cfg: ProjectConfig) -> Path:
    """The committed definition of one environment (overlays may change what it renders)."""
    return cfg.root / "pipeline" / f"statemachine.{cfg.env}.asl.json"


# DefinitionSubstitutions the deploy must provide: placeholder -> what it is.
SUBSTITUTIONS = {
    "ManifestFunctionArn": "ARN of the manifest Lambda (src/lambdas/manifest.py)",
    "EvaluateFunctionArn": "ARN of the evaluate Lambda (src/lambdas/evaluate.py)",
    "PromoteFunctionArn": "ARN of the promote Lambda (src/lambdas/promote.py)",
    "NotifyFunctionArn": "ARN of the notify Lambda (src/lambdas/notify.py)",
    "SageMakerRoleArn": "execution role of training jobs and models",
    "TrainingCodeUri": "s3:// URI of the content-addressed src/train tarball",
}
TRAINING_PROGRAM = "entry.py"
CONTENT_TYPES = {"csv": "text/csv", "parquet": "application/x-parquet"}
GATE_VARIABLE = "$.gate.promote"

# Transient errors worth retrying, per service (names as Step Functions reports them).
LAMBDA_TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "TransientError",  # raised by our own handlers for throttling-like AWS errors
]
GLUE_TRANSIENT = ["Glue.ConcurrentRunsExceededException", "Glue.ThrottlingException"]
SAGEMAKER_TRANSIENT = ["SageMaker.AmazonSageMakerException", "ThrottlingException"]
# DescribeEndpoint goes through the AWS SDK integration (Step Functions optimizes no SageMaker
# Describe* call), whose unmodeled errors, throttling included, are SageMaker.SageMakerException.
SAGEMAKER_SDK_TRANSIENT = ["SageMaker.SageMakerException", "ThrottlingException"]
DESCRIBE_ENDPOINT = "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint"
# EndpointStatus values of a transition still under way (DescribeEndpoint's enum); any other
# status than these and InService ends the wait as a failure.
ENDPOINT_IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack")
DYNAMODB_TRANSIENT = [
    "DynamoDB.ProvisionedThroughputExceededException",
    "DynamoDB.InternalServerErrorException",
    "DynamoDB.ThrottlingException",
]
# The PRODUCTION pointer as CheckProduction / ConfirmProduction read it (DynamoDB JSON). A model
# name is unique per registered version, so "the pointer names this run's model" is one compare.
POINTER_PATH = "$.pointer"
POINTER_MODEL = "$.pointer.Item.model_name.S"
RUN_MODEL = "$.registry.model_name"
# FindEndpoint and Create/UpdateEndpoint are never retried in place: a retry some seconds later
# could land a superseded run's update after the winner's. What SageMaker refuses because the
# endpoint is changing, or throttles, goes round EndpointBusy and CheckProduction instead; Step
# Functions reports all of it as one error name, so the Cause tells them apart.
ENDPOINT_CALL_RETRY = ["ThrottlingException"]
THROTTLED = ("*ThrottlingException*", "*Rate exceeded*")
ENDPOINT_BUSY = {
    "FindEndpoint": THROTTLED,
    # Another run created it since FindEndpoint looked: look again (and update it).
    "CreateEndpoint": ("*Cannot create already existing endpoint*", *THROTTLED),
    # "Cannot update in-progress endpoint": another run's (or an operator's) update is under way.
    "UpdateEndpoint": ("*in-progress*", *THROTTLED),
}
ENDPOINT_MISSING = "*Could not find endpoint*"


def _sdk() -> SimpleNamespace:
    """Import the SDKs while containing their import-time side effects."""
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    root = logging.getLogger()
    level = root.level
    sm_config_logger = logging.getLogger("sagemaker.config")
    sm_config_logger.setLevel(logging.WARNING)  # "Not applying SDK defaults" INFO lines
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import stepfunctions.steps as steps
            from sagemaker import image_uris
            from sagemaker.sklearn import SKLearn
            from stepfunctions.inputs import ExecutionInput
    finally:
        root.setLevel(level)
    return SimpleNamespace(
        steps=steps, SKLearn=SKLearn, image_uris=image_uris, ExecutionInput=ExecutionInput
    )


def _ref(name: str) -> str:
    return "${" + name + "}"


# Extra fields the SDK cannot express (stepfunctions 2.3.0 predates ResultSelector),
# added to the rendered states by name.
RESULT_SELECTORS: dict[str, dict[str, str]] = {
    "ETL": {"job_run_id.$": "$.Id", "state.$": "$.JobRunState"},
    "Train": {
        "job_name.$": "$.TrainingJobName",
        "model_artifact.$": "$.ModelArtifacts.S3ModelArtifacts",
        "final_metrics.$": "$.FinalMetricDataList",
    },
}


def endpoint_wait_polls(cfg: ProjectConfig) -> int:
    """How many DescribeEndpoint polls fit the wait timeout: the n-th wait is n * poll_seconds."""
    wait = cfg.settings.endpoint.wait
    polls, waited = 0, 0
    while waited < wait.timeout_seconds:
        polls += 1
        waited += polls * wait.poll_seconds
    return polls


def training_hyperparameters(cfg: ProjectConfig) -> dict[str, Any]:
    """What the training entry receives as --key value (the SDK JSON-encodes each value)."""
    s = cfg.settings
    hps: dict[str, Any] = dict(s.training.hyperparameters)
    hps["label_column"] = s.data.label_column
    hps["metrics"] = ",".join(s.evaluation.metrics)
    return hps


def metric_definitions(cfg: ProjectConfig) -> list[dict[str, str]]:
    """Regexes SageMaker applies to the training log (lines printed by src/train/entry.py)."""
    return [
        {"Name": f"{split}:{metric}", "Regex": f"{split}:{metric}=([0-9\\.]+)"}
        for split in ("validation", "test")
        for metric in cfg.settings.evaluation.metrics
    ]


def _image(cfg: ProjectConfig, sdk: SimpleNamespace, scope: str) -> str:
    """The scikit-learn container image for the configured region and version."""
    s = cfg.settings
    return sdk.image_uris.retrieve(
        "sklearn",
        region=s.project.region,
        version=s.training.framework_version,
        instance_type=s.training.instance_type if scope == "training" else s.endpoint.instance_type,
        image_scope=scope,
    )


def _estimator(cfg: ProjectConfig, sdk: SimpleNamespace) -> Any:
    s = cfg.settings
    return sdk.SKLearn(
        entry_point=TRAINING_PROGRAM,
        # An S3 source_dir keeps the SDK from packaging and uploading code while
        # rendering; _pin_training swaps in the ${TrainingCodeUri} placeholder.
        source_dir=cfg.data_uris["code"] + "train.tar.gz",
        framework_version=s.training.framework_version,
        image_uri=_image(cfg, sdk, "training"),
        role=_ref("SageMakerRoleArn"),
        instance_type=s.training.instance_type,
        instance_count=s.training.instance_count,
        max_run=s.training.max_runtime_seconds,
        output_path=cfg.data_uris["models"],
        metric_definitions=metric_definitions(cfg),
        hyperparameters=training_hyperparameters(cfg),
        sagemaker_session=_offline_session(s.project.region, cfg.names["bucket"]),
        disable_profiler=True,
        debugger_hook_config=False,
    )


def _offline_session(region: str, bucket: str):
    """A sagemaker Session that never calls AWS while rendering."""
    import boto3
    from sagemaker.session import Session

    boto_session = boto3.Session(
        region_name=region, aws_access_key_id="render", aws_secret_access_key="render"
    )
    return Session(boto_session=boto_session, default_bucket=bucket)


def _pin_training(params: dict[str, Any], cfg: ProjectConfig) -> dict[str, Any]:
    """Replace what the SDK generates per call (job name, code upload location)."""
    hps = dict(params["HyperParameters"])
    hps["sagemaker_submit_directory"] = json.dumps(_ref("TrainingCodeUri"))
    hps["sagemaker_program"] = json.dumps(TRAINING_PROGRAM)
    hps.pop("sagemaker_job_name", None)  # timestamped by the SDK; the job is named per run
    params["HyperParameters"] = hps
    params.pop("TrainingJobName", None)
    params["TrainingJobName.$"] = "$.manifest.training_job_name"
    params.pop("DebugHookConfig", None)
    params.pop("ProfilerConfig", None)
    params.pop("ProfilerRuleConfigurations", None)
    params["InputDataConfig"] = [
        {
            "ChannelName": channel,
            "ContentType": CONTENT_TYPES[cfg.settings.data.output_format],
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3DataDistributionType": "FullyReplicated",
                    "S3Uri.$": f"$.manifest.channels.{channel}",
                }
            },
        }
        for channel in ("train", "validation", "test")
    ]
    return params


@contextlib.contextmanager
def _pinned_partition(region: str):
    """The SDK derives the ARN partition from the ambient boto3 region, once per step
    (slow, and dependent on the caller's environment); pin it to the config region's."""
    import boto3
    from stepfunctions.steps import integration_resources

    session = boto3.Session(region_name=region)
    partition = session.get_partition_for_region(region)
    original = integration_resources.get_aws_partition
    integration_resources.get_aws_partition = lambda: partition
    try:
        yield
    finally:
        integration_resources.get_aws_partition = original


def build_definition(cfg: ProjectConfig) -> dict[str, Any]:
    """The state machine definition as a dict."""
    _sdk()  # import the SDKs with their side effects contained before patching them
    with _pinned_partition(cfg.settings.project.region):
        return _build(cfg)


def _build(cfg: ProjectConfig) -> dict[str, Any]:
    sdk = _sdk()
    steps = sdk.steps
    s = cfg.settings
    names = cfg.names

    def retry(errors: list[str]) -> Any:
        return steps.Retry(
            error_equals=errors, interval_seconds=1, max_attempts=3, backoff_rate=2.0
        )

    def invoke(state: str, function: str, payload: dict[str, Any], result_path: str) -> Any:
        # The direct function-ARN resource returns the handler's result as is (no
        # Payload/StatusCode envelope), which keeps every later JSONPath short.
        return steps.Task(
            state, resource=_ref(function), parameters=payload, result_path=result_path
        )

    def notify(state: str, outcome: str) -> Any:
        payload = {"outcome": outcome, "execution_id.$": "$$.Execution.Id", "input.$": "$"}
        return invoke(state, "NotifyFunctionArn", payload, "$.notification")

    # --- failure path -------------------------------------------------------------
    failed = steps.Fail("Failed", error="RetrainingFailed", cause="See the failure notification")
    notify_failure = notify("NotifyFailure", "failed")
    notify_failure.add_retry(retry(LAMBDA_TRANSIENT))
    # The failure notification is the last resort: when it fails too, fail the run.
    notify_failure.add_catch(
        steps.Catch(error_equals=["States.ALL"], next_step=failed, result_path="$.notify_error")
    )
    notify_failure.next(failed)

    markers: dict[str, Any] = {}

    def guard(
        task: Any,
        retry_errors: list[str],
        on_failure: Any = notify_failure,
        triage: tuple[tuple[tuple[str, ...], Any], ...] = (),
    ) -> Any:
        """Retry transient errors; catch the rest into a marker naming the failed state.

        `triage`: (Cause patterns, next state) pairs a caught error is matched against first, for
        refusals that are not failures (an endpoint busy with another run's update)."""
        task.add_retry(retry(retry_errors))
        marker = steps.Pass(
            f"{task.state_id} failed", result={"state": task.state_id}, result_path="$.failed_state"
        )
        marker.next(on_failure)
        markers[task.state_id] = marker
        caught = marker
        if triage:
            caught = steps.Choice(f"{task.state_id} refused", comment="Worth another try?")
            for patterns, target in triage:
                caught.add_choice(_cause_matches(steps, patterns), next_step=target)
            caught.default_choice(marker)
        task.add_catch(
            steps.Catch(error_equals=["States.ALL"], next_step=caught, result_path="$.error")
        )
        return task

    # --- main line ----------------------------------------------------------------
    # Several triggers for one commit and data (one S3 event per file of a drop, a re-upload,
    # `mlops run` of the deployed commit) train once: the manifest Lambda claims the run
    # and the others end here, before any compute is spent.
    duplicate = steps.Succeed("Duplicate", comment="Another execution handles this commit and data")
    manifest = invoke(
        "Manifest",
        "ManifestFunctionArn",
        # The raw input: `mlops run` sends {"data_prefix", "commit"}; the S3 rule sends
        # an EventBridge event. The manifest Lambda normalises both and names the run.
        {"input.$": "$", "execution_id.$": "$$.Execution.Id"},
        "$.manifest",
    )
    manifest.add_catch(
        steps.Catch(
            error_equals=["DuplicateRunError"], next_step=duplicate, result_path="$.duplicate"
        )
    )
    guard(manifest, LAMBDA_TRANSIENT)
    etl = guard(
        steps.GlueStartJobRunStep(
            "ETL",
            parameters={
                "JobName": names["glue_job"],
                "Arguments": {
                    "--input.$": "$.manifest.input_uri",
                    "--output.$": "$.manifest.processed_uri",
                    "--label_column": s.data.label_column,
                    "--feature_columns": ",".join(s.data.feature_columns),
                    "--input_format": s.data.input_format,
                    "--output_format": s.data.output_format,
                    "--validation_fraction": str(s.data.split.validation),
                    "--test_fraction": str(s.data.split.test),
                    "--seed": str(s.data.split.seed),
                },
            },
            result_path="$.etl",
        ),
        GLUE_TRANSIENT,
    )
    train = guard(
        steps.TrainingStep(
            "Train",
            estimator=_estimator(cfg, sdk),
            job_name="pinned-by-_pin_training",
            result_path="$.training",
        ),
        SAGEMAKER_TRANSIENT,
    )
    train.update_parameters(_pin_training(dict(train.parameters), cfg))

    get_production = guard(
        steps.DynamoDBGetItemStep(
            "GetProduction",
            parameters={
                "TableName": names["table"],
                "Key": {"pk": {"S": "PRODUCTION"}},
                "ConsistentRead": True,
            },
            result_path="$.production",
        ),
        DYNAMODB_TRANSIENT,
    )
    evaluate = guard(
        invoke(
            "Evaluate",
            "EvaluateFunctionArn",
            {"evaluation_uri.$": "$.manifest.evaluation_uri", "production.$": "$.production"},
            "$.gate",
        ),
        LAMBDA_TRANSIENT,
    )
    register = guard(
        invoke(
            "Register",
            "PromoteFunctionArn",
            {
                "action": "register",
                "candidate": {
                    "artifact_uri.$": "$.training.model_artifact",
                    "training_job.$": "$.training.job_name",
                    "evaluation.$": "$.gate",
                },
                "run": {
                    "execution_id.$": "$$.Execution.Id",
                    "data_version.$": "$.manifest.data_version",
                    "commit.$": "$.manifest.commit",
                },
            },
            "$.registry",
        ),
        LAMBDA_TRANSIENT,
    )

    # --- reject branch ------------------------------------------------------------
    notify_rejected = guard(notify("NotifyRejected", "rejected"), LAMBDA_TRANSIENT)
    notify_rejected.next(steps.Succeed("Rejected", comment="The candidate did not beat production"))

    # --- promote branch -----------------------------------------------------------
    # The production pointer moves first, with a conditional write (ClaimProduction), so
    # two concurrent runs cannot both win; when the endpoint steps then fail, the
    # pointer is put back (RevertProduction) and registry and endpoint still agree.
    revert = guard(
        invoke(
            "RevertProduction",
            "PromoteFunctionArn",
            {
                "action": "revert",
                "version.$": "$.registry.version",
                # Every way here records the failed state and the error first.
                "reason.$": "States.Format('{} failed: {}', $.failed_state.state, $.error.Error)",
            },
            "$.revert",
        ),
        LAMBDA_TRANSIENT,
    )
    revert.next(notify_failure)
    claim = guard(
        invoke(
            "ClaimProduction",
            "PromoteFunctionArn",
            {"action": "promote", "version.$": "$.registry.version"},
            "$.promotion",
        ),
        LAMBDA_TRANSIENT,
    )
    model_name = "$.registry.model_name"
    create_model = guard(
        steps.Task(
            "CreateModel",
            resource="arn:aws:states:::sagemaker:createModel",
            parameters={
                "ModelName.$": model_name,
                "ExecutionRoleArn": _ref("SageMakerRoleArn"),
                "PrimaryContainer": {
                    "Image": _image(cfg, sdk, "inference"),
                    "ModelDataUrl.$": "$.training.model_artifact",
                    "Environment": {
                        "SAGEMAKER_PROGRAM": TRAINING_PROGRAM,
                        "SAGEMAKER_SUBMIT_DIRECTORY": _ref("TrainingCodeUri"),
                        "SAGEMAKER_REGION": s.project.region,
                        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                    },
                },
            },
            result_path="$.model",
        ),
        SAGEMAKER_TRANSIENT,
        revert,
    )
    create_config = guard(
        steps.EndpointConfigStep(
            "CreateEndpointConfig",
            endpoint_config_name="pinned-below",
            model_name="pinned-below",
            initial_instance_count=s.endpoint.initial_instance_count,
            instance_type=s.endpoint.instance_type,
            result_path="$.endpoint_config",
        ),
        SAGEMAKER_TRANSIENT,
        revert,
    )
    create_config.update_parameters(_dynamic_names(create_config.parameters, model_name))

    notify_promoted = guard(notify("NotifyPromoted", "promoted"), LAMBDA_TRANSIENT)
    notify_promoted.next(steps.Succeed("Promoted", comment="The candidate is in production"))

    # Another execution claimed production after this one (its model beats this one): the
    # endpoint is that run's to set, and this one ends as if its own claim had lost. The
    # registry already says so: the winning claim retired this model.
    superseded = steps.Pass(
        "Superseded",
        parameters={
            "promoted": False,
            "version.$": "$.registry.version",
            "previous_version.$": "$.promotion.previous_version",
            "reason.$": (
                "States.Format('another model took production while v{} waited for the "
                "endpoint', $.registry.version)"
            ),
        },
        result_path="$.promotion",
    )
    superseded.next(notify_rejected)
    wait_for_endpoint = _endpoint_wait(cfg, steps, guard, revert, notify_promoted, superseded)
    start_calls = _endpoint_calls(cfg, steps, guard, markers, revert, wait_for_endpoint, superseded)

    claimed = steps.Choice("ProductionClaimed", comment="A better model may have won meanwhile")
    claimed.add_choice(
        steps.ChoiceRule.BooleanEquals("$.promotion.promoted", True), next_step=create_model
    )
    claimed.default_choice(notify_rejected)

    gate = steps.Choice("Gate", comment=f"Promote only when {s.gate.metric} beats production")
    gate.add_choice(steps.ChoiceRule.BooleanEquals(GATE_VARIABLE, True), next_step=claim)
    gate.default_choice(notify_rejected)

    claim.next(claimed)
    create_model.next(create_config)
    create_config.next(start_calls)
    chain = steps.Chain([manifest, etl, train, get_production, evaluate, register, gate])
    definition = steps.Graph(chain).to_dict()
    for state, selector in RESULT_SELECTORS.items():
        definition["States"][state]["ResultSelector"] = selector
    for state in ("CreateEndpoint", "UpdateEndpoint"):
        definition["States"][state]["ResultSelector"] = {"arn.$": "$.EndpointArn", "action": state}
    return definition


def _cause_matches(steps: Any, patterns: tuple[str, ...]) -> Any:
    """A Choice rule: the caught error's Cause matches one of `patterns` (StringMatches)."""
    rules = [steps.ChoiceRule.StringMatches("$.error.Cause", p) for p in patterns]
    return rules[0] if len(rules) == 1 else steps.ChoiceRule.Or(rules)


def _owned(steps: Any) -> Any:
    """A Choice rule: the pointer as last read names this run's model (it may be absent)."""
    rule = steps.ChoiceRule
    return rule.And(
        [rule.IsPresent(POINTER_MODEL, True), rule.StringEqualsPath(POINTER_MODEL, RUN_MODEL)]
    )


def _read_pointer(cfg: ProjectConfig, steps: Any, state: str) -> Any:
    return steps.DynamoDBGetItemStep(
        state,
        parameters={
            "TableName": cfg.names["table"],
            "Key": {"pk": {"S": "PRODUCTION"}},
            "ConsistentRead": True,  # a claim made a moment ago must be seen
        },
        result_path=POINTER_PATH,
    )


def _next_wait(state: str, cfg: ProjectConfig, steps: Any) -> Any:
    """A Pass counting one more wait, each endpoint.wait.poll_seconds longer than the last."""
    step = cfg.settings.endpoint.wait.poll_seconds
    return steps.Pass(
        state,
        parameters={
            "polls.$": "States.MathAdd($.endpoint.polls, 1)",
            "wait_seconds.$": f"States.MathAdd($.endpoint.wait_seconds, {step})",
        },
        result_path="$.endpoint",
    )


def _endpoint_calls(
    cfg: ProjectConfig,
    steps: Any,
    guard: Any,
    markers: dict[str, Any],
    revert: Any,
    called: Any,
    superseded: Any,
) -> Any:
    """From CreateEndpointConfig to Create/UpdateEndpoint; returns the first state.

    Several runs may promote at once, each claiming production in turn, and SageMaker refuses an
    update while another is in progress. So before each call the pointer is read again
    (CheckProduction): a run no longer named there ends Superseded and leaves the endpoint to the
    run that is. FindEndpoint asks SageMaker, not the registry, whether the endpoint exists (a run
    superseded before its CreateEndpoint leaves none behind). A call refused because the endpoint
    is changing, or throttled, waits and goes round again, on the endpoint.wait schedule and
    budget that the wait after the call continues; out of budget, the registry is reverted.
    """
    wait = cfg.settings.endpoint.wait
    name = cfg.names["endpoint"]
    rule = steps.ChoiceRule
    # $.endpoint: the waits so far (polls) and the length of the last one, for every loop here.
    start = steps.Pass(
        "StartEndpointWait", result={"polls": 0, "wait_seconds": 0}, result_path="$.endpoint"
    )
    check = guard(_read_pointer(cfg, steps, "CheckProduction"), DYNAMODB_TRANSIENT, revert)
    busy = steps.Choice("EndpointBusy", comment="endpoint.wait.timeout_seconds")
    calls = {}
    for update in (False, True):
        state = "UpdateEndpoint" if update else "CreateEndpoint"
        step = guard(
            steps.EndpointStep(
                state,
                endpoint_name=name,
                endpoint_config_name="pinned-below",
                update=update,
                result_path="$.endpoint_call",
            ),
            ENDPOINT_CALL_RETRY,
            revert,
            triage=((ENDPOINT_BUSY[state], busy),),
        )
        step.update_parameters(_dynamic_names(step.parameters, RUN_MODEL))
        # Both calls return at once; the endpoint serves the model only minutes later, or never.
        step.next(called)
        calls[state] = step
    find = guard(
        steps.Task(
            "FindEndpoint",
            resource=DESCRIBE_ENDPOINT,
            parameters={"EndpointName": name},
            result_path="$.endpoint_status",
        ),
        ENDPOINT_CALL_RETRY,
        revert,
        triage=(
            ((ENDPOINT_MISSING,), calls["CreateEndpoint"]),
            (ENDPOINT_BUSY["FindEndpoint"], busy),
        ),
    )
    # Whatever its status: UpdateEndpoint itself refuses a busy endpoint (tried again) and a
    # failed one (a failure: reverted).
    find.next(calls["UpdateEndpoint"])
    still = steps.Choice("StillProduction", comment="Did another run claim production since?")
    still.add_choice(rule.Not(_owned(steps)), next_step=superseded)
    still.default_choice(find)
    check.next(still)

    retry_call = _next_wait("RetryEndpointCall", cfg, steps)
    wait_to_retry = steps.Wait("WaitToRetry", seconds_path="$.endpoint.wait_seconds")
    retry_call.next(wait_to_retry)
    wait_to_retry.next(check)
    timed_out = steps.Pass(
        "EndpointBusyTimedOut",
        parameters={
            "Error": "EndpointBusyTimedOut",
            "Cause.$": (
                f"States.Format('endpoint {name} was still busy with another update after {{}} "
                f"waits (endpoint.wait.timeout_seconds: {wait.timeout_seconds}); the registry is "
                "reverted: {}', $.endpoint.polls, $.error.Cause)"
            ),
        },
        result_path="$.error",
    )
    timed_out.next(markers["UpdateEndpoint"])
    busy.add_choice(
        rule.NumericLessThan("$.endpoint.polls", endpoint_wait_polls(cfg)), next_step=retry_call
    )
    busy.default_choice(timed_out)
    start.next(check)
    return start


def _endpoint_wait(
    cfg: ProjectConfig, steps: Any, guard: Any, revert: Any, done: Any, superseded: Any
) -> Any:
    """The loop after Create/UpdateEndpoint; returns its first state.

    Promotion is announced only once DescribeEndpoint shows the endpoint InService with this
    run's config and the pointer, read again, still names this run. SageMaker rolls a failed
    update back (InService, the old config, FailureReason set) and marks a failed creation Failed;
    both, any other status, and a wait past endpoint.wait.timeout_seconds revert the registry, so
    it names what the endpoint serves. A run whose claim another run took meanwhile (the endpoint
    serving that run's config, or about to) ends Superseded instead: not a failure.
    """
    wait = cfg.settings.endpoint.wait
    max_polls = endpoint_wait_polls(cfg)
    status, serving = "$.endpoint_status.EndpointStatus", "$.endpoint_status.EndpointConfigName"

    poll_again = _next_wait("PollEndpointAgain", cfg, steps)
    waiting = steps.Wait("WaitForEndpoint", seconds_path="$.endpoint.wait_seconds")
    poll_again.next(waiting)
    describe = guard(
        steps.Task(
            "DescribeEndpoint",
            resource=DESCRIBE_ENDPOINT,
            parameters={"EndpointName": cfg.names["endpoint"]},
            result_path="$.endpoint_status",
        ),
        SAGEMAKER_SDK_TRANSIENT,
        revert,
    )
    # The failure is the endpoint call's: its name goes into the notification and the revert.
    failed = steps.Pass(
        "EndpointFailed",
        parameters={"state.$": "$.endpoint_call.action"},
        result_path="$.failed_state",
    )
    failed.next(revert)
    not_serving = steps.Pass(
        "EndpointNotServing",
        parameters={
            "Error": "EndpointNotServing",
            # The whole description: notify and `mlops run` show its FailureReason.
            "Cause.$": "States.JsonToString($.endpoint_status)",
        },
        result_path="$.error",
    )
    not_serving.next(failed)
    timed_out = steps.Pass(
        "EndpointWaitTimedOut",
        parameters={
            "Error": "EndpointWaitTimedOut",
            "Cause.$": (
                "States.Format('endpoint {} was still {} after {} polls (endpoint.wait."
                f"timeout_seconds: {wait.timeout_seconds}); the registry is reverted, but the "
                "endpoint may still switch to {}: check with mlops models and roll back if so', "
                f"$.endpoint_status.EndpointName, {status}, $.endpoint.polls, "
                "$.registry.model_name)"
            ),
        },
        result_path="$.error",
    )
    timed_out.next(failed)

    rule = steps.ChoiceRule
    # Still changing: poll again while the timeout allows.
    time_left = steps.Choice("EndpointWaitLeft", comment="endpoint.wait.timeout_seconds")
    time_left.add_choice(rule.NumericLessThan("$.endpoint.polls", max_polls), next_step=poll_again)
    time_left.default_choice(timed_out)
    changing = steps.Choice("EndpointChanging", comment="Creating, Updating...")
    changing.add_choice(
        rule.Or([rule.StringEquals(status, s) for s in ENDPOINT_IN_PROGRESS]), next_step=time_left
    )
    serves = steps.Choice("EndpointServes", comment="InService with this run's config")
    serves.add_choice(rule.Not(_owned(steps)), next_step=superseded)
    serves.add_choice(
        rule.And(
            [rule.StringEquals(status, "InService"), rule.StringEqualsPath(serving, RUN_MODEL)]
        ),
        next_step=done,
    )
    # Any other status (Failed, OutOfService, the old config after a rollback) is a failure.
    serves.default_choice(not_serving)
    confirm = _read_pointer(cfg, steps, "ConfirmProduction")
    confirm.add_retry(
        steps.Retry(
            error_equals=DYNAMODB_TRANSIENT, interval_seconds=1, max_attempts=3, backoff_rate=2.0
        )
    )
    # Unreadable now: decide on the pointer CheckProduction read before the call. Reverting a
    # model the endpoint may already serve would split registry and endpoint.
    confirm.add_catch(
        steps.Catch(error_equals=["States.ALL"], next_step=serves, result_path="$.confirm_error")
    )
    confirm.next(serves)
    changing.default_choice(confirm)
    waiting.next(describe)
    describe.next(changing)
    return poll_again


def _dynamic_names(params: dict[str, Any], model_name_path: str) -> dict[str, Any]:
    """Point EndpointConfigName / ModelName at the run's registered model name."""
    params = json.loads(json.dumps(params))
    if "EndpointConfigName" in params:
        del params["EndpointConfigName"]
        params["EndpointConfigName.$"] = model_name_path
    for variant in params.get("ProductionVariants", []):
        del variant["ModelName"]
        variant["ModelName.$"] = model_name_path
    return params


def render(cfg: ProjectConfig) -> str:
    """The committed ASL text: stable key order, two-space indent, trailing newline."""
    return json.dumps(build_definition(cfg), indent=2, sort_keys=True) + "\n"


def check(cfg: ProjectConfig) -> str:
    """A unified diff between the committed ASL and a fresh render; empty when current."""
    import difflib

    path = asl_path(cfg)
    fresh = render(cfg)
    committed = path.read_text() if path.is_file() else ""
    if fresh == committed:
        return ""
    return "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            fresh.splitlines(keepends=True),
            fromfile=f"{path.name} (committed)",
            tofile=f"{path.name} (rendered from config)",
        )
    )
