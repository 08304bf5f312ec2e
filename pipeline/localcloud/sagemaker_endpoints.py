"""Endpoint gap: endpoints that really serve their model, UpdateEndpoint, and InvokeEndpoint.

CreateEndpoint returns at once with EndpointStatus Creating, as on AWS; a thread starts (or
reuses) the model server for the config's model and the endpoint turns InService, or Failed
with a FailureReason when the model cannot be served. UpdateEndpoint (absent from moto) turns
the endpoint Updating and swaps it to the new config's model only once that model serves, so a
failed update leaves the old model serving, the old config in place, the status InService and
the reason in FailureReason, as SageMaker does. InvokeEndpoint forwards the request to the
endpoint's server and returns its body and content type; a non-200 answer is a ModelError.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

from pipeline.localcloud import sagemaker_aws, sagemaker_serving

ENDPOINT_LOG_GROUP = "/aws/sagemaker/Endpoints/{name}"
IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")


def _endpoint_key(backend, name: str) -> tuple:
    return (backend.account_id, backend.region_name, name)


def _now():
    from moto.core.utils import utcnow

    return utcnow()


def _endpoint_arn(backend, name: str) -> str:
    from moto.sagemaker.models import FakeEndpoint

    return FakeEndpoint.arn_formatter(name, backend.account_id, backend.region_name)


def resolve(backend, config_name: str) -> tuple[sagemaker_serving.ModelSpec, str]:
    """(the model to serve, its variant name) for endpoint config `config_name`."""
    config = backend.endpoint_configs.get(config_name)
    if config is None:
        raise sagemaker_serving.ModelServerError(
            f"endpoint configuration {config_name!r} was deleted before the endpoint used it"
        )
    variants = config.production_variants or []
    if len(variants) != 1:
        raise sagemaker_serving.ModelServerError(
            f"endpoint configuration {config_name!r} has {len(variants)} production variants; "
            "the local cloud serves exactly one per endpoint"
        )
    variant = variants[0]
    model = backend._models.get(variant.get("ModelName"))
    if model is None:
        raise sagemaker_serving.ModelServerError(
            f"model {variant.get('ModelName')!r} of variant {variant['VariantName']!r} does not "
            "exist (deleted after the endpoint configuration was created?)"
        )
    container = model.primary_container or (model.containers[0] if model.containers else {})
    return (
        sagemaker_serving.ModelSpec.from_container(model.model_name, container),
        variant["VariantName"],
    )


def _ship_logs(backend, endpoint_name: str, stream: str, lines: list[str]) -> None:
    try:
        logs = sagemaker_aws.client("logs", backend.region_name)
        now = time.time()
        group = ENDPOINT_LOG_GROUP.format(name=endpoint_name)
        sagemaker_aws.put_logs(logs, group, stream, [(now, line) for line in lines])
    except Exception:  # logs are a convenience; the server.log file keeps them anyway
        pass


def _deploy(backend, endpoint, config_name: str, updating: bool) -> None:
    name = endpoint.endpoint_name
    variant = "AllTraffic"
    server = None
    try:
        spec, variant = resolve(backend, config_name)
        server = sagemaker_serving.acquire(spec, backend.region_name)
    except sagemaker_serving.ModelServerError as exc:
        reason = (
            f"The primary container for production variant {variant} did not pass the ping "
            f"health check: {exc}. Please check CloudWatch logs for this endpoint."
        )
    except Exception as exc:  # a local-cloud bug must still end the transition
        reason = f"InternalServerError: {type(exc).__name__}: {exc}"
    else:
        reason = None
    if backend.endpoints.get(name) is not endpoint:  # deleted while deploying
        if server:
            sagemaker_serving.release_if_unused(server)
        return
    if reason:
        _ship_logs(backend, name, f"{variant}/local", [reason])
        endpoint.failure_reason = reason
        endpoint.last_modified_time = _now()
        # A failed update rolls back: the old model keeps serving.
        endpoint.endpoint_status = "InService" if updating else "Failed"
        return
    sagemaker_serving.bind(_endpoint_key(backend, name), server)
    if updating:
        config = backend.endpoint_configs[config_name]
        endpoint.production_variants = endpoint._process_production_variants(
            config.production_variants
        )
        endpoint.endpoint_config_name = config_name
    endpoint.failure_reason = None
    endpoint.last_modified_time = _now()
    endpoint.endpoint_status = "InService"


def _start_deploy(backend, endpoint, config_name: str, updating: bool) -> None:
    threading.Thread(
        target=_deploy,
        args=(backend, endpoint, config_name, updating),
        name=f"endpoint-{endpoint.endpoint_name}",
        daemon=True,
    ).start()


def create_endpoint(original, backend, endpoint_name: str, endpoint_config_name: str, tags):
    from moto.sagemaker.exceptions import ValidationError

    if endpoint_name in backend.endpoints:
        arn = _endpoint_arn(backend, endpoint_name)
        raise ValidationError(message=f'Cannot create already existing endpoint "{arn}".')
    endpoint = original(
        backend,
        endpoint_name=endpoint_name,
        endpoint_config_name=endpoint_config_name,
        tags=tags,
    )
    endpoint.endpoint_status = "Creating"
    _start_deploy(backend, endpoint, endpoint_config_name, updating=False)
    return endpoint


def update_endpoint(backend, endpoint_name: str, endpoint_config_name: str) -> str:
    """UpdateEndpoint: validate as SageMaker does, then deploy the new config in the background."""
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import FakeEndpointConfig

    endpoint = backend.endpoints.get(endpoint_name)
    if endpoint is None:
        arn = _endpoint_arn(backend, endpoint_name)
        raise ValidationError(message=f'Could not find endpoint "{arn}".')
    if endpoint_config_name not in backend.endpoint_configs:
        arn = FakeEndpointConfig.arn_formatter(
            endpoint_config_name, backend.account_id, backend.region_name
        )
        raise ValidationError(message=f'Could not find endpoint configuration "{arn}".')
    if endpoint.endpoint_status in IN_PROGRESS:
        raise ValidationError(message=f'Cannot update in-progress endpoint "{endpoint.arn}".')
    if endpoint.endpoint_status == "Failed":
        raise ValidationError(
            message=f'Cannot update failed endpoint "{endpoint.arn}". Delete it and create it again.'
        )
    endpoint.endpoint_status = "Updating"
    endpoint.last_modified_time = _now()
    _start_deploy(backend, endpoint, endpoint_config_name, updating=True)
    return endpoint.arn


def delete_endpoint(original, backend, endpoint_name: str) -> None:
    original(backend, endpoint_name)
    sagemaker_serving.unbind(_endpoint_key(backend, endpoint_name))


def update_endpoint_response(self) -> Any:
    """SageMakerResponse.update_endpoint (moto has none)."""
    from moto.core.responses import ActionResult

    arn = update_endpoint(
        self.sagemaker_backend,
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
    )
    return ActionResult({"EndpointArn": arn})


# --- sagemaker-runtime ------------------------------------------------------------------------


@functools.cache
def _runtime_errors():
    from moto.core.exceptions import ServiceException

    class RuntimeValidationError(ServiceException):
        code = "ValidationError"

    class ModelError(ServiceException):
        code = "ModelError"

        def __init__(self, message: str, status: int, original: str, log_stream_arn: str):
            super().__init__(message)
            self.original_status_code = status
            self.original_message = original
            self.log_stream_arn = log_stream_arn

    return RuntimeValidationError, ModelError


def server_for(backend, endpoint) -> sagemaker_serving.ModelServer:
    """The endpoint's running server; restarted from its config if it died or the cloud restarted."""
    key = _endpoint_key(backend, endpoint.endpoint_name)
    server = sagemaker_serving.bound(key)
    if server and server.running:
        return server
    spec, _ = resolve(backend, endpoint.endpoint_config_name)
    server = sagemaker_serving.acquire(spec, backend.region_name)
    sagemaker_serving.bind(key, server)
    return server


