"""Split arithmetic and settings checks: pure Python, no Spark."""

from __future__ import annotations

import pytest

from etl.errors import JobArgumentError
from etl.transforms import SplitSpec, min_rows_per_class, split_sizes

FRACTIONS = [(0.15, 0.2), (0.1, 0.1), (0.45, 0.45), (0.01, 0.3), (0.33, 0.33), (0.05, 0.9)]


def test_split_sizes_floor_each_fraction_and_give_train_the_rest():
    assert split_sizes(566, 0.15, 0.2) == (369, 84, 113)
    assert split_sizes(10, 0.15, 0.2) == (7, 1, 2)


def test_split_sizes_give_validation_and_test_one_row_even_when_the_fraction_rounds_to_none():
    assert split_sizes(3, 0.15, 0.2) == (1, 1, 1)


@pytest.mark.parametrize(("validation", "test"), FRACTIONS)
def test_min_rows_per_class_is_the_size_from_which_every_split_gets_a_row(validation, test):
    needed = min_rows_per_class(validation, test)
    for rows in range(needed, needed + 500):
        train, val, tst = split_sizes(rows, validation, test)
        assert min(train, val, tst) >= 1 and train + val + tst == rows, rows
    assert split_sizes(needed - 1, validation, test)[0] < 1


def test_min_rows_per_class_is_three_for_the_project_settings():
    assert min_rows_per_class(0.15, 0.2) == 3


@pytest.mark.parametrize(
    ("label", "features", "validation", "test", "complaint"),
    [
        ("y", ("a",), 0.5, 0.5, "add up to less than 1"),
        ("y", ("a",), 0.0, 0.2, "between 0 and 1"),
        ("y", ("a", "y"), 0.1, 0.2, "also listed as a feature"),
        ("y", ("a", "a"), 0.1, 0.2, "repeat a name"),
        ("y", (), 0.1, 0.2, "data.feature_columns"),
        ("", ("a",), 0.1, 0.2, "data.label_column"),
    ],
)
def test_split_spec_rejects_settings_that_cannot_work(label, features, validation, test, complaint):
    with pytest.raises(JobArgumentError, match=complaint):
        SplitSpec(label, features, validation, test, 1)
