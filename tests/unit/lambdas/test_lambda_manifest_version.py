"""The data version of a manifest (stable, content-only, sensitive to every content change), the
execution input it is read from, and the per-run names derived from it."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from lambdas._aws import ConfigurationError, EventError
from lambdas.manifest import (
    EmptyDataDropError,
    Layout,
    build_manifest,
    data_version,
    duplicate_message,
    parse_input,
    run_claim_key,
    run_key,
    run_names,
)

PREFIX = "raw/drop-001/"
OBJECTS = [
    {"key": "raw/drop-001/extra/b.csv", "size": 12, "etag": "0cc175b9c0f1b6a831c399e269772661"},
    {"key": "raw/drop-001/data.csv", "size": 10240, "etag": "9b2cf535f27731c974343645a3985328"},
]


def moved(objects, old, new):
    return [dict(o, key=new + o["key"][len(old) :]) for o in objects]


def test_data_version_is_sha256_of_the_sorted_relative_triples_as_compact_json():
    canonical = (
        '[["data.csv","9b2cf535f27731c974343645a3985328",10240],'
        '["extra/b.csv","0cc175b9c0f1b6a831c399e269772661",12]]'
    )
    expected = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert data_version(PREFIX, OBJECTS) == expected


def test_data_version_is_pinned_so_an_encoding_change_is_noticed():
    # Every manifest ever written is named by this value; changing it silently re-versions data.
    assert data_version(PREFIX, OBJECTS) == "03621f771b78ad54"


def test_data_version_ignores_listing_order():
    assert data_version(PREFIX, list(reversed(OBJECTS))) == data_version(PREFIX, OBJECTS)


def test_same_content_under_another_prefix_has_the_same_version():
    elsewhere = moved(OBJECTS, PREFIX, "raw/2025/01/drop-b/")
    assert data_version("raw/2025/01/drop-b/", elsewhere) == data_version(PREFIX, OBJECTS)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"etag": "ffffffffffffffffffffffffffffffff"}, id="etag"),
        pytest.param({"size": 10241}, id="size"),
        pytest.param({"key": "raw/drop-001/data-v2.csv"}, id="relative-key"),
    ],
)
def test_any_content_change_gives_another_version(change):
    changed = [dict(OBJECTS[0]), dict(OBJECTS[1], **change)]
    assert data_version(PREFIX, changed) != data_version(PREFIX, OBJECTS)


def test_an_added_object_gives_another_version():
    extra = {"key": "raw/drop-001/c.csv", "size": 1, "etag": "c4ca4238a0b923820dcc509a6f75849b"}
    assert data_version(PREFIX, [*OBJECTS, extra]) != data_version(PREFIX, OBJECTS)


def test_manifest_lists_objects_sorted_by_key_with_totals():
    manifest = build_manifest("tumor-triage-dev-data", PREFIX, OBJECTS)
    assert [o["key"] for o in manifest["objects"]] == [
        "raw/drop-001/data.csv",
        "raw/drop-001/extra/b.csv",
    ]
    assert manifest["object_count"] == 2
    assert manifest["total_bytes"] == 10252
    assert manifest["bucket"] == "tumor-triage-dev-data"
    assert manifest["prefix"] == PREFIX
    assert manifest["data_version"] == data_version(PREFIX, OBJECTS)


def test_empty_drop_raises_naming_the_s3_uri():
    with pytest.raises(EmptyDataDropError, match=r"s3://tumor-triage-dev-data/raw/drop-009/"):
        build_manifest("tumor-triage-dev-data", "raw/drop-009/", [])


COMMIT = "4e1d2c3b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d"
EXECUTION = "arn:aws:states:eu-west-1:123456789012:execution:tumor-triage-dev-retrain:run-1"
LAYOUT = Layout(
    bucket="tumor-triage-dev-data",
    raw_prefix="raw/",
    manifest_prefix="manifests/",
    processed_prefix="processed/",
    models_prefix="models/",
    training_job_prefix="tumor-triage-dev",
)


def parse(run_input):
    return parse_input({"input": run_input, "execution_id": EXECUTION}, "raw/")


def test_input_from_mlops_run_gives_its_prefix_and_commit(load_event):
    event = load_event("manifest")
    assert parse_input(event, "raw/") == ("raw/drop-001/", COMMIT)


def test_input_from_the_s3_rule_gives_the_folder_of_the_key_and_the_deployed_commit(
    load_event, monkeypatch
):
    monkeypatch.setenv("CODE_VERSION", "deployed0123")
    event = load_event("manifest_s3_event")
    assert "commit" not in event["input"]  # the rule sends only the key
    assert parse_input(event, "raw/") == ("raw/drop-001/", "deployed0123")


def test_an_explicit_commit_wins_over_the_deployed_one(load_event, monkeypatch):
    monkeypatch.setenv("CODE_VERSION", "deployed0123")
    assert parse_input(load_event("manifest"), "raw/")[1] == COMMIT


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        ("raw/drop-001/data.csv", "raw/drop-001/"),
        ("raw/2025/01/drop-b/part-0.csv", "raw/2025/01/drop-b/"),
        # The console's "create folder" marker names the folder itself.
        ("raw/drop-009/", "raw/drop-009/"),
    ],
)
def test_a_data_key_names_its_directory_as_the_drop(key, prefix):
    assert parse({"data_key": key})[0] == prefix


@pytest.mark.parametrize(
    "run_input", [{"data_prefix": "raw/d/"}, {"data_prefix": "raw/d/", "commit": None}]
)
def test_a_missing_commit_is_the_deployed_commit_from_code_version(run_input, monkeypatch):
    monkeypatch.setenv("CODE_VERSION", "deployed0123")
    assert parse(run_input) == ("raw/d/", "deployed0123")


@pytest.mark.parametrize("code_version", [None, "", "  "], ids=["unset", "empty", "blank"])
def test_without_a_commit_or_code_version_the_commit_is_unknown(code_version, monkeypatch):
    if code_version is None:
        monkeypatch.delenv("CODE_VERSION", raising=False)
    else:
        monkeypatch.setenv("CODE_VERSION", code_version)
    assert parse({"data_prefix": "raw/d/"}) == ("raw/d/", "unknown")


@pytest.mark.parametrize(
    ("run_input", "message"),
    [
        ({}, "either data_prefix .* or data_key .*, got neither"),
        (
            {"data_prefix": "raw/d/", "data_key": "raw/d/x.csv"},
            "either data_prefix .* or data_key .*, got both",
        ),
        ({"data_prefix": ""}, "input.data_prefix is an empty string"),
        ({"data_prefix": 7}, "input.data_prefix must be a string"),
        ({"data_prefix": "raw/drop-001"}, "input.data_prefix 'raw/drop-001' must end with '/'"),
        ({"data_prefix": "/raw/drop-001/"}, "must be a key prefix inside the bucket"),
        ({"data_prefix": "s3://b/raw/drop-001/"}, "must be a key prefix inside the bucket"),
        ({"data_prefix": "processed/drop-001/"}, r"'processed/drop-001/' is not under 'raw/'"),
        ({"data_key": ["raw/d/x.csv"]}, "input.data_key must be a string"),
        ({"data_key": "incoming/d/x.csv"}, r"'incoming/d/' is not under 'raw/'"),
        ({"data_key": "data.csv"}, r"'data.csv' is not in a folder; upload drops as raw/<drop>/"),
        ({"data_prefix": "raw/d/", "commit": ""}, "input.commit is an empty string"),
    ],
)
def test_bad_execution_input_raises_event_error_naming_the_field(run_input, message):
    with pytest.raises(EventError, match=message):
        parse(run_input)


def test_a_key_directly_under_the_raw_prefix_says_to_upload_into_a_drop_folder():
    with pytest.raises(
        EventError, match=r"directly under 'raw/'.*upload drops as raw/<drop>/<file>"
    ):
        parse({"data_key": "raw/data.csv"})


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"execution_id": EXECUTION}, "event field input is missing"),
        ({"input": "raw/drop-001/"}, "event field input must be an object"),
    ],
)
def test_an_event_without_an_input_object_is_an_event_error(event, message):
    with pytest.raises(EventError, match=message):
        parse_input(event, "raw/")


def test_run_key_is_eight_characters_of_the_version_and_seven_of_the_execution_hash():
    digest = hashlib.sha256(EXECUTION.encode()).hexdigest()
    assert run_key("03621f771b78ad54", EXECUTION) == f"03621f77-{digest[:7]}"
    assert len(run_key("03621f771b78ad54", EXECUTION)) == 16


def test_run_key_differs_per_execution_on_the_same_data_and_is_stable_for_one():
    other = EXECUTION.replace("run-1", "run-2")
    assert run_key("03621f771b78ad54", EXECUTION) != run_key("03621f771b78ad54", other)
    assert run_key("03621f771b78ad54", EXECUTION) == run_key("03621f771b78ad54", EXECUTION)


def test_run_names_derive_every_per_run_location_from_the_run_key():
    key = run_key("03621f771b78ad54", EXECUTION)
    processed = f"s3://tumor-triage-dev-data/processed/{key}/"
    assert run_names(LAYOUT, "03621f771b78ad54", EXECUTION) == {
        "run_key": key,
        "training_job_name": f"tumor-triage-dev-{key}",
        "processed_uri": processed,
        "channels": {
            "train": f"{processed}train/",
            "validation": f"{processed}validation/",
            "test": f"{processed}test/",
        },
        "evaluation_uri": (
            f"s3://tumor-triage-dev-data/models/tumor-triage-dev-{key}/output/output.tar.gz"
        ),
    }


def test_the_longest_prefix_config_allows_gives_a_63_character_job_name():
    # config reserves 17 characters ("-" + run key) of SageMaker's 63 after the prefix.
    layout = dataclasses.replace(LAYOUT, training_job_prefix="p" * 46)
    assert len(run_names(layout, "03621f771b78ad54", EXECUTION)["training_job_name"]) == 63


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        pytest.param("p" * 47, r"\(64 characters\).*at most 46 of them", id="too-long"),
        pytest.param("my_project", "letters, digits and hyphens", id="underscore"),
    ],
)
def test_a_training_job_prefix_sagemaker_would_refuse_is_a_configuration_error(prefix, message):
    layout = dataclasses.replace(LAYOUT, training_job_prefix=prefix)
    with pytest.raises(ConfigurationError, match=message):
        run_names(layout, "03621f771b78ad54", EXECUTION)


def test_data_version_refuses_keys_outside_the_prefix():
    with pytest.raises(ValueError, match="not under the prefix 'raw/drop-002/'"):
        data_version("raw/drop-002/", OBJECTS)


def test_the_run_claim_key_names_the_commit_and_the_data_version():
    assert run_claim_key("abc123", "03621f771b78ad54") == "RUN#abc123#03621f771b78ad54"


def test_a_duplicate_message_names_the_owning_execution_and_how_to_train_again():
    owner = {"execution_id": EXECUTION, "claimed_at": "2026-01-02T03:04:05.000000Z"}
    message = duplicate_message(
        "abc123", "03621f771b78ad54", owner, "models", "RUN#abc123#03621f771b78ad54"
    )
    assert message == (
        "commit abc123 on data version 03621f771b78ad54 is already handled by execution "
        f"{EXECUTION.rsplit(':', 1)[-1]} (started 2026-01-02T03:04:05.000000Z); this execution "
        "ends as a duplicate. To train them again on purpose, delete the item "
        "RUN#abc123#03621f771b78ad54 from models first"
    )
