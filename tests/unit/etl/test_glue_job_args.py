"""The Glue entry's argument parsing and input-file rules: pure Python, no Spark, no AWS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.errors import JobArgumentError
from etl.glue_job import is_data_file, parse_job_args, split_s3_uri

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "etl" / "glue_job_run_argv.json"
MINIMAL = ["--input", "in", "--output", "out", "--label_column", "y", "--feature_columns", "a,b"]


def test_arguments_as_glue_passes_them_resolve_and_glue_keys_are_ignored():
    args = parse_job_args(json.loads(FIXTURE.read_text())["argv"])
    assert args.input == "s3://tumor-triage-dev-data/drops/drop-002/"
    assert args.output == "s3://tumor-triage-dev-data/etl/exec-0001"
    assert (args.input_format, args.output_format) == ("csv", "parquet")
    assert args.spec.label_column == "diagnosis"
    assert args.spec.feature_columns[:2] == ("mean_radius", "mean_texture")
    assert len(args.spec.feature_columns) == 10
    assert (args.spec.validation_fraction, args.spec.test_fraction, args.spec.seed) == (
        0.15,
        0.2,
        42,
    )


def test_optional_arguments_default_to_the_project_settings():
    args = parse_job_args(MINIMAL)
    assert (args.input_format, args.output_format) == ("csv", "csv")
    assert (args.spec.validation_fraction, args.spec.test_fraction, args.spec.seed) == (
        0.15,
        0.2,
        42,
    )


def test_feature_columns_are_split_on_commas_and_trimmed_and_key_equals_value_is_accepted():
    args = parse_job_args([*MINIMAL[:-1], " a , b ,c", "--seed=3", "--JOB_NAME=etl"])
    assert args.spec.feature_columns == ("a", "b", "c")
    assert args.spec.seed == 3


def test_a_missing_required_argument_is_named():
    with pytest.raises(JobArgumentError, match="--label_column"):
        parse_job_args(["--input", "in", "--output", "out", "--feature_columns", "a"])


def test_a_prefix_of_an_argument_is_not_taken_for_it():
    # argparse (and so Glue's parser) would read --in as --input; the fallback does not guess
    with pytest.raises(JobArgumentError, match="--input"):
        parse_job_args(["--in", "x", *MINIMAL[2:]])


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (["--input_format", "json"], "--input_format is 'json'"),
        (["--output_format", "xlsx"], "--output_format is 'xlsx'"),
        (["--seed", "1.5"], "--seed an integer"),
        (["--test_fraction", "a fifth"], "take numbers"),
        (["--test_fraction", "0.9"], "add up to less than 1"),
    ],
)
def test_invalid_values_are_rejected_with_what_to_pass(extra, complaint):
    with pytest.raises(JobArgumentError, match=complaint):
        parse_job_args([*MINIMAL, *extra])


@pytest.mark.parametrize(
    ("path", "size", "expected"),
    [
        ("data.csv", 10, True),
        ("year=2024/part-00000.snappy.parquet", 10, True),
        ("_SUCCESS", 0, False),
        ("_committed_123", 10, False),
        (".part-00000.csv.crc", 12, False),
        ("part-00000.csv.crc", 12, False),
        (".hidden/data.csv", 10, False),
        ("_temporary/0/part-00000.csv", 10, False),
        ("sub/", 0, False),
        ("", 0, False),
        ("empty.csv", 0, False),
    ],
)
def test_only_data_files_are_read(path, size, expected):
    assert is_data_file(path, size) is expected


def test_s3_uris_split_into_bucket_and_prefix_without_slashes():
    assert split_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    assert split_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(JobArgumentError, match="names no bucket"):
        split_s3_uri("s3:///key")
