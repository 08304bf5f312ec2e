"""Step Functions' optimized SageMaker integration for moto's ASL interpreter.

moto lists `sagemaker` as an unsupported service (it forwards the call and has no `.sync`).
This service task follows moto's Glue integration (StateTaskServiceGlue): request-response
createModel, createEndpointConfig, createEndpoint, updateEndpoint and createTrainingJob, and
`createTrainingJob.sync`, which polls DescribeTrainingJob until the job ends. Completed: the
state's result is the DescribeTrainingJob response. Failed or Stopped: the state fails with
States.TaskFailed and the DescribeTrainingJob JSON as Cause (FailureReason visible), as on AWS.
API errors are named as AWS names them: the SDK's modeled exceptions become
`SageMaker.<Name>Exception`, everything else (ValidationException, ThrottlingException...)
`SageMaker.AmazonSageMakerException`, with the AWS-style cause
`<message> (Service: AmazonSageMaker; Status Code: 400; Error Code: <code>; ...)`.
Timestamps in results are epoch milliseconds, as Step Functions renders them. Other SageMaker
actions, and .sync or .waitForTaskToken where AWS has none, are refused at CreateStateMachine.
Stopping the execution (or a state timeout) stops the training job, as Step Functions does.

The AWS SDK integration (`arn:aws:states:::aws-sdk:sagemaker:describeEndpoint`, the only way to
read an endpoint's status from a state machine) is moto's, with two gaps closed for SageMaker:
its results keep datetime objects, which break DescribeExecution and GetExecutionHistory, and are
rendered as ISO-8601 strings as AWS renders aws-sdk results; and its errors are named
`SageMaker.<Name>Exception` (`SageMaker.SageMakerException` when unmodeled), not `sagemaker.*`.

Importing this module imports moto's interpreter: sagemaker.install() imports it lazily.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import time
from collections.abc import Callable
from typing import Any, Final

from botocore.exceptions import ClientError
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
    CustomErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
    StateTaskServiceAwsSdk,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

from pipeline.localcloud import sagemaker_aws

# DescribeTrainingJob is a local HTTP call of a few ms; moto's callback default sleeps 0.5 s.
POLL_SECONDS: Final[float] = 0.05
# The APIs Step Functions optimizes for SageMaker that this project uses, by ASL action name.
OPERATIONS: Final[dict[str, str]] = {
    "createtrainingjob": "CreateTrainingJob",
    "createmodel": "CreateModel",
    "createendpointconfig": "CreateEndpointConfig",
    "createendpoint": "CreateEndpoint",
    "updateendpoint": "UpdateEndpoint",
}
ACTIONS: Final[tuple[str, ...]] = (
    "createTrainingJob[.sync]",
    "createModel",
    "createEndpointConfig",
    "createEndpoint",
    "updateEndpoint",
)
SYNC_OPERATIONS: Final[set[str]] = {"createtrainingjob"}
RUNNING_STATUSES: Final[set[str]] = {"InProgress", "Stopping"}
GENERIC_ERROR: Final[str] = "SageMaker.AmazonSageMakerException"


@functools.cache
def _input_members(operation: str) -> frozenset[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.operation_model(operation).input_shape.members)


@functools.cache
def _modeled_errors() -> frozenset[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(
        name for name in model.shape_names if model.shape_for(name).metadata.get("exception")
    )


def error_name(code: str, modeled: frozenset[str]) -> str:
    """The error Step Functions reports for SageMaker error `code` (its Java SDK class name)."""
    if code in modeled:
        return f"SageMaker.{code if code.endswith('Exception') else code + 'Exception'}"
    return GENERIC_ERROR


def json_ready(value: Any) -> Any:
    """boto3's response with datetimes as epoch milliseconds, as Step Functions outputs them."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_ready(v) for v in value]
    return value


