"""The local cloud's Lambda fault injection: the next N invocations of a function fail as told.

Set over the local cloud's own HTTP API (pipeline/localcloud/lambdas.py), the way AWS FIS's
aws:lambda:invocation-error action is set outside the function; Step Functions then sees the
injected error as it would a handler's, so its Retry and Catch apply.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import zipfile

import boto3
import pytest

from pipeline.localcloud import lambdas

HANDLER = """
CALLS = {"n": 0}

def handler(event, context):
    CALLS["n"] += 1
    return {"ran": True, "calls": CALLS["n"]}
"""


@pytest.fixture
def function(localcloud_running):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("fn.py", HANDLER)
    role = boto3.client("iam").create_role(RoleName="faults", AssumeRolePolicyDocument="{}")
    client = boto3.client("lambda")
    created = client.create_function(
        FunctionName="target",
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="fn.handler",
        Code={"ZipFile": buf.getvalue()},
        Timeout=5,
    )
    return client, created["FunctionArn"], localcloud_running.url


def _invoke(client) -> tuple[str | None, dict]:
    response = client.invoke(FunctionName="target", Payload=b"{}")
    return response.get("FunctionError"), json.loads(response["Payload"].read())


def test_the_next_n_invocations_fail_without_running_the_code_then_it_runs_again(function):
    client, _, url = function
    listed = lambdas.inject_fault(url, "target", 2, "Lambda.ServiceException", "service down")
    assert listed == [
        {
            "function_name": "target",
            "count": 2,
            "error_type": "Lambda.ServiceException",
            "message": "service down",
            "fired": 0,
        }
    ]
    for _ in range(2):
        assert _invoke(client) == (
            "Handled",
            {"errorType": "Lambda.ServiceException", "errorMessage": "service down"},
        )
    assert lambdas.faults(url) == []  # used up
    assert _invoke(client) == (None, {"ran": True, "calls": 1})  # the faults never ran the code


def test_a_fault_without_count_fires_until_it_is_cleared(function):
    client, _, url = function
    lambdas.inject_fault(url, "target", None, "InjectedFault")
    for _ in range(3):
        error, body = _invoke(client)
        assert error == "Handled" and body["errorType"] == "InjectedFault"
    assert "into target" in body["errorMessage"]
    assert [f["fired"] for f in lambdas.faults(url)] == [3]
    assert [f["function_name"] for f in lambdas.clear_faults(url)] == []
    assert _invoke(client)[0] is None


def test_other_functions_are_not_affected(function):
    client, _, url = function
    lambdas.inject_fault(url, "another-function", 1, "InjectedFault")
    assert _invoke(client)[0] is None
    assert [f["fired"] for f in lambdas.faults(url)] == [0]


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"count": 1}, "function_name"),
        ({"function_name": "target", "count": 0}, "count 0 must be a positive integer"),
        ({"function_name": "target", "count": "2"}, "count '2' must be a positive integer"),
        ({"function_name": "target", "error_type": 5}, "error_type 5 must be a string"),
    ],
)
def test_a_bad_fault_request_is_refused_saying_what_to_send(function, body, problem):
    _, _, url = function
    request = urllib.request.Request(
        url + lambdas.FAULTS_PATH,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert problem in json.loads(refused.value.read())["error"]
    assert lambdas.faults(url) == []


def test_the_clouds_reset_forgets_the_faults(function):
    _, _, url = function
    lambdas.inject_fault(url, "target", None, "InjectedFault")
    reset = urllib.request.Request(f"{url}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(reset, timeout=10):
        pass
    assert lambdas.faults(url) == []


def _run(function_arn: str, name: str, wait) -> tuple[dict, list[dict]]:
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": function_arn,
                "Retry": [
                    {
                        "ErrorEquals": ["Lambda.ServiceException"],
                        "IntervalSeconds": 1,
                        "MaxAttempts": 3,
                        "BackoffRate": 1.0,
                    }
                ],
                "Catch": [
                    {"ErrorEquals": ["States.ALL"], "Next": "Caught", "ResultPath": "$.error"}
                ],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=name, definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/x"
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name=name, input="{}")["executionArn"]
    done = wait(
        lambda: sfn.describe_execution(executionArn=arn), lambda d: d["status"] != "RUNNING"
    )
    return done, sfn.get_execution_history(executionArn=arn)["events"]


def test_state_machine_retries_a_transient_fault_and_then_succeeds(function, localcloud_wait):
    _, arn, url = function
    lambdas.inject_fault(url, "target", 2, "Lambda.ServiceException")
    done, events = _run(arn, "transient", localcloud_wait)
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"]) == {"ran": True, "calls": 1}
    assert [e["type"] for e in events].count("LambdaFunctionFailed") == 2


def test_state_machine_catches_a_permanent_fault_without_retrying_it(function, localcloud_wait):
    _, arn, url = function
    lambdas.inject_fault(url, "target", None, "InjectedFault", "disk full")
    done, events = _run(arn, "permanent", localcloud_wait)
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"])["error"]["Error"] == "InjectedFault"
    assert "disk full" in json.loads(done["output"])["error"]["Cause"]
    assert [f["fired"] for f in lambdas.faults(url)] == [1]  # not in the Retry list: one call
