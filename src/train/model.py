"""Fit, evaluate and predict: plain functions of pandas frames, with no file, network or AWS access.

The training entry (entry.py) and the endpoint hooks read and write files around these functions.
Hyperparameters arrive as the strings SageMaker passes on the command line (`--n_estimators 100`)
or as Python values; `resolve_hyperparameters` turns either into typed values with defaults, and
rejects anything it does not know instead of ignoring it, so a typo fails the job instead of
silently training a default model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

# Bumped when the layout of the saved artifact changes, so an endpoint refuses an artifact it
# cannot read instead of failing on the first request.
ARTIFACT_FORMAT = 1


class TrainingError(ValueError):
    """Base of the errors that mean "the job was asked for something it cannot do"."""


class TrainingConfigError(TrainingError):
    """A hyperparameter, metric name or other setting is missing or has a bad value."""


class TrainingDataError(TrainingError):
    """The data cannot be trained or evaluated on as it is (missing column, one class, ...)."""


class PredictionInputError(ValueError):
    """A prediction request does not fit the model (wrong columns, non-numeric values, ...)."""


class ModelArtifactError(ValueError):
    """A saved model file is not an artifact this code wrote, or was written by a newer layout."""


@dataclass(frozen=True)
class _Param:
    kind: str  # "int" or "float"
    default: int | float | None
    minimum: float
    min_inclusive: bool = True
    maximum: float | None = None
    nullable: bool = False  # "None"/"null"/"" mean "no limit" (max_depth of a forest)

    def describe(self) -> str:
        what = "an integer" if self.kind == "int" else "a number"
        show = (lambda v: str(int(v))) if self.kind == "int" else (lambda v: f"{v:g}")
        bound = f"{'>=' if self.min_inclusive else '>'} {show(self.minimum)}"
        if self.maximum is not None:
            bound += f" and <= {show(self.maximum)}"
        extra = " or None for no limit" if self.nullable else ""
        return f"{what} {bound}{extra}"


# TEMPLATE: your model. Add an entry here and its estimator in _build_estimator (or replace
# these); training.hyperparameters.model in config/project.yaml picks one.
# scikit-learn accepts random_state in [0, 2**32 - 1].
_SEED = _Param("int", 42, 0, maximum=2**32 - 1)

MODEL_PARAMS: dict[str, dict[str, _Param]] = {
    "random_forest": {
        "n_estimators": _Param("int", 100, 1),
        "max_depth": _Param("int", None, 1, nullable=True),
        "seed": _SEED,
    },
    "logistic_regression": {
        "C": _Param("float", 1.0, 0, min_inclusive=False),
        # Higher than scikit-learn's 100 so that unscaled-looking data still converges.
        "max_iter": _Param("int", 1000, 1),
        "seed": _SEED,
    },
    "gradient_boosting": {
        "n_estimators": _Param("int", 100, 1),
        "max_depth": _Param("int", 3, 1),
        "learning_rate": _Param("float", 0.1, 0, min_inclusive=False),
        "seed": _SEED,
    },
}
MODEL_NAMES = tuple(sorted(MODEL_PARAMS))


def _macro(score: Callable[..., float]) -> Callable[[Any, Any], float]:
    # zero_division=0: a class the model never predicts scores 0 instead of raising a warning
    # and returning an undefined value.
    return lambda y_true, y_pred: score(y_true, y_pred, average="macro", zero_division=0)


METRICS: dict[str, Callable[[Any, Any], float]] = {
    "accuracy": accuracy_score,
    "balanced_accuracy": balanced_accuracy_score,
    "f1_macro": _macro(f1_score),
    "precision_macro": _macro(precision_score),
    "recall_macro": _macro(recall_score),
}
METRIC_NAMES = tuple(sorted(METRICS))


@dataclass(frozen=True)
class ModelBundle:
    """A fitted estimator with what is needed to use it: feature order, label name and classes."""

    estimator: Any
    feature_columns: tuple[str, ...]
    label: str
    classes: tuple[str, ...]
    model: str
    hyperparameters: dict[str, Any]
    sklearn_version: str = sklearn.__version__


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]


# --- hyperparameters ---------------------------------------------------------------------------


def _is_null(raw: Any) -> bool:
    # SageMaker turns a JSON null hyperparameter into an empty command-line value.
    return raw is None or (isinstance(raw, str) and raw.strip().lower() in {"", "none", "null"})


def _coerce(model: str, key: str, raw: Any, spec: _Param) -> int | float | None:
    def bad() -> TrainingConfigError:
        return TrainingConfigError(
            f"hyperparameter {key!r} for model {model!r} must be {spec.describe()}, got {raw!r}"
        )

    if _is_null(raw):
        if spec.nullable:
            return None
        raise bad()
    if isinstance(raw, bool):
        raise bad()
    value: int | float
    if spec.kind == "int":
        if isinstance(raw, Integral) or (isinstance(raw, Real) and float(raw).is_integer()):
            value = int(raw)
        elif isinstance(raw, str):
            try:
                value = int(raw.strip())
            except ValueError:
                raise bad() from None
        else:
            raise bad()
    else:
        if isinstance(raw, Real):
            value = float(raw)
        elif isinstance(raw, str):
            try:
                value = float(raw.strip())
            except ValueError:
                raise bad() from None
        else:
            raise bad()
        if not math.isfinite(value):
            raise bad()
    too_low = value < spec.minimum if spec.min_inclusive else value <= spec.minimum
    too_high = spec.maximum is not None and value > spec.maximum
    if too_low or too_high:
        raise bad()
    return value


def resolve_hyperparameters(hyperparameters: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return (model name, typed hyperparameters with defaults filled in).

    `hyperparameters` holds `model` plus that model's keys; any other key is an error.
    """
    if "model" not in hyperparameters:
        raise TrainingConfigError(
            f"hyperparameter 'model' is missing; set it to one of {', '.join(MODEL_NAMES)}"
        )
    model = str(hyperparameters["model"]).strip()
    if model not in MODEL_PARAMS:
        raise TrainingConfigError(
            f"hyperparameter 'model' must be one of {', '.join(MODEL_NAMES)}, got {model!r}"
        )
    specs = MODEL_PARAMS[model]
    unknown = sorted(k for k in hyperparameters if k != "model" and k not in specs)
    if unknown:
        raise TrainingConfigError(
            f"hyperparameter {unknown[0]!r} is not used by model {model!r}, whose "
            f"hyperparameters are {', '.join(sorted(specs))}; remove it from the job's "
            "hyperparameters (config training.hyperparameters)"
        )
    resolved = {
        key: _coerce(model, key, hyperparameters[key], spec)
        if key in hyperparameters
        else spec.default
        for key, spec in specs.items()
    }
    return model, resolved


