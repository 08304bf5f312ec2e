"""The training entry in-process: arguments, metric lines, outputs, failure reports, hooks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from train import entry
from train.entry import (
    EVALUATED_SPLITS,
    JobArgs,
    JobPaths,
    job_args,
    main,
    metric_definitions,
    metric_line,
    parse_cli,
)
from train.model import ModelArtifactError, TrainingConfigError

LABEL = "diagnosis"
FAST_FOREST = ["--model", "random_forest", "--n_estimators", "20", "--seed", "7"]


# --- command line -----------------------------------------------------------------------------


def test_cli_pairs_are_read_in_every_form_and_sagemaker_keys_are_dropped():
    argv = ["--model", "random_forest", "--max_depth=4", "-C", "0.5", "--sagemaker_program", "x"]
    assert parse_cli(argv) == {"model": "random_forest", "max_depth": "4", "C": "0.5"}


def test_the_token_after_a_key_is_its_value_even_when_it_starts_with_a_dash():
    assert parse_cli(["--seed", "-1", "--max_depth", ""]) == {"seed": "-1", "max_depth": ""}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model"], "hyperparameter 'model' has no value; pass --model VALUE"),
        (["random_forest"], "unexpected argument 'random_forest'; hyperparameters arrive as"),
        (["--", "x"], "unexpected argument '--'"),
        (["--seed", "1", "--seed=2"], "hyperparameter 'seed' is given more than once"),
    ],
)
def test_malformed_command_lines_are_rejected(argv, message):
    with pytest.raises(TrainingConfigError, match=re.escape(message)):
        parse_cli(argv)


def test_the_sagemaker_hyperparameters_file_becomes_job_arguments(fixtures_dir, toolkit_argv):
    hyperparameters = json.loads((fixtures_dir / "hyperparameters.json").read_text())
    args = job_args(parse_cli(toolkit_argv(hyperparameters)))
    assert args == JobArgs(
        label_column=LABEL,
        metrics=["accuracy", "f1_macro", "precision_macro", "recall_macro", "balanced_accuracy"],
        feature_columns=None,
        hyperparameters={
            "max_depth": "6",
            "model": "random_forest",
            "n_estimators": "50",
            "seed": "42",
        },
    )


def test_metrics_default_to_accuracy_and_feature_columns_are_split():
    args = job_args({"model": "random_forest", "label_column": LABEL, "feature_columns": "b, a ,c"})
    assert (args.metrics, args.feature_columns) == (["accuracy"], ["b", "a", "c"])


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ({"model": "random_forest"}, "hyperparameter 'label_column' is missing; pass"),
        ({"label_column": LABEL}, "hyperparameter 'model' is missing"),
        ({"label_column": LABEL, "model": "random_forest", "metrics": "accuracy,auc"}, "'auc'"),
        (
            {"label_column": LABEL, "model": "random_forest", "metrics": "['accuracy']"},
            "pass the names comma-separated, e.g. accuracy,f1_macro",
        ),
        (
            {"label_column": LABEL, "model": "random_forest", "feature_columns": " , "},
            "hyperparameter 'feature_columns' is empty",
        ),
        (
            {"label_column": LABEL, "model": "random_forest", "n_estimators": "many"},
            "hyperparameter 'n_estimators' for model 'random_forest' must be an integer >= 1",
        ),
    ],
)
def test_job_arguments_are_checked_before_any_data_is_read(cli, message):
    with pytest.raises(TrainingConfigError, match=re.escape(message)):
        job_args(cli)


def test_paths_default_to_the_sagemaker_layout():
    assert JobPaths.from_env({}) == JobPaths(
        model_dir=Path("/opt/ml/model"),
        train=Path("/opt/ml/input/data/train"),
        validation=Path("/opt/ml/input/data/validation"),
        test=Path("/opt/ml/input/data/test"),
        output_data_dir=Path("/opt/ml/output/data"),
        output_dir=Path("/opt/ml/output"),
    )


# --- metric definitions -----------------------------------------------------------------------


def test_metric_definitions_cover_both_evaluated_splits():
    assert metric_definitions(["accuracy", "f1_macro"]) == [
        {"Name": "validation:accuracy", "Regex": r"validation:accuracy=([0-9\.]+)"},
        {"Name": "validation:f1_macro", "Regex": r"validation:f1_macro=([0-9\.]+)"},
        {"Name": "test:accuracy", "Regex": r"test:accuracy=([0-9\.]+)"},
        {"Name": "test:f1_macro", "Regex": r"test:f1_macro=([0-9\.]+)"},
    ]


def test_each_regex_reads_its_own_line_and_no_other():
    metrics = ["accuracy", "balanced_accuracy", "f1_macro", "precision_macro", "recall_macro"]
    values = {
        (split, m): (i + 1) / 100 for i, (split, m) in enumerate(_pairs(metrics, EVALUATED_SPLITS))
    }
    log = "\n".join(f"2025-01-01 12:00:00 {metric_line(s, m, v)}" for (s, m), v in values.items())
    for definition in metric_definitions(metrics):
        split, metric = definition["Name"].split(":")
        found = re.findall(definition["Regex"], log)
        assert [float(v) for v in found] == [values[(split, metric)]], definition


def _pairs(metrics, splits):
    return [(s, m) for s in splits for m in metrics]


def test_metric_lines_have_six_decimals():
    assert metric_line("test", "accuracy", 0.9) == "test:accuracy=0.900000"
    assert metric_line("validation", "f1_macro", 1.0) == "validation:f1_macro=1.000000"


def test_metric_definitions_reject_unknown_metrics():
    with pytest.raises(TrainingConfigError, match="unknown metric 'auc'"):
        metric_definitions(["auc"])


# --- main, in-process -------------------------------------------------------------------------


@pytest.fixture
def job(tmp_path, splits, write_channels) -> dict[str, str]:
    train, validation, test = splits
    return write_channels(tmp_path, {"train": train, "validation": validation, "test": test})


def test_main_writes_the_model_and_the_evaluation(job, splits, features, capsys):
    train, validation, test = splits
    argv = [*FAST_FOREST, "--label_column", LABEL, "--metrics", "accuracy,recall_macro"]
    assert main(argv, job) == 0

    evaluation = json.loads((Path(job["SM_OUTPUT_DATA_DIR"]) / "evaluation.json").read_text())
    assert set(evaluation["metrics"]) == {"accuracy", "recall_macro"}
    assert set(evaluation["validation_metrics"]) == {"accuracy", "recall_macro"}
    assert (evaluation["train_rows"], evaluation["validation_rows"], evaluation["test_rows"]) == (
        len(train),
        len(validation),
        len(test),
    )
    assert evaluation["classes"] == ["benign", "malignant"]
    assert evaluation["model"] == "random_forest"
    assert evaluation["hyperparameters"] == {"n_estimators": 20, "max_depth": None, "seed": 7}
    assert evaluation["label_column"] == LABEL
    assert evaluation["feature_columns"] == features
    assert (Path(job["SM_MODEL_DIR"]) / "model.joblib").is_file()
    assert not (Path(job["SM_OUTPUT_DIR"]) / "failure").exists()

    out = capsys.readouterr().out
    for split, key in (("test", "metrics"), ("validation", "validation_metrics")):
        for name, value in evaluation[key].items():
            assert f"\n{split}:{name}={value:.6f}\n" in out


def test_the_evaluation_splits_are_never_used_for_fitting(tmp_path, splits, write_channels, capsys):
    # Flip every label of the validation and test channels: if either took part in fitting,
    # the model would change; since neither does, the scores mirror exactly.
    train, validation, test = splits
    flip = {"benign": "malignant", "malignant": "benign"}

    def flipped(frame):
        return frame.assign(diagnosis=frame[LABEL].map(flip))

    argv = [*FAST_FOREST, "--label_column", LABEL]
    runs = {}
    for name, frames in {
        "as_is": {"train": train, "validation": validation, "test": test},
        "flipped": {"train": train, "validation": flipped(validation), "test": flipped(test)},
    }.items():
        env = write_channels(tmp_path / name, frames)
        assert main(argv, env) == 0
        runs[name] = json.loads((Path(env["SM_OUTPUT_DATA_DIR"]) / "evaluation.json").read_text())
    for key in ("metrics", "validation_metrics"):
        assert runs["flipped"][key]["accuracy"] == pytest.approx(1 - runs["as_is"][key]["accuracy"])


def test_a_failure_is_written_for_sagemaker_and_printed(job, capsys):
    assert main(["--model", "random_forest", "--label_column", "outcome"], job) == 1
    reason = (Path(job["SM_OUTPUT_DIR"]) / "failure").read_text()
    assert reason.startswith("channel 'train': label column 'outcome' is missing; the data has")
    assert capsys.readouterr().err.strip().endswith(f"training failed: {reason}")
    assert not (Path(job["SM_MODEL_DIR"]) / "model.joblib").exists()


def test_a_failure_reason_is_cut_to_what_describe_training_job_holds(tmp_path, capsys):
    env = {"SM_OUTPUT_DIR": str(tmp_path / "output")}
    long_name = "x" * 2000
    assert main(["--model", long_name, "--label_column", LABEL], env) == 1
    reason = (tmp_path / "output" / "failure").read_text()
    assert len(reason) == 1024 and reason.endswith("...")
    assert long_name in capsys.readouterr().err  # the log keeps the whole message


def test_an_unexpected_error_still_reports_a_reason(job, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(entry, "train_and_evaluate", broken)
    assert main([*FAST_FOREST, "--label_column", LABEL], job) == 1
    assert (
        Path(job["SM_OUTPUT_DIR"]) / "failure"
    ).read_text() == "unexpected RuntimeError: disk full"
    assert "Traceback" in capsys.readouterr().err


# --- serving hooks ----------------------------------------------------------------------------


def test_the_hooks_serve_the_model_main_wrote(job, fixtures_dir):
    assert main([*FAST_FOREST, "--label_column", LABEL], job) == 0
    model = entry.model_fn(job["SM_MODEL_DIR"])
    request = entry.input_fn((fixtures_dir / "request_rows.csv").read_bytes(), "text/csv")
    body, content_type = entry.output_fn(entry.predict_fn(request, model), "application/json")
    expected = json.loads((fixtures_dir / "request_labels.json").read_text())["diagnosis"]
    assert content_type == "application/json"
    assert [p["label"] for p in json.loads(body)["predictions"]] == expected


def test_model_fn_names_the_missing_file(tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"")
    with pytest.raises(ModelArtifactError) as info:
        entry.model_fn(str(tmp_path))
    assert str(info.value).startswith(
        f"{tmp_path / 'model.joblib'} does not exist (the model directory holds ['model.pkl'])"
    )
