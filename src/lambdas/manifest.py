"""Manifest Lambda: pin down exactly which objects a retraining run reads, name that content, and
name the run; claim the run so duplicate triggers train once.

Event (the state machine's Manifest task): {"input": <execution input>, "execution_id": "<ARN>"}.
The execution input is {"data_prefix": "raw/drop-001/", "commit": "<sha>"} from `mlops run`, or
{"data_key": "raw/drop-001/data.csv"} from the S3 -> EventBridge rule (the key that landed; its
folder is the drop). A run without a commit trains the deployed code: $CODE_VERSION, the commit the
stack was deployed from ("unknown" only if that is unset too).

`data_version` depends only on the content (keys relative to the prefix, ETags, sizes), so the same
files uploaded under another prefix are recognised as the same data. Before anything is written the
run is claimed in the registry table ($TABLE_NAME) as the item RUN#<commit>#<data_version>: a
second execution with the same identity (one event per file of a drop, a re-upload of the same
content, `mlops run` of the deployed commit on data an event already started) raises
DuplicateRunError, which the state machine ends as a clean duplicate. Then the manifest is written
to s3://$BUCKET/$MANIFEST_PREFIX<data_version>.json and the function returns where it is, what it
holds, and the names every later state uses (training job, processed data, channels, evaluation
archive). This function is the one place per-run names are made.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from lambdas import _aws

VERSION_LENGTH = 16
# run_key = 8 characters of the data version + "-" + 7 of the execution's hash: 16 in all, which
# is what config reserves after the training-job prefix (RUN_SUFFIX_LEN = 17 with the "-").
RUN_KEY_VERSION_CHARS = 8
RUN_KEY_EXECUTION_CHARS = 7
# SageMaker's rule for TrainingJobName.
TRAINING_JOB_NAME_LIMIT = 63
TRAINING_JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
CHANNELS = ("train", "validation", "test")
UNKNOWN_COMMIT = "unknown"


class EmptyDataDropError(RuntimeError):
    """The data prefix holds no objects, so there is nothing to train on."""


class DuplicateRunError(RuntimeError):
    """Another execution already trains this commit on this data (the state machine catches this
    by name and ends the execution as a clean duplicate)."""


@dataclass(frozen=True)
class Layout:
    """Where a run's data lives: the bucket, its key prefixes, and the training-job prefix."""

    bucket: str
    raw_prefix: str
    manifest_prefix: str
    processed_prefix: str
    models_prefix: str
    training_job_prefix: str

    @classmethod
    def from_env(cls) -> Layout:
        return cls(
            bucket=_aws.env("BUCKET"),
            raw_prefix=_prefix_env("RAW_PREFIX"),
            manifest_prefix=_prefix_env("MANIFEST_PREFIX"),
            processed_prefix=_prefix_env("PROCESSED_PREFIX"),
            models_prefix=_prefix_env("MODELS_PREFIX"),
            training_job_prefix=_aws.env("TRAINING_JOB_PREFIX"),
        )


def _prefix_env(name: str) -> str:
    value = _aws.env(name)
    if not value.endswith("/") or value.startswith("/"):
        # Joined into keys as is: without the slash 'raw' would also match 'rawfoo/...'.
        raise _aws.ConfigurationError(
            f"environment variable {name}={value!r} must be a key prefix ending in '/' and not "
            "starting with it, like 'raw/'"
        )
    return value


@_aws.retryable_aws_errors
def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    layout = Layout.from_env()
    table = _aws.env("TABLE_NAME")
    execution_id = _aws.field(event, "execution_id")
    prefix, commit = parse_input(event, layout.raw_prefix)
    s3 = _aws.client("s3")
    manifest = build_manifest(layout.bucket, prefix, list_objects(s3, layout.bucket, prefix))
    # Named before anything is written, so a configuration SageMaker would refuse leaves no trace.
    names = run_names(layout, manifest["data_version"], execution_id)
    claim = claim_run(
        _aws.client("dynamodb"), table, commit, manifest["data_version"], execution_id, prefix
    )
    key = f"{layout.manifest_prefix}{manifest['data_version']}.json"
    s3.put_object(
        Bucket=layout.bucket,
        Key=key,
        Body=json.dumps(manifest, indent=2, sort_keys=True).encode(),
        ContentType="application/json",
        # The body stays a pure function of the data; which execution wrote it is metadata.
        Metadata={"execution-id": execution_id},
    )
    return {
        "data_version": manifest["data_version"],
        "manifest_uri": _aws.s3_uri(layout.bucket, key),
        "input_uri": _aws.s3_uri(layout.bucket, prefix),
        "object_count": manifest["object_count"],
        "total_bytes": manifest["total_bytes"],
        "data_prefix": prefix,
        "commit": commit,
        "run_claim": claim,
        **names,
    }


