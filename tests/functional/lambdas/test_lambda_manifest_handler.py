"""The manifest handler against moto S3 with the sample data drops, fed the state machine's event."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from lambdas import _aws, manifest
from lambdas._aws import ConfigurationError, EventError, TransientError
from lambdas.manifest import DuplicateRunError, EmptyDataDropError

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample"
BUCKET = "tumor-triage-dev-data"  # $BUCKET in the functional conftest
TABLE = "tumor-triage-dev-models"  # $TABLE_NAME in the functional conftest
EXECUTION = "arn:aws:states:eu-west-1:123456789012:execution:tumor-triage-dev-retrain:"


@pytest.fixture(autouse=True)
def registry(ddb):
    """The registry table the manifest claims runs in."""
    return ddb


def upload_drop(s3, drop: str, prefix: str) -> None:
    s3.put_object(Bucket=BUCKET, Key=prefix, Body=b"")  # the console's "folder" marker
    data = (SAMPLE / drop / "data.csv").read_bytes()
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}data.csv", Body=data)


def read_json(s3, uri: str) -> dict:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def s3_event(key: str, name: str) -> dict:
    """The Manifest task's parameters for an execution the S3 rule started (it sends no commit)."""
    return {"input": {"data_key": key}, "execution_id": EXECUTION + name}


