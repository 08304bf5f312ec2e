"""`mlops data push` and `mlops predict`: put a data drop in S3, ask the endpoint.

Uploading a drop under raw/ is also what starts a retraining on its own (the
stack's S3 -> EventBridge rule); `mlops run` starts one explicitly.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.config import ProjectConfig

DROP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class DataError(Exception):
    """A data or prediction request that cannot be done; the message says why."""


def _session(cfg: ProjectConfig):
    import boto3

    return boto3.Session(region_name=cfg.settings.project.region)


def push(cfg: ProjectConfig, path: Path, drop: str | None = None) -> tuple[str, list[str]]:
    """Upload a file or every file of a folder to raw/<drop>/; returns (prefix, keys)."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    files = [f for f in files if not f.name.startswith(".")]
    if not files:
        raise DataError(f"{path}: no files to upload")
    drop = drop or (path.parent.name if path.is_file() else path.name)
    if not DROP_RE.match(drop):
        raise DataError(
            f"drop name {drop!r}: use letters, digits, '.', '_' or '-' (pass --drop NAME)"
        )
    prefix = f"raw/{drop}/"
    s3 = _session(cfg).client("s3")
    keys = []
    base = path.parent if path.is_file() else path
    for file in files:
        key = prefix + file.relative_to(base).as_posix()
        s3.upload_file(str(file), cfg.names["bucket"], key)
        keys.append(key)
    return prefix, keys


def predict(cfg: ProjectConfig, body: str, content_type: str = "text/csv") -> str:
    from botocore.exceptions import ClientError

    runtime = _session(cfg).client("sagemaker-runtime")
    try:
        response = runtime.invoke_endpoint(
            EndpointName=cfg.names["endpoint"],
            Body=body.encode(),
            ContentType=content_type,
            Accept="application/json",
        )
    except ClientError as exc:
        raise DataError(
            f"endpoint {cfg.names['endpoint']}: {exc.response['Error'].get('Message', exc)}. "
            "Fix: check the request's columns against data.feature_columns, or promote a model first"
        ) from None
    return response["Body"].read().decode()