def claim_run(
    ddb: Any, table: str, commit: str, data_version: str, execution_id: str, prefix: str
) -> str:
    """Record that `execution_id` trains `commit` on `data_version` and return the claim's key.

    One conditional put decides races inside DynamoDB: of executions claiming the same identity at
    once exactly one succeeds, the others get DuplicateRunError naming it. The same execution
    may claim again, since Step Functions retries a failed Manifest task within that execution.
    """
    pk = run_claim_key(commit, data_version)
    item = {
        "pk": pk,
        "execution_id": execution_id,
        "data_prefix": prefix,
        # The format of the other registry items' timestamps (promote.py).
        "claimed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    try:
        ddb.put_item(
            TableName=table,
            Item=_aws.to_item(item),
            ConditionExpression="attribute_not_exists(pk) OR execution_id = :me",
            ExpressionAttributeValues={":me": {"S": execution_id}},
            # The refusal carries the item that won, so no second read can miss or misreport it.
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise  # throttling and the like: the handler's decorator makes them TransientError
        owner = _aws.from_item(exc.response.get("Item", {}))
        raise DuplicateRunError(duplicate_message(commit, data_version, owner, table, pk)) from None
    return pk


def run_claim_key(commit: str, data_version: str) -> str:
    return f"RUN#{commit}#{data_version}"


def duplicate_message(
    commit: str, data_version: str, owner: Mapping[str, Any], table: str, pk: str
) -> str:
    """Why this execution stops, and what to do to train the same commit on the same data again."""
    # An execution ARN ends in the execution's name, which is what the console and `mlops` show.
    execution = str(owner.get("execution_id", "?")).rsplit(":", 1)[-1]
    return (
        f"commit {commit} on data version {data_version} is already handled by execution "
        f"{execution} (started {owner.get('claimed_at', '?')}); this execution ends as a "
        f"duplicate. To train them again on purpose, delete the item {pk} from {table} first"
    )


def parse_input(event: Mapping[str, Any], raw_prefix: str) -> tuple[str, str]:
    """(drop prefix, commit) from the execution input in `event`, however the run was started."""
    run_input = _aws.field(event, "input", dict)
    has_prefix = run_input.get("data_prefix") is not None
    has_key = run_input.get("data_key") is not None
    if has_prefix == has_key:
        raise _aws.EventError(
            "event field input must hold either data_prefix (from `mlops run`, like "
            "'raw/drop-001/') or data_key (from the S3 rule, like 'raw/drop-001/data.csv'), "
            f"got {'both' if has_prefix else 'neither'}"
        )
    if has_prefix:
        prefix = folder_prefix(_aws.field(event, "input.data_prefix"), "input.data_prefix")
    else:
        prefix = drop_of_key(_aws.field(event, "input.data_key"), raw_prefix)
    if not prefix.startswith(raw_prefix):
        raise _aws.EventError(
            f"data prefix {prefix!r} is not under {raw_prefix!r} (RAW_PREFIX), where drops are "
            f"read from; upload the drop as {raw_prefix}<drop>/<file> and start the run with that"
        )
    if run_input.get("commit") is None:
        # Started by new data (the S3 rule sends no commit): it trains the deployed code, whose
        # commit the stack sets as CODE_VERSION.
        return prefix, os.environ.get("CODE_VERSION", "").strip() or UNKNOWN_COMMIT
    return prefix, _aws.field(event, "input.commit")


def folder_prefix(prefix: str, name: str) -> str:
    """`prefix`, checked to be a folder-like key prefix inside the bucket; `name` is its field."""
    if prefix.startswith("/") or prefix.startswith("s3://"):
        raise _aws.EventError(
            f"event field {name} {prefix!r} must be a key prefix inside the bucket, "
            "like 'raw/drop-001/'"
        )
    if not prefix.endswith("/"):
        # Without the slash, 'raw/drop-1' would also list 'raw/drop-10/...'.
        raise _aws.EventError(
            f"event field {name} {prefix!r} must end with '/', like 'raw/drop-001/'"
        )
    return prefix


def drop_of_key(key: str, raw_prefix: str) -> str:
    """The drop folder ('raw/drop-001/') of an object key that landed ('raw/drop-001/data.csv')."""
    folder, slash, _ = key.rpartition("/")
    prefix = folder + slash
    if prefix == raw_prefix:
        raise _aws.EventError(
            f"object {key!r} landed directly under {raw_prefix!r}, outside any drop folder; "
            f"upload drops as {raw_prefix}<drop>/<file> so each run reads one drop"
        )
    if not prefix:
        raise _aws.EventError(
            f"object {key!r} is not in a folder; upload drops as {raw_prefix}<drop>/<file>"
        )
    return prefix


def run_key(data_version: str, execution_id: str) -> str:
    """16 characters naming one execution: the data version at a glance, then the execution's hash.

    Unique per execution (two executions on the same data differ in the second part), and a
    pure function of the two, so a retried Manifest task names the run the same way.
    """
    digest = hashlib.sha256(execution_id.encode("utf-8")).hexdigest()
    return f"{data_version[:RUN_KEY_VERSION_CHARS]}-{digest[:RUN_KEY_EXECUTION_CHARS]}"


def run_names(layout: Layout, data_version: str, execution_id: str) -> dict[str, Any]:
    """The per-run names the later states read from $.manifest."""
    key = run_key(data_version, execution_id)
    job_name = f"{layout.training_job_prefix}-{key}"
    if len(job_name) > TRAINING_JOB_NAME_LIMIT or not TRAINING_JOB_NAME_RE.match(job_name):
        raise _aws.ConfigurationError(
            f"training job name {job_name!r} ({len(job_name)} characters) breaks SageMaker's "
            f"rule of at most {TRAINING_JOB_NAME_LIMIT} letters, digits and hyphens; "
            f"TRAINING_JOB_PREFIX={layout.training_job_prefix!r} must be at most "
            f"{TRAINING_JOB_NAME_LIMIT - len(key) - 1} of them (the stack derives it from "
            "config/project.yaml, so redeploy)"
        )
    processed_uri = _aws.s3_uri(layout.bucket, f"{layout.processed_prefix}{key}/")
    return {
        "run_key": key,
        "training_job_name": job_name,
        "processed_uri": processed_uri,
        "channels": {channel: f"{processed_uri}{channel}/" for channel in CHANNELS},
        # SageMaker uploads /opt/ml/output/data of the job here (S3OutputPath = MODELS_PREFIX).
        "evaluation_uri": _aws.s3_uri(
            layout.bucket, f"{layout.models_prefix}{job_name}/output/output.tar.gz"
        ),
    }


def list_objects(
    s3: Any, bucket: str, prefix: str, page_size: int | None = None
) -> list[dict[str, Any]]:
    """Every object under `prefix` as {"key", "size", "etag"}, folder markers left out.

    S3 returns at most 1,000 keys per call (`page_size` asks for fewer); the paginator follows on.
    """
    config = {"PageSize": page_size} if page_size else {}
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig=config
    )
    objects = []
    for page in pages:
        for entry in page.get("Contents", []):
            # Consoles create zero-byte "folder/" keys; they are not data.
            if entry["Key"].endswith("/") and entry["Size"] == 0:
                continue
            objects.append(
                {"key": entry["Key"], "size": entry["Size"], "etag": entry["ETag"].strip('"')}
            )
    return objects


def data_version(prefix: str, objects: Iterable[Mapping[str, Any]]) -> str:
    """First 16 hex characters of sha256 over the sorted (relative key, etag, size) triples."""
    objects = list(objects)
    outside = [o["key"] for o in objects if not o["key"].startswith(prefix)]
    if outside:
        raise ValueError(f"keys {outside[:3]} are not under the prefix {prefix!r}")
    triples = sorted((o["key"][len(prefix) :], o["etag"], o["size"]) for o in objects)
    # JSON keeps the encoding unambiguous whatever characters the keys contain.
    canonical = json.dumps(triples, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:VERSION_LENGTH]


def build_manifest(bucket: str, prefix: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    if not objects:
        raise EmptyDataDropError(
            f"{_aws.s3_uri(bucket, prefix)} holds no objects; upload the data drop there "
            "before starting a run, or fix data_prefix"
        )
    ordered = sorted(objects, key=lambda o: o["key"])
    return {
        "bucket": bucket,
        "prefix": prefix,
        "objects": ordered,
        "object_count": len(ordered),
        "total_bytes": sum(o["size"] for o in ordered),
        "data_version": data_version(prefix, ordered),
    }
