"""One local SparkSession for the transform tests, built like the job builds its own.

Helpers are handed out as fixtures: with --import-mode=importlib a conftest cannot be imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StringType, StructField, StructType

from etl.glue_job import local_spark


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = local_spark("etl-unit-tests")
    yield session
    session.stop()


@pytest.fixture
def frame(spark: SparkSession) -> Callable[..., DataFrame]:
    """A DataFrame of string columns, as Spark reads a CSV: frame(rows, columns)."""

    def build(rows: Sequence[Sequence[str | None]], columns: Sequence[str]) -> DataFrame:
        schema = StructType([StructField(name, StringType()) for name in columns])
        return spark.createDataFrame([tuple(row) for row in rows], schema)

    return build
