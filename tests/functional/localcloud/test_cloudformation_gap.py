"""The CloudFormation gap: the project's two stacks deploy, update and roll back as on AWS."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from pipeline import package, stack
from pipeline.config import ProjectConfig, load_config
from pipeline.localcloud import cloudformation as cfn_gap
from pipeline.localcloud import cloudformation_template as cfn_template

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "localcloud" / "cloudformation"
CAPABILITIES = ["CAPABILITY_NAMED_IAM"]
GITHUB_REPO = "owner/repo"
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def asl(name: str) -> str:
    return (FIXTURES / name).read_text()


@dataclass
class Deployed:
    """A local cloud with the dev bootstrap stack and a main stack running a small definition."""

    cfg: ProjectConfig
    parameters: dict[str, str]
    cfn: Any
    s3: Any
    sfn: Any

    @property
    def name(self) -> str:
        return self.cfg.names["stack"]

    @property
    def machine_arn(self) -> str:
        return outputs(self.cfn, self.name)["StateMachineArn"]

    def template(self, definition: str = "notify_then_describe.asl.json") -> dict[str, Any]:
        return stack.template(self.cfg, asl=asl(definition))


def change_set(
    cfn: Any,
    name: str,
    template: dict[str, Any],
    parameters: dict[str, str],
    kind: str = "UPDATE",
    capabilities: list[str] | None = None,
) -> dict[str, Any]:
    """Create a change set as pipeline/deploy.py does; returns DescribeChangeSet."""
    change_set_name = f"{name}-{time.monotonic_ns()}"
    cfn.create_change_set(
        StackName=name,
        ChangeSetName=change_set_name,
        ChangeSetType=kind,
        TemplateBody=json.dumps(template, separators=(",", ":"), sort_keys=True),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=CAPABILITIES if capabilities is None else capabilities,
    )
    return cfn.describe_change_set(StackName=name, ChangeSetName=change_set_name)


def execute(cfn: Any, described: dict[str, Any]) -> dict[str, Any]:
    assert described["Status"] == "CREATE_COMPLETE", described.get("StatusReason")
    cfn.execute_change_set(
        StackName=described["StackName"], ChangeSetName=described["ChangeSetName"]
    )
    return cfn.describe_stacks(StackName=described["StackName"])["Stacks"][0]


def outputs(cfn: Any, name: str) -> dict[str, str]:
    found = cfn.describe_stacks(StackName=name)["Stacks"][0].get("Outputs", [])
    return {o["OutputKey"]: o["OutputValue"] for o in found}


def events(cfn: Any, name: str) -> list[dict[str, Any]]:
    """The stack's events, oldest first."""
    return cfn.describe_stack_events(StackName=name)["StackEvents"][::-1]


def run(sfn: Any, machine: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    arn = sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload or {}))[
        "executionArn"
    ]
    return wait_for(sfn, arn)


def wait_for(sfn: Any, arn: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] in TERMINAL:
            return described
        assert time.monotonic() < deadline, f"execution still {described['status']}"
        time.sleep(0.02)


def code_parameters(bundles: dict[str, package.Bundle]) -> dict[str, str]:
    return {
        "LambdaCodeKey": bundles["lambdas"].key,
        "TrainingCodeKey": bundles["train"].key,
        "EtlScriptKey": bundles["etl-script"].key,
        "EtlLibraryKey": bundles["etl"].key,
    }


def sha256_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


@pytest.fixture
def cfn_gap_cfg() -> ProjectConfig:
    return load_config("dev", config_dir=REPO / "config")


