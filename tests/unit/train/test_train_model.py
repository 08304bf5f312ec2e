"""fit / evaluate / predict on small frames: each model kind, each metric, determinism, errors."""

from __future__ import annotations

import io
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.config import SUPPORTED_METRICS
from train.model import (
    ARTIFACT_FORMAT,
    METRIC_NAMES,
    MODEL_NAMES,
    ModelArtifactError,
    ModelBundle,
    PredictionInputError,
    TrainingConfigError,
    TrainingDataError,
    bundle_from_artifact,
    bundle_to_artifact,
    evaluate,
    fit,
    predict,
    resolve_hyperparameters,
)

LABEL = "diagnosis"
# Few trees keep each fit in the tens of milliseconds.
SMALL = {
    "random_forest": {"n_estimators": 20, "seed": 7},
    "logistic_regression": {"seed": 7},
    "gradient_boosting": {"n_estimators": 20, "seed": 7},
}


def hp(model: str, **overrides) -> dict:
    return {"model": model, **SMALL[model], **overrides}


# --- fitting each model kind ------------------------------------------------------------------


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_each_model_kind_beats_the_majority_class_on_held_out_rows(model, splits):
    train, _, test = splits
    bundle = fit(train, LABEL, hp(model))
    majority = test[LABEL].value_counts(normalize=True).max()
    assert evaluate(bundle, test, ["accuracy"])["accuracy"] > majority + 0.2


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_fit_is_deterministic_for_a_fixed_seed(model, splits, features):
    train, _, test = splits
    first = fit(train, LABEL, hp(model)).estimator.predict_proba(test[features].to_numpy())
    again = fit(train, LABEL, hp(model)).estimator.predict_proba(test[features].to_numpy())
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("model", ["random_forest", "gradient_boosting"])
def test_the_seed_reaches_the_randomised_models(model, splits, features):
    train, _, test = splits
    x = test[features].to_numpy()
    one = fit(train, LABEL, hp(model, seed=1)).estimator.predict_proba(x)
    two = fit(train, LABEL, hp(model, seed=2)).estimator.predict_proba(x)
    assert not np.array_equal(one, two)


def test_bundle_keeps_feature_order_label_classes_and_resolved_hyperparameters(splits):
    train, _, _ = splits
    reordered = train[["diagnosis", "mean_area", "mean_radius", "mean_texture"]]
    bundle = fit(reordered, LABEL, {"model": "random_forest", "n_estimators": "5"})
    assert bundle.feature_columns == ("mean_area", "mean_radius", "mean_texture")
    assert bundle.label == LABEL
    assert bundle.classes == ("benign", "malignant")
    assert bundle.model == "random_forest"
    assert bundle.hyperparameters == {"n_estimators": 5, "max_depth": None, "seed": 42}
    assert bundle.estimator.n_features_in_ == 3


def test_explicit_feature_columns_select_and_order_the_features(splits):
    train, _, _ = splits
    with_text = train.assign(clinic="c1")  # a text column the ETL left in: not a feature
    bundle = fit(
        with_text, LABEL, hp("random_forest"), feature_columns=["mean_texture", "mean_radius"]
    )
    assert bundle.feature_columns == ("mean_texture", "mean_radius")
    assert bundle.estimator.n_features_in_ == 2


def test_random_forest_hyperparameters_reach_the_estimator(splits):
    train, _, _ = splits
    bundle = fit(train, LABEL, {"model": "random_forest", "n_estimators": "7", "max_depth": "3"})
    assert len(bundle.estimator.estimators_) == 7
    assert max(tree.get_depth() for tree in bundle.estimator.estimators_) <= 3


def test_gradient_boosting_hyperparameters_reach_the_estimator(splits):
    train, _, _ = splits
    params = {"n_estimators": "5", "max_depth": "2", "learning_rate": "0.5", "seed": "3"}
    estimator = fit(train, LABEL, {"model": "gradient_boosting", **params}).estimator
    assert (estimator.n_estimators_, estimator.max_depth) == (5, 2)
    assert (estimator.learning_rate, estimator.random_state) == (0.5, 3)