def _build_estimator(model: str, params: Mapping[str, Any]) -> Any:
    if model == "random_forest":
        return RandomForestClassifier(
            n_estimators=params["n_estimators"],
            max_depth=params["max_depth"],
            random_state=params["seed"],
        )
    if model == "logistic_regression":
        # Scaling inside the pipeline: the endpoint receives raw feature values and the scaler
        # fitted on the training data travels with the model.
        return Pipeline(
            [
                ("scale", StandardScaler()),
                (
                    "classify",
                    LogisticRegression(
                        C=params["C"], max_iter=params["max_iter"], random_state=params["seed"]
                    ),
                ),
            ]
        )
    if model == "gradient_boosting":
        return GradientBoostingClassifier(
            n_estimators=params["n_estimators"],
            max_depth=params["max_depth"],
            learning_rate=params["learning_rate"],
            random_state=params["seed"],
        )
    raise TrainingConfigError(f"model {model!r} has no estimator; use one of {MODEL_NAMES}")


# --- data checks -------------------------------------------------------------------------------


def _feature_columns(
    frame: pd.DataFrame, label: str, feature_columns: Sequence[str] | None
) -> list[str]:
    if feature_columns is None:
        return [str(c) for c in frame.columns if c != label]
    features = list(feature_columns)
    if not features:
        raise TrainingConfigError("feature_columns is empty; list at least one column")
    if label in features:
        raise TrainingConfigError(f"label column {label!r} is also listed in feature_columns")
    dupes = sorted({c for c in features if features.count(c) > 1})
    if dupes:
        raise TrainingConfigError(f"feature_columns lists {dupes} more than once")
    return features