class StateTaskServiceSageMaker(StateTaskServiceCallback):
    def __init__(self):
        super().__init__(supported_integration_patterns={ResourceCondition.Sync})

    def _get_supported_parameters(self) -> set[str] | None:
        operation = OPERATIONS.get(self.resource.api_action.lower())
        return set(_input_members(operation)) if operation else None

    def _validate_service_integration_is_supported(self):
        action = self.resource.api_action
        if action.lower() not in OPERATIONS:
            raise ValueError(
                f"The resource provided {self.resource.resource_arn} is not supported by the "
                f"local cloud; its SageMaker integration covers sagemaker:{', '.join(ACTIONS)}"
            )
        condition = self.resource.condition
        if condition is not None and not (
            condition == ResourceCondition.Sync and action.lower() in SYNC_OPERATIONS
        ):
            raise ValueError(
                f"The resource provided {self.resource.resource_arn} is not supported: "
                f"sagemaker:{action} has no .{condition} integration"
            )

    def _client(self, region: str, credentials):
        # moto's boto_client_for builds a new client per task, re-reading the SageMaker model
        # (a second); the shared one is made once, without client-side validation either.
        return sagemaker_aws.client("sagemaker", region, validate=False)

    def _from_error(self, env, ex: Exception) -> FailureEvent:
        if isinstance(ex, ClientError):
            error = ex.response.get("Error", {})
            meta = ex.response.get("ResponseMetadata", {})
            name = error_name(error.get("Code", ""), _modeled_errors())
            cause = (
                f"{error.get('Message', '')} (Service: AmazonSageMaker; Status Code: "
                f"{meta.get('HTTPStatusCode')}; Error Code: {error.get('Code')}; "
                f"Request ID: {meta.get('RequestId')}; Proxy: null)"
            )
            return FailureEvent(
                env=env,
                error_name=CustomErrorName(name),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(
                    taskFailedEventDetails=TaskFailedEventDetails(
                        error=name,
                        cause=cause,
                        resource=self._get_sfn_resource(),
                        resourceType=self._get_sfn_resource_type(),
                    )
                ),
            )
        return super()._from_error(env=env, ex=ex)

    def _eval_service_task(
        self, env, resource_runtime_part, normalised_parameters, state_credentials
    ):
        client = self._client(resource_runtime_part.region, state_credentials)
        action = self._get_boto_service_action()
        response = getattr(client, action)(**normalised_parameters)
        response.pop("ResponseMetadata", None)
        env.stack.append(json_ready(response))

    def _task_failed(self, env, cause: dict) -> FailureEventException:
        return FailureEventException(
            FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(
                    taskFailedEventDetails=TaskFailedEventDetails(
                        resource=self._get_sfn_resource(),
                        resourceType=self._get_sfn_resource_type(),
                        error=StatesErrorNameType.StatesTaskFailed.to_name(),
                        cause=to_json_str(cause),
                    )
                ),
            )
        )

    def _build_sync_resolver(
        self, env, resource_runtime_part, normalised_parameters, state_credentials
    ) -> Callable[[], Any]:
        env.stack.pop()  # CreateTrainingJob's {"TrainingJobArn"}; the name is in the request
        name = normalised_parameters["TrainingJobName"]
        client = self._client(resource_runtime_part.region, state_credentials)

        def resolve() -> dict | None:
            job = client.describe_training_job(TrainingJobName=name)
            job.pop("ResponseMetadata", None)
            if job["TrainingJobStatus"] in RUNNING_STATUSES:
                return None
            job = json_ready(job)
            if job["TrainingJobStatus"] == "Completed":
                return job
            raise self._task_failed(env, job)

        def stop() -> None:
            with contextlib.suppress(ClientError):  # it ended on its own meanwhile
                client.stop_training_job(TrainingJobName=name)

        resolve.stop = stop
        return resolve

    def _eval_integration_pattern(
        self, env, resource_runtime_part, normalised_parameters, state_credentials
    ) -> None:
        # Replaces StateTaskServiceCallback's loop: that one sleeps 0.5 s between polls and,
        # for a service without waitForTaskToken, calls interrupt_all() on a None endpoint.
        resolve = self._build_sync_resolver(
            env, resource_runtime_part, normalised_parameters, state_credentials
        )
        while env.is_running():
            result = resolve()
            if result is not None:
                env.stack.append(result)
                return
            time.sleep(POLL_SECONDS)
        # The execution was stopped or the state timed out: Step Functions stops the job.
        resolve.stop()
        env.stack.append(None)


def iso_ready(value: Any) -> Any:
    """An aws-sdk result with datetimes as ISO-8601 strings, as Step Functions outputs them."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: iso_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [iso_ready(v) for v in value]
    return value


class StateTaskServiceAwsSdkLocal(StateTaskServiceAwsSdk):
    """moto's aws-sdk integration with SageMaker's error names and JSON-ready results."""

    @staticmethod
    def _normalise_service_error_name(service_name: str) -> str:
        if service_name.lower() == "sagemaker":
            return "SageMaker"
        return StateTaskServiceAwsSdk._normalise_service_error_name(service_name)

    def _eval_service_task(
        self, env, resource_runtime_part, normalised_parameters, state_credentials
    ):
        if self._get_boto_service_name() == "sagemaker":
            # The shared client: moto's builds a new one per task (a second each poll).
            client = sagemaker_aws.client("sagemaker", resource_runtime_part.region, validate=False)
            response = getattr(client, self._get_boto_service_action())(**normalised_parameters)
            response.pop("ResponseMetadata", None)
            env.stack.append(response)
        else:
            super()._eval_service_task(
                env, resource_runtime_part, normalised_parameters, state_credentials
            )
        env.stack.append(iso_ready(env.stack.pop()))


def make_factory(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap moto's state_task_service_for so `sagemaker` resources get this integration, and
    `aws-sdk` ones the JSON-ready results and SageMaker error names."""

    def state_task_service_for(service_name: str):
        if service_name == "sagemaker":
            return StateTaskServiceSageMaker()
        if service_name == "aws-sdk":
            return StateTaskServiceAwsSdkLocal()
        return original(service_name=service_name)

    state_task_service_for.mlops_sagemaker = True
    state_task_service_for.__wrapped__ = original
    return state_task_service_for
