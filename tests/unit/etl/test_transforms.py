"""The ETL transforms on small DataFrames built here: errors, cleaning, the split and the report."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from pyspark.sql import Row
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

from etl.errors import (
    EmptyInputError,
    MissingColumnsError,
    NonNumericFeatureError,
    SingleClassError,
    TooFewRowsError,
)
from etl.transforms import SPLITS, SplitSpec, clean, prepare, split_sizes, validate_schema

pytestmark = pytest.mark.slow

FEATURES = ("b", "a")  # not alphabetical: the output must keep this order
COLUMNS = ["id", "a", "b", "note", "y"]


def spec(seed: int = 7, validation: float = 0.2, test: float = 0.25) -> SplitSpec:
    return SplitSpec("y", FEATURES, validation, test, seed)


def many_rows(n_x: int = 40, n_z: int = 20, seed: int = 0) -> list[tuple[str, ...]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n_x + n_z):
        label = "x" if i < n_x else "z"
        rows.append((f"r{i}", f"{rng.uniform(0, 10):.4f}", f"{i}", "n", label))
    return rows


def collected(frames) -> dict[str, list[Row]]:
    return {name: frame.collect() for name, frame in frames.items()}


# ---------------------------------------------------------------- errors


def test_missing_columns_error_lists_absent_and_found_columns(frame):
    df = frame([("1", "2", "x")], ["a", "c", "y"])
    with pytest.raises(MissingColumnsError) as info:
        validate_schema(df, "label", ["a", "b"])
    assert info.value.missing == ["b", "label"]
    assert info.value.found == ["a", "c", "y"]
    assert "['b', 'label']" in str(info.value) and "['a', 'c', 'y']" in str(info.value)


def test_empty_input_error_when_there_are_no_rows(frame):
    with pytest.raises(EmptyInputError, match="no rows"):
        clean(frame([], COLUMNS), "y", FEATURES)


def test_empty_input_error_when_every_row_lacks_a_value(frame):
    rows = [("1", "", "1", "n", "x"), ("2", "1", "1", "n", None)]
    with pytest.raises(EmptyInputError, match="all 2 input rows"):
        clean(frame(rows, COLUMNS), "y", FEATURES)


def test_non_numeric_feature_error_names_column_count_and_three_sorted_examples(frame):
    bad = ["twelve", "n/a?", "12,5mm", "zz", "twelve"]
    rows = [(str(i), v, "1", "n", "x") for i, v in enumerate(bad)]
    rows += [("9", "", "1", "n", "x"), ("10", "3.5", "1", "n", "z")]  # empty: a drop, not an error
    with pytest.raises(NonNumericFeatureError) as info:
        clean(frame(rows, COLUMNS), "y", FEATURES)
    error = info.value
    assert (error.column, error.count) == ("a", 5)
    assert error.examples == ["12,5mm", "n/a?", "twelve"]
    assert "'a' has 5 value(s)" in str(error) and "'twelve'" in str(error)


def test_non_numeric_feature_error_reports_every_bad_column_in_feature_order(frame):
    rows = [("1", "x1", "y1", "n", "x"), ("2", "1", "Infinity", "n", "z")]
    with pytest.raises(NonNumericFeatureError) as info:
        clean(frame(rows, COLUMNS), "y", FEATURES)
    assert info.value.problems == {"b": (2, ["Infinity", "y1"]), "a": (1, ["x1"])}
    assert info.value.column == "b"


def test_single_class_error_when_cleaning_leaves_one_class(frame):
    rows = [(str(i), str(i), "1", "n", "x") for i in range(10)] + [("z", "", "1", "n", "z")]
    with pytest.raises(SingleClassError) as info:
        prepare(frame(rows, COLUMNS), spec())
    assert info.value.classes == ["x"]
    assert "'y'" in str(info.value)


def test_too_few_rows_error_says_how_many_rows_each_class_needs(frame):
    rows = [(str(i), str(i), "1", "n", "x") for i in range(10)]
    rows += [("z1", "1", "2", "n", "z"), ("z2", "1", "3", "n", "z")]
    with pytest.raises(TooFewRowsError) as info:
        prepare(frame(rows, COLUMNS), spec())
    assert info.value.short == ["z"]
    assert info.value.needed_per_class == 3
    assert info.value.needed_total == 6
    assert "at least 3 rows of every class (6 in total" in str(info.value)
    assert "x=10, z=2" in str(info.value)


# ---------------------------------------------------------------- cleaning


def test_clean_trims_casts_keeps_configured_columns_and_counts_drops(frame):
    rows = [
        ("1", " 1.5 ", "2", "n", " x "),
        ("2", "1.50", " 2.0", "other note", "x"),  # same values as row 1 once cast: duplicate
        ("3", "", "2", "n", "x"),  # empty feature
        ("4", "  ", "2", "n", "x"),  # blank after trimming
        ("5", "NaN", "2", "n", "z"),  # pandas' missing marker
        ("6", "1", None, "n", "z"),  # null feature
        ("7", "1", "2", "n", ""),  # empty label
        ("8", "3", "4e-1", "n", "z"),
        ("9", "3", "0.4", "n", "z"),  # duplicate of row 8
        ("10", "3", "0.4", "n", "x"),  # same features, other label: kept
    ]
    cleaned = clean(frame(rows, COLUMNS), "y", FEATURES)
    try:
        assert cleaned.input_rows == 10
        assert cleaned.dropped == {"missing_value": 5, "duplicate": 2}
        assert cleaned.class_counts == {"x": 2, "z": 1}
        assert cleaned.frame.schema == StructType(
            [
                StructField("b", DoubleType()),
                StructField("a", DoubleType()),
                StructField("y", StringType()),
            ]
        )
        assert sorted(map(tuple, cleaned.frame.collect())) == [
            (0.4, 3.0, "x"),
            (0.4, 3.0, "z"),
            (2.0, 1.5, "x"),
        ]
    finally:
        cleaned.frame.unpersist()


def test_clean_accepts_typed_columns_as_parquet_delivers_them(spark):
    schema = StructType(
        [
            StructField("a", DoubleType()),
            StructField("b", LongType()),
            StructField("y", LongType()),
        ]
    )
    rows = [(1.5, 2, 0), (float("nan"), 3, 1), (2.5, None, 1), (3.5, 4, 1), (1.5, 2, 0)]
    cleaned = clean(spark.createDataFrame(rows, schema), "y", FEATURES)
    try:
        assert cleaned.dropped == {"missing_value": 2, "duplicate": 1}
        assert sorted(map(tuple, cleaned.frame.collect())) == [(2.0, 1.5, "0"), (4.0, 3.5, "1")]
    finally:
        cleaned.frame.unpersist()


# ---------------------------------------------------------------- split


def test_split_is_identical_whatever_the_input_order_and_partitioning(frame):
    rows = many_rows()
    shuffled = list(rows)
    random.Random(3).shuffle(shuffled)
    one = prepare(frame(rows, COLUMNS).repartition(1), spec(seed=11))
    other = prepare(frame(shuffled, COLUMNS).repartition(7), spec(seed=11))
    try:
        assert collected(one.splits) == collected(other.splits)  # same rows, same order
        assert one.report == other.report
    finally:
        one.unpersist()
        other.unpersist()


def test_split_changes_with_the_seed_but_not_its_sizes(frame):
    df = frame(many_rows(), COLUMNS)
    first, second = prepare(df, spec(seed=1)), prepare(df, spec(seed=2))
    try:
        a, b = collected(first.splits), collected(second.splits)
        assert {n: set(rows) for n, rows in a.items()} != {n: set(rows) for n, rows in b.items()}
        assert {n: len(rows) for n, rows in a.items()} == {n: len(rows) for n, rows in b.items()}
    finally:
        first.unpersist()
        second.unpersist()


def test_split_is_stratified_disjoint_complete_and_matches_the_report(frame):
    result = prepare(frame(many_rows(n_x=40, n_z=9), COLUMNS), spec(validation=0.2, test=0.25))
    try:
        splits = collected(result.splits)
        cleaned = sorted(map(tuple, result.cleaned.frame.collect()))
        assert sorted(tuple(r) for rows in splits.values() for r in rows) == cleaned
        for name in SPLITS:
            counts = Counter(row["y"] for row in splits[name])
            assert set(counts) == {"x", "z"}, f"{name} lacks a class"
            assert result.report["splits"][name] == {
                "rows": len(splits[name]),
                "class_counts": dict(counts),
            }
            assert list(result.splits[name].columns) == ["b", "a", "y"]
        # floor of the fraction per class: x 40 -> 22/8/10, z 9 -> 6/1/2
        assert result.report["splits"]["test"]["class_counts"] == {"x": 10, "z": 2}
        assert result.report["splits"]["validation"]["class_counts"] == {"x": 8, "z": 1}
    finally:
        result.unpersist()


def test_report_counts_rows_drops_classes_and_settings(frame):
    rows = many_rows(n_x=12, n_z=6)
    rows += [rows[0], rows[1], ("m", "", "1", "n", "x")]  # two duplicates, one missing value
    result = prepare(frame(rows, COLUMNS), spec(seed=5))
    try:
        report = result.report
        assert report["input_rows"] == 21
        assert report["output_rows"] == 18
        assert report["dropped"] == {"missing_value": 1, "duplicate": 2}
        assert report["classes"] == ["x", "z"]
        assert (report["label_column"], report["feature_columns"], report["seed"]) == (
            "y",
            ["b", "a"],
            5,
        )
        assert sum(s["rows"] for s in report["splits"].values()) == 18
        for name, size in zip(SPLITS, split_sizes(12, 0.2, 0.25), strict=True):
            assert report["splits"][name]["class_counts"]["x"] == size
            assert result.splits[name].count() == report["splits"][name]["rows"]
    finally:
        result.unpersist()
