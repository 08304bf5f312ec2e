"""Fault injection against the local cloud: each fault ends the execution in a defined state, is
notified with its cause, and leaves production (the registry and the endpoint) as it was.

One deployed cloud for the module and one production model (the gate-routing module's first run,
through the real S3 trigger). The faults are real: training code that rejects its hyperparameter,
ETL input the job refuses, Lambda invocations failed by the local cloud's fault injection (as AWS
FIS does), a model the endpoint cannot serve, and a local cloud restarted under `mlops run --wait`.
The Lambda and endpoint faults run the deployed definition from GetProduction on the state the
first run produced, as tests/e2e/test_gate_routing.py does.
"""

# Fixtures imported from the gate-routing module are parameters of the tests here (F811).
# ruff: noqa: F811

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from pipeline import data, deploy, registry, run, workflow
from pipeline.config import load_config
from pipeline.demo import SAMPLE, _sample_rows
from pipeline.localcloud import lambdas, server

from .conftest import REPO, copy_project
from .test_gate_routing import (  # noqa: F401 (fixtures, used by name)
    _better,
    _endpoint,
    _gate_run,
    _model,
    _pointer,
    _upload_evaluation,
    first_run,
    gate_machine,
    notifications,
    real_evaluation,
)

pytestmark = pytest.mark.slow


def _served(cfg) -> dict[str, Any]:
    """What production is, as `mlops models` and the endpoint tell it."""
    endpoint = _endpoint(cfg)
    variants = endpoint["ProductionVariants"] if endpoint else []
    body, _ = _sample_rows(cfg, 5)
    return {
        "pointer": _pointer(cfg),
        "production": registry.list_models(cfg)["production"],
        "endpoint_config": endpoint["EndpointConfigName"] if endpoint else None,
        "status": endpoint["EndpointStatus"] if endpoint else None,
        "predictions": json.loads(data.predict(cfg, body)) if endpoint else None,
        "variants": [v["VariantName"] for v in variants],
    }


@pytest.fixture(scope="module")
def production(cfg, first_run) -> dict[str, Any]:
    """Production after the one real promotion; every fault must leave exactly this."""
    assert first_run["summary"].outcome == "promoted", run.text(first_run["summary"])
    return _served(cfg)


def _assert_failure_notified(notifications, summary, state: str, cause: str) -> None:
    subjects = notifications.of(summary.execution_arn)
    assert len(subjects) == 1, subjects
    assert f"retraining failed in {state}: " in subjects[0], subjects
    message = next(
        m["Message"]
        for m in notifications.seen
        if f"execution: {summary.execution_arn}\n" in m["Message"]
    )
    assert cause in message, message


# --- the training script crashes ------------------------------------------------------------


def test_training_script_that_crashes_fails_in_train_and_production_stays(
    cfg, production, notifications, tmp_path
):
    # A hyperparameter the real training code rejects (max_depth must be at least 1), deployed
    # the way a merged config change is; the committed config is deployed again afterwards.
    config_dir = copy_project(tmp_path)
    doc = yaml.safe_load((config_dir / "project.yaml").read_text())
    doc["training"]["hyperparameters"]["max_depth"] = 0
    (config_dir / "project.yaml").write_text(yaml.safe_dump(doc))
    broken = load_config("dev", config_dir, environ={})
    workflow.asl_path(broken).write_text(workflow.render(broken))
    quiet = lambda message: None  # noqa: E731
    deploy.deploy(broken, progress=quiet, commit="crashing-training")
    try:
        arn, _ = run.start(broken, "gate-drop", "crashing-training")
        summary = run.follow(broken, arn, timeout=300)
    finally:
        deploy.deploy(cfg, progress=quiet)
    assert summary.status == "FAILED" and summary.failed_state == "Train", run.text(summary)
    assert summary.path[-3:] == ["Train failed", "NotifyFailure", "Failed"]
    assert "AlgorithmError" in summary.cause and "max_depth" in summary.cause, summary.cause
    _assert_failure_notified(notifications, summary, "Train", "max_depth")
    assert _served(cfg) == production


# --- the ETL refuses bad data ----------------------------------------------------------------