def claim_item(ddb, pk: str) -> dict | None:
    item = ddb.get_item(TableName=TABLE, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")
    return _aws.from_item(item) if item else None


def event(prefix: str, name: str = "run-1", **extra) -> dict:
    """The Manifest task's parameters for an execution started by `mlops run`."""
    return {
        "input": {"data_prefix": prefix, "commit": "abc123", **extra},
        "execution_id": EXECUTION + name,
    }


def test_manifest_lists_the_drop_and_writes_it_under_its_data_version(s3, load_event):
    event = load_event("manifest")
    upload_drop(s3, "drop-001", "raw/drop-001/")
    size = (SAMPLE / "drop-001" / "data.csv").stat().st_size

    out = manifest.handler(event, None)

    version = out["data_version"]
    run_key = f"{version[:8]}-{hashlib.sha256(event['execution_id'].encode()).hexdigest()[:7]}"
    processed = f"s3://{BUCKET}/processed/{run_key}/"
    assert out == {
        "data_version": version,
        "manifest_uri": f"s3://{BUCKET}/manifests/{version}.json",
        "input_uri": f"s3://{BUCKET}/raw/drop-001/",
        "object_count": 1,
        "total_bytes": size,
        "run_claim": f"RUN#{event['input']['commit']}#{version}",
        "data_prefix": "raw/drop-001/",
        "commit": event["input"]["commit"],
        "run_key": run_key,
        "training_job_name": f"tumor-triage-dev-{run_key}",
        "processed_uri": processed,
        "channels": {
            "train": f"{processed}train/",
            "validation": f"{processed}validation/",
            "test": f"{processed}test/",
        },
        "evaluation_uri": (f"s3://{BUCKET}/models/tumor-triage-dev-{run_key}/output/output.tar.gz"),
    }
    assert len(version) == 16
    int(version, 16)
    written = read_json(s3, out["manifest_uri"])
    etag = s3.head_object(Bucket=BUCKET, Key="raw/drop-001/data.csv")["ETag"].strip('"')
    assert written == {
        "bucket": BUCKET,
        "prefix": "raw/drop-001/",
        "objects": [{"key": "raw/drop-001/data.csv", "size": size, "etag": etag}],
        "object_count": 1,
        "total_bytes": size,
        "data_version": version,
    }


def test_a_run_started_by_the_s3_rule_manifests_the_folder_of_the_key(s3, load_event, lambda_env):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    from_cli = manifest.handler(load_event("manifest"), None)

    out = manifest.handler(load_event("manifest_s3_event"), None)

    assert out["data_prefix"] == "raw/drop-001/"
    assert out["input_uri"] == f"s3://{BUCKET}/raw/drop-001/"
    # The rule sends no commit: the run trains the deployed code, another commit than the CLI's.
    assert out["commit"] == lambda_env["CODE_VERSION"] != from_cli["commit"]
    assert out["run_claim"] == f"RUN#{lambda_env['CODE_VERSION']}#{out['data_version']}"
    assert out["data_version"] == from_cli["data_version"]
    # Same data, another execution: its own run key, so its own job and processed data.
    assert out["run_key"][:8] == from_cli["run_key"][:8]
    assert out["run_key"] != from_cli["run_key"]
    assert out["training_job_name"] != from_cli["training_job_name"]
    assert out["processed_uri"] != from_cli["processed_uri"]


def test_manifest_records_the_execution_id_as_object_metadata(s3, load_event):
    event = load_event("manifest")
    upload_drop(s3, "drop-001", "raw/drop-001/")
    out = manifest.handler(event, None)
    key = out["manifest_uri"].removeprefix(f"s3://{BUCKET}/")
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["Metadata"] == {"execution-id": event["execution_id"]}
    assert head["ContentType"] == "application/json"


def test_a_retried_manifest_task_names_the_run_the_same_way(s3, load_event):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    first = manifest.handler(load_event("manifest"), None)
    assert manifest.handler(load_event("manifest"), None) == first


def test_without_a_commit_or_code_version_the_run_records_unknown(s3, monkeypatch):
    monkeypatch.delenv("CODE_VERSION")
    upload_drop(s3, "drop-001", "raw/drop-001/")
    out = manifest.handler({"input": {"data_prefix": "raw/drop-001/"}, "execution_id": "x"}, None)
    assert out["commit"] == "unknown"
    assert out["run_claim"] == f"RUN#unknown#{out['data_version']}"


def test_same_data_under_another_prefix_has_the_same_version(s3, load_event):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    upload_drop(s3, "drop-001", "raw/replayed/drop-001-again/")
    first = manifest.handler(load_event("manifest"), None)
    again = manifest.handler(event("raw/replayed/drop-001-again/", "run-2"), None)
    assert again["data_version"] == first["data_version"]
    assert again["input_uri"] == f"s3://{BUCKET}/raw/replayed/drop-001-again/"


def test_other_data_has_another_version(s3):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    upload_drop(s3, "drop-002", "raw/drop-002/")
    one = manifest.handler(event("raw/drop-001/", "r1"), None)
    two = manifest.handler(event("raw/drop-002/", "r2"), None)
    assert one["data_version"] != two["data_version"]


def test_a_sibling_prefix_with_a_longer_name_is_not_listed(s3):
    upload_drop(s3, "drop-001", "raw/drop-1/")
    upload_drop(s3, "drop-002", "raw/drop-10/")
    out = manifest.handler(event("raw/drop-1/"), None)
    assert out["object_count"] == 1


def test_listing_follows_pagination_across_pages(s3):
    prefix = "raw/many/"
    s3.put_object(Bucket=BUCKET, Key=prefix, Body=b"")
    for i in range(7):
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}part-{i:05d}.csv", Body=b"x" * (i + 1))
    calls = []
    s3.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append(1))

    objects = manifest.list_objects(s3, BUCKET, prefix, page_size=2)

    assert len(calls) == 4  # 8 keys, 2 a page; the folder marker is listed, then dropped
    assert [o["key"] for o in objects] == [f"{prefix}part-{i:05d}.csv" for i in range(7)]
    assert [o["size"] for o in objects] == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("marker_only", [False, True], ids=["nothing", "folder-marker-only"])
def test_an_empty_drop_raises_naming_the_s3_uri(s3, marker_only):
    if marker_only:
        s3.put_object(Bucket=BUCKET, Key="raw/drop-009/", Body=b"")
    with pytest.raises(EmptyDataDropError, match=f"s3://{BUCKET}/raw/drop-009/ holds no objects"):
        manifest.handler(event("raw/drop-009/"), None)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="manifests/")


def test_a_console_folder_marker_landing_starts_a_run_that_finds_the_drop_empty(s3):
    # The S3 rule fires for the zero-byte "raw/drop-009/" key the console creates.
    s3.put_object(Bucket=BUCKET, Key="raw/drop-009/", Body=b"")
    with pytest.raises(EmptyDataDropError, match=f"s3://{BUCKET}/raw/drop-009/ holds no objects"):
        manifest.handler(s3_event("raw/drop-009/", "x"), None)


