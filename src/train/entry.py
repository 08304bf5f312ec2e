"""SageMaker script-mode entry for training, and the hooks the endpoint's inference server calls.

Training: the scikit-learn container runs `python entry.py --key value ...` in the code directory,
with SM_* environment variables naming the model, channel and output directories. The job fits on
the `train` channel, scores the `validation` channel and the held-out `test` channel (never used
for fitting), writes `model.joblib` to SM_MODEL_DIR and `evaluation.json` to SM_OUTPUT_DATA_DIR,
and prints `test:<metric>=<value>` lines for the job's MetricDefinitions (`metric_definitions`).
A job that cannot run writes why to $SM_OUTPUT_DIR/failure (the job's FailureReason) and exits 1.

Serving: the same directory is the endpoint's code; the container imports this module as `entry`
and calls model_fn, input_fn, predict_fn and output_fn.

This module and its siblings run in the SageMaker scikit-learn 1.2-1 image (Python 3.9, pandas 1.1),
so they keep to Python 3.9 at run time; `from __future__ import annotations` covers annotations.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import sklearn

if __package__:  # imported as the `train` package (tests, local tools)
    from .channels import read_channel
    from .model import (
        METRIC_NAMES,
        ModelArtifactError,
        ModelBundle,
        Prediction,
        TrainingConfigError,
        TrainingDataError,
        TrainingError,
        bundle_from_artifact,
        bundle_to_artifact,
        check_metrics,
        evaluate,
        fit,
        predict,
        resolve_hyperparameters,
    )
    from .serving import PredictionRequest, align, decode_request, encode_predictions
else:  # run as a script by the SageMaker container: its directory is on sys.path
    from channels import read_channel
    from model import (
        METRIC_NAMES,
        ModelArtifactError,
        ModelBundle,
        Prediction,
        TrainingConfigError,
        TrainingDataError,
        TrainingError,
        bundle_from_artifact,
        bundle_to_artifact,
        check_metrics,
        evaluate,
        fit,
        predict,
        resolve_hyperparameters,
    )
    from serving import PredictionRequest, align, decode_request, encode_predictions

__all__ = [
    "METRIC_NAMES",
    "input_fn",
    "main",
    "metric_definitions",
    "model_fn",
    "output_fn",
    "predict_fn",
]

MODEL_FILE = "model.joblib"
EVALUATION_FILE = "evaluation.json"
FAILURE_FILE = "failure"
# DescribeTrainingJob's FailureReason holds at most 1024 characters.
FAILURE_REASON_LIMIT = 1024

DEFAULT_DIRS = {
    "SM_MODEL_DIR": "/opt/ml/model",
    "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
    "SM_CHANNEL_VALIDATION": "/opt/ml/input/data/validation",
    "SM_CHANNEL_TEST": "/opt/ml/input/data/test",
    "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
    "SM_OUTPUT_DIR": "/opt/ml/output",
}

# Hyperparameters that configure the job rather than the estimator.
JOB_KEYS = ("label_column", "metrics", "feature_columns")
DEFAULT_METRICS = "accuracy"
EVALUATED_SPLITS = ("validation", "test")


# --- metric lines ------------------------------------------------------------------------------


def metric_line(split: str, metric: str, value: float) -> str:
    return f"{split}:{metric}={value:.6f}"


def metric_definitions(metrics: Sequence[str]) -> list[dict[str, str]]:
    """MetricDefinitions for CreateTrainingJob that parse the lines this script prints."""
    names = check_metrics(metrics)
    return [
        {"Name": f"{split}:{name}", "Regex": f"{split}:{name}=([0-9\\.]+)"}
        for split in EVALUATED_SPLITS
        for name in names
    ]


# --- arguments and paths -----------------------------------------------------------------------


@dataclass(frozen=True)
class JobPaths:
    model_dir: Path
    train: Path
    validation: Path
    test: Path
    output_data_dir: Path
    output_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> JobPaths:
        def get(name: str) -> Path:
            return Path(environ.get(name) or DEFAULT_DIRS[name])

        return cls(
            model_dir=get("SM_MODEL_DIR"),
            train=get("SM_CHANNEL_TRAIN"),
            validation=get("SM_CHANNEL_VALIDATION"),
            test=get("SM_CHANNEL_TEST"),
            output_data_dir=get("SM_OUTPUT_DATA_DIR"),
            output_dir=get("SM_OUTPUT_DIR"),
        )


@dataclass(frozen=True)
class JobArgs:
    label_column: str
    metrics: list[str]
    feature_columns: list[str] | None
    hyperparameters: dict[str, str]


def parse_cli(argv: Sequence[str]) -> dict[str, str]:
    """`--key value` (or `--key=value`, or `-k value`) pairs; `sagemaker_*` keys are dropped.

    The value after a key is always taken as its value, so `--seed -1` reaches the range check.
    """
    parsed: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        key = token.lstrip("-")
        if not token.startswith("-") or not key:
            raise TrainingConfigError(
                f"unexpected argument {token!r}; hyperparameters arrive as --key value pairs"
            )
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(argv):
            value = argv[i + 1]
            i += 2
        else:
            raise TrainingConfigError(f"hyperparameter {key!r} has no value; pass --{key} VALUE")
        if key in parsed:
            raise TrainingConfigError(f"hyperparameter {key!r} is given more than once")
        parsed[key] = value
    # The SageMaker SDK adds sagemaker_program, sagemaker_submit_directory, ... to the
    # hyperparameters; the toolkit normally strips them, but a job built by hand may not.
    return {k: v for k, v in parsed.items() if not k.startswith("sagemaker_")}


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def job_args(cli: Mapping[str, str]) -> JobArgs:
    """Validate the job's arguments before any data is read, so a typo fails in seconds."""
    label = cli.get("label_column", "").strip()
    if not label:
        raise TrainingConfigError(
            "hyperparameter 'label_column' is missing; pass --label_column <column> "
            "(the config's data.label_column)"
        )
    metrics_value = cli.get("metrics", DEFAULT_METRICS)
    if metrics_value.lstrip().startswith("["):
        raise TrainingConfigError(
            f"hyperparameter 'metrics' is {metrics_value!r}; pass the names comma-separated, "
            "e.g. accuracy,f1_macro"
        )
    metrics = check_metrics(_split_list(metrics_value))
    features = None
    if "feature_columns" in cli:
        features = _split_list(cli["feature_columns"])
        if not features:
            raise TrainingConfigError(
                "hyperparameter 'feature_columns' is empty; list the columns comma-separated "
                "or leave it out to use every column except the label"
            )
    hyperparameters = {k: v for k, v in cli.items() if k not in JOB_KEYS}
    resolve_hyperparameters(hyperparameters)
    return JobArgs(label, metrics, features, hyperparameters)


