"""src/train/entry.py run as SageMaker runs it: a subprocess with SM_* directories and channels
built from the sample data; then the saved model served through the inference hooks."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile

import joblib
import pytest

from pipeline.package import training_bundle
from train import entry
from train.entry import metric_definitions

pytestmark = pytest.mark.slow  # each test starts Python with scikit-learn (seconds)

LABEL = "diagnosis"
METRICS = ["accuracy", "f1_macro", "precision_macro", "recall_macro", "balanced_accuracy"]
CONTRACT_KEYS = {
    "metrics",
    "validation_metrics",
    "test_rows",
    "validation_rows",
    "train_rows",
    "classes",
    "model",
    "hyperparameters",
    "label_column",
    "feature_columns",
}


def serve(model_dir, body: bytes, content_type: str) -> dict:
    """The four hooks in the order the scikit-learn inference server calls them."""
    model = entry.model_fn(str(model_dir))
    data = entry.input_fn(body, content_type)
    response, accept = entry.output_fn(entry.predict_fn(data, model), "application/json")
    assert accept == "application/json"
    return json.loads(response)


# --- a successful job -------------------------------------------------------------------------


def test_the_training_job_exits_0_and_writes_model_and_evaluation(trained_job):
    job, result = trained_job
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert job.model_file.is_file()
    assert set(json.loads(job.evaluation_file.read_text())) == CONTRACT_KEYS
    assert not job.failure_file.exists()


def test_the_evaluation_scores_the_held_out_test_split(trained_job, sample_splits):
    job, _ = trained_job
    evaluation = json.loads(job.evaluation_file.read_text())
    assert evaluation["test_rows"] == len(sample_splits["test"])
    assert evaluation["validation_rows"] == len(sample_splits["validation"])
    assert evaluation["train_rows"] == len(sample_splits["train"])
    assert list(evaluation["metrics"]) == METRICS
    assert list(evaluation["validation_metrics"]) == METRICS
    assert evaluation["metrics"]["accuracy"] > 0.85
    assert all(0.0 <= v <= 1.0 for v in evaluation["metrics"].values())
    assert evaluation["classes"] == ["benign", "malignant"]
    assert (evaluation["model"], evaluation["label_column"]) == ("random_forest", LABEL)
    assert evaluation["hyperparameters"] == {"n_estimators": 50, "max_depth": 6, "seed": 42}
    assert evaluation["feature_columns"] == [
        c for c in sample_splits["train"].columns if c != LABEL
    ]


def test_the_metric_definitions_read_the_printed_metrics(trained_job):
    job, result = trained_job
    evaluation = json.loads(job.evaluation_file.read_text())
    reported = {"test": evaluation["metrics"], "validation": evaluation["validation_metrics"]}
    definitions = metric_definitions(METRICS)
    assert len(definitions) == 2 * len(METRICS)
    for definition in definitions:
        split, metric = definition["Name"].split(":")
        [value] = re.findall(definition["Regex"], result.stdout)
        assert float(value) == round(reported[split][metric], 6), definition["Name"]


def test_the_saved_model_serves_csv_and_json_requests(trained_job, fixtures_dir):
    # The script saved the model as `model` module code; here it loads as the `train` package.
    job, _ = trained_job
    expected = json.loads((fixtures_dir / "request_labels.json").read_text())["diagnosis"]
    for name, content_type in (
        ("request_rows.csv", "text/csv"),
        ("request_instances.json", "application/json"),
    ):
        response = serve(job.model_file.parent, (fixtures_dir / name).read_bytes(), content_type)
        predictions = response["predictions"]
        assert [p["label"] for p in predictions] == expected, name
        for p in predictions:
            assert set(p["probabilities"]) == {"benign", "malignant"}
            assert sum(p["probabilities"].values()) == pytest.approx(1.0)


def test_a_request_of_the_wrong_width_is_a_clear_value_error(trained_job):
    job, _ = trained_job
    with pytest.raises(ValueError, match="row 0 has 2 values but the model takes 10 features"):
        serve(job.model_file.parent, b"14.2,20.1\n", "text/csv")


# --- the code directory the container receives -------------------------------------------------

SERVE_AS_CONTAINER = """
import json, sys
import entry  # the container imports the program by its module name, from the code dir
model = entry.model_fn(sys.argv[1])
data = entry.input_fn(open(sys.argv[2], "rb").read(), sys.argv[3])
body, accept = entry.output_fn(entry.predict_fn(data, model), "application/json")
print(json.dumps({"model_module": sys.modules["model"].__file__, "response": json.loads(body)}))
"""


@pytest.fixture
def code_dir(tmp_path):
    """src/train/ as the training job receives it: the packaged tarball, unpacked."""
    target = tmp_path / "code"
    with tarfile.open(fileobj=io.BytesIO(training_bundle().body), mode="r:gz") as archive:
        archive.extractall(target, filter="data")
    return target


def test_the_packaged_code_trains_as_a_script_in_its_own_directory(code_dir, make_job):
    job = make_job()
    argv = ["--model", "gradient_boosting", "--n_estimators", "20", "--label_column", LABEL]
    result = job.run(argv, script=code_dir / "entry.py", cwd=code_dir)
    assert result.returncode == 0, result.stderr
    assert "test:accuracy=" in result.stdout
    assert joblib.load(job.model_file)["model"] == "gradient_boosting"


def test_the_packaged_code_serves_a_model_trained_by_local_tools(code_dir, make_job, fixtures_dir):
    # Trained in-process through the `train` package, served by `import entry` in the code dir.
    job = make_job()
    assert entry.main(["--model", "logistic_regression", "--label_column", LABEL], job.env) == 0
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVE_AS_CONTAINER,
            str(job.model_file.parent),
            str(fixtures_dir / "request_instances.json"),
            "application/json",
        ],
        cwd=code_dir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["model_module"] == str(code_dir / "model.py")
    expected = json.loads((fixtures_dir / "request_labels.json").read_text())["diagnosis"]
    assert [p["label"] for p in served["response"]["predictions"]] == expected


# --- failing jobs -----------------------------------------------------------------------------


def _case_empty_validation(make_job, sample_splits, etl_like):
    job = make_job(validation=sample_splits["validation"].iloc[:0])
    for part in job.channel("validation").glob("*.csv"):
        part.unlink()  # only _SUCCESS and a .crc remain, as when the ETL wrote nothing
    return job, [], r"channel 'validation': .* holds no CSV or Parquet files \(found \["


def _case_missing_label(make_job, sample_splits, etl_like):
    return (
        make_job(),
        ["--label_column", "outcome"],
        (
            r"channel 'train': label column 'outcome' is missing; the data has columns \['mean_radius'"
        ),
    )


def _case_single_class(make_job, sample_splits, etl_like):
    train = sample_splits["train"]
    benign = train[train[LABEL] == "benign"]
    return (
        make_job(train=benign),
        [],
        (
            rf"channel 'train': label column 'diagnosis' has a single class 'benign' in "
            rf"{len(benign)} rows; a classifier needs at least two classes"
        ),
    )


def _case_bad_hyperparameter(make_job, sample_splits, etl_like):
    return (
        make_job(),
        ["--n_estimators", "ten"],
        (
            r"hyperparameter 'n_estimators' for model 'random_forest' must be an integer >= 1, "
            r"got 'ten'"
        ),
    )


def _case_corrupt_drop(make_job, sample_splits, etl_like):
    return (
        make_job(train=etl_like("drop-corrupt")),
        [],
        (r"channel 'train': feature column 'mean_radius' is not numeric \(e\.g\. '"),
    )


@pytest.mark.parametrize(
    "case",
    [
        _case_empty_validation,
        _case_missing_label,
        _case_single_class,
        _case_bad_hyperparameter,
        _case_corrupt_drop,
    ],
    ids=lambda case: case.__name__.removeprefix("_case_"),
)
def test_a_failing_job_writes_the_reason_and_exits_1(case, make_job, sample_splits, etl_like):
    job, extra, reason_pattern = case(make_job, sample_splits, etl_like)
    argv = {"--model": "random_forest", "--label_column": LABEL}
    argv.update(zip(extra[::2], extra[1::2], strict=True))
    result = job.run([token for pair in argv.items() for token in pair])

    assert result.returncode == 1
    reason = job.failure_file.read_text()
    assert re.match(reason_pattern, reason), reason
    assert result.stderr.strip().splitlines()[-1] == f"training failed: {reason}"
    assert "Traceback" not in result.stderr
    assert not job.model_file.exists()
    assert not job.evaluation_file.exists()
    assert "test:accuracy=" not in result.stdout
