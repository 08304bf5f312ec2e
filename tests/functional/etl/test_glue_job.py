"""The Glue job end to end in-process: sample drops from moto S3 and from local folders."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import boto3
import pandas as pd
import pytest
from moto.server import ThreadedMotoServer

from etl import glue_job
from etl.errors import EmptyInputError, NonNumericFeatureError
from etl.transforms import SPLITS

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data" / "sample"
BUCKET = "tumor-triage-dev-data"


def _objects(s3, prefix: str) -> dict[str, bytes]:
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {
        o["Key"][len(prefix) :]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
        for o in listing
    }


def _check_outputs(files: dict[str, bytes], report: dict, ref, read_split, fmt: str) -> None:
    """One data file per split, rows as the reference says, counts as the report says."""
    suffix = {"csv": ".csv", "parquet": ".parquet"}[fmt]
    assert set(files) - {"report.json"} == {
        name for name in files if name.split("/")[0] in SPLITS
    }, "nothing but the splits and the report"
    every_row = []
    for split in SPLITS:
        names = [n for n in files if n.startswith(f"{split}/")]
        assert len(names) == 1 and names[0].startswith(f"{split}/part-"), names
        assert names[0].endswith(suffix)
        rows = read_split(files[names[0]], fmt)
        counts = Counter(row[-1] for row in rows)
        assert report["splits"][split] == {"rows": len(rows), "class_counts": dict(counts)}
        assert set(counts) == set(ref.class_counts), f"{split} lacks a class"
        every_row += rows
    assert len(every_row) == len(set(every_row)) == len(ref.rows)
    assert set(every_row) == ref.rows
    assert report["input_rows"] == ref.input_rows
    assert report["output_rows"] == len(ref.rows)
    assert report["dropped"] == {"missing_value": ref.missing_value, "duplicate": ref.duplicate}
    assert report["classes"] == sorted(ref.class_counts)


@pytest.mark.slow
def test_s3_drop_is_split_into_one_file_per_split_and_a_report(
    aws, spark, job_argv, reference, read_split
):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.upload_file(str(SAMPLE / "drop-002" / "data.csv"), BUCKET, "drops/drop-002/data.csv")
    # What else lands under a prefix; each would break the job if it were read as data.
    garbage = b"not,the,header\n1,2,3\n"
    for key, body in {
        "drops/drop-002/": b"",
        "drops/drop-002/_SUCCESS": b"",
        "drops/drop-002/.data.csv.crc": garbage,
        "drops/drop-002/_temporary/0/part-00000.csv": garbage,
        "drops/drop-0020/data.csv": garbage,  # a sibling prefix, not under drop-002/
        "etl/run-1/train/part-00000-stale.csv": garbage,  # an earlier run's output
    }.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)

    report = glue_job.main(job_argv(f"s3://{BUCKET}/drops/drop-002", f"s3://{BUCKET}/etl/run-1/"))

    files = _objects(s3, "etl/run-1/")
    assert "train/part-00000-stale.csv" not in files
    _check_outputs(files, report, reference("drop-002"), read_split, "csv")
    assert json.loads(files["report.json"]) == report
    header = files[next(n for n in files if n.startswith("train/"))].splitlines()[0].decode()
    assert header.split(",") == [*report["feature_columns"], report["label_column"]]


@pytest.mark.slow
def test_parquet_in_and_out_gives_the_same_split_as_csv(
    spark, job_argv, reference, read_split, tmp_path
):
    # pandas turns the empty values into NaN doubles: typed input must clean the same way.
    drop = tmp_path / "drop-002-parquet"
    (drop / "year=2024").mkdir(parents=True)
    pd.read_csv(SAMPLE / "drop-002" / "data.csv").to_parquet(drop / "year=2024" / "data.parquet")
    (drop / "_SUCCESS").write_text("")

    from_csv = glue_job.main(job_argv(str(SAMPLE / "drop-002"), str(tmp_path / "csv")))
    from_parquet = glue_job.main(
        job_argv(str(drop), str(tmp_path / "pq"), input_format="parquet", output_format="parquet")
    )

    assert from_parquet == from_csv
    read = {}
    for name, fmt in (("csv", "csv"), ("pq", "parquet")):
        files = {
            p.relative_to(tmp_path / name).as_posix(): p.read_bytes()
            for p in (tmp_path / name).rglob("*")
            if p.is_file()
        }
        _check_outputs(files, from_csv, reference("drop-002"), read_split, fmt)
        read[name] = {n: read_split(b, fmt) for n, b in sorted(files.items()) if n != "report.json"}
    assert list(read["csv"].values()) == list(read["pq"].values())  # same rows, same order


@pytest.mark.slow
def test_a_rerun_into_the_same_local_output_replaces_it(spark, job_argv, tmp_path):
    out = tmp_path / "out"
    glue_job.main(job_argv(str(SAMPLE / "drop-001"), str(out), seed="1"))
    first = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    glue_job.main(job_argv(str(SAMPLE / "drop-002"), str(out), seed="1"))
    second = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert len(first) == len(second) == 4
    assert set(first).isdisjoint(set(second) - {Path("report.json")})


@pytest.mark.slow
def test_corrupt_drop_fails_with_non_numeric_feature_error_and_writes_nothing(
    spark, job_argv, tmp_path
):
    with pytest.raises(NonNumericFeatureError) as info:
        glue_job.main(job_argv(str(SAMPLE / "drop-corrupt"), str(tmp_path / "out")))
    assert info.value.column == "mean_radius"
    assert info.value.count == 5
    assert set(info.value.examples) <= {"twelve", "n/a?", "12,5mm"}
    assert not (tmp_path / "out").exists()


def test_an_empty_s3_prefix_fails_before_spark_starts(aws, job_argv):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket=BUCKET, Key="drops/drop-009/", Body=b"")
    s3.put_object(Bucket=BUCKET, Key="drops/drop-009/_SUCCESS", Body=b"")
    with pytest.raises(EmptyInputError, match=f"no data files under s3://{BUCKET}/drops/drop-009"):
        glue_job.main(job_argv(f"s3://{BUCKET}/drops/drop-009", f"s3://{BUCKET}/etl/x"))


def test_a_missing_local_input_fails_before_spark_starts(job_argv, tmp_path):
    with pytest.raises(EmptyInputError, match="no data files under"):
        glue_job.main(job_argv(str(tmp_path / "nothing"), str(tmp_path / "out")))


@pytest.mark.slow
def test_s3_is_reached_through_aws_endpoint_url(aws_env, monkeypatch, spark, job_argv, tmp_path):
    # How the job runs in the local cloud: no in-process mock, a moto server at an endpoint URL.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        s3 = boto3.client("s3")
        s3.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        shutil.copy(SAMPLE / "drop-001" / "data.csv", tmp_path / "part-1.csv")
        s3.upload_file(str(tmp_path / "part-1.csv"), BUCKET, "drops/drop-001/a/data.csv")
        s3.upload_file(str(SAMPLE / "drop-002" / "data.csv"), BUCKET, "drops/drop-001/b/data.csv")

        report = glue_job.main(job_argv(f"s3://{BUCKET}/drops/drop-001", f"s3://{BUCKET}/etl/r"))

        assert report["input_rows"] == 232 + 402  # both files, same name in two folders
        keys = sorted(_objects(s3, "etl/r/"))
        assert keys[0] == "report.json" and len(keys) == 4
    finally:
        server.stop()
