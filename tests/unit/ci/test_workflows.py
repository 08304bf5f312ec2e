"""The GitHub workflows: hardened, and runnable under act with a stand-in for every action."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline import actrun

ROOT = Path(__file__).resolve().parents[3]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^(?P<action>[\w.-]+/[\w.-]+)@(?P<sha>[0-9a-f]{40})$")


def _doc(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _uses(path: Path) -> list[tuple[str, str]]:
    """(uses, the line's comment) for every remote action a workflow calls."""
    found = []
    for line in path.read_text().splitlines():
        match = re.match(r"^\s*-?\s*uses:\s*(\S+)\s*(#\s*(.*))?$", line)
        if match and not match[1].startswith("./"):
            found.append((match[1], match[3] or ""))
    return found


def _actrc_mappings() -> dict[str, Path]:
    mappings = {}
    for line in (ROOT / ".actrc").read_text().splitlines():
        if line.startswith("--local-repository "):
            ref, _, folder = line.split(" ", 1)[1].partition("=")
            mappings[ref] = ROOT / folder
    return mappings


def test_the_three_workflows_exist():
    assert {p.name for p in WORKFLOWS} == {"pr.yml", "deploy.yml", "retrain.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_a_commit_with_a_version_comment(path):
    uses = _uses(path)
    assert uses, f"{path.name} calls no action"
    for ref, comment in uses:
        assert PINNED.match(ref), f"{path.name}: {ref} is not pinned to a full commit SHA"
        assert re.match(r"v\d+(\.\d+)*", comment), f"{path.name}: {ref} has no '# vX.Y.Z' comment"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_has_a_local_stand_in_for_act(path):
    mappings = _actrc_mappings()
    for ref, _ in _uses(path):
        assert ref in mappings, f"{path.name}: {ref} has no --local-repository line in .actrc"
        assert (mappings[ref] / "action.yml").is_file(), f"stand-in for {ref} has no action.yml"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_read_only_by_default_and_an_oidc_token_only_for_jobs_that_reach_aws(path):
    doc = _doc(path)
    assert doc["permissions"] == {"contents": "read"}
    for name, job in doc["jobs"].items():
        wants_token = (job.get("permissions") or {}).get("id-token") == "write"
        reaches_aws = any("configure-aws-credentials" in ref for ref, _ in _uses(path))
        assert wants_token == reaches_aws, (
            f"{path.name}/{name}: id-token without AWS, or AWS without it"
        )


def test_pull_requests_get_no_aws_access():
    doc = _doc(ROOT / ".github" / "workflows" / "pr.yml")
    assert "pull_request_target" not in actrun._triggers(doc)
    assert not any("aws" in ref for ref, _ in _uses(ROOT / ".github" / "workflows" / "pr.yml"))
    assert "secrets." not in (ROOT / ".github" / "workflows" / "pr.yml").read_text()


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_expression_inside_a_run_script(path):
    for name, job in _doc(path)["jobs"].items():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), f"{path.name}/{name}: pass it through env:"


def test_deploys_are_serialised_per_environment_and_prod_is_a_github_environment():
    for name in ("deploy.yml", "retrain.yml"):
        doc = _doc(ROOT / ".github" / "workflows" / name)
        assert doc["concurrency"]["group"] == "aws-${{ inputs.environment || 'dev' }}"
        assert doc["concurrency"]["cancel-in-progress"] is False
        (job,) = doc["jobs"].values()
        assert job["environment"] == "${{ inputs.environment || 'dev' }}"
        on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
        assert on["workflow_dispatch"]["inputs"]["environment"]["options"] == ["dev", "prod"]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("pull_request", {"pull request": 3}),
        ("push", {"deploy": 1}),
        ("workflow_dispatch", {"deploy": 1, "retrain": 1}),
        ("schedule", {"retrain": 1}),
    ],
)
def test_each_event_runs_the_workflows_meant_for_it(event, expected):
    assert actrun.expected_jobs(event) == expected
    assert (ROOT / ".github" / "act" / "events" / f"{event}.json").is_file()


def test_an_event_no_workflow_handles_is_refused():
    with pytest.raises(actrun.ActError, match="no workflow"):
        actrun.expected_jobs("issues")


LOG = """\
[pull request/checks  ] ⭐ Run Main make lint
[pull request/checks  ] 🏁  Job succeeded
[pull request/tests   ] 🏁  Job succeeded
[pull request/tests   ] 🏁  Job succeeded
"""


def test_results_count_each_job_once_and_a_missing_job_is_a_problem():
    report = actrun.read_results(LOG.splitlines(), {"pull request": 3})
    assert report.problems() == [
        "workflow 'pull request': 2 of 3 job(s) succeeded "
        "(the others failed, were skipped or never ran)"
    ]
    assert actrun.read_results(LOG.splitlines(), {"pull request": 2}).problems() == []


def test_a_failed_job_is_named():
    lines = [*LOG.splitlines(), "[pull request/dry-run] 🏁  Job failed"]
    report = actrun.read_results(lines, {"pull request": 3})
    assert "job pull request/dry-run failed" in report.problems()


def test_job_environment_has_no_aws_settings_and_not_this_checkout_s_tools(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("MOTO_PORT", "1")
    monkeypatch.setenv("PATH", f"{ROOT / '.venv' / 'bin'}:/usr/bin")
    env = actrun._job_env({"LOCALCLOUD_URL": "http://127.0.0.1:2"})
    assert "AWS_ENDPOINT_URL" not in env and "MOTO_PORT" not in env
    assert env["PATH"] == "/usr/bin"
    assert env["LOCALCLOUD_URL"] == "http://127.0.0.1:2"