def test_a_missing_execution_id_is_an_event_error(s3, load_event):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    event = load_event("manifest")
    del event["execution_id"]
    with pytest.raises(EventError, match="execution_id is missing"):
        manifest.handler(event, None)


def test_a_prefix_outside_the_raw_prefix_is_refused(s3):
    upload_drop(s3, "drop-001", "processed/drop-001/")
    with pytest.raises(EventError, match="'processed/drop-001/' is not under 'raw/'"):
        manifest.handler(event("processed/drop-001/"), None)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="manifests/")


def test_the_raw_prefix_comes_from_the_environment(s3, monkeypatch):
    monkeypatch.setenv("RAW_PREFIX", "landing/")
    upload_drop(s3, "drop-001", "landing/drop-001/")
    assert manifest.handler(event("landing/drop-001/"), None)["object_count"] == 1
    with pytest.raises(EventError, match="is not under 'landing/'"):
        manifest.handler(event("raw/drop-001/"), None)


@pytest.mark.parametrize(
    "name",
    [
        "BUCKET",
        "RAW_PREFIX",
        "MANIFEST_PREFIX",
        "PROCESSED_PREFIX",
        "MODELS_PREFIX",
        "TRAINING_JOB_PREFIX",
        "TABLE_NAME",
    ],
)
def test_a_missing_setting_is_a_configuration_error_naming_it(s3, monkeypatch, load_event, name):
    monkeypatch.delenv(name)
    with pytest.raises(ConfigurationError, match=name):
        manifest.handler(load_event("manifest"), None)


def test_a_prefix_setting_without_its_slash_is_a_configuration_error(s3, monkeypatch, load_event):
    monkeypatch.setenv("PROCESSED_PREFIX", "processed")
    with pytest.raises(ConfigurationError, match="PROCESSED_PREFIX='processed' must be a key"):
        manifest.handler(load_event("manifest"), None)


def test_a_training_job_prefix_too_long_for_sagemaker_is_a_configuration_error(
    s3, monkeypatch, load_event
):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    monkeypatch.setenv("TRAINING_JOB_PREFIX", "t" * 47)
    with pytest.raises(ConfigurationError, match="TRAINING_JOB_PREFIX='t{47}' must be at most 46"):
        manifest.handler(load_event("manifest"), None)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="manifests/")


