"""The S3 -> EventBridge -> Step Functions gap: new data under the prefix starts an execution."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline.localcloud import events as events_gap

REPO = Path(__file__).resolve().parents[3]
S3_EVENT = REPO / "tests" / "fixtures" / "localcloud" / "events" / "s3_object_created.json"
BUCKET = "events-gap-bucket"
ROLE = "arn:aws:iam::123456789012:role/events-gap"
PREFIX = "raw/"
# What the trigger rule of the stack looks like: new objects under raw/ in the data bucket.
PATTERN = {
    "source": ["aws.s3"],
    "detail-type": ["Object Created"],
    "detail": {"bucket": {"name": [BUCKET]}, "object": {"key": [{"prefix": PREFIX}]}},
}
TRANSFORMER = {
    "InputPathsMap": {"bucket": "$.detail.bucket.name", "key": "$.detail.object.key"},
    "InputTemplate": '{"bucket": <bucket>, "key": <key>, "uri": "s3://<bucket>/<key>"}',
}


@pytest.fixture
def s3_event() -> dict[str, Any]:
    return json.loads(S3_EVENT.read_text())


@pytest.fixture
def aws(localcloud_running: Any) -> dict[str, Any]:
    """Clients of a fresh local cloud, a bucket sending to EventBridge, an echoing machine."""
    clients = {name: boto3.client(name) for name in ("s3", "events", "stepfunctions")}
    clients["s3"].create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    clients["s3"].put_bucket_notification_configuration(
        Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    definition = {"StartAt": "Echo", "States": {"Echo": {"Type": "Pass", "End": True}}}
    clients["machine"] = clients["stepfunctions"].create_state_machine(
        name="retrain", roleArn=ROLE, definition=json.dumps(definition)
    )["stateMachineArn"]
    return clients


def add_rule(aws: dict[str, Any], name: str = "new-data", **target: Any) -> None:
    aws["events"].put_rule(Name=name, EventPattern=json.dumps(PATTERN))
    aws["events"].put_targets(
        Rule=name, Targets=[{"Id": "retrain", "Arn": aws["machine"], "RoleArn": ROLE, **target}]
    )


def executions(aws: dict[str, Any]) -> list[dict[str, Any]]:
    return aws["stepfunctions"].list_executions(stateMachineArn=aws["machine"])["executions"]


def execution_inputs(aws: dict[str, Any]) -> list[Any]:
    sfn = aws["stepfunctions"]
    return [
        json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])
        for e in executions(aws)
    ]


def put(aws: dict[str, Any], key: str) -> None:
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=b"id,diagnosis\n1,benign\n")


# ---------------------------------------------------------------- target input, pure


def test_transformer_quotes_strings_outside_quotes_and_escapes_them_inside(s3_event):
    s3_event["detail"]["object"]["key"] = 'raw/a "quoted" key.csv'
    target = {"InputTransformer": TRANSFORMER}
    rendered = json.loads(events_gap.target_input(target, s3_event, "r", "arn:r"))

    assert rendered == {
        "bucket": "amzn-s3-demo-bucket1",
        "key": 'raw/a "quoted" key.csv',
        "uri": 's3://amzn-s3-demo-bucket1/raw/a "quoted" key.csv',
    }


def test_transformer_renders_numbers_objects_missing_paths_and_predefined_variables(s3_event):
    target = {
        "InputTransformer": {
            "InputPathsMap": {
                "size": "$.detail.object.size",
                "object": "$.detail.object",
                "first": "$.resources[0]",
                "missing": "$.detail.no.such.field",
            },
            "InputTemplate": (
                '{"size": <size>, "object": <object>, "first": <first>, "missing": <missing>, '
                '"rule": "<aws.events.rule-name>", "event": <aws.events.event.json>}'
            ),
        }
    }
    rendered = json.loads(events_gap.target_input(target, s3_event, "new-data", "arn:rule"))

    assert rendered["size"] == 5
    assert rendered["object"] == s3_event["detail"]["object"]
    assert rendered["first"] == "arn:aws:s3:::amzn-s3-demo-bucket1"
    assert rendered["missing"] is None
    assert rendered["rule"] == "new-data"
    assert rendered["event"] == s3_event


def test_plain_text_transformer_inserts_strings_verbatim(s3_event):
    target = {
        "InputTransformer": {
            "InputPathsMap": {"key": "$.detail.object.key"},
            "InputTemplate": "new object <key>",
        }
    }
    text = events_gap.target_input(target, s3_event, "r", "arn:r")
    assert text == "new object raw/drop-001/data.csv"


def test_input_wins_over_input_path_and_input_path_selects_part_of_the_event(s3_event):
    assert events_gap.target_input({"Input": '{"fixed": 1}'}, s3_event, "r", "a") == '{"fixed": 1}'
    selected = events_gap.target_input({"InputPath": "$.detail.bucket"}, s3_event, "r", "a")
    assert json.loads(selected) == {"name": "amzn-s3-demo-bucket1"}
    assert json.loads(events_gap.target_input({}, s3_event, "r", "a")) == s3_event


def test_json_path_outside_eventbridge_subset_is_rejected_with_the_fix(s3_event):
    with pytest.raises(events_gap.EventTargetInputError, match="dot notation"):
        events_gap.resolve_path(s3_event, "$.detail['bucket']")


def test_delivered_event_has_iso_time_and_no_moto_ingestion_time(s3_event):
    internal = {**copy.deepcopy(s3_event), "time": 1636675200.0, "ingestion-time": 1636675200.5}
    delivered = events_gap.delivered_event(internal)
    assert delivered == s3_event  # 1636675200 is 2021-11-12T00:00:00Z


# ---------------------------------------------------------------- S3 -> EventBridge -> SFN


def test_put_under_the_prefix_starts_exactly_one_execution_with_the_transformed_event(aws):
    add_rule(aws, InputTransformer=TRANSFORMER)
    put(aws, "raw/drop-001/data.csv")

    assert execution_inputs(aws) == [
        {
            "bucket": BUCKET,
            "key": "raw/drop-001/data.csv",
            "uri": f"s3://{BUCKET}/raw/drop-001/data.csv",
        }
    ]


def test_put_outside_the_prefix_starts_no_execution(aws):
    add_rule(aws, InputTransformer=TRANSFORMER)
    put(aws, "processed/drop-001/train/part-0.csv")
    put(aws, "rawdata.csv")  # shares the letters of the prefix, not its folder
    put(aws, "other/raw/data.csv")

    assert executions(aws) == []


def test_the_same_key_uploaded_twice_starts_two_executions(aws):
    add_rule(aws, InputTransformer=TRANSFORMER)
    put(aws, "raw/drop-001/data.csv")
    put(aws, "raw/drop-001/data.csv")

    inputs = execution_inputs(aws)
    assert len(inputs) == 2
    assert inputs[0] == inputs[1]


def test_target_without_input_settings_receives_the_s3_event_as_aws_sends_it(aws, s3_event):
    add_rule(aws)
    put(aws, "raw/drop-002/data.csv")

    [event] = execution_inputs(aws)
    assert set(event) == set(s3_event)
    assert event["source"] == "aws.s3"
    assert event["detail-type"] == "Object Created"
    assert event["account"] == "123456789012"
    assert event["region"] == "eu-west-1"
    assert event["resources"] == [f"arn:aws:s3:::{BUCKET}"]
    assert len(event["time"]) == len("2021-11-12T00:00:00Z") and event["time"].endswith("Z")
    detail = event["detail"]
    assert detail["bucket"] == {"name": BUCKET}
    assert detail["reason"] == "PutObject"
    head = aws["s3"].head_object(Bucket=BUCKET, Key="raw/drop-002/data.csv")
    assert detail["object"]["key"] == "raw/drop-002/data.csv"
    assert detail["object"]["size"] == head["ContentLength"]
    assert detail["object"]["etag"] == head["ETag"].strip('"')


def test_each_event_has_its_own_id(aws):
    add_rule(aws)
    put(aws, "raw/drop-001/a.csv")
    put(aws, "raw/drop-001/b.csv")

    ids = {event["id"] for event in execution_inputs(aws)}
    assert len(ids) == 2


def test_execution_started_by_the_rule_runs_the_state_machine(aws, localcloud_wait):
    add_rule(aws, InputTransformer=TRANSFORMER)
    put(aws, "raw/drop-001/data.csv")

    [started] = executions(aws)
    finished = localcloud_wait(
        lambda: aws["stepfunctions"].describe_execution(executionArn=started["executionArn"]),
        lambda execution: execution["status"] != "RUNNING",
    )
    assert finished["status"] == "SUCCEEDED"
    assert json.loads(finished["output"])["key"] == "raw/drop-001/data.csv"


def test_disabled_rule_starts_nothing(aws):
    add_rule(aws, InputTransformer=TRANSFORMER)
    aws["events"].disable_rule(Name="new-data")
    put(aws, "raw/drop-001/data.csv")

    assert executions(aws) == []


def test_bucket_without_eventbridge_notifications_starts_nothing(aws):
    add_rule(aws, InputTransformer=TRANSFORMER)
    aws["s3"].put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={})
    put(aws, "raw/drop-001/data.csv")

    assert executions(aws) == []


def test_rule_on_a_custom_bus_gets_no_s3_events(aws):
    # S3 sends to the default bus only; a rule on another bus never sees its events.
    aws["events"].create_event_bus(Name="custom")
    aws["events"].put_rule(
        Name="elsewhere", EventBusName="custom", EventPattern=json.dumps(PATTERN)
    )
    aws["events"].put_targets(
        Rule="elsewhere",
        EventBusName="custom",
        Targets=[{"Id": "retrain", "Arn": aws["machine"], "RoleArn": ROLE}],
    )
    put(aws, "raw/drop-001/data.csv")

    assert executions(aws) == []


def test_target_without_role_starts_nothing(aws):
    aws["events"].put_rule(Name="no-role", EventPattern=json.dumps(PATTERN))
    aws["events"].put_targets(Rule="no-role", Targets=[{"Id": "t", "Arn": aws["machine"]}])
    put(aws, "raw/drop-001/data.csv")

    assert executions(aws) == []


def test_put_events_to_a_state_machine_target_starts_an_execution(aws):
    """Rules on events sent with PutEvents reach state machines the same way."""
    aws["events"].put_rule(Name="manual", EventPattern=json.dumps({"source": ["mlops.manual"]}))
    aws["events"].put_targets(
        Rule="manual",
        Targets=[{"Id": "t", "Arn": aws["machine"], "RoleArn": ROLE, "InputPath": "$.detail"}],
    )
    detail = {"data_prefix": "raw/drop-009/"}
    aws["events"].put_events(
        Entries=[{"Source": "mlops.manual", "DetailType": "Retrain", "Detail": json.dumps(detail)}]
    )

    assert execution_inputs(aws) == [detail]


def test_bucket_and_rule_deployed_by_cloudformation_start_an_execution(aws):
    """The stack's shape: EventBridgeEnabled on the bucket, the rule with its transformer."""
    cfn = boto3.client("cloudformation")
    template = {
        "Resources": {
            "Data": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "BucketName": "events-gap-stack-bucket",
                    "NotificationConfiguration": {
                        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
                    },
                },
            },
            "NewData": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "EventPattern": {
                        **PATTERN,
                        "detail": {
                            **PATTERN["detail"],
                            "bucket": {"name": ["events-gap-stack-bucket"]},
                        },
                    },
                    "Targets": [
                        {
                            "Id": "retrain",
                            "Arn": aws["machine"],
                            "RoleArn": ROLE,
                            "InputTransformer": {
                                "InputPathsMap": {"key": "$.detail.object.key"},
                                "InputTemplate": '{"data_key": <key>, "commit": "s3-event"}',
                            },
                        }
                    ],
                },
            },
        }
    }
    cfn.create_stack(StackName="events-gap", TemplateBody=json.dumps(template))
    aws["s3"].put_object(Bucket="events-gap-stack-bucket", Key="raw/drop-003/data.csv", Body=b"x")

    assert execution_inputs(aws) == [{"data_key": "raw/drop-003/data.csv", "commit": "s3-event"}]

    # A stack update that turns EventBridge off on the bucket stops the trigger.
    bucket_properties = template["Resources"]["Data"]["Properties"]
    bucket_properties["NotificationConfiguration"]["EventBridgeConfiguration"] = {
        "EventBridgeEnabled": False
    }
    cfn.update_stack(StackName="events-gap", TemplateBody=json.dumps(template))
    aws["s3"].put_object(Bucket="events-gap-stack-bucket", Key="raw/drop-004/data.csv", Body=b"x")

    assert len(executions(aws)) == 1