@pytest.fixture
def cfn_gap_bootstrapped(localcloud_running: Any, cfn_gap_cfg: ProjectConfig) -> Deployed:
    """The bootstrap stack, and the code bundles uploaded to the bucket it made."""
    cfn = boto3.client("cloudformation")
    created = execute(
        cfn,
        change_set(
            cfn,
            cfn_gap_cfg.names["bootstrap_stack"],
            stack.bootstrap_template(cfn_gap_cfg, GITHUB_REPO),
            {"OidcProviderArn": ""},
            kind="CREATE",
        ),
    )
    assert created["StackStatus"] == "CREATE_COMPLETE"
    s3 = boto3.client("s3")
    bundles = package.all_bundles()
    for bundle in bundles.values():
        s3.put_object(Bucket=cfn_gap_cfg.names["bucket"], Key=bundle.key, Body=bundle.body)
    return Deployed(cfn_gap_cfg, code_parameters(bundles), cfn, s3, boto3.client("stepfunctions"))


@pytest.fixture
def cfn_gap_deployed(cfn_gap_bootstrapped: Deployed) -> Deployed:
    d = cfn_gap_bootstrapped
    created = execute(d.cfn, change_set(d.cfn, d.name, d.template(), d.parameters, kind="CREATE"))
    assert created["StackStatus"] == "CREATE_COMPLETE", events(d.cfn, d.name)
    return d


# ---------------------------------------------------------------- deploy: where things land


