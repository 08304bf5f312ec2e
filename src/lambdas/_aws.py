"""Helpers the Lambda modules share: errors, settings, event fields, clients, S3 URIs, DynamoDB items.

Only the standard library and boto3 are imported: this package runs in the Lambda runtime as-is.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError


class ConfigurationError(RuntimeError):
    """A deployment constant (an environment variable of the function) is missing or invalid."""


class EventError(ValueError):
    """The event a function was invoked with lacks a field or has one of the wrong shape."""


class TransientError(RuntimeError):
    """An AWS call failed in a way a later attempt can fix (throttling, a 5xx, a lost connection).

    The state machine retries Task errors of this name, so the class name is part of the contract.
    """


# botocore has already retried these a few times before they reach us.
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "ServiceUnavailable",
        "SlowDown",
        "ThrottledException",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "TransactionConflictException",
        "TransactionInProgressException",
    }
)

Handler = TypeVar("Handler", bound=Callable[..., Any])


def retryable_aws_errors(handler: Handler) -> Handler:
    """Re-raise throttling-like AWS failures of `handler` as TransientError; others unchanged."""

    @functools.wraps(handler)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") not in TRANSIENT_CODES:
                raise
            raise TransientError(
                f"{exc.operation_name} failed with {error.get('Code')}: {error.get('Message')}; "
                "a retry will run the step again"
            ) from exc
        except (BotocoreConnectionError, HTTPClientError) as exc:
            raise TransientError(
                f"lost the connection to AWS ({exc}); a retry will run the step again"
            ) from exc

    return wrapped  # type: ignore[return-value]


# --- settings and event fields ----------------------------------------------------------


def env(name: str) -> str:
    """The environment variable `name`, read at call time so tests and warm starts see changes."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(
            f"environment variable {name} is not set on this function; the stack sets it from "
            "config/project.yaml, so redeploy, or set it by hand when invoking locally"
        )
    return value


def env_float(name: str) -> float:
    raw = env(name)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable {name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigurationError(f"environment variable {name}={raw!r} is not a finite number")
    return value


def field(event: Mapping[str, Any], path: str, kind: type | tuple[type, ...] = str) -> Any:
    """The value at dotted `path` in `event`, checked to be a `kind` (and non-empty if a string).

    The error names the whole path (e.g. `candidate.evaluation.metric`) so a broken state machine
    mapping is found from the message alone.
    """
    value: Any = event
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        if not isinstance(value, Mapping):
            parent = ".".join(walked[:-1])
            raise EventError(
                f"event field {parent} must be an object"
                if parent
                else "the event must be a JSON object"
            )
        if part not in value or value[part] is None:
            raise EventError(f"event field {'.'.join(walked)} is missing")
        value = value[part]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int subclass: True must not pass as a version number or a metric.
    if isinstance(value, bool) and bool not in kinds:
        raise EventError(f"event field {path} must be {_kind_names(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise EventError(
            f"event field {path} must be {_kind_names(kinds)}, got {type(value).__name__}"
        )
    if isinstance(value, str) and not value.strip():
        raise EventError(f"event field {path} is an empty string")
    return value


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
    names |= {dict: "an object", list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


# --- clients ------------------------------------------------------------------------------

_clients: dict[str, Any] = {}
# boto3's default session is not thread-safe while it creates clients; the clients themselves are.
_clients_lock = threading.Lock()


def client(service: str) -> Any:
    """A boto3 client for `service`, created on first use and reused across warm invocations."""
    with _clients_lock:
        if service not in _clients:
            _clients[service] = boto3.client(service)
        return _clients[service]


def reset_clients() -> None:
    """Forget cached clients (tests start a fresh moto mock per test)."""
    with _clients_lock:
        _clients.clear()


# --- S3 URIs --------------------------------------------------------------------------------


def parse_s3_uri(uri: str, *, what: str = "S3 URI") -> tuple[str, str]:
    """Split `s3://bucket/key` into (bucket, key); the key may be empty for a bucket URI."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise EventError(f"{what} {uri!r} must start with s3://")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise EventError(f"{what} {uri!r} has no bucket name")
    return bucket, key


def s3_uri(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"


# --- DynamoDB typed attributes -----------------------------------------------------------

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_dynamo_value(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"DynamoDB cannot store the number {value!r}")
        # repr is the shortest string that round-trips: 0.9412 is stored as "0.9412", not as the
        # 50-digit binary expansion Decimal(0.9412) would give.
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {str(k): _to_dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo_value(v) for v in value]
    return value


def _from_dynamo_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Integral numbers written without a fraction (versions, counts) come back as int.
        if value == value.to_integral_value() and value.as_tuple().exponent >= 0:
            return int(value)
        return float(value)
    if isinstance(value, Mapping):
        return {k: _from_dynamo_value(v) for k, v in value.items()}
    if isinstance(value, list | set | frozenset):
        return [_from_dynamo_value(v) for v in value]
    return value


def to_attribute_value(value: Any) -> dict[str, Any]:
    """One plain JSON value as a DynamoDB typed attribute ({"N": "0.94"}, {"S": ...}, ...)."""
    return _serializer.serialize(_to_dynamo_value(value))


def to_item(plain: Mapping[str, Any]) -> dict[str, Any]:
    """A plain JSON-like dict (floats allowed) as DynamoDB typed attributes."""
    return {key: to_attribute_value(value) for key, value in plain.items()}


def from_item(typed: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB typed attributes as a plain JSON-serialisable dict (no Decimal, no sets)."""
    return {
        key: _from_dynamo_value(_deserializer.deserialize(value)) for key, value in typed.items()
    }
