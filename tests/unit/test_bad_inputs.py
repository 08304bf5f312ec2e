"""The catalogue of bad inputs: config, data, CLI arguments and Lambda events, one row each.

Every row names the input, the error it must raise (an exception class, or for the CLI exit code
2 with one line on stderr and no traceback) and a piece of the message that says what is wrong,
where, or how to fix it. Cases already tested next to their code (tests/unit/config,
tests/unit/etl, tests/unit/lambdas, tests/functional/lambdas) are not repeated here; this table
adds the rest. No AWS is reached: every input is refused before the first call.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl import glue_job, transforms
from etl.errors import (
    EmptyInputError,
    EtlError,
    JobArgumentError,
    SingleClassError,
    TooFewRowsError,
)
from lambdas import _aws, evaluate, manifest, notify, promote
from pipeline import cli
from pipeline.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # config | data | cli | lambda
    given: Any  # what the kind's runner takes (see run_case)
    error: type[BaseException] | int  # the exception, or the CLI's exit code
    message: str  # must appear in the message


def _set(path: str, value: Any, file: str = "project.yaml") -> Callable[[Path], None]:
    """An edit of config/<file>: set the dotted `path` to `value` (None deletes it)."""

    def edit(config_dir: Path) -> None:
        doc = yaml.safe_load((config_dir / file).read_text()) or {}
        *parents, leaf = path.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
        (config_dir / file).write_text(yaml.safe_dump(doc))

    return edit


def _write(text: str, file: str) -> Callable[[Path], None]:
    return lambda config_dir: (config_dir / file).write_text(text)


def _config(edit: Callable[[Path], None] | None = None, env: str = "dev", **environ: str):
    return {"edit": edit, "env": env, "environ": environ}


def _drop(*files: tuple[str, str]) -> Callable[[Path], Any]:
    """A local drop folder holding `files` (name, content), listed as the ETL lists its input."""

    def listing(tmp: Path) -> Any:
        for name, content in files:
            (tmp / "drop" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / "drop" / name).write_text(content)
        (tmp / "drop").mkdir(exist_ok=True)
        return glue_job.list_local_input(str(tmp / "drop"))

    return listing


SPEC = transforms.SplitSpec("diagnosis", ("mean_radius", "mean_texture"), 0.15, 0.2, 42)
JOB = ["--input", "in/", "--output", "out/", "--label_column", "y", "--feature_columns", "a,b"]
MANIFEST_ENV = {
    "BUCKET": "data-bucket",
    "RAW_PREFIX": "raw/",
    "MANIFEST_PREFIX": "manifests/",
    "PROCESSED_PREFIX": "processed/",
    "MODELS_PREFIX": "models/",
    "TRAINING_JOB_PREFIX": "proj-dev",
    "TABLE_NAME": "proj-dev-models",
}
EXECUTION = "arn:aws:states:eu-west-1:123456789012:execution:proj-dev-retrain:run-1"
PROMOTE_ENV = {"TABLE_NAME": "proj-dev-models", "MODEL_PREFIX": "proj-dev", **{
    "GATE_DIRECTION": "maximize", "GATE_MIN_IMPROVEMENT": "0"}}  # fmt: skip
EVALUATE_ENV = {
    "GATE_METRIC": "accuracy",
    "GATE_DIRECTION": "maximize",
    "GATE_MIN_IMPROVEMENT": "0",
}
NOTIFY_ENV = {"TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:t", "NOTIFY_ON": "failed",
              "PROJECT": "proj", "ENVIRONMENT": "dev"}  # fmt: skip


def _lambda(handler: Callable[..., Any], event: Any, **env: str) -> dict[str, Any]:
    return {"handler": handler, "event": event, "env": env}


CASES = [
    # --- config: files and MLOPS__ overrides --------------------------------------------------
    Case("config-unsupported-metric", "config",
         _config(_set("evaluation.metrics", ["accuracy", "roc_auc"])), ConfigError,
         "evaluation.metrics.1"),
    Case("config-no-feature-columns", "config", _config(_set("data.feature_columns", [])),
         ConfigError, "data.feature_columns"),
    Case("config-feature-column-with-space", "config",
         _config(_set("data.feature_columns", ["mean radius"])), ConfigError,
         "letters, digits and underscores"),
    Case("config-feature-column-twice", "config",
         _config(_set("data.feature_columns", ["mean_radius", "mean_radius"])), ConfigError,
         "listed more than once"),
    Case("config-input-format-json", "config", _config(_set("data.input_format", "json")),
         ConfigError, "data.input_format"),
    Case("config-no-endpoint-instance", "config",
         _config(_set("endpoint.initial_instance_count", 0)), ConfigError,
         "endpoint.initial_instance_count"),
    Case("config-runtime-below-a-minute", "config",
         _config(_set("training.max_runtime_seconds", 10)), ConfigError,
         "training.max_runtime_seconds"),
    Case("config-email-without-at", "config",
         _config(_set("notifications.email", "ops.example.com")), ConfigError,
         "notifications.email"),
    Case("config-unknown-notify-outcome", "config",
         _config(_set("notifications.notify_on", ["sometimes"])), ConfigError,
         "notifications.notify_on.0"),
    Case("config-glue-worker-type", "config", _config(_set("etl.worker_type", "G.16X")),
         ConfigError, "etl.worker_type"),
    Case("config-one-glue-worker", "config", _config(_set("etl.number_of_workers", 1)),
         ConfigError, "etl.number_of_workers"),
    Case("config-github-repo-without-owner", "config",
         _config(_set("project.github_repo", "just-a-repo")), ConfigError, "OWNER/REPO"),
    Case("config-name-makes-reserved-bucket", "config", _config(_set("project.name", "sthree-x")),
         ConfigError, "must not start with 'sthree-'"),
    Case("config-name-too-short", "config", _config(_set("project.name", "x")), ConfigError,
         "project.name"),
    Case("config-label-column-missing", "config", _config(_set("data.label_column", None)),
         ConfigError, "data.label_column"),
    Case("config-overlay-invalid-yaml", "config", _config(_write("gate: [\n", "env/dev.yaml")),
         ConfigError, "invalid YAML"),
    Case("config-overlay-unknown-section", "config",
         _config(_set("trainer.instance_type", "ml.m5.large", "env/dev.yaml")), ConfigError,
         "env/dev.yaml: trainer"),
    Case("config-env-negative-improvement", "config",
         _config(MLOPS__GATE__MIN_IMPROVEMENT="-0.1"), ConfigError,
         "MLOPS__GATE__MIN_IMPROVEMENT: gate.min_improvement"),
    Case("config-env-bad-region", "config", _config(MLOPS__PROJECT__REGION="mars"), ConfigError,
         "MLOPS__PROJECT__REGION: project.region"),
    Case("config-env-split-above-one", "config", _config(MLOPS__DATA__SPLIT__TEST="1.5"),
         ConfigError, "MLOPS__DATA__SPLIT__TEST: data.split.test"),
    Case("config-env-unknown-section", "config", _config(MLOPS__TRAINER__SEED="1"), ConfigError,
         "MLOPS__TRAINER__SEED"),
    Case("config-env-selects-unknown-environment", "config", _config(env=None, MLOPS_ENV="qa"),
         ConfigError, "no overlay for environment 'qa'"),
    # --- data: malformed drops and ETL job arguments (the pure checks, no Spark) -------------
    Case("data-drop-folder-empty", "data", _drop(), EmptyInputError, "no data files under"),
    Case("data-drop-only-markers", "data", _drop(("_SUCCESS", ""), (".hidden.csv", "a,b\n1,2\n")),
         EmptyInputError, "_SUCCESS, .crc, hidden and empty files are ignored"),
    Case("data-drop-empty-file", "data", _drop(("data.csv", "")), EmptyInputError,
         "fix --input"),
    Case("data-drop-one-class", "data",
         lambda tmp: transforms.check_classes({"benign": 300}, SPEC), SingleClassError,
         "label column 'diagnosis' has only class(es) ['benign']"),
    Case("data-drop-no-rows-left", "data", lambda tmp: transforms.check_classes({}, SPEC),
         SingleClassError, "a classifier needs at least 2"),
    Case("data-drop-rare-class", "data",
         lambda tmp: transforms.check_classes({"benign": 300, "malignant": 2}, SPEC),
         TooFewRowsError, "class(es) ['malignant'] have too few rows"),
    Case("data-job-no-output", "data", lambda tmp: glue_job.parse_job_args(JOB[:2] + JOB[4:]),
         JobArgumentError, "--output"),
    Case("data-job-negative-validation", "data",
         lambda tmp: glue_job.parse_job_args([*JOB, "--validation_fraction", "-0.1"]),
         JobArgumentError, "fix data.split"),
    Case("data-job-empty-feature-list", "data",
         lambda tmp: glue_job.parse_job_args([*JOB[:-1], " , "]), JobArgumentError,
         "set data.feature_columns"),
    Case("data-job-s3-uri-without-bucket", "data", lambda tmp: glue_job.split_s3_uri("s3:///raw/"),
         JobArgumentError, "names no bucket"),
    # --- CLI arguments: exit 2, one line on stderr ------------------------------------------
    Case("cli-no-command", "cli", [], 2, "the following arguments are required: COMMAND"),
    Case("cli-unknown-command", "cli", ["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    Case("cli-run-without-data", "cli", ["run"], 2, "mlops run: the following arguments are "
         "required: --data. Fix: see `mlops run --help`"),
    Case("cli-rollback-version-not-a-number", "cli", ["rollback", "v3"], 2,
         "argument version: invalid int value: 'v3'"),
    Case("cli-predict-content-type", "cli", ["predict", "--content-type", "text/plain"], 2,
         "argument --content-type: invalid choice"),
    Case("cli-local-port-not-a-number", "cli", ["local", "up", "--port", "http"], 2,
         "argument --port: invalid int value"),
    Case("cli-config-without-action", "cli", ["config"], 2, "mlops config: the following"),
    Case("cli-render-unknown-environment", "cli", ["render", "--env", "qa"], 2,
         "config/env/qa.yaml: no overlay for environment 'qa'"),
    Case("cli-config-show-bad-override", "cli",
         {"argv": ["config", "show"], "environ": {"MLOPS__TRAINING__INSTANCE_COUNT": "many"}},
         2, "MLOPS__TRAINING__INSTANCE_COUNT: training.instance_count"),
    Case("cli-data-push-missing-path", "cli", ["data", "push", "{tmp}/nowhere"], 2,
         "nowhere: no such file or folder"),
    Case("cli-data-push-empty-folder", "cli", ["data", "push", "{tmp}"], 2, "no files to upload"),
    Case("cli-data-push-bad-drop-name", "cli",
         ["data", "push", str(REPO / "data" / "sample" / "drop-001"), "--drop", "drop 1"], 2,
         "drop name 'drop 1': use letters, digits"),
    Case("cli-validate-missing-file", "cli", ["validate", "--file", "{tmp}/asl.json"], 2,
         "asl.json: file not found"),
    Case("cli-validate-not-json", "cli",
         ["validate", "--file", str(REPO / "data" / "sample" / "drop-001" / "data.csv")], 2,
         "not valid JSON"),
    Case("cli-graph-missing-readme", "cli", ["graph", "--check", "--readme", "{tmp}/R.md"], 2,
         "R.md: file not found"),
    Case("cli-graph-readme-without-markers", "cli",
         ["graph", "--check", "--readme", str(REPO / "pyproject.toml")], 2,
         "pyproject.toml has no"),
    Case("cli-predict-missing-file", "cli", ["predict", "--file", "{tmp}/rows.csv"], 2,
         "rows.csv: no such file"),
    Case("cli-dry-run-compare-missing", "cli", ["dry-run", "--compare", "{tmp}/base.json"], 2,
         "not a dry-run summary"),
    # --- Lambda events: refused before any AWS call -----------------------------------------
    Case("lambda-manifest-no-execution-id", "lambda",
         _lambda(manifest.handler, {"input": {"data_prefix": "raw/d/"}}, **MANIFEST_ENV),
         _aws.EventError, "event field execution_id is missing"),
    Case("lambda-manifest-prefix-outside-raw", "lambda",
         _lambda(manifest.handler, {"input": {"data_prefix": "processed/d/", "commit": "abc"},
                 "execution_id": EXECUTION}, **MANIFEST_ENV),
         _aws.EventError, "is not under 'raw/' (RAW_PREFIX)"),
    Case("lambda-manifest-raw-prefix-without-slash", "lambda",
         _lambda(manifest.handler, {"input": {"data_prefix": "raw/d/"}, "execution_id": EXECUTION},
                 **{**MANIFEST_ENV, "RAW_PREFIX": "raw"}),
         _aws.ConfigurationError, "RAW_PREFIX='raw' must be a key prefix ending in '/'"),
    Case("lambda-promote-no-action", "lambda", _lambda(promote.handler, {"version": 3},
         **PROMOTE_ENV), _aws.EventError, "event field action is missing"),
    Case("lambda-promote-unknown-action", "lambda",
         _lambda(promote.handler, {"action": "delete", "version": 3}, **PROMOTE_ENV),
         _aws.EventError, "must be one of 'register', 'promote', 'revert'"),
    Case("lambda-promote-revert-without-reason", "lambda",
         _lambda(promote.handler, {"action": "revert", "version": 3}, **PROMOTE_ENV),
         _aws.EventError, "event field reason is missing"),
    Case("lambda-promote-register-without-candidate", "lambda",
         _lambda(promote.handler, {"action": "register", "run": {}}, **PROMOTE_ENV),
         _aws.EventError, "event field candidate is missing"),
    Case("lambda-promote-no-table", "lambda",
         _lambda(promote.handler, {"action": "promote", "version": 3}), _aws.ConfigurationError,
         "environment variable TABLE_NAME is not set"),
    Case("lambda-evaluate-uri-not-s3", "lambda",
         _lambda(evaluate.handler, {"evaluation_uri": "/opt/ml/output/evaluation.json",
                 "production": {}}, **EVALUATE_ENV),
         _aws.EventError, "event field evaluation_uri '/opt/ml/output/evaluation.json' must "
         "start with s3://"),
    Case("lambda-evaluate-production-not-object", "lambda",
         _lambda(evaluate.handler, {"evaluation_uri": "s3://b/k.json", "production": []},
                 **EVALUATE_ENV), _aws.EventError, "event field production must be an object"),
    Case("lambda-notify-event-not-object", "lambda",
         _lambda(notify.handler, ["failed"], **NOTIFY_ENV), _aws.EventError,
         "the event must be a JSON object"),
    Case("lambda-notify-unknown-outcome", "lambda",
         _lambda(notify.handler, {"outcome": "exploded", "input": {}}, **NOTIFY_ENV),
         _aws.EventError, "event field outcome 'exploded' must be one of"),
]  # fmt: skip


def _run_config(given: dict[str, Any], tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    shutil.copytree(REPO / "config", config_dir)
    if given["edit"]:
        given["edit"](config_dir)
    load_config(given["env"], config_dir, environ=given["environ"])


def _run_cli(given: Any, tmp_path: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    argv, environ = (given, {}) if isinstance(given, list) else (given["argv"], given["environ"])
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(REPO)  # commands find config/ from the working directory
    try:
        code = cli.main([arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    except SystemExit as exc:  # argparse ends this way
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _run_lambda(given: dict[str, Any], monkeypatch) -> None:
    for name in {*MANIFEST_ENV, *PROMOTE_ENV, *EVALUATE_ENV, *NOTIFY_ENV}:
        monkeypatch.delenv(name, raising=False)
    for name, value in given["env"].items():
        monkeypatch.setenv(name, value)
    # Clients may be built (never called): give them a region and fake keys, never a real account.
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")  # pragma: allowlist secret
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: no AWS
    _aws.reset_clients()
    given["handler"](given["event"])


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_with_a_message_saying_what_and_where(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    if case.kind == "cli":
        code, out, err = _run_cli(case.given, tmp_path, monkeypatch, capsys)
        assert code == case.error, err
        assert err.count("\n") == 1 and err.startswith("error: "), err
        assert "Traceback" not in err
        assert case.message in err
        return
    with pytest.raises(case.error) as info:
        if case.kind == "config":
            _run_config(case.given, tmp_path)
        elif case.kind == "data":
            case.given(tmp_path)
        else:
            _run_lambda(case.given, monkeypatch)
    message = str(info.value)
    assert case.message in message
    assert "\n" not in message  # one line: a Glue ErrorMessage, a CLI line, a notification
    if case.kind == "config":
        assert "Fix:" in message
    if case.kind == "data":
        assert isinstance(info.value, EtlError)


def test_the_catalogue_covers_every_kind_with_unique_ids():
    assert len({case.id for case in CASES}) == len(CASES)
    kinds = {
        kind: sum(case.kind == kind for case in CASES)
        for kind in ("config", "data", "cli", "lambda")
    }
    assert all(count >= 8 for count in kinds.values()), kinds