def test_bootstrap_stack_makes_the_bucket_the_api_sees_with_its_policy_and_oidc_role(
    cfn_gap_bootstrapped,
):
    d = cfn_gap_bootstrapped
    bucket, names = d.cfg.names["bucket"], d.cfg.names
    rule = d.s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert d.s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    block = d.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    policy = json.loads(d.s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # The TLS-only Deny does not lock out the local cloud's (stand-in for HTTPS) requests:
    # the fixture uploaded the bundles, and they read back.
    key = d.parameters["LambdaCodeKey"]
    assert d.s3.get_object(Bucket=bucket, Key=key)["Body"].read() == package.lambda_bundle().body

    iam = boto3.client("iam")
    provider = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"][0]["Arn"]
    assert provider.endswith("oidc-provider/token.actions.githubusercontent.com")
    role = iam.get_role(RoleName=names["role_deploy"])["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"]["Federated"] == provider
    inline = iam.get_role_policy(RoleName=names["role_deploy"], PolicyName="deploy")
    sids = {s["Sid"] for s in inline["PolicyDocument"]["Statement"]}
    assert {"DeployStack", "ManageStateMachine", "ManageEtlJob"} <= sids
    assert outputs(d.cfn, names["bootstrap_stack"]) == {
        "DeployRoleArn": role["Arn"],
        "BucketName": bucket,
    }


def test_bootstrap_with_an_existing_oidc_provider_skips_it_and_trusts_the_given_arn(
    localcloud_running, cfn_gap_cfg
):
    cfn, iam = boto3.client("cloudformation"), boto3.client("iam")
    given = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    described = change_set(
        cfn,
        cfn_gap_cfg.names["bootstrap_stack"],
        stack.bootstrap_template(cfn_gap_cfg, GITHUB_REPO),
        {"OidcProviderArn": given},
        kind="CREATE",
    )
    assert "GitHubOidcProvider" not in {
        c["ResourceChange"]["LogicalResourceId"] for c in described["Changes"]
    }
    assert execute(cfn, described)["StackStatus"] == "CREATE_COMPLETE"
    assert iam.list_open_id_connect_providers()["OpenIDConnectProviderList"] == []
    trust = iam.get_role(RoleName=cfn_gap_cfg.names["role_deploy"])["Role"][
        "AssumeRolePolicyDocument"
    ]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"]["Federated"] == given


def test_main_stack_resources_are_configured_as_the_template_says(cfn_gap_deployed):
    d = cfn_gap_deployed
    names, out = d.cfg.names, outputs(d.cfn, d.name)
    ddb = boto3.client("dynamodb")
    assert out["TableName"] == names["table"]
    backups = ddb.describe_continuous_backups(TableName=names["table"])
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"
    assert (
        ddb.describe_table(TableName=names["table"])["Table"]["BillingModeSummary"]["BillingMode"]
        == "PAY_PER_REQUEST"
    )

    topic = boto3.client("sns").get_topic_attributes(TopicArn=out["TopicArn"])["Attributes"]
    assert topic["KmsMasterKeyId"] == "alias/aws/sns"

    iam = boto3.client("iam")
    statements = iam.get_role_policy(RoleName=names["role_states"], PolicyName="least-privilege")[
        "PolicyDocument"
    ]["Statement"]
    invoke = next(s for s in statements if s["Sid"] == "InvokePipelineLambdas")
    lam = boto3.client("lambda")
    function = lam.get_function_configuration(FunctionName=names["lambda_notify"])
    assert function["FunctionArn"] in invoke["Resource"]
    assert function["Environment"]["Variables"]["TOPIC_ARN"] == out["TopicArn"]
    assert function["Role"] == iam.get_role(RoleName=names["role_lambda"])["Role"]["Arn"]
    assert function["CodeSha256"] == sha256_b64(package.lambda_bundle().body)

    events_client = boto3.client("events")
    rule = events_client.describe_rule(Name=names["data_rule"])
    assert json.loads(rule["EventPattern"])["detail"]["object"]["key"] == [{"prefix": "raw/"}]
    (target,) = events_client.list_targets_by_rule(Rule=names["data_rule"])["Targets"]
    assert target["Arn"] == d.machine_arn
    assert target["RoleArn"] == iam.get_role(RoleName=names["role_events"])["Role"]["Arn"]
    assert target["InputTransformer"]["InputPathsMap"] == {"key": "$.detail.object.key"}

    (alarm,) = boto3.client("cloudwatch").describe_alarms(AlarmNames=[names["failure_rule"]])[
        "MetricAlarms"
    ]
    assert alarm["Dimensions"] == [{"Name": "StateMachineArn", "Value": d.machine_arn}]
    assert alarm["AlarmActions"] == [out["TopicArn"]]
    assert alarm["Threshold"] == 1.0 and alarm["TreatMissingData"] == "notBreaching"

    resources = d.cfn.describe_stack_resources(StackName=d.name)["StackResources"]
    assert {r["LogicalResourceId"] for r in resources} == set(d.template()["Resources"])
    assert {r["ResourceStatus"] for r in resources} == {"CREATE_COMPLETE"}


def test_glue_job_from_the_stack_is_visible_through_get_job(cfn_gap_deployed):
    d = cfn_gap_deployed
    etl, bucket = d.cfg.settings.etl, d.cfg.names["bucket"]
    job = boto3.client("glue").get_job(JobName=d.cfg.names["glue_job"])["Job"]
    assert job["Command"] == {
        "Name": "glueetl",
        "PythonVersion": "3",
        "ScriptLocation": f"s3://{bucket}/{d.parameters['EtlScriptKey']}",
    }
    assert (
        job["DefaultArguments"]["--extra-py-files"]
        == f"s3://{bucket}/{d.parameters['EtlLibraryKey']}"
    )
    assert (
        job["Role"]
        == boto3.client("iam").get_role(RoleName=d.cfg.names["role_glue"])["Role"]["Arn"]
    )
    assert (job["GlueVersion"], job["WorkerType"], job["NumberOfWorkers"], job["Timeout"]) == (
        etl.glue_version,
        etl.worker_type,
        etl.number_of_workers,
        etl.timeout_minutes,
    )


def test_new_etl_script_key_updates_the_glue_job_in_place(cfn_gap_deployed):
    d = cfn_gap_deployed
    glue, bucket = boto3.client("glue"), d.cfg.names["bucket"]
    before = glue.get_job(JobName=d.cfg.names["glue_job"])["Job"]
    script = (REPO / "src" / "etl" / "glue_job.py").read_bytes() + b"\n# v2\n"
    key = f"code/etl-{hashlib.sha256(script).hexdigest()[:12]}/glue_job.py"
    d.s3.put_object(Bucket=bucket, Key=key, Body=script)
    described = change_set(d.cfn, d.name, d.template(), {**d.parameters, "EtlScriptKey": key})
    assert [c["ResourceChange"]["LogicalResourceId"] for c in described["Changes"]] == ["EtlJob"]
    assert execute(d.cfn, described)["StackStatus"] == "UPDATE_COMPLETE"
    after = glue.get_job(JobName=d.cfg.names["glue_job"])["Job"]
    assert after["Command"]["ScriptLocation"] == f"s3://{bucket}/{key}"
    assert after["DefaultArguments"] == before["DefaultArguments"]
    assert after["CreatedOn"] == before["CreatedOn"]
    assert after["LastModifiedOn"] > before["LastModifiedOn"]


# ---------------------------------------------------------------- the state machine


def test_stack_state_machine_is_described_and_runs_through_the_step_functions_api(
    cfn_gap_deployed,
):
    d = cfn_gap_deployed
    machine = d.sfn.describe_state_machine(stateMachineArn=d.machine_arn)
    assert machine["name"] == d.cfg.names["state_machine"]
    assert "${" not in machine["definition"]  # every DefinitionSubstitution was applied
    execution = run(d.sfn, d.machine_arn, {"data_key": "raw/drop-001/data.csv"})
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    output = json.loads(execution["output"])
    iam = boto3.client("iam")
    assert output == {
        "version": 1,
        "published": True,  # the notify Lambda ran from the stack's S3 zip and published
        "training_role": iam.get_role(RoleName=d.cfg.names["role_sagemaker"])["Role"]["Arn"],
        "training_code": f"s3://{d.cfg.names['bucket']}/{d.parameters['TrainingCodeKey']}",
        "manifest": boto3.client("lambda").get_function(
            FunctionName=d.cfg.names["lambda_manifest"]
        )["Configuration"]["FunctionArn"],
    }


def test_new_data_in_the_stack_bucket_starts_the_stack_state_machine(cfn_gap_deployed):
    d = cfn_gap_deployed
    d.s3.put_object(
        Bucket=d.cfg.names["bucket"],
        Key="raw/drop-001/data.csv",
        Body=(REPO / "data" / "sample" / "drop-001" / "data.csv").read_bytes(),
    )
    (started,) = d.sfn.list_executions(stateMachineArn=d.machine_arn)["executions"]
    described = d.sfn.describe_execution(executionArn=started["executionArn"])
    # No commit: a run started by new data trains the deployed CodeVersion.
    assert json.loads(described["input"]) == {"data_key": "raw/drop-001/data.csv"}
    finished = wait_for(d.sfn, started["executionArn"])
    assert finished["status"] == "SUCCEEDED", finished.get("cause")


def test_change_set_update_changes_the_definition_in_place(cfn_gap_deployed):
    d = cfn_gap_deployed
    before = d.sfn.describe_state_machine(stateMachineArn=d.machine_arn)
    described = change_set(d.cfn, d.name, d.template("describe_v2.asl.json"), d.parameters)
    assert [
        (
            c["ResourceChange"]["Action"],
            c["ResourceChange"]["LogicalResourceId"],
            c["ResourceChange"]["Replacement"],
        )
        for c in described["Changes"]
    ] == [("Modify", "RetrainStateMachine", "False")]
    assert execute(d.cfn, described)["StackStatus"] == "UPDATE_COMPLETE"
    after = d.sfn.describe_state_machine(stateMachineArn=d.machine_arn)
    assert after["stateMachineArn"] == before["stateMachineArn"]
    assert after["definition"] != before["definition"]
    output = json.loads(run(d.sfn, d.machine_arn)["output"])
    assert output["version"] == 2
    assert output["evaluate"].endswith(f":function:{d.cfg.names['lambda_evaluate']}")


def test_parameter_only_update_deploys_the_new_lambda_code(cfn_gap_deployed, tmp_path):
    d = cfn_gap_deployed
    # A second Lambda bundle: the same package with a notify handler that says which it is.
    shutil.copytree(REPO / "src" / "lambdas", tmp_path / "lambdas")
    notify = tmp_path / "lambdas" / "notify.py"
    notify.write_text(
        notify.read_text()
        + "\n\n_v1_handler = handler\n\n\ndef handler(event, context=None):\n"
        + '    return {**_v1_handler(event, context), "bundle": "v2"}\n'
    )
    v2 = package.lambda_bundle(src=tmp_path)
    d.s3.put_object(Bucket=d.cfg.names["bucket"], Key=v2.key, Body=v2.body)
    parameters = {**d.parameters, "LambdaCodeKey": v2.key}

    described = change_set(d.cfn, d.name, d.template(), parameters)
    modified = {c["ResourceChange"]["LogicalResourceId"] for c in described["Changes"]}
    assert modified == {f"{m.capitalize()}Function" for m in stack.LAMBDA_MODULES}
    assert execute(d.cfn, described)["StackStatus"] == "UPDATE_COMPLETE"

    lam = boto3.client("lambda")
    function = lam.get_function_configuration(FunctionName=d.cfg.names["lambda_notify"])
    assert function["CodeSha256"] == sha256_b64(v2.body)
    result = lam.invoke(
        FunctionName=d.cfg.names["lambda_notify"],
        Payload=(FIXTURES / "notify_failed_event.json").read_bytes(),
    )
    assert json.loads(result["Payload"].read())["bundle"] == "v2"
    stack_parameters = d.cfn.describe_stacks(StackName=d.name)["Stacks"][0]["Parameters"]
    assert {"ParameterKey": "LambdaCodeKey", "ParameterValue": v2.key} in stack_parameters
    # The state machine's inputs (function ARNs) did not change, so it was left alone.
    touched = {
        e["LogicalResourceId"]
        for e in events(d.cfn, d.name)
        if e["ResourceStatus"] == "UPDATE_COMPLETE"
    }
    assert "RetrainStateMachine" not in touched


def test_unchanged_change_set_fails_with_the_no_changes_reason(cfn_gap_deployed):
    d = cfn_gap_deployed
    described = change_set(d.cfn, d.name, d.template(), d.parameters)
    assert described["Status"] == "FAILED"
    assert described["ExecutionStatus"] == "UNAVAILABLE"
    assert "didn't contain changes" in described["StatusReason"]
    with pytest.raises(ClientError, match="InvalidChangeSetStatus"):
        d.cfn.execute_change_set(StackName=d.name, ChangeSetName=described["ChangeSetName"])


def test_a_resource_removed_from_the_template_is_deleted_after_the_update(cfn_gap_deployed):
    d = cfn_gap_deployed
    template = d.template()
    del template["Resources"]["FailedExecutionsAlarm"]
    described = change_set(d.cfn, d.name, template, d.parameters)
    assert [
        (c["ResourceChange"]["Action"], c["ResourceChange"]["LogicalResourceId"])
        for c in described["Changes"]
    ] == [("Remove", "FailedExecutionsAlarm")]
    assert execute(d.cfn, described)["StackStatus"] == "UPDATE_COMPLETE"
    alarms = boto3.client("cloudwatch").describe_alarms(AlarmNames=[d.cfg.names["failure_rule"]])
    assert alarms["MetricAlarms"] == []
    cleanup = [e["ResourceStatus"] for e in events(d.cfn, d.name)][-4:]
    assert cleanup == [
        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
        "DELETE_IN_PROGRESS",
        "DELETE_COMPLETE",
        "UPDATE_COMPLETE",
    ]


# ---------------------------------------------------------------- failures and rollback


def test_failed_update_rolls_back_and_the_previous_definition_still_runs(cfn_gap_deployed):
    d = cfn_gap_deployed
    names, iam, lam = d.cfg.names, boto3.client("iam"), boto3.client("lambda")
    definition_before = d.sfn.describe_state_machine(stateMachineArn=d.machine_arn)["definition"]
    states_policy_before = iam.get_role_policy(
        RoleName=names["role_states"], PolicyName="least-privilege"
    )["PolicyDocument"]
    lambda_role_before = iam.get_role(RoleName=names["role_lambda"])["Role"]["Arn"]
    template = d.template("describe_v2.asl.json")
    resources = template["Resources"]
    # Updated in place before the failure: the states role's policy, the definition.
    resources["StatesRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(
        {"Sid": "Extra", "Effect": "Allow", "Action": "sns:Publish", "Resource": "*"}
    )
    # Replaced before the failure: a renamed Lambda role (the functions then point at it).
    resources["LambdaRole"]["Properties"]["RoleName"] = "tumor-triage-dev-lambda-renamed"
    # A resource updated after the state machine fails: its code is not in the bucket.
    template["Resources"]["ProbeFunction"] = {
        **copy.deepcopy(template["Resources"]["NotifyFunction"]),
        "DependsOn": "RetrainStateMachine",
    }
    probe = template["Resources"]["ProbeFunction"]["Properties"]
    probe["FunctionName"] = "tumor-triage-dev-probe"
    probe["Code"] = {"S3Bucket": d.cfg.names["bucket"], "S3Key": "code/missing.zip"}

    final = execute(d.cfn, change_set(d.cfn, d.name, template, d.parameters))

    assert final["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    history = events(d.cfn, d.name)
    failed = [e for e in history if e["ResourceStatus"].endswith("_FAILED")]
    assert [(e["LogicalResourceId"], e["ResourceStatus"]) for e in failed] == [
        ("ProbeFunction", "CREATE_FAILED")
    ]
    assert "NoSuchKey" in failed[0]["ResourceStatusReason"]
    assert failed[0]["Timestamp"].tzinfo is not None  # deploy.py compares it with time.time()
    rollback = next(e for e in history if e["ResourceStatus"] == "UPDATE_ROLLBACK_IN_PROGRESS")
    assert "[ProbeFunction]" in rollback["ResourceStatusReason"]
    # The state machine had been updated to v2; the rollback put v1 back under the same ARN.
    machine_events = [
        e["ResourceStatus"] for e in history if e["LogicalResourceId"] == "RetrainStateMachine"
    ]
    assert machine_events[-4:] == ["UPDATE_IN_PROGRESS", "UPDATE_COMPLETE"] * 2
    assert d.sfn.describe_state_machine(stateMachineArn=d.machine_arn)["definition"] == (
        definition_before
    )
    assert json.loads(run(d.sfn, d.machine_arn)["output"])["version"] == 1
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        lam.get_function(FunctionName="tumor-triage-dev-probe")
    states_policy = iam.get_role_policy(RoleName=names["role_states"], PolicyName="least-privilege")
    assert states_policy["PolicyDocument"] == states_policy_before
    with pytest.raises(ClientError, match="NoSuchEntity"):
        iam.get_role(RoleName="tumor-triage-dev-lambda-renamed")
    for module in stack.LAMBDA_MODULES:
        function = lam.get_function_configuration(FunctionName=names[f"lambda_{module}"])
        assert function["Role"] == lambda_role_before
    assert "ProbeFunction" not in json.dumps(d.cfn.get_template(StackName=d.name)["TemplateBody"])
    # A later deploy starts from the rolled-back stack.
    described = change_set(d.cfn, d.name, d.template("describe_v2.asl.json"), d.parameters)
    assert execute(d.cfn, described)["StackStatus"] == "UPDATE_COMPLETE"


def test_invalid_definition_fails_the_state_machine_update_and_rolls_back(cfn_gap_deployed):
    d = cfn_gap_deployed
    final = execute(
        d.cfn, change_set(d.cfn, d.name, d.template("invalid_state_type.asl.json"), d.parameters)
    )
    assert final["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    (failed,) = [e for e in events(d.cfn, d.name) if e["ResourceStatus"] == "UPDATE_FAILED"]
    assert failed["LogicalResourceId"] == "RetrainStateMachine"
    assert "Waitt" in failed["ResourceStatusReason"]
    assert "HandlerErrorCode: InvalidRequest" in failed["ResourceStatusReason"]
    execution = run(d.sfn, d.machine_arn)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["version"] == 1
    # The API names the error as Step Functions does, for any client.
    with pytest.raises(d.sfn.exceptions.InvalidDefinition):
        d.sfn.create_state_machine(
            name="direct",
            roleArn=boto3.client("iam").get_role(RoleName=d.cfg.names["role_states"])["Role"][
                "Arn"
            ],
            definition=asl("invalid_state_type.asl.json"),
        )


def test_failed_create_rolls_back_to_rollback_complete_and_can_be_deleted(
    cfn_gap_bootstrapped,
):
    d = cfn_gap_bootstrapped
    parameters = {**d.parameters, "LambdaCodeKey": "code/lambdas-missing.zip"}
    final = execute(d.cfn, change_set(d.cfn, d.name, d.template(), parameters, kind="CREATE"))

    assert final["StackStatus"] == "ROLLBACK_COMPLETE"
    assert "Outputs" not in final
    (failed,) = [e for e in events(d.cfn, d.name) if e["ResourceStatus"] == "CREATE_FAILED"]
    # The first function provisioned fails; the others are never started.
    assert failed["LogicalResourceId"] in {
        f"{m.capitalize()}Function" for m in stack.LAMBDA_MODULES
    }
    assert failed["ResourceType"] == "AWS::Lambda::Function"
    assert "NoSuchKey" in failed["ResourceStatusReason"]
    iam = boto3.client("iam")
    with pytest.raises(ClientError, match="NoSuchEntity"):
        iam.get_role(RoleName=d.cfg.names["role_lambda"])
    # DeletionPolicy Retain keeps the table through the rollback, as on AWS.
    assert boto3.client("dynamodb").describe_table(TableName=d.cfg.names["table"])
    skipped = [
        e["LogicalResourceId"]
        for e in events(d.cfn, d.name)
        if e["ResourceStatus"] == "DELETE_SKIPPED"
    ]
    assert skipped == ["ModelRegistry"]

    with pytest.raises(ClientError, match="ROLLBACK_COMPLETE state and can not be updated"):
        change_set(d.cfn, d.name, d.template(), d.parameters)
    d.cfn.delete_stack(StackName=d.name)
    with pytest.raises(ClientError, match="does not exist"):
        d.cfn.describe_stacks(StackName=d.name)


def test_deleting_the_main_stack_removes_its_resources_but_keeps_retained_ones(cfn_gap_deployed):
    d = cfn_gap_deployed
    machine = d.machine_arn
    d.cfn.delete_stack(StackName=d.name)
    with pytest.raises(ClientError, match="StateMachineDoesNotExist"):
        d.sfn.describe_state_machine(stateMachineArn=machine)
    with pytest.raises(ClientError, match="EntityNotFoundException"):
        boto3.client("glue").get_job(JobName=d.cfg.names["glue_job"])
    assert boto3.client("dynamodb").describe_table(TableName=d.cfg.names["table"])
    (deleted,) = d.cfn.list_stacks(StackStatusFilter=["DELETE_COMPLETE"])["StackSummaries"]
    assert deleted["StackName"] == d.name


# ---------------------------------------------------------------- validation at CreateChangeSet


def test_parameters_and_capabilities_are_checked_when_the_change_set_is_created(
    localcloud_running, cfn_gap_cfg
):
    cfn = boto3.client("cloudformation")
    name, template = cfn_gap_cfg.names["stack"], stack.template(cfn_gap_cfg)
    good = {k: f"code/{k.lower()}.zip" for k in stack.CODE_PARAMETERS}
    with pytest.raises(ClientError, match=r"Parameter 'LambdaCodeKey' must match pattern \^code/"):
        change_set(cfn, name, template, {**good, "LambdaCodeKey": "lambdas.zip"}, kind="CREATE")
    missing = {k: v for k, v in good.items() if k != "EtlScriptKey"}
    with pytest.raises(ClientError, match=r"Parameters: \[EtlScriptKey\] must have values"):
        change_set(cfn, name, template, missing, kind="CREATE")
    with pytest.raises(ClientError, match=r"Requires capabilities : \[CAPABILITY_NAMED_IAM\]"):
        change_set(cfn, name, template, good, kind="CREATE", capabilities=[])
    assert cfn.list_stacks()["StackSummaries"] == []  # nothing was created on the way


# ---------------------------------------------------------------- pure parts


def test_template_resolver_evaluates_sub_getatt_if_and_novalue():
    template = {
        "Parameters": {"Env": {"Type": "String", "AllowedValues": ["dev", "prod"]}},
        "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]}},
        "Resources": {"Thing": {"Type": "AWS::SNS::Topic"}},
    }
    resolver = cfn_template.Resolver(
        template,
        {"Env": "dev"},
        {"AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012"},
        ref=lambda name: f"physical-{name}",
        getatt=lambda name, attribute: f"{name}.{attribute}",
    )
    value = {
        "Sub": {"Fn::Sub": "${AWS::Region}/${Env}/${Thing}/${Thing.Arn}/${!Literal}"},
        "Pick": {"Fn::If": ["IsProd", "big", {"Ref": "AWS::NoValue"}]},
        "List": [{"Fn::If": ["IsProd", 1, {"Ref": "AWS::NoValue"}]}, 2],
        "Joined": {"Fn::Join": ["-", ["a", {"Ref": "Env"}]]},
    }
    assert resolver.resolve(value) == {
        "Sub": "eu-west-1/dev/physical-Thing/Thing.Arn/${Literal}",
        "List": [2],
        "Joined": "a-dev",
    }


def test_template_order_follows_references_and_reports_cycles():
    template = {
        "Resources": {
            "Machine": {"Type": "X", "Properties": {"Role": {"Fn::GetAtt": ["Role", "Arn"]}}},
            "Role": {"Type": "X", "Properties": {"Name": {"Fn::Sub": "${Bucket}-role"}}},
            "Bucket": {"Type": "X"},
        }
    }
    assert cfn_template.order(template, set(template["Resources"])) == ["Bucket", "Role", "Machine"]
    template["Resources"]["Bucket"]["DependsOn"] = "Machine"
    with pytest.raises(cfn_template.TemplateError, match="Circular dependency"):
        cfn_template.order(template, set(template["Resources"]))


def test_bucket_policy_conditions_decide_whether_a_statement_applies():
    def policy(condition: dict[str, Any] | None) -> str:
        statement = {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": "arn:aws:s3:::b/*",
        }
        if condition:
            statement["Condition"] = condition
        return json.dumps({"Statement": [statement]})

    def result(condition: dict[str, Any] | None) -> str:
        return cfn_gap.bucket_permission(policy(condition), "s3:GetObject", "arn:aws:s3:::b/k").name

    assert result({"Bool": {"aws:SecureTransport": "false"}}) == "NEUTRAL"
    assert result({"Bool": {"aws:SecureTransport": "true"}}) == "DENIED"
    assert result(None) == "DENIED"
    assert result({"StringEquals": {"aws:PrincipalOrgID": "o-123"}}) == "NEUTRAL"
    assert result({"StringNotEquals": {"aws:PrincipalOrgID": "o-123"}}) == "DENIED"