def _rows() -> tuple[list[str], list[dict[str, str]]]:
    with (SAMPLE / "drop-001" / "data.csv").open() as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _write(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    path.mkdir(parents=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (path / "data.csv").write_text(buf.getvalue())


def _bad_drop(kind: str, target: Path, cfg) -> Path:
    label = cfg.settings.data.label_column
    header, rows = _rows()
    complete = [r for r in rows if all(r.values())]  # no row the cleaning would drop
    if kind == "corrupt":  # the sample's corrupt delivery: text in a feature column
        return SAMPLE / "drop-corrupt"
    if kind == "missing-column":
        _write(target, [c for c in header if c != cfg.settings.data.feature_columns[0]], rows)
    elif kind == "single-class":
        first = rows[0][label]
        _write(target, header, [r for r in complete if r[label] == first])
    elif kind == "too-few-rows":
        by_class: dict[str, list[dict[str, str]]] = {}
        for row in complete:
            by_class.setdefault(row[label], []).append(row)
        _write(target, header, [r for group in by_class.values() for r in group[:2]])
    elif kind == "header-only":
        _write(target, header, [])
    return target


# kind of bad data -> the ETL error class that must name it
BAD_DATA = {
    "corrupt": "NonNumericFeatureError",
    "missing-column": "MissingColumnsError",
    "single-class": "SingleClassError",
    "too-few-rows": "TooFewRowsError",
    "header-only": "EmptyInputError",
}


@pytest.mark.parametrize("kind", list(BAD_DATA))
def test_bad_data_fails_in_the_etl_naming_the_problem_and_production_stays(
    cfg, production, notifications, tmp_path, kind
):
    since = time.time()
    prefix, _ = data.push(cfg, _bad_drop(kind, tmp_path / kind, cfg), f"bad-{kind}")
    (arn,) = run.triggered_executions(cfg, prefix, since)
    summary = run.follow(cfg, arn, timeout=300)
    assert summary.status == "FAILED" and summary.failed_state == "ETL", run.text(summary)
    assert summary.path[-3:] == ["ETL failed", "NotifyFailure", "Failed"]
    assert "Train" not in summary.path
    assert BAD_DATA[kind] in summary.cause, summary.cause
    _assert_failure_notified(notifications, summary, "ETL", BAD_DATA[kind])
    assert _served(cfg) == production


# --- a Lambda fails: transiently (retried) and permanently (caught) -----------------------------


@pytest.fixture
def cloud_url(cloud):
    yield cloud.url
    lambdas.clear_faults(cloud.url)


def _failed_calls(arn: str, state: str) -> int:
    """How often the Lambda task of `state` failed in the execution."""
    events = run.history(boto3.client("stepfunctions"), arn)
    current, failed = None, 0
    for event in events:
        if "stateEnteredEventDetails" in event:
            current = event["stateEnteredEventDetails"]["name"]
        elif event["type"] == "LambdaFunctionFailed" and current == state:
            failed += 1
    return failed


def test_lambda_failing_transiently_is_retried_and_the_run_succeeds(
    cfg,
    cloud_url,
    gate_machine,
    first_run,
    real_evaluation,
    production,
    notifications,
):
    # The Lambda service fails the next two calls of the promote function (Register's): the
    # state's Retry on Lambda.ServiceException calls it a third time, which succeeds.
    function = cfg.names["lambda_promote"]
    lambdas.inject_fault(cloud_url, function, 2, "Lambda.ServiceException", "Service unavailable")
    equal = production["pointer"]["metrics"][cfg.settings.gate.metric]
    summary = _gate_run(cfg, gate_machine, first_run, real_evaluation, "transient", equal)
    assert summary.status == "SUCCEEDED" and summary.outcome == "rejected", run.text(summary)
    assert summary.path[-2:] == ["NotifyRejected", "Rejected"]
    assert _failed_calls(summary.execution_arn, "Register") == 2
    assert lambdas.faults(cloud_url) == []  # both injected failures were used
    assert _model(cfg, summary.model_version)["status"] == "rejected"
    subjects = notifications.of(summary.execution_arn)
    assert subjects and f"rejected v{summary.model_version}" in subjects[0], subjects
    assert _served(cfg) == production


def test_lambda_failing_permanently_is_caught_and_notified(
    cfg,
    cloud_url,
    gate_machine,
    first_run,
    real_evaluation,
    production,
    notifications,
):
    function = cfg.names["lambda_evaluate"]
    lambdas.inject_fault(cloud_url, function, None, "InjectedFault", "the disk is full")
    summary = _gate_run(cfg, gate_machine, first_run, real_evaluation, "permanent", _better(cfg))
    assert summary.status == "FAILED" and summary.failed_state == "Evaluate", run.text(summary)
    assert summary.path[-3:] == ["Evaluate failed", "NotifyFailure", "Failed"]
    assert summary.error == "InjectedFault" and "the disk is full" in summary.cause
    # Not a transient error: called once, not retried.
    assert [f["fired"] for f in lambdas.faults(cloud_url)] == [1]
    _assert_failure_notified(notifications, summary, "Evaluate", "the disk is full")
    assert _served(cfg) == production


# --- the endpoint update fails after the registry was touched ---------------------------------


def test_endpoint_update_failing_after_the_claim_is_reverted_and_the_old_model_serves(
    cfg,
    gate_machine,
    first_run,
    real_evaluation,
    production,
    notifications,
):
    # ClaimProduction moves the pointer first; the endpoint then cannot serve the artifact (no
    # model in it) and SageMaker rolls the update back: the pointer must follow it back.
    not_a_model = _upload_evaluation(cfg, real_evaluation, 0.5, "fault-not-a-model")
    summary = _gate_run(
        cfg, gate_machine, first_run, real_evaluation, "fault-unservable", _better(cfg),
        artifact=not_a_model,
    )  # fmt: skip
    assert summary.status == "FAILED" and summary.failed_state == "UpdateEndpoint", run.text(
        summary
    )
    assert "ClaimProduction" in summary.path and "NotifyPromoted" not in summary.path
    assert summary.path[-4:] == ["EndpointFailed", "RevertProduction", "NotifyFailure", "Failed"]
    assert "did not pass the ping health check" in summary.cause, summary.cause
    assert _model(cfg, summary.model_version)["status"] == "failed"
    _assert_failure_notified(notifications, summary, "UpdateEndpoint", "ping health check")
    assert _endpoint(cfg)["FailureReason"]
    assert _served(cfg) == production


# --- the local cloud restarts under `mlops run --wait` -------------------------------------------


def _mlops(env: dict[str, str], *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False, **kwargs,
    )  # fmt: skip


def test_local_cloud_restarted_mid_run_ends_the_cli_with_one_clear_line(cfg, tmp_path):
    port = server.free_port()
    state = tmp_path / "localcloud"
    info = server.up(port, state_dir=state)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLOPS"))},
        "AWS_ENDPOINT_URL": info["url"],
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",  # pragma: allowlist secret
        "AWS_DEFAULT_REGION": cfg.settings.project.region,
    }
    try:
        for args in (
            ("bootstrap", "--env", "dev", "--github-repo", "local/tests"),
            ("deploy", "--env", "dev"),
            ("data", "push", str(SAMPLE / "drop-001"), "--env", "dev"),
        ):
            done = _mlops(env, *args)
            assert done.returncode == 0, done.stderr
        follower = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "run", "--env", "dev", "--data", "drop-001",
             "--commit", "restart-test", "--wait"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        seen = []
        for line in follower.stdout:  # the run is under way once the ETL has started
            seen.append(line)
            if line.strip() == "-> ETL":
                break
        assert seen and seen[-1].strip() == "-> ETL", seen
        assert server.down(state_dir=state)
        server.up(port, state_dir=state)  # the same endpoint, with nothing in it
        out, err = follower.communicate(timeout=120)
    finally:
        server.down(state_dir=state)
    assert follower.returncode == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and info["url"] in lines[0], lines[0]
    assert ":restart-test-" in lines[0], lines[0]  # the execution it was following
    assert "restarted" in lines[0] or "lost contact" in lines[0], lines[0]