def test_logistic_regression_scales_the_features_inside_the_pipeline(splits):
    train, _, _ = splits
    params = {"C": "0.25", "max_iter": "50", "seed": "3"}
    estimator = fit(train, LABEL, {"model": "logistic_regression", **params}).estimator
    assert isinstance(estimator, Pipeline)
    scaler, classifier = (step for _, step in estimator.steps)
    assert isinstance(scaler, StandardScaler) and isinstance(classifier, LogisticRegression)
    assert (classifier.C, classifier.max_iter, classifier.random_state) == (0.25, 50, 3)
    # The scaler was fitted on the training rows: it carries their means.
    np.testing.assert_allclose(scaler.mean_, train.drop(columns=LABEL).mean().to_numpy())


def test_three_classes_give_three_probabilities():
    rng = np.random.RandomState(0)
    centers = {"low": 0.0, "mid": 5.0, "high": 10.0}
    frame = pd.DataFrame(
        [
            {"x": c + rng.normal(), "y": c + rng.normal(), "level": name}
            for name, c in centers.items()
            for _ in range(30)
        ]
    )
    bundle = fit(frame, "level", hp("random_forest"))
    assert bundle.classes == ("high", "low", "mid")
    [prediction] = predict(bundle, [[10.0, 10.0]])
    assert prediction.label == "high"
    assert set(prediction.probabilities) == {"high", "low", "mid"}


def test_integer_labels_become_string_classes():
    frame = pd.DataFrame({"x": [0.0, 0.1, 0.2, 5.0, 5.1, 5.2], "y": [0, 0, 0, 1, 1, 1]})
    bundle = fit(frame, "y", hp("logistic_regression"))
    assert bundle.classes == ("0", "1")
    assert predict(bundle, [[5.0]])[0].label == "1"
    assert evaluate(bundle, frame, ["accuracy"]) == {"accuracy": 1.0}


# --- hyperparameters --------------------------------------------------------------------------


def test_string_values_as_sagemaker_passes_them_are_typed():
    assert resolve_hyperparameters(
        {"model": "random_forest", "n_estimators": "25", "max_depth": "None", "seed": "0"}
    ) == ("random_forest", {"n_estimators": 25, "max_depth": None, "seed": 0})


def test_an_empty_max_depth_is_a_json_null_and_means_no_limit():
    # The training toolkit turns a JSON null hyperparameter into an empty command-line value.
    _, params = resolve_hyperparameters({"model": "random_forest", "max_depth": ""})
    assert params["max_depth"] is None


@pytest.mark.parametrize(
    ("model", "defaults"),
    [
        ("random_forest", {"n_estimators": 100, "max_depth": None, "seed": 42}),
        ("logistic_regression", {"C": 1.0, "max_iter": 1000, "seed": 42}),
        (
            "gradient_boosting",
            {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.1, "seed": 42},
        ),
    ],
)
def test_missing_hyperparameters_take_documented_defaults(model, defaults):
    assert resolve_hyperparameters({"model": model}) == (model, defaults)


def test_unknown_model_is_rejected_with_the_allowed_names():
    with pytest.raises(TrainingConfigError) as info:
        resolve_hyperparameters({"model": "svm"})
    assert str(info.value) == (
        "hyperparameter 'model' must be one of gradient_boosting, logistic_regression, "
        "random_forest, got 'svm'"
    )


def test_missing_model_is_rejected_with_the_allowed_names():
    with pytest.raises(TrainingConfigError, match="'model' is missing; set it to one of grad"):
        resolve_hyperparameters({"n_estimators": "10"})


def test_a_hyperparameter_the_model_does_not_use_is_rejected_not_ignored():
    with pytest.raises(TrainingConfigError) as info:
        resolve_hyperparameters({"model": "random_forest", "learning_rate": "0.1"})
    assert str(info.value) == (
        "hyperparameter 'learning_rate' is not used by model 'random_forest', whose "
        "hyperparameters are max_depth, n_estimators, seed; remove it from the job's "
        "hyperparameters (config training.hyperparameters)"
    )


