"""The ETL's pure core: Spark DataFrame in, three split DataFrames and a report out. No I/O.

raw -> validate_schema -> clean -> split, wired together by `prepare`.

The whole pipeline must fit a 15-second budget locally, so Spark actions are counted: `clean` runs
one aggregation over the raw rows (row count, missing values, type check) and one group-by over the
cleaned rows (class counts); split sizes are then computed here in Python from those class counts,
so the report needs no further action. The caller's writes of the three splits are the only other
actions (plus one to collect example values, on the non-numeric error path only).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from itertools import chain
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from etl.errors import (
    EmptyInputError,
    JobArgumentError,
    MissingColumnsError,
    NonNumericFeatureError,
    SingleClassError,
    TooFewRowsError,
)

SPLITS = ("train", "validation", "test")
MISSING_VALUE = "missing_value"
DUPLICATE = "duplicate"
EXAMPLES = 3

_ORDER = "__etl_order"
_POSITION = "__etl_position"
_SPLIT = "__etl_split"


@dataclass(frozen=True)
class SplitSpec:
    """What to keep and how to split: the data.* settings of config/project.yaml."""

    label_column: str
    feature_columns: tuple[str, ...]
    validation_fraction: float
    test_fraction: float
    seed: int

    def __post_init__(self) -> None:
        features = list(self.feature_columns)
        if not self.label_column:
            raise JobArgumentError("the label column name is empty; set data.label_column")
        if not features or any(not name for name in features):
            raise JobArgumentError(
                f"feature columns {features} are empty or hold an empty name; set data.feature_columns"
            )
        if len(set(features)) != len(features):
            raise JobArgumentError(f"feature columns {features} repeat a name; list each once")
        if self.label_column in features:
            raise JobArgumentError(
                f"label column '{self.label_column}' is also listed as a feature; remove it from data.feature_columns"
            )
        fractions = (self.validation_fraction, self.test_fraction)
        if not all(0 < f < 1 for f in fractions) or sum(fractions) >= 1:
            raise JobArgumentError(
                f"validation fraction {self.validation_fraction} and test fraction {self.test_fraction} "
                "must each be between 0 and 1 (exclusive) and add up to less than 1, so that train "
                "keeps rows; fix data.split"
            )


@dataclass(frozen=True)
class Cleaned:
    """Typed, deduplicated rows (features as double in configured order, label as string, last).

    `frame` is cached: the split reads it once per output; call `frame.unpersist()` when done.
    """

    frame: DataFrame
    input_rows: int
    dropped: dict[str, int]
    class_counts: dict[str, int]


@dataclass(frozen=True)
class EtlResult:
    """The three splits (each one partition, rows in a seed-determined order) and the report."""

    splits: dict[str, DataFrame]
    report: dict[str, Any]
    cleaned: Cleaned

    def unpersist(self) -> None:
        self.cleaned.frame.unpersist()


def _col(name: str) -> Column:
    # Backticks so that a column named like "a.b" is not read as a struct field.
    return F.col(_quoted(name))


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def validate_schema(df: DataFrame, label_column: str, feature_columns: Sequence[str]) -> None:
    """Raise if the label or a feature column is absent (names match exactly, case included)."""
    if not df.columns:
        raise EmptyInputError(
            "the input data files hold no columns (empty files); deliver files with a header row"
        )
    missing = [name for name in [*feature_columns, label_column] if name not in df.columns]
    if missing:
        raise MissingColumnsError(missing, df.columns)


# TEMPLATE: your data's cleaning rules. The schema (label and feature columns) is data.* in
# config/project.yaml; rules your data needs (ranges, categories, units) belong in clean().
def clean(df: DataFrame, label_column: str, feature_columns: Sequence[str]) -> Cleaned:
    """Trim, type-check, drop incomplete and duplicate rows, cast; count what was dropped.

    Every kept value goes through its trimmed string form, so CSV text and typed Parquet columns
    take one code path. A feature value that is null, empty or NaN (pandas' missing marker) makes
    the row "missing_value"; any other value that is not a finite number is an error, not a drop,
    because silently losing rows to a broken export would train on a biased sample.
    """
    features = list(feature_columns)
    validate_schema(df, label_column, features)
    text = df.select(
        *[F.trim(_col(name).cast("string")).alias(name) for name in [*features, label_column]]
    )
    # try_cast, not cast: under ANSI mode a plain cast raises on the first bad value instead of
    # letting us count them all.
    number = {name: F.expr(f"try_cast({_quoted(name)} AS DOUBLE)") for name in features}
    missing = {name: _col(name).isNull() | (_col(name) == "") for name in [label_column, *features]}
    for name in features:
        missing[name] = missing[name] | F.isnan(number[name])
    not_finite = {
        name: number[name].isNull() | (F.abs(number[name]) == float("inf")) for name in features
    }
    bad = {name: ~missing[name] & not_finite[name] for name in features}
    row_missing = reduce(operator.or_, missing.values())

    stats = text.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(row_missing.cast("int")).alias("missing"),
        *[F.sum(bad[name].cast("int")).alias(f"bad_{i}") for i, name in enumerate(features)],
    ).first()
    input_rows = stats["rows"]
    if input_rows == 0:
        raise EmptyInputError("the input data files hold no rows; deliver rows of data")
    bad_counts = {name: stats[f"bad_{i}"] for i, name in enumerate(features) if stats[f"bad_{i}"]}
    if bad_counts:
        raise NonNumericFeatureError(_examples(text, bad, bad_counts))

    typed = (
        text.filter(~row_missing)
        .select(*[number[name].alias(name) for name in features], _col(label_column))
        .dropDuplicates()
        .cache()
    )
    class_counts = {row[0]: row[1] for row in typed.groupBy(_col(label_column)).count().collect()}
    kept = sum(class_counts.values())
    dropped = {MISSING_VALUE: stats["missing"], DUPLICATE: input_rows - stats["missing"] - kept}
    if kept == 0:
        typed.unpersist()
        raise EmptyInputError(
            f"all {input_rows} input rows lack the label or a feature value; fill in "
            f"'{label_column}' and {features}"
        )
    return Cleaned(typed, input_rows, dropped, dict(sorted(class_counts.items())))


def _examples(
    text: DataFrame, bad: Mapping[str, Column], bad_counts: Mapping[str, int]
) -> dict[str, tuple[int, list[str]]]:
    # Only on the error path: one more action, sorted distinct values so the message is stable.
    row = text.agg(
        *[
            F.slice(F.array_sort(F.collect_set(F.when(bad[name], _col(name)))), 1, EXAMPLES)
            for name in bad_counts
        ]
    ).first()
    return {name: (count, list(row[i])) for i, (name, count) in enumerate(bad_counts.items())}


def split_sizes(
    rows: int, validation_fraction: float, test_fraction: float
) -> tuple[int, int, int]:
    """(train, validation, test) row counts for one class: floor of the fraction, at least 1.

    Floor, not round: then train gets at least rows * (1 - validation - test) > 0 rows as soon as
    both fractions give at least one row, so a class only ever fails for being small.
    """
    validation = max(1, math.floor(rows * validation_fraction))
    test = max(1, math.floor(rows * test_fraction))
    return rows - validation - test, validation, test


def min_rows_per_class(validation_fraction: float, test_fraction: float) -> int:
    """The smallest class size from which on every size gives each split at least one row."""
    # Past this size both fractions give >= 1 row by themselves, and train keeps the rest.
    settled = max(3, math.ceil(1 / validation_fraction), math.ceil(1 / test_fraction)) + 1
    needed = settled
    for rows in range(settled, 0, -1):
        if split_sizes(rows, validation_fraction, test_fraction)[0] < 1:
            break
        needed = rows
    return needed


def check_classes(class_counts: Mapping[str, int], spec: SplitSpec) -> None:
    """Raise unless there are two or more classes, each large enough for all three splits."""
    if len(class_counts) < 2:
        raise SingleClassError(spec.label_column, sorted(class_counts))
    needed = min_rows_per_class(spec.validation_fraction, spec.test_fraction)
    short = [label for label, n in sorted(class_counts.items()) if n < needed]
    if short:
        raise TooFewRowsError(class_counts, needed, short)


def split(cleaned: Cleaned, spec: SplitSpec) -> dict[str, DataFrame]:
    """Stratified, deterministic split of the cleaned rows into train/validation/test.

    Within each class rows are ordered by xxhash64(seed, row content), ties broken by the content
    itself, and cut by position: the result depends on the seed and the rows only, not on input
    order or partitioning. Each split is one partition ordered the same way, so its file is
    byte-stable and not sorted by class.
    """
    check_classes(cleaned.class_counts, spec)
    features, label = list(spec.feature_columns), spec.label_column
    content = [*[_col(name) for name in features], _col(label)]
    sizes = {
        name: split_sizes(n, spec.validation_fraction, spec.test_fraction)
        for name, n in cleaned.class_counts.items()
    }
    n_validation = _lookup({name: s[1] for name, s in sizes.items()}, _col(label))
    n_test = _lookup({name: s[2] for name, s in sizes.items()}, _col(label))
    position = F.col(_POSITION)
    assigned = (
        cleaned.frame.withColumn(_ORDER, F.xxhash64(F.lit(spec.seed), *content))
        .withColumn(
            _POSITION,
            F.row_number().over(Window.partitionBy(_col(label)).orderBy(_ORDER, *content)),
        )
        .withColumn(
            _SPLIT,
            F.when(position <= n_test, "test")
            .when(position <= n_test + n_validation, "validation")
            .otherwise("train"),
        )
    )
    return {
        name: assigned.filter(F.col(_SPLIT) == name)
        .coalesce(1)
        .sortWithinPartitions(_ORDER, *content)
        .select(*content)
        for name in SPLITS
    }


def _lookup(values: Mapping[str, int], key: Column) -> Column:
    return F.create_map(*chain.from_iterable((F.lit(k), F.lit(v)) for k, v in values.items()))[key]


def build_report(cleaned: Cleaned, spec: SplitSpec) -> dict[str, Any]:
    """The report.json content, computed from the class counts (no Spark action)."""
    per_split: dict[str, dict[str, int]] = {name: {} for name in SPLITS}
    for label, n in cleaned.class_counts.items():
        sizes = split_sizes(n, spec.validation_fraction, spec.test_fraction)
        for name, size in zip(SPLITS, sizes, strict=True):
            per_split[name][label] = size
    return {
        "input_rows": cleaned.input_rows,
        "output_rows": sum(cleaned.class_counts.values()),
        "dropped": dict(cleaned.dropped),
        "splits": {
            name: {"rows": sum(counts.values()), "class_counts": counts}
            for name, counts in per_split.items()
        },
        "classes": sorted(cleaned.class_counts),
        "label_column": spec.label_column,
        "feature_columns": list(spec.feature_columns),
        "seed": spec.seed,
    }


def prepare(df: DataFrame, spec: SplitSpec) -> EtlResult:
    """Validate, clean and split `df`; the splits are lazy until the caller writes them."""
    cleaned = clean(df, spec.label_column, spec.feature_columns)
    try:
        splits = split(cleaned, spec)
    except Exception:
        cleaned.frame.unpersist()
        raise
    return EtlResult(splits, build_report(cleaned, spec), cleaned)
