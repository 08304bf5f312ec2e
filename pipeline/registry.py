"""`mlops models` and `mlops rollback`: read the model registry and move production back.

The registry's item formats belong to the promote Lambda (src/lambdas/promote.py);
this module reuses its adapter and item builders rather than restating them.
A rollback updates the endpoint first and moves the registry pointer only when
the endpoint accepted the change, so the two never disagree; the pointer write is
conditional on production not having moved meanwhile, and it is recorded as a
ROLLBACK#<time> item.
"""

from __future__ import annotations

from typing import Any

from lambdas import _aws, promote
from pipeline.config import ProjectConfig


class RegistryError(Exception):
    """A registry request that cannot be done; the message says why and what to do."""


def _registry(cfg: ProjectConfig) -> promote.Registry:
    import boto3

    client = boto3.Session(region_name=cfg.settings.project.region).client("dynamodb")
    return promote.Registry(client, cfg.names["table"])


def list_models(cfg: ProjectConfig) -> dict[str, Any]:
    """{"production": version or None, "models": [model items, newest first], "rollbacks": [...]}"""
    from botocore.exceptions import ClientError

    registry = _registry(cfg)
    items: list[dict[str, Any]] = []
    try:
        for page in registry.ddb.get_paginator("scan").paginate(
            TableName=registry.table, ConsistentRead=True
        ):
            items.extend(_aws.from_item(item) for item in page["Items"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            raise RegistryError(
                f"registry table {registry.table} does not exist. Fix: run `mlops deploy --env {cfg.env}`"
            ) from None
        raise
    pointer = next((i for i in items if i["pk"] == promote.POINTER_KEY), None)
    models = sorted(
        (i for i in items if i["pk"].startswith("MODEL#")), key=lambda i: -int(i["version"])
    )
    rollbacks = sorted((i for i in items if i["pk"].startswith("ROLLBACK#")), key=lambda i: i["pk"])
    return {
        "production": int(pointer["version"]) if pointer else None,
        "models": [{**m, "version": int(m["version"])} for m in models],
        "rollbacks": rollbacks,
    }


def _wait_for_endpoint(sagemaker, endpoint: str, config: str, timeout: float = 1800) -> None:
    """Return once the endpoint serves `config`; SageMaker keeps the old config serving (with a
    FailureReason) when an update fails, and then the registry must not move."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
        status, serving = described["EndpointStatus"], described.get("EndpointConfigName")
        if status == "InService" and serving == config:
            return
        if status == "Failed" or (status == "InService" and described.get("FailureReason")):
            raise RegistryError(
                f"endpoint {endpoint} did not take {config}: {described.get('FailureReason', status)}. "
                "The registry is unchanged"
            )
        time.sleep(0.5)
    raise RegistryError(
        f"endpoint {endpoint} still updating after {timeout:.0f}s; the registry is unchanged"
    )


def rollback(cfg: ProjectConfig, version: int) -> dict[str, Any]:
    """Serve model `version` again and record it; returns {"from", "to", "endpoint_config"}."""
    registry = _registry(cfg)
    try:
        model = registry.model(version)
    except promote.ModelNotFoundError:
        raise RegistryError(
            f"there is no model v{version}. Fix: pick a version from `mlops models`"
        ) from None
    pointer = registry.get(promote.POINTER_KEY)
    current = int(pointer["version"]) if pointer else None
    if current == version:
        raise RegistryError(f"v{version} is already in production; nothing to roll back")
    if model["status"] not in (promote.RETIRED, promote.PRODUCTION):
        raise RegistryError(
            f"v{version} has status {model['status']!r}: it never served, so no endpoint config exists "
            "for it. Fix: roll back to a 'retired' version (see `mlops models`)"
        )
    import boto3

    sagemaker = boto3.Session(region_name=cfg.settings.project.region).client("sagemaker")
    # The endpoint first: if SageMaker refuses, the registry still names what is serving.
    sagemaker.update_endpoint(
        EndpointName=cfg.names["endpoint"], EndpointConfigName=model["model_name"]
    )
    _wait_for_endpoint(sagemaker, cfg.names["endpoint"], model["model_name"])
    now = promote.utc_now()
    table = registry.table
    new_pointer = promote.pointer_item(model, now, current)
    writes: list[dict[str, Any]] = [
        {
            "Put": {
                "TableName": table,
                "Item": _aws.to_item(new_pointer),
                **(
                    {
                        "ConditionExpression": "#v = :current",
                        "ExpressionAttributeNames": {"#v": "version"},
                        "ExpressionAttributeValues": {":current": {"N": str(current)}},
                    }
                    if current is not None
                    else {"ConditionExpression": "attribute_not_exists(pk)"}
                ),
            }
        },
        {
            "Update": promote.update_request(
                table,
                promote.model_key(version),
                {"status": promote.PRODUCTION, "promoted_at": now},
            )
        },
        {
            "Put": {
                "TableName": table,
                "Item": _aws.to_item(
                    {
                        "pk": f"ROLLBACK#{now}",
                        "from_version": current,
                        "to_version": version,
                        "at": now,
                    }
                ),
            }
        },
    ]
    if current is not None:
        writes.append(
            {
                "Update": promote.update_request(
                    table,
                    promote.model_key(current),
                    {"status": promote.RETIRED, "retired_at": now},
                )
            }
        )
    failed = registry.transact(writes)
    if failed:
        raise RegistryError(
            f"production moved while rolling back ({failed}); the endpoint now serves v{version} but the "
            "registry names another model. Fix: run `mlops models` and roll back again"
        )
    return {"from": current, "to": version, "endpoint_config": model["model_name"]}