@pytest.mark.parametrize(
    ("model", "key", "value", "expected"),
    [
        ("random_forest", "n_estimators", "0", "an integer >= 1"),
        ("random_forest", "n_estimators", "ten", "an integer >= 1"),
        ("random_forest", "n_estimators", "2.5", "an integer >= 1"),
        ("random_forest", "n_estimators", True, "an integer >= 1"),
        ("random_forest", "n_estimators", "", "an integer >= 1"),
        ("random_forest", "max_depth", "0", "an integer >= 1 or None for no limit"),
        ("gradient_boosting", "max_depth", "None", "an integer >= 1"),
        ("gradient_boosting", "learning_rate", "0", "a number > 0"),
        ("logistic_regression", "C", "-1", "a number > 0"),
        ("logistic_regression", "C", "nan", "a number > 0"),
        ("logistic_regression", "C", "inf", "a number > 0"),
        ("logistic_regression", "max_iter", "1e3", "an integer >= 1"),
        ("random_forest", "seed", "-1", "an integer >= 0 and <= 4294967295"),
        ("random_forest", "seed", str(2**32), "an integer >= 0 and <= 4294967295"),
    ],
)
def test_bad_hyperparameter_values_name_the_key_the_model_and_the_allowed_range(
    model, key, value, expected
):
    with pytest.raises(TrainingConfigError) as info:
        resolve_hyperparameters({"model": model, key: value})
    assert str(info.value) == (
        f"hyperparameter {key!r} for model {model!r} must be {expected}, got {value!r}"
    )


def test_fit_checks_hyperparameters_too(splits):
    train, _, _ = splits
    with pytest.raises(TrainingConfigError, match="'n_estimators'"):
        fit(train, LABEL, {"model": "random_forest", "n_estimators": "-3"})


# --- metrics ----------------------------------------------------------------------------------


@pytest.fixture
def always_a() -> ModelBundle:
    """A bundle whose estimator always predicts "a", so every metric has a known value."""
    estimator = DummyClassifier(strategy="constant", constant="a").fit([[0.0], [0.0]], ["a", "b"])
    return ModelBundle(estimator, ("x",), "y", ("a", "b"), "constant", {})


# Truth a, a, a, b; predictions a, a, a, a. Class a: precision 3/4, recall 1, F1 6/7.
# Class b: never predicted, so precision, recall and F1 are 0 (zero_division=0).
TEXTBOOK = {
    "accuracy": 3 / 4,
    "balanced_accuracy": (1 + 0) / 2,
    "precision_macro": (3 / 4 + 0) / 2,
    "recall_macro": (1 + 0) / 2,
    "f1_macro": (6 / 7 + 0) / 2,
}


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_each_metric_has_its_textbook_value(metric, always_a):
    truth = pd.DataFrame({"x": [0.0] * 4, "y": ["a", "a", "a", "b"]})
    assert evaluate(always_a, truth, [metric]) == {metric: pytest.approx(TEXTBOOK[metric])}


def test_evaluate_returns_the_requested_metrics_in_order_once(always_a):
    truth = pd.DataFrame({"x": [0.0] * 4, "y": ["a", "a", "a", "b"]})
    scores = evaluate(always_a, truth, ["recall_macro", "accuracy", "recall_macro"])
    assert list(scores) == ["recall_macro", "accuracy"]
    assert all(type(v) is float for v in scores.values())


def test_unknown_metric_is_rejected_with_the_allowed_names(always_a):
    truth = pd.DataFrame({"x": [0.0], "y": ["a"]})
    with pytest.raises(TrainingConfigError) as info:
        evaluate(always_a, truth, ["accuracy", "auc"])
    assert str(info.value) == (
        "unknown metric 'auc'; choose from accuracy, balanced_accuracy, f1_macro, "
        "precision_macro, recall_macro"
    )


