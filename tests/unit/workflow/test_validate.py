"""`mlops validate` passes the committed ASL and catches each kind of broken definition."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import validate

REPO = Path(__file__).resolve().parents[3]
ASL = REPO / "pipeline" / "statemachine.dev.asl.json"


@pytest.fixture(scope="module")
def definition() -> dict:
    return json.loads(ASL.read_text())


def test_committed_definitions_are_valid():
    for path in sorted((REPO / "pipeline").glob("statemachine.*.asl.json")):
        assert validate.validate_definition(validate.load_definition(path), path) == []


def _set(path: list, value):
    def mutate(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        if value is _DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return mutate


_DELETE = object()

BROKEN = {
    # case: (mutation, text every finding list must contain)
    "missing_next_target": (
        _set(["States", "ETL", "Next"], "Nope"),
        "state 'ETL': Next goes to 'Nope'",
    ),
    "unreachable_state": (
        _set(["States", "Orphan"], {"Type": "Pass", "End": True}),
        "state 'Orphan': is unreachable",
    ),
    "task_without_retry": (
        _set(["States", "Train", "Retry"], _DELETE),
        "state 'Train': Task has no Retry",
    ),
    "task_without_catch": (
        _set(["States", "Evaluate", "Catch"], _DELETE),
        "state 'Evaluate': Task has no Catch",
    ),
    "lambda_without_handler": (
        _set(["States", "Evaluate", "Resource"], "${ScoreFunctionArn}"),
        "src/lambdas/score.py",
    ),
    "unknown_placeholder": (
        _set(["States", "GetProduction", "Parameters", "TableName"], "${AccountTable}"),
        "placeholder ${AccountTable} is not one the deploy fills",
    ),
    "choice_reads_unwritten_path": (
        _set(["States", "Gate", "Choices", 0, "Variable"], "$.verdict.promote"),
        "reads $.verdict.promote, but no earlier state writes $.verdict",
    ),
    "gate_bypassed_by_default": (
        _set(["States", "Gate", "Default"], "ClaimProduction"),
        "without passing the gate's $.gate.promote comparison",
    ),
    "gate_inverted": (
        _set(["States", "Gate", "Choices", 0, "BooleanEquals"], False),
        "no Choice compares $.gate.promote with BooleanEquals true",
    ),
    "state_without_next_or_end": (
        _set(["States", "Manifest", "Next"], _DELETE),
        "has neither Next nor End",
    ),
    "start_at_missing": (_set(["StartAt"], "Begin"), "StartAt 'Begin' is not a state"),
    "promotion_announced_before_the_endpoint_serves": (
        _set(["States", "UpdateEndpoint", "Next"], "NotifyPromoted"),
        "state 'UpdateEndpoint': reaches 'Promoted' without a Choice seeing EndpointStatus",
    ),
    "endpoint_wait_ignores_the_status": (
        _set(["States", "EndpointServes", "Choices", 1, "And", 0, "StringEquals"], "Updating"),
        "state 'CreateEndpoint': reaches 'Promoted' without a Choice seeing EndpointStatus",
    ),
    "superseded_ending_that_does_not_test_the_pointer": (
        _set(
            ["States", "EndpointServes", "Choices", 0],
            {
                "Variable": "$.endpoint_status.EndpointStatus",
                "StringEquals": "Failed",
                "Next": "Superseded",
            },
        ),
        "state 'UpdateEndpoint': reaches 'Rejected' without a Choice seeing EndpointStatus",
    ),
    "endpoint_call_without_reading_the_pointer_again": (
        _set(["States", "StartEndpointWait", "Next"], "FindEndpoint"),
        "state 'UpdateEndpoint': can be reached without a Choice seeing the PRODUCTION pointer",
    ),
    "busy_retry_skips_the_pointer_check": (
        _set(["States", "WaitToRetry", "Next"], "FindEndpoint"),
        "state 'CreateEndpoint': can be reached without a Choice seeing the PRODUCTION pointer",
    ),
    "endpoint_update_retried_in_place": (
        _set(
            ["States", "UpdateEndpoint", "Retry", 0, "ErrorEquals"],
            ["SageMaker.AmazonSageMakerException"],
        ),
        "state 'UpdateEndpoint': retries SageMaker.AmazonSageMakerException in place",
    ),
    "schema_invalid_type": (_set(["States", "Register", "Type"], "Taks"), "ASL schema"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_definition_is_reported_with_file_and_state(definition, case):
    mutate, expected = BROKEN[case]
    broken = copy.deepcopy(definition)
    mutate(broken)
    findings = validate.validate_definition(broken, Path("broken.asl.json"))
    assert findings, f"{case} passed validation"
    assert all(f.startswith("broken.asl.json") for f in findings)
    assert any(expected in f for f in findings), findings


def test_validate_cli_exits_1_naming_file_and_state(tmp_path, definition):
    broken = copy.deepcopy(definition)
    del broken["States"]["Train"]["Catch"]
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(broken))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "validate", "--file", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert f"{path}: state 'Train': Task has no Catch" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_cli_reports_unreadable_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "validate", "--file", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