def test_the_claim_records_the_execution_the_drop_and_when(s3, ddb):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    before = datetime.now(UTC)

    out = manifest.handler(event("raw/drop-001/", "first"), None)

    item = claim_item(ddb, out["run_claim"])
    claimed_at = item.pop("claimed_at")
    assert item == {
        "pk": f"RUN#abc123#{out['data_version']}",
        "execution_id": EXECUTION + "first",
        "data_prefix": "raw/drop-001/",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", claimed_at)
    stamp = datetime.strptime(claimed_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before <= stamp <= datetime.now(UTC) + timedelta(seconds=1)


def test_a_second_execution_for_the_same_commit_and_data_is_a_duplicate(s3, ddb):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    first = manifest.handler(event("raw/drop-001/", "first"), None)
    claimed = claim_item(ddb, first["run_claim"])

    with pytest.raises(
        DuplicateRunError,
        match=(
            rf"commit abc123 on data version {first['data_version']} is already handled by "
            rf"execution first \(started {re.escape(claimed['claimed_at'])}\).*delete the item "
            rf"RUN#abc123#{first['data_version']} from {TABLE}"
        ),
    ):
        manifest.handler(event("raw/drop-001/", "second"), None)

    # The duplicate changed nothing: the claim and the manifest are still the first's.
    assert claim_item(ddb, first["run_claim"]) == claimed
    key = first["manifest_uri"].removeprefix(f"s3://{BUCKET}/")
    assert s3.head_object(Bucket=BUCKET, Key=key)["Metadata"] == {
        "execution-id": EXECUTION + "first"
    }


def test_a_retry_of_the_same_execution_claims_again(s3, ddb):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    first = manifest.handler(event("raw/drop-001/", "same"), None)
    again = manifest.handler(event("raw/drop-001/", "same"), None)
    assert again == first
    assert claim_item(ddb, first["run_claim"])["execution_id"] == EXECUTION + "same"


def test_another_commit_or_other_data_is_not_a_duplicate(s3, ddb):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    upload_drop(s3, "drop-002", "raw/drop-002/")
    one = manifest.handler(event("raw/drop-001/", "one"), None)
    two = manifest.handler(event("raw/drop-001/", "two", commit="def456"), None)
    three = manifest.handler(event("raw/drop-002/", "three"), None)
    claims = [one["run_claim"], two["run_claim"], three["run_claim"]]
    assert len(set(claims)) == 3
    owners = [claim_item(ddb, pk)["execution_id"] for pk in claims]
    assert owners == [EXECUTION + "one", EXECUTION + "two", EXECUTION + "three"]


def test_one_event_per_file_of_a_drop_trains_once(s3):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    s3.put_object(Bucket=BUCKET, Key="raw/drop-001/notes.txt", Body=b"second file of the drop")
    manifest.handler(s3_event("raw/drop-001/data.csv", "event-1"), None)
    with pytest.raises(DuplicateRunError, match="already handled by execution event-1"):
        manifest.handler(s3_event("raw/drop-001/notes.txt", "event-2"), None)


def test_a_reupload_of_the_same_content_under_another_folder_is_a_duplicate(s3):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    manifest.handler(s3_event("raw/drop-001/data.csv", "original"), None)
    upload_drop(s3, "drop-001", "raw/drop-001-again/")
    with pytest.raises(DuplicateRunError, match="already handled by execution original"):
        manifest.handler(s3_event("raw/drop-001-again/data.csv", "reupload"), None)


def test_mlops_run_of_the_deployed_commit_on_data_an_event_started_is_a_duplicate(s3, lambda_env):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    manifest.handler(s3_event("raw/drop-001/data.csv", "from-event"), None)
    deployed = lambda_env["CODE_VERSION"]
    with pytest.raises(DuplicateRunError, match=f"commit {deployed} .* execution from-event"):
        manifest.handler(event("raw/drop-001/", "from-cli", commit=deployed), None)


def test_racing_executions_with_one_identity_have_one_winner(s3, ddb, serialised_moto):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    outcomes: dict[str, str] = {}
    start_together = threading.Barrier(6)

    def start(name: str) -> None:
        start_together.wait()
        try:
            outcomes[name] = manifest.handler(event("raw/drop-001/", name), None)["run_claim"]
        except DuplicateRunError as exc:
            outcomes[name] = str(exc)

    threads = [threading.Thread(target=start, args=(f"racer-{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [name for name, out in outcomes.items() if out.startswith("RUN#")]
    assert len(outcomes) == 6 and len(winners) == 1
    assert claim_item(ddb, outcomes[winners[0]])["execution_id"] == EXECUTION + winners[0]
    # Every loser names the winner, not another loser.
    losers = [out for name, out in outcomes.items() if name != winners[0]]
    assert all(f"execution {winners[0]} (started" in out for out in losers)


def test_runs_started_by_new_data_train_the_deployed_commit(s3, monkeypatch):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    monkeypatch.setenv("CODE_VERSION", "deployed42")
    out = manifest.handler(s3_event("raw/drop-001/data.csv", "s3"), None)
    assert out["commit"] == "deployed42"
    assert out["run_claim"] == f"RUN#deployed42#{out['data_version']}"


def test_a_throttled_claim_is_a_transient_error_and_writes_no_manifest(s3, ddb):
    upload_drop(s3, "drop-001", "raw/drop-001/")

    def throttled(**_):
        # What DynamoDB answers once botocore's own retries are spent.
        error = {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"}
        return AWSResponse("https://dynamodb.eu-west-1.amazonaws.com/", 400, {}, None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    _aws.client("dynamodb").meta.events.register("before-call.dynamodb.PutItem", throttled)
    with pytest.raises(TransientError, match="PutItem failed with ProvisionedThroughputExceeded"):
        manifest.handler(event("raw/drop-001/", "throttled"), None)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="manifests/")


def test_a_missing_registry_table_is_not_a_duplicate_but_an_aws_error(s3, monkeypatch):
    upload_drop(s3, "drop-001", "raw/drop-001/")
    monkeypatch.setenv("TABLE_NAME", "no-such-table")
    with pytest.raises(ClientError) as caught:
        manifest.handler(event("raw/drop-001/"), None)
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