def test_no_metric_is_rejected(always_a):
    with pytest.raises(TrainingConfigError, match="no metrics given"):
        evaluate(always_a, pd.DataFrame({"x": [0.0], "y": ["a"]}), [" "])


def test_the_metrics_are_those_the_config_accepts():
    assert set(METRIC_NAMES) == set(SUPPORTED_METRICS)


def test_evaluate_needs_every_feature_the_model_was_fitted_on(splits):
    train, _, test = splits
    bundle = fit(train, LABEL, hp("random_forest"))
    with pytest.raises(TrainingDataError, match=r"feature columns \['mean_area'\] are missing"):
        evaluate(bundle, test.drop(columns="mean_area"), ["accuracy"])


def test_evaluate_needs_the_label(splits):
    train, _, test = splits
    bundle = fit(train, LABEL, hp("random_forest"))
    with pytest.raises(TrainingDataError, match="label column 'diagnosis' is missing"):
        evaluate(bundle, test.drop(columns=LABEL), ["accuracy"])


# --- bad training data ------------------------------------------------------------------------


def test_fit_rejects_a_frame_without_rows(splits):
    train, _, _ = splits
    with pytest.raises(TrainingDataError, match="the data has no rows"):
        fit(train.iloc[:0], LABEL, hp("random_forest"))


def test_fit_rejects_a_missing_label_column_and_lists_the_columns():
    frame = pd.DataFrame({"x": [1.0, 2.0], "outcome": ["a", "b"]})
    with pytest.raises(TrainingDataError) as info:
        fit(frame, LABEL, hp("random_forest"))
    assert str(info.value) == (
        "label column 'diagnosis' is missing; the data has columns ['x', 'outcome'] "
        "(set label_column to one of them)"
    )


def test_fit_rejects_a_single_class(splits):
    train, _, _ = splits
    benign = train[train[LABEL] == "benign"]
    with pytest.raises(TrainingDataError) as info:
        fit(benign, LABEL, hp("random_forest"))
    assert str(info.value) == (
        f"label column 'diagnosis' has a single class 'benign' in {len(benign)} rows; "
        "a classifier needs at least two classes"
    )


def test_fit_rejects_a_text_column_naming_it_and_a_bad_value():
    # drop-corrupt has words where numbers belong; the ETL should have caught them.
    frame = pd.DataFrame(
        {"mean_radius": ["12.1", "twelve", "13.0"], "diagnosis": ["benign", "malignant", "benign"]}
    )
    with pytest.raises(TrainingDataError) as info:
        fit(frame, LABEL, hp("random_forest"))
    assert str(info.value).startswith(
        "feature column 'mean_radius' is not numeric (e.g. 'twelve'); cast or drop it in the ETL"
    )


def test_fit_rejects_missing_feature_values_and_counts_the_rows(splits):
    train, _, _ = splits
    holes = train.copy()
    holes.loc[[0, 5], "mean_texture"] = np.nan
    with pytest.raises(TrainingDataError) as info:
        fit(holes, LABEL, hp("random_forest"))
    assert str(info.value) == (
        f"2 of {len(train)} rows have missing or infinite values in feature columns "
        "['mean_texture']; drop or impute them in the ETL"
    )


def test_fit_rejects_rows_without_a_label(splits):
    train, _, _ = splits
    holes = train.copy()
    holes.loc[3, LABEL] = None
    with pytest.raises(TrainingDataError, match=f"1 of {len(train)} rows have no value in label"):
        fit(holes, LABEL, hp("random_forest"))


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["diagnosis", "mean_area"], "label column 'diagnosis' is also listed in feature_columns"),
        (["mean_area", "mean_area"], r"feature_columns lists \['mean_area'\] more than once"),
        ([], "feature_columns is empty"),
    ],
)
def test_fit_rejects_inconsistent_feature_columns(columns, message, splits):
    train, _, _ = splits
    with pytest.raises(TrainingConfigError, match=message):
        fit(train, LABEL, hp("random_forest"), feature_columns=columns)


