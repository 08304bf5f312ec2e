"""Fixtures for running the Glue job end to end: AWS doubles, job arguments, a reference reading.

The job's arguments come from config/project.yaml, as the workflow passes them. The reference
reading re-derives the expected rows from the sample CSV with the csv module alone, so the
job's counts are checked against an independent implementation, not against themselves.
Helpers are handed out as fixtures: with --import-mode=importlib a conftest cannot be imported.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from moto import mock_aws
from pyspark.sql import SparkSession

from etl.glue_job import local_spark

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data" / "sample"
REGION = "eu-west-1"


@dataclass(frozen=True)
class Reference:
    """What the job should make of a drop, computed without Spark."""

    input_rows: int
    missing_value: int
    duplicate: int
    rows: frozenset[tuple]  # (features..., label) after cleaning
    class_counts: dict[str, int]


@pytest.fixture(scope="session")
def settings() -> dict:
    return yaml.safe_load((REPO / "config" / "project.yaml").read_text())["data"]


@pytest.fixture(scope="session")
def job_argv(settings: dict) -> Callable[..., list[str]]:
    """job_argv(input, output, key=value...): the job's arguments from config/project.yaml."""

    def build(input_uri: str, output_uri: str, **overrides: str) -> list[str]:
        values = {
            "input": input_uri,
            "output": output_uri,
            "label_column": settings["label_column"],
            "feature_columns": ",".join(settings["feature_columns"]),
            "input_format": settings["input_format"],
            "output_format": settings["output_format"],
            "validation_fraction": str(settings["split"]["validation"]),
            "test_fraction": str(settings["split"]["test"]),
            "seed": str(settings["split"]["seed"]),
            **overrides,
        }
        # Glue adds keys of its own; the job must ignore them.
        return [
            "--JOB_NAME",
            "tumor-triage-dev-etl",
            *[x for k, v in values.items() for x in (f"--{k}", v)],
        ]

    return build


@pytest.fixture(scope="session")
def reference(settings: dict) -> Callable[[str], Reference]:
    def read(drop: str) -> Reference:
        features, label = settings["feature_columns"], settings["label_column"]
        with (SAMPLE / drop / "data.csv").open() as fh:
            records = list(csv.DictReader(fh))
        complete = [r for r in records if all(r[c].strip() for c in [*features, label])]
        rows = {(*(float(r[c]) for c in features), r[label].strip()) for r in complete}
        return Reference(
            input_rows=len(records),
            missing_value=len(records) - len(complete),
            duplicate=len(complete) - len(rows),
            rows=frozenset(rows),
            class_counts=dict(Counter(row[-1] for row in rows)),
        )

    return read


@pytest.fixture
def read_split() -> Callable[[bytes, str], list[tuple]]:
    """Rows of one output data file (CSV with header, or Parquet) as (features..., label)."""

    def read(data: bytes, output_format: str) -> list[tuple]:
        if output_format == "parquet":
            frame = pd.read_parquet(io.BytesIO(data))
        else:
            # round_trip: pandas' fast float parser may be one ulp off Python's float()
            frame = pd.read_csv(
                io.BytesIO(data), dtype={"diagnosis": str}, float_precision="round_trip"
            )
        return [tuple(row) for row in frame.itertuples(index=False, name=None)]

    return read


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """A session the job reuses (it stops only sessions it started): one JVM for all tests."""
    session = local_spark("etl-functional-tests")
    yield session
    session.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and the project region; no endpoint or profile from the host."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # pragma: allowlist secret (moto's fake)
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws(aws_env: None) -> Iterator[None]:
    with mock_aws():
        yield
