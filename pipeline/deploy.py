"""`mlops bootstrap` and `mlops deploy`: change-set deploys of the generated templates.

A deploy refuses to start when the committed ASL is stale or invalid, uploads only
the code bundles S3 does not already hold (keys carry a content hash), then creates
a change set, treats "no changes" as a no-op, executes it and waits. A failed
stack operation is reported with the failing resource and reason; CloudFormation
(and the local cloud's CloudFormation) rolls the stack back, so the previous
definition keeps running.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline import package, stack, validate, workflow
from pipeline.config import ProjectConfig

# TemplateBody is limited to 51,200 bytes; larger templates go through S3.
TEMPLATE_BODY_LIMIT = 51_200
CAPABILITIES = ["CAPABILITY_NAMED_IAM"]
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
POLL_SECONDS = 0.5


class DeployError(Exception):
    """A deploy that was refused or failed; the message says what and how to fix it."""


@dataclass
class DeployResult:
    stack: str
    status: str  # CREATE_COMPLETE | UPDATE_COMPLETE | NO_CHANGES
    uploaded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)


def _clients(cfg: ProjectConfig):
    import boto3

    session = boto3.Session(region_name=cfg.settings.project.region)
    return session.client("cloudformation"), session.client("s3")


def preflight(cfg: ProjectConfig) -> None:
    """Refuse to deploy what `mlops render --check` or `mlops validate` would reject."""
    path = workflow.asl_path(cfg)
    if workflow.check(cfg):
        raise DeployError(
            f"{path.name} is stale for the current config. Fix: run `mlops render` and commit it"
        )
    findings = validate.validate_definition(validate.load_definition(path), path)
    if findings:
        raise DeployError(
            f"{findings[0]} ({len(findings)} finding(s)). Fix: run `mlops validate` and correct them"
        )


def _stack_status(cfn, name: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def _wait_stack(cfn, name: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _stack_status(cfn, name) or "DELETE_COMPLETE"
        if not status.endswith("_IN_PROGRESS"):
            return status
        time.sleep(POLL_SECONDS)
    raise DeployError(
        f"stack {name} still in progress after {timeout:.0f}s. Fix: check the CloudFormation console"
    )


def _failure_reason(cfn, name: str, since: float) -> str:
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    failed = [
        e
        for e in events
        if e["ResourceStatus"].endswith("_FAILED") and e["Timestamp"].timestamp() >= since - 1
    ]
    # The first failure (oldest) is the cause; later ones are its consequences.
    for event in reversed(failed):
        if event["LogicalResourceId"] != name:
            return f"{event['LogicalResourceId']} ({event['ResourceType']}): {event.get('ResourceStatusReason', 'no reason given')}"
    return failed[-1].get("ResourceStatusReason", "unknown reason") if failed else "unknown reason"


def apply_template(
    cfg: ProjectConfig,
    name: str,
    template: dict[str, Any],
    parameters: dict[str, str],
    progress: Callable[[str], None] = print,
    timeout: float = 1800,
) -> tuple[str, dict[str, str]]:
    """Create or update stack `name` through a change set; returns (status, outputs)."""
    cfn, s3 = _clients(cfg)
    body = json.dumps(template, separators=(",", ":"), sort_keys=True)
    status = _stack_status(cfn, name)
    if status == "ROLLBACK_COMPLETE":  # a failed first create cannot be updated, only replaced
        progress(f"stack {name} never finished its first create; deleting it before retrying")
        cfn.delete_stack(StackName=name)
        _wait_stack(cfn, name, timeout)
        status = None
    if status and status.endswith("_IN_PROGRESS"):
        raise DeployError(
            f"stack {name} is busy ({status}). Fix: wait for it to finish, then deploy again"
        )
    digest = hashlib.sha256((body + json.dumps(parameters, sort_keys=True)).encode()).hexdigest()[
        :10
    ]
    change_set = f"{name}-{digest}-{int(time.time())}"
    source: dict[str, str] = {"TemplateBody": body}
    if len(body.encode()) > TEMPLATE_BODY_LIMIT:
        key = f"{package.CODE_PREFIX}templates/{name}-{digest}.json"
        s3.put_object(Bucket=cfg.names["bucket"], Key=key, Body=body.encode())
        source = {"TemplateURL": f"https://{cfg.names['bucket']}.s3.amazonaws.com/{key}"}
    cfn.create_change_set(
        StackName=name,
        ChangeSetName=change_set,
        ChangeSetType="UPDATE" if status else "CREATE",
        Parameters=[
            {"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())
        ],
        Capabilities=CAPABILITIES,
        **source,
    )
    deadline = time.monotonic() + timeout
    while True:
        described = cfn.describe_change_set(StackName=name, ChangeSetName=change_set)
        if described["Status"] in ("CREATE_COMPLETE", "FAILED"):
            break
        if time.monotonic() > deadline:
            raise DeployError(f"change set {change_set} was not ready within {timeout:.0f}s")
        time.sleep(POLL_SECONDS)
    if described["Status"] == "FAILED":
        reason = described.get("StatusReason", "")
        if any(text in reason for text in NO_CHANGES):
            cfn.delete_change_set(StackName=name, ChangeSetName=change_set)
            return "NO_CHANGES", _outputs(cfn, name)
        raise DeployError(f"change set for {name} failed: {reason}")
    progress(f"stack {name}: {len(described.get('Changes', []))} change(s), executing")
    started = time.time()
    cfn.execute_change_set(StackName=name, ChangeSetName=change_set)
    final = _wait_stack(cfn, name, timeout)
    if final not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        reason = _failure_reason(cfn, name, started)
        raise DeployError(
            f"stack {name} ended {final}: {reason}. Nothing was changed: the previous stack is in place"
            if "ROLLBACK" in final
            else f"stack {name} ended {final}: {reason}"
        )
    return final, _outputs(cfn, name)


def _outputs(cfn, name: str) -> dict[str, str]:
    stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def bootstrap(
    cfg: ProjectConfig,
    github_repo: str,
    oidc_provider_arn: str = "",
    progress: Callable[[str], None] = print,
) -> DeployResult:
    template = stack.bootstrap_template(cfg, github_repo)
    name = cfg.names["bootstrap_stack"]
    status, outputs = apply_template(
        cfg, name, template, {"OidcProviderArn": oidc_provider_arn}, progress
    )
    return DeployResult(stack=name, status=status, outputs=outputs)


def upload_bundles(
    cfg: ProjectConfig, progress: Callable[[str], None] = print
) -> tuple[dict[str, str], list[str], list[str]]:
    """Upload the bundles S3 lacks; returns (stack parameters, uploaded keys, reused keys)."""
    from botocore.exceptions import ClientError

    _, s3 = _clients(cfg)
    bucket = cfg.names["bucket"]
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        raise DeployError(
            f"bucket {bucket} does not exist. Fix: run `mlops bootstrap --env {cfg.env} --github-repo OWNER/REPO` once"
        ) from None
    uploaded, reused = [], []
    bundles = package.all_bundles(cfg.root / "src")
    for bundle in bundles.values():
        try:
            s3.head_object(Bucket=bucket, Key=bundle.key)
            reused.append(bundle.key)
        except ClientError:
            s3.put_object(Bucket=bucket, Key=bundle.key, Body=bundle.body)
            uploaded.append(bundle.key)
            progress(f"uploaded s3://{bucket}/{bundle.key}")
    parameters = {
        "LambdaCodeKey": bundles["lambdas"].key,
        "TrainingCodeKey": bundles["train"].key,
        "EtlScriptKey": bundles["etl-script"].key,
        "EtlLibraryKey": bundles["etl"].key,
    }
    return parameters, uploaded, reused


def deploy(
    cfg: ProjectConfig, progress: Callable[[str], None] = print, commit: str | None = None
) -> DeployResult:
    from pipeline.run import git_commit

    preflight(cfg)
    parameters, uploaded, reused = upload_bundles(cfg, progress)
    parameters["CodeVersion"] = commit or git_commit(cfg.root)
    status, outputs = apply_template(
        cfg, cfg.names["stack"], stack.template(cfg), parameters, progress
    )
    return DeployResult(cfg.names["stack"], status, uploaded, reused, outputs)