# --- training ----------------------------------------------------------------------------------


@contextmanager
def _in_channel(name: str) -> Iterator[None]:
    """Prefix data errors with the channel they come from."""
    try:
        yield
    except TrainingDataError as exc:
        if str(exc).startswith("channel "):
            raise
        raise TrainingDataError(f"channel {name!r}: {exc}") from exc


def train_and_evaluate(args: JobArgs, paths: JobPaths) -> dict[str, Any]:
    """Read the channels, fit, score, write model and evaluation; return the evaluation."""
    frames = {}
    for name in ("train", *EVALUATED_SPLITS):
        frames[name] = read_channel(getattr(paths, name), name)
    print(", ".join(f"{name}: {len(frame)} rows" for name, frame in frames.items()))

    started = time.perf_counter()
    with _in_channel("train"):
        bundle = fit(frames["train"], args.label_column, args.hyperparameters, args.feature_columns)
    print(
        f"fitted {bundle.model} {bundle.hyperparameters} on {len(frames['train'])} rows x "
        f"{len(bundle.feature_columns)} features in {time.perf_counter() - started:.2f}s; "
        f"classes {list(bundle.classes)}"
    )

    scores: dict[str, dict[str, float]] = {}
    for split in EVALUATED_SPLITS:
        with _in_channel(split):
            scores[split] = evaluate(bundle, frames[split], args.metrics)
        unseen = sorted(set(frames[split][args.label_column].astype(str)) - set(bundle.classes))
        if unseen:
            print(f"warning: channel {split!r} has classes {unseen} that training never saw")
    for split in EVALUATED_SPLITS:
        for name, value in scores[split].items():
            print(metric_line(split, name, value))

    evaluation = {
        "metrics": scores["test"],
        "validation_metrics": scores["validation"],
        "test_rows": len(frames["test"]),
        "validation_rows": len(frames["validation"]),
        "train_rows": len(frames["train"]),
        "classes": list(bundle.classes),
        "model": bundle.model,
        "hyperparameters": bundle.hyperparameters,
        "label_column": bundle.label,
        "feature_columns": list(bundle.feature_columns),
    }
    paths.model_dir.mkdir(parents=True, exist_ok=True)
    paths.output_data_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(bundle_to_artifact(bundle), paths.model_dir / MODEL_FILE)
    (paths.output_data_dir / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2) + "\n")
    print(f"wrote {paths.model_dir / MODEL_FILE} and {paths.output_data_dir / EVALUATION_FILE}")
    return evaluation


def _report_failure(output_dir: Path, reason: str) -> None:
    print(f"training failed: {reason}", file=sys.stderr)
    if len(reason) > FAILURE_REASON_LIMIT:
        reason = reason[: FAILURE_REASON_LIMIT - 3] + "..."
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / FAILURE_FILE).write_text(reason)
    except OSError as exc:
        print(f"could not write {output_dir / FAILURE_FILE}: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the training job; return the process exit code (0 or 1)."""
    argv = sys.argv[1:] if argv is None else argv
    paths = JobPaths.from_env(os.environ if environ is None else environ)
    try:
        train_and_evaluate(job_args(parse_cli(argv)), paths)
    except TrainingError as exc:
        reason = str(exc)
    except Exception as exc:  # a bug or a broken environment: still tell SageMaker why
        traceback.print_exc()
        reason = f"unexpected {type(exc).__name__}: {exc}"
    else:
        return 0
    _report_failure(paths.output_dir, reason)
    return 1


# --- serving -----------------------------------------------------------------------------------


def model_fn(model_dir: str) -> ModelBundle:
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        found = (
            sorted(p.name for p in Path(model_dir).glob("*")) if Path(model_dir).is_dir() else []
        )
        raise ModelArtifactError(
            f"{path} does not exist (the model directory holds {found}); the model.tar.gz "
            f"must contain the {MODEL_FILE} a training job wrote"
        )
    bundle = bundle_from_artifact(joblib.load(path))
    if bundle.sklearn_version != sklearn.__version__:
        print(
            f"warning: the model was trained with scikit-learn {bundle.sklearn_version} and is "
            f"served with {sklearn.__version__}; pin the same version on both sides",
            file=sys.stderr,
        )
    return bundle


def input_fn(request_body: bytes | str, request_content_type: str) -> PredictionRequest:
    return decode_request(request_body, request_content_type)


def predict_fn(input_data: PredictionRequest, model: ModelBundle) -> list[Prediction]:
    return predict(model, align(input_data, model.feature_columns))


def output_fn(prediction: list[Prediction], accept: str) -> tuple[str, str]:
    return encode_predictions(prediction, accept)


if __name__ == "__main__":
    sys.exit(main())
