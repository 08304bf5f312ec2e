"""The whole loop on the local cloud: the demo's story, then deploy, dedupe and rollback."""

from __future__ import annotations

import json

import boto3
import pytest
import yaml

from pipeline import deploy, registry, run, workflow
from pipeline.config import load_config
from pipeline.demo import story

from .conftest import copy_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def told(cfg, deployed):
    """Run the demo story once: it raises DemoError when a chapter ends otherwise."""
    story(cfg, commit="e2e")
    return registry.list_models(cfg)


def test_story_promotes_first_model_rejects_worse_and_survives_corrupt_data(told):
    statuses = [m["status"] for m in told["models"]]
    assert (
        len(told["models"]) >= 3
    )  # drop-001, drop-002, weak model (the corrupt drop never trains)
    assert "rejected" in statuses
    assert told["production"] in [
        m["version"] for m in told["models"] if m["status"] == "production"
    ]


def test_run_of_the_deployed_commit_on_data_the_upload_trained_is_a_duplicate(cfg, told):
    # The story's upload of drop-002 trained commit "e2e" (the deployed CodeVersion).
    arn, started = run.start(cfg, "drop-002", "e2e")
    summary = run.follow(cfg, arn)
    assert summary.outcome == "duplicate"
    assert "already handled by execution" in summary.reason


def test_rerun_of_same_commit_and_data_reports_the_existing_execution(cfg, told):
    first, _ = run.start(cfg, "drop-002", "e2e-rerun")
    again, started_again = run.start(cfg, "drop-002", "e2e-rerun")
    assert (again, started_again) == (first, False)
    run.follow(cfg, first)


def test_second_deploy_without_changes_is_a_no_op_and_uploads_nothing(cfg, told):
    result = deploy.deploy(cfg, progress=lambda m: None, commit="e2e")  # as the story deployed
    assert result.status == "NO_CHANGES"
    assert result.uploaded == []


def test_config_change_applies_and_unchanged_code_is_not_uploaded(cfg, told, tmp_path):
    config_dir = copy_project(tmp_path)
    path = config_dir / "project.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["training"]["max_runtime_seconds"] = 1234
    path.write_text(yaml.safe_dump(doc))
    changed = load_config("dev", config_dir, environ={})
    workflow.asl_path(changed).write_text(workflow.render(changed))
    result = deploy.deploy(changed, progress=lambda m: None, commit="e2e")
    assert result.status == "UPDATE_COMPLETE"
    assert result.uploaded == []
    sfn = boto3.client("stepfunctions")
    arn = run.state_machine_arn(changed, sfn)
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"])
    assert (
        definition["States"]["Train"]["Parameters"]["StoppingCondition"]["MaxRuntimeInSeconds"]
        == 1234
    )
    deploy.deploy(cfg, progress=lambda m: None, commit="e2e")  # back to the committed config


def test_stale_asl_is_refused_before_anything_changes(cfg, told, tmp_path):
    config_dir = copy_project(tmp_path)
    path = config_dir / "project.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["training"]["max_runtime_seconds"] = 4321  # changed without `mlops render`
    path.write_text(yaml.safe_dump(doc))
    stale = load_config("dev", config_dir, environ={})
    cfn = boto3.client("cloudformation")
    before = cfn.describe_stacks(StackName=cfg.names["stack"])["Stacks"][0]["LastUpdatedTime"]
    with pytest.raises(deploy.DeployError, match="stale"):
        deploy.deploy(stale, progress=lambda m: None, commit="e2e")
    after = cfn.describe_stacks(StackName=cfg.names["stack"])["Stacks"][0]["LastUpdatedTime"]
    assert before == after


def test_failed_stack_update_rolls_back_and_the_previous_definition_still_runs(cfg, told):
    from pipeline import stack

    parameters, _, _ = deploy.upload_bundles(cfg, progress=lambda m: None)
    broken = dict(parameters, LambdaCodeKey="code/lambdas-does-not-exist.zip")
    with pytest.raises(deploy.DeployError, match="ROLLBACK") as info:
        deploy.apply_template(
            cfg, cfg.names["stack"], stack.template(cfg), broken, progress=lambda m: None
        )
    assert "Function" in str(info.value)
    arn, started = run.start(cfg, "drop-002", "after-failed-update")
    assert started
    assert run.follow(cfg, arn).ok


def test_rollback_serves_the_earlier_model_and_is_recorded(cfg, told):
    listing = registry.list_models(cfg)
    current = listing["production"]
    earlier = next(m["version"] for m in listing["models"] if m["status"] == "retired")
    result = registry.rollback(cfg, earlier)
    assert result == {
        "from": current,
        "to": earlier,
        "endpoint_config": f"{cfg.names['model_prefix']}-v{earlier}",
    }
    after = registry.list_models(cfg)
    assert after["production"] == earlier
    assert after["rollbacks"][-1]["to_version"] == earlier
    endpoint = boto3.client("sagemaker").describe_endpoint(EndpointName=cfg.names["endpoint"])
    assert endpoint["EndpointConfigName"] == result["endpoint_config"]
    with pytest.raises(registry.RegistryError, match="already in production"):
        registry.rollback(cfg, earlier)


def test_run_cli_waits_and_writes_json_and_a_markdown_summary(cfg, told, tmp_path, capsys):
    from pipeline import cli

    summary_md = tmp_path / "summary.md"
    code = cli.main(["run", "--env", "dev", "--data", "drop-003", "--commit", "e2e-cli", "--wait", "--json",
                     "--summary-md", str(summary_md)])  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["outcome"] in ("promoted", "rejected")
    assert result["metric"] == "accuracy" and result["candidate_value"] > 0.5
    text = summary_md.read_text()
    assert "## Retraining run" in text and "```mermaid" in text
    assert "stroke-width:3px" in text  # the path taken is highlighted
    assert result["execution_name"] in text


def test_latest_is_the_drop_that_received_the_newest_upload(cfg, told):
    s3 = boto3.client("s3", region_name=cfg.settings.project.region)
    # The story's last chapter with an upload is the corrupt drop.
    assert run.latest_drop(cfg, s3) == "raw/drop-corrupt/"
