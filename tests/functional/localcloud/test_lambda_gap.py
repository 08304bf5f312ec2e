"""The Lambda gap: deployed zips run for real, in reusable execution environments."""

from __future__ import annotations

import io
import json
import threading
import zipfile

import boto3
import pytest

from pipeline.localcloud import gaps, lambdas

HANDLER = """
import os, time
CALLS = {"n": 0}

class TransientError(Exception):
    pass

def handler(event, context):
    CALLS["n"] += 1
    if event.get("fail"):
        raise TransientError("boom " + os.environ["GREETING"])
    if event.get("sleep"):
        time.sleep(event["sleep"])
    print("handled", event)
    return {"event": event, "greeting": os.environ["GREETING"], "calls": CALLS["n"], "pid": os.getpid(),
            "version": VERSION}
"""


def _zip(version: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app/__init__.py", "")
        archive.writestr("app/fn.py", f"VERSION = {version!r}\n" + HANDLER)
    return buf.getvalue()


@pytest.fixture
def function(localcloud_running):
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    client = boto3.client("lambda")
    client.create_function(
        FunctionName="fn",
        Runtime="python3.12",
        Role=role,
        Handler="app.fn.handler",
        Code={"ZipFile": _zip("one")},
        Timeout=3,
        Environment={"Variables": {"GREETING": "hello"}},
    )
    return client


def _invoke(client, event):
    response = client.invoke(FunctionName="fn", Payload=json.dumps(event))
    return response.get("FunctionError"), json.loads(response["Payload"].read())


def test_the_zips_code_runs_with_the_functions_environment(function):
    error, body = _invoke(function, {"a": 1})
    assert error is None
    assert body["event"] == {"a": 1}
    assert body["greeting"] == "hello"
    assert body["version"] == "one"


def test_a_handler_error_is_a_function_error_named_by_its_type(function):
    error, body = _invoke(function, {"fail": True})
    assert error == "Handled"
    assert body["errorType"] == "TransientError"
    assert body["errorMessage"] == "boom hello"
    assert "lambda_entry" not in json.dumps(body["stackTrace"])


def test_warm_invocations_reuse_the_environment_and_its_globals(function):
    first = _invoke(function, {})[1]
    _invoke(function, {"fail": True})  # an error does not end the environment
    second = _invoke(function, {})[1]
    assert second["pid"] == first["pid"]
    assert second["calls"] == first["calls"] + 2


def test_concurrent_invocations_get_their_own_environments(function):
    results = []

    def call():
        results.append(_invoke(function, {"sleep": 0.5})[1]["pid"])

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 2


def test_a_timeout_fails_the_invocation_and_discards_the_environment(function):
    before = _invoke(function, {})[1]["pid"]
    error, body = _invoke(function, {"sleep": 10})
    assert error == "Handled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert _invoke(function, {})[1]["pid"] != before


def test_new_code_replaces_the_old(function):
    function.update_function_code(FunctionName="fn", ZipFile=_zip("two"))
    assert _invoke(function, {})[1]["version"] == "two"


def test_state_machine_retries_then_catches_a_handler_error(function, localcloud_wait):
    arn = function.get_function(FunctionName="fn")["Configuration"]["FunctionArn"]
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": arn,
                "Parameters": {"fail": True},
                "Retry": [
                    {"ErrorEquals": ["TransientError"], "IntervalSeconds": 1, "MaxAttempts": 1}
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
    role = "arn:aws:iam::123456789012:role/fn-role"
    machine = sfn.create_state_machine(
        name="retry", definition=json.dumps(definition), roleArn=role
    )
    execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input="{}")[
        "executionArn"
    ]
    done = localcloud_wait(
        lambda: sfn.describe_execution(executionArn=execution), lambda d: d["status"] != "RUNNING"
    )
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"])["error"]["Error"] == "TransientError"
    events = sfn.get_execution_history(executionArn=execution)["events"]
    assert sum(e["type"] == "LambdaFunctionFailed" for e in events) == 2  # first try + one retry


def test_shutdown_ends_every_environment(function):
    _invoke(function, {})
    processes = [env.process for env in lambdas._all]
    assert processes
    lambdas.shutdown()
    assert all(p.poll() is not None for p in processes)


def test_another_moto_version_is_refused(monkeypatch):
    monkeypatch.setattr(gaps, "_installed", False)
    monkeypatch.setattr(gaps, "version", lambda name: "9.9.9")
    with pytest.raises(
        gaps.MotoVersionError, match="moto 9.9.9 is installed but the local cloud supports 5.2.5"
    ):
        gaps.install()
