"""The CloudFormation templates of one environment, built from the config and the committed ASL.

Two stacks per environment:
- bootstrap (`bootstrap_template`, run once by an administrator): the data bucket
  (encrypted, public access blocked, TLS-only, versioned, EventBridge on), the
  GitHub OIDC provider and the deploy role one repository may assume. The bucket
  lives here because code bundles must be uploaded before the main stack can
  reference them, and because a deploy role that may rewrite the bucket policy
  could grant itself anything in the bucket (parliament's privilege-escalation check).
- main (`template`, every `mlops deploy`): the model registry table, the topic, the
  four Lambdas, the Glue job, the state machine, the S3 trigger, a failed-execution
  alarm and least-privilege roles. Code locations are stack parameters
  (content-addressed keys), so the template is a pure function of config and ASL.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline import workflow
from pipeline.config import ProjectConfig

LAMBDA_RUNTIME = "python3.12"
LAMBDA_MODULES = ("manifest", "evaluate", "promote", "notify")
CODE_PARAMETERS = {
    "LambdaCodeKey": "S3 key of the Lambda zip (lambdas-<hash>.zip)",
    "TrainingCodeKey": "S3 key of the training tarball (train-<hash>.tar.gz)",
    "EtlScriptKey": "S3 key of the Glue job script (etl-<hash>/glue_job.py)",
    "EtlLibraryKey": "S3 key of the etl package zip (etl-<hash>.zip)",
}
SAGEMAKER_EVENTS_RULE = "StepFunctionsGetEventsForSageMakerTrainingJobsRule"


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _arn(service: str, resource: str) -> dict[str, str]:
    return _sub(
        f"arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{resource}"
    )


def _role(name: str, service: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": name,
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": f"{service}.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [
                {
                    "PolicyName": "least-privilege",
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                }
            ],
        },
    }


def _allow(actions: list[str], resources: list[Any], sid: str) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}


def _logs_statement(group_prefix: str) -> dict[str, Any]:
    return _allow(
        ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        [_arn("logs", f"log-group:{group_prefix}*")],
        "WriteOwnLogs",
    )


def _bucket_arn(cfg: ProjectConfig, key: str = "") -> dict[str, str]:
    return _sub(f"arn:${{AWS::Partition}}:s3:::{cfg.names['bucket']}{key}")


def _storage(cfg: ProjectConfig) -> dict[str, Any]:
    names = cfg.names
    return {
        "DataBucket": {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketName": names["bucket"],
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "VersioningConfiguration": {"Status": "Enabled"},
                # New data drops reach the state machine through EventBridge.
                "NotificationConfiguration": {
                    "EventBridgeConfiguration": {"EventBridgeEnabled": True}
                },
            },
        },
        "DataBucketPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": "DataBucket"},
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "DenyInsecureTransport",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [_bucket_arn(cfg), _bucket_arn(cfg, "/*")],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                },
            },
        },
    }


def _registry_and_topic(cfg: ProjectConfig) -> dict[str, Any]:
    names = cfg.names
    resources: dict[str, Any] = {
        "ModelRegistry": {
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "TableName": names["table"],
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "SSESpecification": {"SSEEnabled": True},
            },
        },
        "EventsTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": names["topic"], "KmsMasterKeyId": "alias/aws/sns"},
        },
    }
    email = cfg.settings.notifications.email
    if email:
        resources["EmailSubscription"] = {
            "Type": "AWS::SNS::Subscription",
            "Properties": {
                "TopicArn": {"Ref": "EventsTopic"},
                "Protocol": "email",
                "Endpoint": email,
            },
        }
    return resources


def _lambdas(cfg: ProjectConfig) -> dict[str, Any]:
    names, s = cfg.names, cfg.settings
    bucket = cfg.names["bucket"]
    env = {
        "PROJECT": s.project.name,
        "ENVIRONMENT": cfg.env,
        "BUCKET": bucket,
        "TABLE_NAME": names["table"],
        "TOPIC_ARN": {"Ref": "EventsTopic"},
        "RAW_PREFIX": "raw/",
        "MANIFEST_PREFIX": "manifests/",
        "PROCESSED_PREFIX": "processed/",
        "MODELS_PREFIX": "models/",
        "TRAINING_JOB_PREFIX": names["training_job_prefix"],
        "MODEL_PREFIX": names["model_prefix"],
        "GATE_METRIC": s.gate.metric,
        "GATE_DIRECTION": s.gate.direction,
        "GATE_MIN_IMPROVEMENT": str(s.gate.min_improvement),
        "NOTIFY_ON": ",".join(s.notifications.notify_on),
        # Runs started by new data carry no commit; they train the deployed one.
        "CODE_VERSION": {"Ref": "CodeVersion"},
    }
    resources: dict[str, Any] = {
        "LambdaRole": _role(
            names["role_lambda"],
            "lambda",
            [
                _logs_statement("/aws/lambda/" + names["stack"]),
                _allow(["s3:ListBucket"], [_bucket_arn(cfg)], "ListDataBucket"),
                _allow(
                    ["s3:GetObject"],
                    [_bucket_arn(cfg, "/raw/*"), _bucket_arn(cfg, "/models/*")],
                    "ReadDropsAndEvaluations",
                ),
                _allow(["s3:PutObject"], [_bucket_arn(cfg, "/manifests/*")], "WriteManifests"),
                _allow(
                    [
                        "dynamodb:GetItem",
                        "dynamodb:PutItem",
                        "dynamodb:UpdateItem",
                        "dynamodb:DeleteItem",
                    ],
                    [{"Fn::GetAtt": ["ModelRegistry", "Arn"]}],
                    "ModelRegistry",
                ),
                _allow(["sns:Publish"], [{"Ref": "EventsTopic"}], "Notify"),
            ],
        )
    }
    for module in LAMBDA_MODULES:
        resources[f"{module.capitalize()}Function"] = {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "FunctionName": names[f"lambda_{module}"],
                "Runtime": LAMBDA_RUNTIME,
                "Handler": f"lambdas.{module}.handler",
                "Code": {"S3Bucket": bucket, "S3Key": {"Ref": "LambdaCodeKey"}},
                "Role": {"Fn::GetAtt": ["LambdaRole", "Arn"]},
                "Timeout": 60,
                "MemorySize": 256,
                "Environment": {"Variables": env},
            },
        }
    return resources


def _glue(cfg: ProjectConfig) -> dict[str, Any]:
    names, etl = cfg.names, cfg.settings.etl
    bucket = names["bucket"]
    return {
        "GlueRole": _role(
            names["role_glue"],
            "glue",
            [
                _logs_statement("/aws-glue/"),
                _allow(["s3:ListBucket"], [_bucket_arn(cfg)], "ListDataBucket"),
                _allow(
                    ["s3:GetObject"],
                    [_bucket_arn(cfg, "/raw/*"), _bucket_arn(cfg, "/code/*")],
                    "ReadDropsAndCode",
                ),
                _allow(
                    ["s3:PutObject", "s3:DeleteObject"],
                    [_bucket_arn(cfg, "/processed/*")],
                    "WriteSplits",
                ),
            ],
        ),
        "EtlJob": {
            "Type": "AWS::Glue::Job",
            "Properties": {
                "Name": names["glue_job"],
                "Role": {"Fn::GetAtt": ["GlueRole", "Arn"]},
                "GlueVersion": etl.glue_version,
                "WorkerType": etl.worker_type,
                "NumberOfWorkers": etl.number_of_workers,
                "Timeout": etl.timeout_minutes,
                # Glue allows one run at a time unless told otherwise; concurrent
                # retraining executions each need their own.
                "ExecutionProperty": {"MaxConcurrentRuns": etl.max_concurrent_runs},
                "Command": {
                    "Name": "glueetl",
                    "PythonVersion": "3",
                    "ScriptLocation": _sub(f"s3://{bucket}/${{EtlScriptKey}}"),
                },
                "DefaultArguments": {
                    "--extra-py-files": _sub(f"s3://{bucket}/${{EtlLibraryKey}}"),
                    "--job-language": "python",
                    "--enable-continuous-cloudwatch-log": "true",
                },
            },
        },
    }


def _sagemaker_role(cfg: ProjectConfig) -> dict[str, Any]:
    names = cfg.names
    return {
        "SageMakerRole": _role(
            names["role_sagemaker"],
            "sagemaker",
            [
                _logs_statement("/aws/sagemaker/"),
                _allow(["s3:ListBucket"], [_bucket_arn(cfg)], "ListDataBucket"),
                _allow(
                    ["s3:GetObject"],
                    [
                        _bucket_arn(cfg, "/processed/*"),
                        _bucket_arn(cfg, "/code/*"),
                        _bucket_arn(cfg, "/models/*"),
                    ],
                    "ReadSplitsCodeModels",
                ),
                _allow(["s3:PutObject"], [_bucket_arn(cfg, "/models/*")], "WriteModels"),
                _allow(
                    ["cloudwatch:PutMetricData"], ["*"], "TrainingMetrics"
                ),  # no resource-level permissions
                _allow(
                    ["ecr:GetAuthorizationToken"], ["*"], "PullImageToken"
                ),  # no resource-level permissions
                _allow(
                    [
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:BatchGetImage",
                        "ecr:GetDownloadUrlForLayer",
                    ],
                    [
                        _sub(
                            "arn:${AWS::Partition}:ecr:${AWS::Region}:*:repository/sagemaker-scikit-learn"
                        )
                    ],
                    "PullScikitLearnImage",
                ),
            ],
        )
    }


def _state_machine(cfg: ProjectConfig, asl: str) -> dict[str, Any]:
    names = cfg.names
    prefix = names["training_job_prefix"]
    model_prefix = names["model_prefix"]
    functions = [{"Fn::GetAtt": [f"{m.capitalize()}Function", "Arn"]} for m in LAMBDA_MODULES]
    substitutions = {
        f"{m.capitalize()}FunctionArn": f for m, f in zip(LAMBDA_MODULES, functions, strict=True)
    }
    substitutions["SageMakerRoleArn"] = {"Fn::GetAtt": ["SageMakerRole", "Arn"]}
    substitutions["TrainingCodeUri"] = _sub(f"s3://{names['bucket']}/${{TrainingCodeKey}}")
    assert set(substitutions) == set(workflow.SUBSTITUTIONS), "stack and workflow disagree"
    statements = [
        _allow(["lambda:InvokeFunction"], functions, "InvokePipelineLambdas"),
        _allow(
            ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"],
            [_arn("glue", f"job/{names['glue_job']}")],
            "RunEtlJob",
        ),
        _allow(
            [
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopTrainingJob",
                "sagemaker:AddTags",
            ],
            [_arn("sagemaker", f"training-job/{prefix}-*")],
            "RunTrainingJobs",
        ),
        _allow(
            ["sagemaker:CreateModel", "sagemaker:CreateEndpointConfig", "sagemaker:AddTags"],
            [
                _arn("sagemaker", f"model/{model_prefix}-*"),
                _arn("sagemaker", f"endpoint-config/{model_prefix}-*"),
            ],
            "CreateModels",
        ),
        _allow(
            [
                "sagemaker:CreateEndpoint",
                "sagemaker:UpdateEndpoint",
                "sagemaker:DescribeEndpoint",
                "sagemaker:AddTags",
            ],
            [
                _arn("sagemaker", f"endpoint/{names['endpoint']}"),
                _arn("sagemaker", f"endpoint-config/{model_prefix}-*"),
            ],
            "ServeModel",
        ),
        {
            **_allow(
                ["iam:PassRole"], [{"Fn::GetAtt": ["SageMakerRole", "Arn"]}], "PassTrainingRole"
            ),
            "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        },
        # createTrainingJob.sync waits through this managed rule.
        _allow(
            ["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            [_arn("events", f"rule/{SAGEMAKER_EVENTS_RULE}")],
            "SyncTrainingJobs",
        ),
        _allow(["dynamodb:GetItem"], [{"Fn::GetAtt": ["ModelRegistry", "Arn"]}], "ReadProduction"),
    ]
    return {
        "StatesRole": _role(names["role_states"], "states", statements),
        "RetrainStateMachine": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "StateMachineName": names["state_machine"],
                "RoleArn": {"Fn::GetAtt": ["StatesRole", "Arn"]},
                "DefinitionString": asl,
                "DefinitionSubstitutions": substitutions,
            },
        },
    }


def _triggers_and_alarms(cfg: ProjectConfig) -> dict[str, Any]:
    names = cfg.names
    machine = _arn("states", f"stateMachine:{names['state_machine']}")
    return {
        "EventsRole": _role(
            names["role_events"],
            "events",
            [_allow(["states:StartExecution"], [machine], "StartRetraining")],
        ),
        "NewDataRule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Name": names["data_rule"],
                "Description": "Start a retraining when a data drop lands under raw/",
                "EventPattern": {
                    "source": ["aws.s3"],
                    "detail-type": ["Object Created"],
                    "detail": {
                        "bucket": {"name": [names["bucket"]]},
                        "object": {"key": [{"prefix": "raw/"}]},
                    },
                },
                "Targets": [
                    {
                        "Id": "retrain",
                        "Arn": {"Ref": "RetrainStateMachine"},
                        "RoleArn": {"Fn::GetAtt": ["EventsRole", "Arn"]},
                        "InputTransformer": {
                            "InputPathsMap": {"key": "$.detail.object.key"},
                            "InputTemplate": '{"data_key": <key>}',
                        },
                    }
                ],
            },
        },
        "FailedExecutionsAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": names["failure_rule"],
                "AlarmDescription": "A retraining execution failed, timed out or was aborted",
                "Namespace": "AWS/States",
                "MetricName": "ExecutionsFailed",
                "Dimensions": [
                    {"Name": "StateMachineArn", "Value": {"Ref": "RetrainStateMachine"}}
                ],
                "Statistic": "Sum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": 1,
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [{"Ref": "EventsTopic"}],
            },
        },
    }


def template(cfg: ProjectConfig, asl: str | None = None) -> dict[str, Any]:
    """The full template; `asl` defaults to the committed definition of cfg.env."""
    asl = asl if asl is not None else workflow.asl_path(cfg).read_text()
    resources: dict[str, Any] = {}
    for part in (
        _registry_and_topic(cfg),
        _lambdas(cfg),
        _glue(cfg),
        _sagemaker_role(cfg),
        _state_machine(cfg, asl),
        _triggers_and_alarms(cfg),
    ):
        resources.update(part)
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"{cfg.names['stack']}: GitOps retraining loop (generated by `mlops stack`)",
        "Parameters": {
            name: {
                "Type": "String",
                "Description": text,
                "AllowedPattern": "^code/[A-Za-z0-9._/-]+$",
            }
            for name, text in CODE_PARAMETERS.items()
        }
        | {
            "CodeVersion": {
                "Type": "String",
                "Description": "git commit of the deployed code, recorded with every model it trains",
                "Default": "unknown",
                "AllowedPattern": "^[A-Za-z0-9._-]{1,80}$",
            }
        },
        "Resources": resources,
        "Outputs": {
            "StateMachineArn": {"Value": {"Ref": "RetrainStateMachine"}},
            "TopicArn": {"Value": {"Ref": "EventsTopic"}},
            "TableName": {"Value": {"Ref": "ModelRegistry"}},
        },
    }


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def bootstrap_template(
    cfg: ProjectConfig, github_repo: str, branch: str = "main"
) -> dict[str, Any]:
    """GitHub OIDC provider and the deploy role that one repository's branch may assume."""
    names = cfg.names
    stack_arn = _arn("cloudformation", f"stack/{names['stack']}/*")
    project_prefix = f"{cfg.settings.project.name}-{cfg.env}"
    statements = [
        _allow(
            [
                "cloudformation:CreateChangeSet",
                "cloudformation:DescribeChangeSet",
                "cloudformation:ExecuteChangeSet",
                "cloudformation:DeleteChangeSet",
                "cloudformation:DescribeStacks",
                "cloudformation:DescribeStackEvents",
                "cloudformation:GetTemplate",
            ],
            [stack_arn, _arn("cloudformation", f"changeSet/{names['stack']}-*/*")],
            "DeployStack",
        ),
        _allow(
            ["s3:PutObject", "s3:GetObject"],
            [_bucket_arn(cfg, "/code/*"), _bucket_arn(cfg, "/raw/*")],
            "UploadCodeAndData",
        ),
        _allow(["s3:ListBucket"], [_bucket_arn(cfg)], "ListDataBucket"),
        _allow(
            ["states:StartExecution", "states:DescribeStateMachine"],
            [_arn("states", f"stateMachine:{names['state_machine']}")],
            "StartRetraining",
        ),
        _allow(
            ["states:DescribeExecution", "states:GetExecutionHistory"],
            [
                _arn("states", f"execution:{names['state_machine']}:*"),
                # parliament's action table lists only the express-execution format
                _arn("states", f"express:{names['state_machine']}:*:*"),
            ],
            "FollowRetraining",
        ),
        _allow(
            ["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            [_arn("dynamodb", f"table/{names['table']}")],
            "ModelRegistry",
        ),
        _allow(
            ["sagemaker:UpdateEndpoint", "sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint"],
            [
                _arn("sagemaker", f"endpoint/{names['endpoint']}"),
                _arn("sagemaker", f"endpoint-config/{project_prefix}-*"),
            ],
            "RollbackAndPredict",
        ),
        # CloudFormation creates the stack's resources with the deploy role's rights;
        # each is limited to the project's own names.
        _allow(
            [
                "iam:CreateRole",
                "iam:DeleteRole",
                "iam:GetRole",
                "iam:PutRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:GetRolePolicy",
                "iam:PassRole",
                "iam:TagRole",
            ],
            [_sub(f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{project_prefix}-*")],
            "ManageProjectRoles",
        ),
        _allow(
            [
                "lambda:CreateFunction",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
                "lambda:GetFunction",
                "lambda:DeleteFunction",
            ],
            [_arn("lambda", f"function:{project_prefix}-*")],
            "ManageProjectLambdas",
        ),
        _allow(
            ["glue:CreateJob", "glue:UpdateJob", "glue:GetJob", "glue:DeleteJob"],
            [_arn("glue", f"job/{names['glue_job']}")],
            "ManageEtlJob",
        ),
        _allow(
            [
                "states:CreateStateMachine",
                "states:UpdateStateMachine",
                "states:DeleteStateMachine",
                "states:TagResource",
            ],
            [_arn("states", f"stateMachine:{names['state_machine']}")],
            "ManageStateMachine",
        ),
        _allow(
            [
                "dynamodb:CreateTable",
                "dynamodb:DescribeTable",
                "dynamodb:UpdateContinuousBackups",
                "dynamodb:DescribeContinuousBackups",
            ],
            [_arn("dynamodb", f"table/{names['table']}")],
            "ManageRegistryTable",
        ),
        _allow(
            [
                "sns:CreateTopic",
                "sns:GetTopicAttributes",
                "sns:SetTopicAttributes",
                "sns:Subscribe",
            ],
            [_arn("sns", names["topic"])],
            "ManageTopic",
        ),
        _allow(
            [
                "events:PutRule",
                "events:PutTargets",
                "events:DescribeRule",
                "events:RemoveTargets",
                "events:DeleteRule",
            ],
            [_arn("events", f"rule/{names['data_rule']}")],
            "ManageTrigger",
        ),
        _allow(
            ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms"],
            [_arn("cloudwatch", f"alarm:{names['failure_rule']}")],
            "ManageAlarm",
        ),
    ]
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"{names['stack']}: data bucket and GitHub OIDC deploy role for {github_repo}@{branch}",
        "Parameters": {
            "OidcProviderArn": {
                "Type": "String",
                "Default": "",
                "Description": "ARN of an existing GitHub OIDC provider (an account holds one); empty creates it",
            }
        },
        "Conditions": {"CreateOidcProvider": {"Fn::Equals": [{"Ref": "OidcProviderArn"}, ""]}},
        "Resources": {
            **_storage(cfg),
            "GitHubOidcProvider": {
                "Type": "AWS::IAM::OIDCProvider",
                "Condition": "CreateOidcProvider",
                "Properties": {
                    "Url": "https://token.actions.githubusercontent.com",
                    "ClientIdList": ["sts.amazonaws.com"],
                },
            },
            "DeployRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": names["role_deploy"],
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {
                                    "Federated": {
                                        "Fn::If": [
                                            "CreateOidcProvider",
                                            {"Ref": "GitHubOidcProvider"},
                                            {"Ref": "OidcProviderArn"},
                                        ]
                                    }
                                },
                                "Action": "sts:AssumeRoleWithWebIdentity",
                                "Condition": {
                                    "StringEquals": {
                                        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                                        # A job that names a GitHub environment gets the
                                        # environment subject instead of the branch one.
                                        "token.actions.githubusercontent.com:sub": [
                                            f"repo:{github_repo}:ref:refs/heads/{branch}",
                                            f"repo:{github_repo}:environment:{cfg.env}",
                                        ],
                                    }
                                },
                            }
                        ],
                    },
                    "Policies": [
                        {
                            "PolicyName": "deploy",
                            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                        }
                    ],
                },
            },
        },
        "Outputs": {
            "DeployRoleArn": {"Value": {"Fn::GetAtt": ["DeployRole", "Arn"]}},
            "BucketName": {"Value": {"Ref": "DataBucket"}},
        },
    }