# --- predict ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def forest(splits) -> ModelBundle:
    train, _, _ = splits
    return fit(train, LABEL, hp("random_forest"))


def test_predict_gives_the_most_probable_class_with_probabilities_summing_to_one(
    forest, splits, features
):
    _, _, test = splits
    predictions = predict(forest, test[features].to_numpy().tolist())
    assert len(predictions) == len(test)
    for p in predictions:
        assert list(p.probabilities) == ["benign", "malignant"]
        assert sum(p.probabilities.values()) == pytest.approx(1.0)
        assert p.label == max(p.probabilities, key=p.probabilities.get)
    agreement = np.mean([p.label == t for p, t in zip(predictions, test[LABEL], strict=True)])
    assert agreement > 0.85


def test_predict_reads_frames_by_column_name(forest, splits, features):
    _, _, test = splits
    shuffled = test[list(reversed(features))]
    by_name = predict(forest, shuffled)
    by_order = predict(forest, test[features].to_numpy().tolist())
    assert by_name == by_order


def test_predict_rejects_rows_of_the_wrong_width(forest):
    with pytest.raises(PredictionInputError) as info:
        predict(forest, [[1.0, 2.0, 3.0]])
    assert str(info.value).startswith("row 0 has 3 values but the model takes 10 features")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", ["twelve", None, float("nan"), float("inf")])
def test_predict_rejects_values_that_are_not_finite_numbers(forest, bad):
    row = [14.0, 19.0, 91.0, 600.0, 0.09, 0.1, 0.08, 0.04, 0.18, 0.06]
    row[1] = bad
    with pytest.raises(PredictionInputError):
        predict(forest, [row])


def test_predict_rejects_no_rows(forest):
    with pytest.raises(PredictionInputError, match="no rows"):
        predict(forest, [])


def test_predict_rejects_a_frame_without_a_feature(forest, splits):
    _, _, test = splits
    with pytest.raises(PredictionInputError, match=r"\['mean_radius'\] are missing"):
        predict(forest, test.drop(columns="mean_radius"))


# --- artifact ---------------------------------------------------------------------------------


class _RecordingUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.modules: set[str] = set()

    def find_class(self, module: str, name: str):
        self.modules.add(module)
        return super().find_class(module, name)


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_the_artifact_needs_only_scikit_learn_and_numpy_to_load(model, splits):
    # The script-mode job imports this code as `model`, local tools as `train.model`: an
    # artifact that referenced either would not load on the other side.
    train, _, _ = splits
    unpickler = _RecordingUnpickler(pickle.dumps(bundle_to_artifact(fit(train, LABEL, hp(model)))))
    unpickler.load()
    roots = {m.split(".")[0] for m in unpickler.modules}
    assert roots <= {"sklearn", "numpy", "builtins", "copyreg", "_codecs"}, roots


def test_the_artifact_round_trips_through_joblib(forest, splits, features, tmp_path):
    _, _, test = splits
    joblib.dump(bundle_to_artifact(forest), tmp_path / "model.joblib")
    loaded = bundle_from_artifact(joblib.load(tmp_path / "model.joblib"))
    assert (loaded.feature_columns, loaded.classes, loaded.label) == (
        forest.feature_columns,
        forest.classes,
        forest.label,
    )
    assert (loaded.model, loaded.hyperparameters) == (forest.model, forest.hyperparameters)
    rows = test[features].to_numpy().tolist()
    assert predict(loaded, rows) == predict(forest, rows)


def test_an_object_that_is_not_an_artifact_is_rejected(forest):
    with pytest.raises(ModelArtifactError, match="holds a RandomForestClassifier, not an artifact"):
        bundle_from_artifact(forest.estimator)


def test_an_artifact_of_another_format_is_rejected(forest):
    artifact = {**bundle_to_artifact(forest), "format": ARTIFACT_FORMAT + 1}
    with pytest.raises(ModelArtifactError, match=f"format {ARTIFACT_FORMAT + 1} but this code"):
        bundle_from_artifact(artifact)
