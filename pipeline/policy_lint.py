"""Lint the generated templates: cfn-lint on the templates, parliament on every IAM policy.

parliament reads plain policy JSON, so CloudFormation intrinsics are first resolved to
the ARNs they would produce in a sample account. A `*` resource is reported unless its
statement is one of ALLOWED_STAR (actions AWS offers no resource-level permissions for).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

SAMPLE = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012"}
# Statement Sids whose `*` resource AWS requires (no resource-level permissions exist).
ALLOWED_STAR = {"TrainingMetrics", "PullImageToken"}


def _resolve(node: Any, template: dict[str, Any], params: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, template, params) for n in node]
    if not isinstance(node, dict):
        return node
    if "Fn::Sub" in node:
        text = node["Fn::Sub"]
        return re.sub(
            r"\$\{([^}]+)\}",
            lambda m: SAMPLE.get(m.group(1), params.get(m.group(1), m.group(1))),
            text,
        )
    if "Fn::If" in node:
        return _resolve(node["Fn::If"][1], template, params)
    if "Ref" in node:
        return _physical_arn(node["Ref"], template, params)
    if "Fn::GetAtt" in node:
        return _physical_arn(node["Fn::GetAtt"][0], template, params)
    return {k: _resolve(v, template, params) for k, v in node.items()}


def _physical_arn(logical: str, template: dict[str, Any], params: dict[str, str]) -> str:
    if logical in params:
        return params[logical]
    resource = template["Resources"][logical]
    props = resource.get("Properties", {})
    kind = resource["Type"]
    region, account = SAMPLE["AWS::Region"], SAMPLE["AWS::AccountId"]
    arns = {
        "AWS::IAM::Role": lambda: f"arn:aws:iam::{account}:role/{props['RoleName']}",
        "AWS::Lambda::Function": lambda: (
            f"arn:aws:lambda:{region}:{account}:function:{props['FunctionName']}"
        ),
        "AWS::DynamoDB::Table": lambda: (
            f"arn:aws:dynamodb:{region}:{account}:table/{props['TableName']}"
        ),
        "AWS::SNS::Topic": lambda: f"arn:aws:sns:{region}:{account}:{props['TopicName']}",
        "AWS::StepFunctions::StateMachine": lambda: (
            f"arn:aws:states:{region}:{account}:stateMachine:{props['StateMachineName']}"
        ),
        "AWS::IAM::OIDCProvider": lambda: (
            f"arn:aws:iam::{account}:oidc-provider/token.actions.githubusercontent.com"
        ),
        "AWS::S3::Bucket": lambda: f"arn:aws:s3:::{props['BucketName']}",
    }
    return arns[kind]()


def policies(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, resolved policy document) for every inline role policy in the template."""
    params = {name: f"code/{name}" for name in template.get("Parameters", {})}
    found = []
    for logical, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            doc = _resolve(policy["PolicyDocument"], template, params)
            found.append((f"{logical}/{policy['PolicyName']}", doc))
    return found


def parliament_findings(template: dict[str, Any]) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament imports pkg_resources
        from parliament import analyze_policy_string

    out = []
    for where, doc in policies(template):
        allowed_star = [s for s in doc["Statement"] if s.get("Sid") in ALLOWED_STAR]
        checked = {**doc, "Statement": [s for s in doc["Statement"] if s not in allowed_star]}
        for finding in analyze_policy_string(json.dumps(checked)).findings:
            out.append(f"{where}: {finding.issue} {finding.detail}")
        for statement in allowed_star:
            if statement["Resource"] != ["*"] or len(statement["Action"]) != 1:
                out.append(f"{where}: {statement['Sid']} may only grant its one action on '*'")
    return out


def cfn_lint(paths: list[Path]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "cfnlint", *map(str, paths)], capture_output=True, text=True
    )
    return (
        [line for line in result.stdout.splitlines() if line.strip()] if result.returncode else []
    )