def invoke_endpoint_response(self) -> Any:
    """SageMakerRuntimeResponse.invoke_endpoint: forward to the endpoint's model server."""
    from urllib.parse import unquote

    from moto.sagemaker.models import sagemaker_backends

    validation_error, model_error = _runtime_errors()
    name = unquote(self.path.split("?", 1)[0].rstrip("/").split("/")[-2])
    backend = sagemaker_backends[self.current_account][self.region]
    endpoint = backend.endpoints.get(name)
    if endpoint is None:
        raise validation_error(f"Endpoint {name} of account {self.current_account} not found.")
    if endpoint.endpoint_status not in ("InService", "Updating"):
        raise validation_error(
            f"Endpoint {name} of account {self.current_account} is not in service "
            f"(EndpointStatus {endpoint.endpoint_status}); wait for InService"
        )
    server = None
    try:
        server = server_for(backend, endpoint)
        answer = server.invoke(
            self.raw_body or b"",
            self.headers.get("Content-Type"),
            self.headers.get("Accept"),
            self.headers.get("X-Amzn-SageMaker-Custom-Attributes"),
        )
    except (sagemaker_serving.ModelServerError, OSError) as exc:
        answer = sagemaker_serving.Invocation(500, str(exc).encode(), "text/plain")
    variant = endpoint.production_variants[0]["VariantName"]
    if answer.status != 200:
        text = answer.body.decode("utf-8", errors="replace")
        kind = "client" if 400 <= answer.status < 500 else "server"
        group = ENDPOINT_LOG_GROUP.format(name=name)
        where = server.log_path if server and server.log_path else "the model server's log"
        raise model_error(
            f'Received {kind} error ({answer.status}) from primary with message "{text}". '
            f"See {where} (CloudWatch Logs group {group} on AWS) for more information.",
            answer.status,
            text,
            f"arn:aws:logs:{self.region}:{self.current_account}:log-group:{group}",
        )
    headers = {
        "Content-Type": answer.content_type,
        "x-Amzn-Invoked-Production-Variant": variant,
    }
    return 200, headers, answer.body
