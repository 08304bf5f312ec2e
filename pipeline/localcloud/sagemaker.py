"""SageMaker gap: training jobs that run, endpoints that serve, and the Step Functions integration.

install() patches moto 5.2.5 in place (never site-packages); what each patch replaces, so a moto
upgrade can be checked against it:

- SageMakerModelBackend.create_training_job: wrapped; the job starts InProgress and a thread runs
  it (sagemaker_training). Also rejects a duplicate name (ResourceInUse), as SageMaker does.
- SageMakerModelBackend.stop_training_job + SageMakerResponse.stop_training_job: added.
- SageMakerModelBackend.create_endpoint: wrapped; Creating -> InService | Failed
  (sagemaker_endpoints); rejects an existing name, as SageMaker does.
- SageMakerModelBackend.update_endpoint + SageMakerResponse.update_endpoint: added.
- SageMakerModelBackend.delete_endpoint: wrapped; the endpoint's model server stops.
- SageMakerRuntimeResponse.invoke_endpoint: replaced; forwards to the model server.
- moto.stepfunctions...state_task_factory.state_task_service_for (the name state_task_for calls):
  wrapped; `sagemaker` resources get StateTaskServiceSageMaker (sagemaker_sfn) instead of
  StateTaskServiceUnsupported.

shutdown() stops model servers and running training jobs; LocalCloud.stop() calls it.
"""

from __future__ import annotations

import atexit
import copy
import functools
import threading

from pipeline.localcloud import sagemaker_aws

_install_lock = threading.Lock()
_installed = False


def _wrap(owner, name: str, make) -> None:
    """Replace owner.name by make(original); functools.wraps keeps the original as __wrapped__."""
    _set(owner, name, make(getattr(owner, name)))


def _set(owner, name: str, function) -> None:
    function.mlops_sagemaker = True  # how the tests tell a patch from moto's own code
    # What moto had under this name (None: moto lacks it), for the moto-upgrade test.
    function.mlops_replaced = vars(owner).get(name)
    setattr(owner, name, function)


def _patch_training() -> None:
    from moto.sagemaker.exceptions import ResourceInUseException, ValidationError
    from moto.sagemaker.models import FakeTrainingJob, SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    from pipeline.localcloud import sagemaker_training

    def make_create(original):
        @functools.wraps(original)
        def create_training_job(self, training_job_name, *args, **kwargs):
            if training_job_name in self.training_jobs:
                arn = FakeTrainingJob.arn_formatter(
                    training_job_name, self.account_id, self.region_name
                )
                raise ResourceInUseException(
                    message="Training job names must be unique within an AWS account and region, "
                    f"and a training job with this name already exists ({arn})"
                )
            # FakeTrainingJob overwrites the caller's MetricDefinitions with a sample in place.
            spec = copy.deepcopy(kwargs.get("algorithm_specification") or {})
            job = original(self, training_job_name, *args, **kwargs)
            sagemaker_training.start(job, self.region_name, spec)
            return job

        return create_training_job

    def stop_training_job(self, training_job_name: str) -> None:
        job = self.training_jobs.get(training_job_name)
        if job is None:
            arn = FakeTrainingJob.arn_formatter(
                training_job_name, self.account_id, self.region_name
            )
            raise ValidationError(message=f"Requested resource not found: {arn}")
        if not sagemaker_training.stop(job):
            raise ValidationError(
                message=f"The request was rejected because the training job is in status "
                f"{job.training_job_status}."
            )

    def stop_training_job_response(self):
        from moto.core.responses import EmptyResult

        self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
        return EmptyResult()

    _wrap(SageMakerModelBackend, "create_training_job", make_create)
    _set(SageMakerModelBackend, "stop_training_job", stop_training_job)
    _set(SageMakerResponse, "stop_training_job", stop_training_job_response)


def _refuse_existing(
    what: str, store: str, request_key: str, kwarg: str, arn_kind: str | None = None
):
    """A wrapper factory: creating `what` under a name already taken fails as on SageMaker."""

    def make(original):
        @functools.wraps(original)
        def create(self, *args, **kwargs):
            from moto.sagemaker.exceptions import ValidationError

            name = kwargs.get(kwarg) or kwargs.get(request_key)
            if name is not None and name in getattr(self, store):
                arn = f"arn:aws:sagemaker:{self.region_name}:{self.account_id}:{arn_kind or what}/{name.lower()}"
                raise ValidationError(message=f'Cannot create already existing {what} "{arn}".')
            return original(self, *args, **kwargs)

        return create

    return make


def _patch_endpoints() -> None:
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    from pipeline.localcloud import sagemaker_endpoints

    def make_create(original):
        @functools.wraps(original)
        def create_endpoint(self, endpoint_name, endpoint_config_name, tags):
            return sagemaker_endpoints.create_endpoint(
                original, self, endpoint_name, endpoint_config_name, tags
            )

        return create_endpoint

    def make_delete(original):
        @functools.wraps(original)
        def delete_endpoint(self, endpoint_name):
            sagemaker_endpoints.delete_endpoint(original, self, endpoint_name)

        return delete_endpoint

    def update_endpoint(self, endpoint_name: str, endpoint_config_name: str) -> str:
        return sagemaker_endpoints.update_endpoint(self, endpoint_name, endpoint_config_name)

    _wrap(SageMakerModelBackend, "create_endpoint", make_create)
    # moto overwrites a model or endpoint config of the same name; SageMaker refuses.
    _wrap(
        SageMakerModelBackend,
        "create_model",
        _refuse_existing("model", "_models", "ModelName", "model_name"),
    )
    _wrap(
        SageMakerModelBackend,
        "create_endpoint_config",
        _refuse_existing(
            "endpoint configuration",
            "endpoint_configs",
            "EndpointConfigName",
            "endpoint_config_name",
            arn_kind="endpoint-config",
        ),
    )
    _wrap(SageMakerModelBackend, "delete_endpoint", make_delete)
    _set(SageMakerModelBackend, "update_endpoint", update_endpoint)
    _set(SageMakerResponse, "update_endpoint", sagemaker_endpoints.update_endpoint_response)
    _set(SageMakerRuntimeResponse, "invoke_endpoint", sagemaker_endpoints.invoke_endpoint_response)


def _patch_stepfunctions() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_factory,
    )

    from pipeline.localcloud import sagemaker_sfn

    # state_task_for looks the factory up in its own module; patch there (and at the source,
    # for anything that imports it later).
    state_task_factory.state_task_service_for = sagemaker_sfn.make_factory(
        state_task_factory.state_task_service_for
    )
    state_task_service_factory.state_task_service_for = state_task_factory.state_task_service_for


def install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        _patch_training()
        _patch_endpoints()
        _patch_stepfunctions()
        atexit.register(shutdown)  # a process that never calls LocalCloud.stop() leaves no servers
        threading.Thread(
            target=sagemaker_aws.warm_up, name="sagemaker-warm-up", daemon=True
        ).start()
        _installed = True


def shutdown() -> None:
    """Stop every model server and running training job of this process and remove their files."""
    from pipeline.localcloud import sagemaker_serving, sagemaker_training

    sagemaker_training.shutdown()
    sagemaker_serving.shutdown()
