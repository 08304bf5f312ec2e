"""Errors the ETL raises on bad input.

Each message says what is wrong, where, and how to fix it, on one line: the Glue job run shows
`<ErrorClassName>: <message>` as its ErrorMessage, and the local entry prints the same as the last
line on stderr, so the class name and the message are what an operator sees first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class EtlError(Exception):
    """Base class: the input data (or the job's arguments) cannot be turned into splits."""


class JobArgumentError(EtlError):
    """A job argument is missing or invalid."""


class EmptyInputError(EtlError):
    """No data files under the input path, no rows in them, or no rows left after cleaning."""


class MissingColumnsError(EtlError):
    """The label or some feature columns are not in the input."""

    def __init__(self, missing: Sequence[str], found: Sequence[str]) -> None:
        self.missing = list(missing)
        self.found = list(found)
        super().__init__(
            f"input lacks column(s) {self.missing}; columns found: {self.found}; "
            "fix data.label_column / data.feature_columns in config/project.yaml or the input header"
        )


class NonNumericFeatureError(EtlError):
    """A non-empty feature value is not a finite number.

    `problems` maps every offending column to (count, up to 3 example values); `column`, `count`
    and `examples` describe the first one in the configured feature order.
    """

    def __init__(self, problems: Mapping[str, tuple[int, Sequence[str]]]) -> None:
        self.problems = {name: (count, list(ex)) for name, (count, ex) in problems.items()}
        self.column, (self.count, self.examples) = next(iter(self.problems.items()))
        parts = [
            f"column '{name}' has {count} value(s) that are not numbers (e.g. {', '.join(map(repr, ex))})"
            for name, (count, ex) in self.problems.items()
        ]
        super().__init__(
            "; ".join(parts)
            + "; fix these values in the source data (an empty value drops the row "
            "instead) or remove the column from data.feature_columns"
        )


class SingleClassError(EtlError):
    """After cleaning, the label column holds only one class: nothing to classify."""

    def __init__(self, label_column: str, classes: Sequence[str]) -> None:
        self.label_column = label_column
        self.classes = list(classes)
        super().__init__(
            f"label column '{label_column}' has only class(es) {self.classes} after cleaning; "
            "a classifier needs at least 2: deliver rows of the other class(es) or check "
            "data.label_column"
        )


class TooFewRowsError(EtlError):
    """A class has too few rows to put at least one in each of train, validation and test."""

    def __init__(
        self, class_counts: Mapping[str, int], needed_per_class: int, short: Sequence[str]
    ) -> None:
        self.class_counts = dict(class_counts)
        self.needed_per_class = needed_per_class
        self.needed_total = needed_per_class * len(class_counts)
        self.short = list(short)
        counts = ", ".join(f"{label}={n}" for label, n in sorted(self.class_counts.items()))
        super().__init__(
            f"class(es) {self.short} have too few rows after cleaning ({counts}); a split into "
            f"train/validation/test needs at least {needed_per_class} rows of every class "
            f"({self.needed_total} in total for {len(class_counts)} classes): deliver more rows "
            "or lower data.split.validation / data.split.test"
        )