def _feature_matrix(frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise TrainingDataError(
            f"feature columns {missing} are missing; the data has columns {list(frame.columns)}"
        )
    for column in features:
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            numbers = pd.to_numeric(values, errors="coerce")
            bad = values[numbers.isna() & values.notna()]
            example = f" (e.g. {bad.iloc[0]!r})" if len(bad) else ""
            raise TrainingDataError(
                f"feature column {column!r} is not numeric{example}; cast or drop it in the ETL, "
                "or leave it out with the feature_columns hyperparameter"
            )
    matrix = frame[list(features)].to_numpy(dtype=np.float64)
    bad_rows = ~np.isfinite(matrix).all(axis=1)
    if bad_rows.any():
        columns = [features[j] for j in np.flatnonzero(~np.isfinite(matrix).all(axis=0))]
        raise TrainingDataError(
            f"{int(bad_rows.sum())} of {len(matrix)} rows have missing or infinite values in "
            f"feature columns {columns}; drop or impute them in the ETL"
        )
    return matrix


def _labels(frame: pd.DataFrame, label: str) -> np.ndarray:
    if label not in frame.columns:
        raise TrainingDataError(
            f"label column {label!r} is missing; the data has columns {list(frame.columns)} "
            "(set label_column to one of them)"
        )
    values = frame[label]
    if values.isna().any():
        raise TrainingDataError(
            f"{int(values.isna().sum())} of {len(values)} rows have no value in label column "
            f"{label!r}; drop them in the ETL"
        )
    # Class names are strings everywhere (ETL output, evaluation.json, endpoint responses), so a
    # label read as 0/1 integers becomes "0"/"1" and stays JSON-serialisable.
    return values.astype(str).to_numpy()


def _require_rows(frame: pd.DataFrame) -> None:
    if len(frame) == 0:
        raise TrainingDataError("the data has no rows")


# --- fit / evaluate / predict ------------------------------------------------------------------


def fit(
    train: pd.DataFrame,
    label: str,
    hyperparameters: Mapping[str, Any],
    feature_columns: Sequence[str] | None = None,
) -> ModelBundle:
    """Fit the model named by `hyperparameters["model"]` on `train`.

    The features are `feature_columns`, or every column except `label` in frame order.
    """
    model, params = resolve_hyperparameters(hyperparameters)
    features = _feature_columns(train, label, feature_columns)
    _require_rows(train)
    y = _labels(train, label)
    if not features:
        raise TrainingDataError(f"the data has no feature columns besides the label {label!r}")
    x = _feature_matrix(train, features)
    classes = sorted(set(y))
    if len(classes) < 2:
        raise TrainingDataError(
            f"label column {label!r} has a single class {classes[0]!r} in {len(y)} rows; "
            "a classifier needs at least two classes"
        )
    estimator = _build_estimator(model, params)
    estimator.fit(x, y)
    return ModelBundle(
        estimator=estimator,
        feature_columns=tuple(features),
        label=label,
        classes=tuple(str(c) for c in estimator.classes_),
        model=model,
        hyperparameters=params,
    )


def check_metrics(metrics: Sequence[str]) -> list[str]:
    """Return the metric names without duplicates, in order; unknown or no names are an error."""
    names = list(dict.fromkeys(m.strip() for m in metrics if m.strip()))
    if not names:
        raise TrainingConfigError(f"no metrics given; choose from {', '.join(METRIC_NAMES)}")
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise TrainingConfigError(
            f"unknown metric {unknown[0]!r}; choose from {', '.join(METRIC_NAMES)}"
        )
    return names


def evaluate(bundle: ModelBundle, df: pd.DataFrame, metrics: Sequence[str]) -> dict[str, float]:
    """Score the bundle's predictions on `df` (which holds the features and the label)."""
    names = check_metrics(metrics)
    _require_rows(df)
    y_true = _labels(df, bundle.label)
    y_pred = bundle.estimator.predict(_feature_matrix(df, bundle.feature_columns))
    return {name: float(METRICS[name](y_true, y_pred)) for name in names}


def _rows_matrix(bundle: ModelBundle, rows: pd.DataFrame | Sequence[Sequence[Any]]) -> np.ndarray:
    n_features = len(bundle.feature_columns)
    if isinstance(rows, pd.DataFrame):
        try:
            return _feature_matrix(rows, bundle.feature_columns)
        except TrainingDataError as exc:
            raise PredictionInputError(str(exc)) from None
    if len(rows) == 0:
        raise PredictionInputError("the request has no rows")
    for i, row in enumerate(rows):
        if len(row) != n_features:
            raise PredictionInputError(
                f"row {i} has {len(row)} values but the model takes {n_features} features "
                f"in this order: {', '.join(bundle.feature_columns)}"
            )
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PredictionInputError(f"feature values must be numbers: {exc}") from None
    if not np.isfinite(matrix).all():
        raise PredictionInputError("feature values must be finite numbers (no NaN or infinity)")
    return matrix


def predict(bundle: ModelBundle, rows: pd.DataFrame | Sequence[Sequence[Any]]) -> list[Prediction]:
    """Predict a label and class probabilities for each row.

    `rows` is a frame with the feature columns (by name) or rows of values in feature order.
    The label is the most probable class, so label and probabilities always agree.
    """
    matrix = _rows_matrix(bundle, rows)
    probabilities = bundle.estimator.predict_proba(matrix)
    return [
        Prediction(
            label=bundle.classes[int(np.argmax(p))],
            probabilities={c: float(p[j]) for j, c in enumerate(bundle.classes)},
        )
        for p in probabilities
    ]


# --- artifact ----------------------------------------------------------------------------------


def bundle_to_artifact(bundle: ModelBundle) -> dict[str, Any]:
    """The object to pickle: builtins plus the scikit-learn estimator.

    Pickling the ModelBundle class itself would record the module it was defined in, which is
    `model` when SageMaker runs entry.py as a script and `train.model` in local tools; either
    artifact would then fail to load on the other side.
    """
    return {
        "format": ARTIFACT_FORMAT,
        "estimator": bundle.estimator,
        "feature_columns": list(bundle.feature_columns),
        "label": bundle.label,
        "classes": list(bundle.classes),
        "model": bundle.model,
        "hyperparameters": dict(bundle.hyperparameters),
        "sklearn_version": bundle.sklearn_version,
    }


def bundle_from_artifact(artifact: Any) -> ModelBundle:
    if not isinstance(artifact, dict) or "format" not in artifact:
        raise ModelArtifactError(
            f"the model file holds a {type(artifact).__name__}, not an artifact written by "
            "train/entry.py; retrain the model with this code"
        )
    if artifact["format"] != ARTIFACT_FORMAT:
        raise ModelArtifactError(
            f"the model artifact has format {artifact['format']!r} but this code reads format "
            f"{ARTIFACT_FORMAT}; serve it with the code version that trained it"
        )
    return ModelBundle(
        estimator=artifact["estimator"],
        feature_columns=tuple(artifact["feature_columns"]),
        label=artifact["label"],
        classes=tuple(artifact["classes"]),
        model=artifact["model"],
        hyperparameters=dict(artifact["hyperparameters"]),
        sklearn_version=artifact["sklearn_version"],
    )
