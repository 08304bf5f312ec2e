"""The SageMaker executors' way back into the local cloud: boto3 clients, S3 staging, logs.

Training jobs and model servers read S3 and write CloudWatch Logs through boto3 against
the running moto server, as the real containers do against AWS, so a missing bucket or
key fails the same way it would there.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

WARM_SERVICES = ("s3", "logs", "sagemaker")
# put_log_events accepts at most 10,000 events and 1 MB per call.
LOG_BATCH = 1000


class S3UriError(ValueError):
    """A string that should be an s3://bucket/key URI is not one."""


def endpoint_url() -> str:
    from moto import settings

    return f"http://127.0.0.1:{settings.moto_server_port()}"


def client_env(region: str) -> dict[str, str]:
    """Environment for a subprocess that talks to this local cloud."""
    return {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint_url(),
    }


_clients: dict[tuple[str, str, str], object] = {}
_clients_lock = threading.Lock()
_session = None


def _get_session():
    """Under _clients_lock: the one boto3 session the executors share."""
    global _session
    if _session is None:
        import boto3

        _session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local")
    return _session


def client(service: str, region: str, validate: bool = True):
    """A boto3 client for this local cloud, made once per (service, region, server port).

    validate=False leaves request checks to the service, as Step Functions does: a bad
    parameter is then the service's ValidationException, not a client-side error.
    """
    from botocore.config import Config

    key = (service, region, endpoint_url(), validate)
    # Creating clients is not thread-safe (using them is), and a new session re-reads the
    # service models; so one session, clients made under a lock.
    with _clients_lock:
        if key not in _clients:
            _clients[key] = _get_session().client(
                service,
                region_name=region,
                endpoint_url=key[2],
                config=Config(parameter_validation=validate),
            )
        return _clients[key]


def warm_up(region: str = "us-east-1", services: Iterable[str] = WARM_SERVICES) -> None:
    """Make a first client per service early: botocore's one-time set-up and the SageMaker
    model (the largest botocore ships) cost a second on the first job otherwise."""
    for service in services:
        client(service, region)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri or "")
    if parsed.scheme != "s3" or not parsed.netloc:
        raise S3UriError(f"{uri!r} is not an S3 URI; expected s3://bucket/key")
    return parsed.netloc, parsed.path.lstrip("/")


def relative_key(prefix: str, key: str) -> str:
    """Where SageMaker puts object `key` of an S3Prefix channel, relative to the channel dir."""
    rest = key[len(prefix) :].lstrip("/")
    return rest or key.rsplit("/", 1)[-1]


def download_prefix(s3, uri: str, target: Path) -> list[Path]:
    """Copy every object under the S3 prefix `uri` into `target`; returns the files written."""
    bucket, prefix = parse_s3_uri(uri)
    written = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/"):  # a console-made "folder" marker
                continue
            path = target / relative_key(prefix, item["Key"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            written.append(path)
    return written


def read_object(s3, uri: str) -> bytes:
    bucket, key = parse_s3_uri(uri)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def unpack_tar_gz(body: bytes, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as archive:
        # "data" refuses absolute paths, links out of the tree and device files.
        archive.extractall(target, filter="data")


def tar_gz_dir(root: Path) -> bytes:
    """A tar.gz of the files under `root`, paths relative to it (as SageMaker packs model/)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for path in sorted(root.rglob("*")):
            archive.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)
    return buf.getvalue()


def put_object(s3, uri: str, body: bytes) -> None:
    bucket, key = parse_s3_uri(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def put_logs(logs, group: str, stream: str, lines: Iterable[tuple[float, str]]) -> None:
    """Write (epoch seconds, message) lines to a CloudWatch Logs stream, creating both."""
    exists = logs.exceptions.ResourceAlreadyExistsException
    with contextlib.suppress(exists):
        logs.create_log_group(logGroupName=group)
    with contextlib.suppress(exists):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    events = [
        {"timestamp": int(at * 1000), "message": message or " "} for at, message in lines
    ] or [{"timestamp": int(time.time() * 1000), "message": "(no output)"}]
    for start in range(0, len(events), LOG_BATCH):
        logs.put_log_events(
            logGroupName=group, logStreamName=stream, logEvents=events[start : start + LOG_BATCH]
        )
