"""The Glue gap: StartJobRun really runs the job's script; Step Functions' .sync waits for it."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline import package
from pipeline.localcloud import glue as glue_gap

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "localcloud" / "glue"
BUCKET = "glue-gap-bucket"
ROLE = "arn:aws:iam::123456789012:role/glue-gap"
TERMINAL = ("SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED", "ERROR")


def _zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path in sorted(folder.rglob("*.py")):
            archive.write(path, path.relative_to(folder.parent).as_posix())
    return buf.getvalue()


@pytest.fixture
def aws(localcloud_running: Any) -> dict[str, Any]:
    """boto3 clients of a fresh local cloud, a bucket holding the fixture scripts and lib zip."""
    clients = {name: boto3.client(name) for name in ("s3", "glue", "logs", "stepfunctions")}
    s3 = clients["s3"]
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for script in ("report_job.py", "failing_job.py", "slow_job.py"):
        s3.put_object(Bucket=BUCKET, Key=f"code/{script}", Body=(FIXTURES / script).read_bytes())
    s3.put_object(Bucket=BUCKET, Key="code/lib.zip", Body=_zip_folder(FIXTURES / "gluetestlib"))
    return clients


def create_job(glue: Any, name: str, script: str, **extra: Any) -> None:
    glue.create_job(
        Name=name,
        Role=ROLE,
        GlueVersion="5.0",
        Command={"Name": "glueetl", "ScriptLocation": script, "PythonVersion": "3"},
        **extra,
    )


def wait_run(wait: Any, glue: Any, job: str, run_id: str, timeout: float = 30) -> dict[str, Any]:
    return wait(
        lambda: glue.get_job_run(JobName=job, RunId=run_id)["JobRun"],
        lambda run: run["JobRunState"] in TERMINAL,
        timeout=timeout,
    )


def read_json(s3: Any, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def log_messages(logs: Any, group: str, stream: str) -> list[str]:
    events = logs.get_log_events(logGroupName=group, logStreamName=stream)["events"]
    return [event["message"] for event in events]


# ---------------------------------------------------------------- pure helpers


def test_script_argv_puts_job_name_and_run_id_first_and_every_argument_as_key_value():
    argv = glue_gap.script_argv("etl", "jr_1", {"--input": "s3://b/in", "--JOB_NAME": "other"})
    assert argv == ["--JOB_NAME", "etl", "--JOB_RUN_ID", "jr_1", "--input", "s3://b/in"]


def test_extra_py_files_splits_the_comma_separated_uris():
    arguments = {"--extra-py-files": "s3://b/a.zip, s3://b/b.zip,"}
    assert glue_gap.extra_py_files(arguments) == ["s3://b/a.zip", "s3://b/b.zip"]
    assert glue_gap.extra_py_files({}) == []


def test_last_error_line_skips_trailing_blank_lines_and_falls_back_to_the_exit_code():
    stderr = "Traceback (most recent call last):\n  ...\nValueError: bad\n\n  \n"
    assert glue_gap.last_error_line(stderr, 1) == "ValueError: bad"
    assert glue_gap.last_error_line("", 3) == "Command failed with exit code 3"


# ---------------------------------------------------------------- job runs


def test_job_run_runs_the_script_with_glue_arguments_and_the_extra_py_files_zip(
    aws, localcloud_wait
):
    glue, s3 = aws["glue"], aws["s3"]
    create_job(
        glue,
        "report",
        f"s3://{BUCKET}/code/report_job.py",
        DefaultArguments={
            "--extra-py-files": f"s3://{BUCKET}/code/lib.zip",
            "--job-bookmark-option": "job-bookmark-disable",
            "--output": f"s3://{BUCKET}/out/default.json",
        },
    )
    run_id = glue.start_job_run(
        JobName="report", Arguments={"--output": f"s3://{BUCKET}/out/run.json"}
    )["JobRunId"]
    run = wait_run(localcloud_wait, glue, "report", run_id)

    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    assert "ErrorMessage" not in run
    assert run["StartedOn"] <= run["CompletedOn"]
    assert run["ExecutionTime"] >= 0
    assert run["GlueVersion"] == "5.0"
    report = read_json(s3, "out/run.json")  # the run's --output won over the default
    assert report["argv"][:4] == ["--JOB_NAME", "report", "--JOB_RUN_ID", run_id]
    assert report["arguments"]["job-bookmark-option"] == "job-bookmark-disable"
    assert report["greeting"] == "hello report"
    # gluetestlib exists only in the zip: imported from it by zipimport
    assert "lib.zip" in report["modules"]["gluetestlib"]


def test_run_arguments_win_over_defaults_and_non_overridable_arguments_win_over_both(
    aws, localcloud_wait
):
    glue, s3 = aws["glue"], aws["s3"]
    create_job(
        glue,
        "merge",
        f"s3://{BUCKET}/code/report_job.py",
        DefaultArguments={
            "--extra-py-files": f"s3://{BUCKET}/code/lib.zip",
            "--colour": "default-colour",
            "--size": "default-size",
            "--output": f"s3://{BUCKET}/out/merge.json",
        },
        NonOverridableArguments={"--shape": "fixed-shape"},
    )
    run_id = glue.start_job_run(
        JobName="merge", Arguments={"--colour": "run-colour", "--shape": "run-shape"}
    )["JobRunId"]
    assert wait_run(localcloud_wait, glue, "merge", run_id)["JobRunState"] == "SUCCEEDED"

    arguments = read_json(s3, "out/merge.json")["arguments"]
    assert arguments["colour"] == "run-colour"
    assert arguments["size"] == "default-size"
    assert arguments["shape"] == "fixed-shape"


def test_job_run_is_running_while_its_script_runs_and_then_succeeds(aws, localcloud_wait):
    glue, s3 = aws["glue"], aws["s3"]
    create_job(glue, "slow", f"s3://{BUCKET}/code/slow_job.py")
    run_id = glue.start_job_run(
        JobName="slow", Arguments={"--seconds": "1.5", "--output": f"s3://{BUCKET}/out/slow"}
    )["JobRunId"]

    running = localcloud_wait(
        lambda: glue.get_job_run(JobName="slow", RunId=run_id)["JobRun"],
        lambda run: run["JobRunState"] != "STARTING",
        timeout=5,
    )
    assert running["JobRunState"] == "RUNNING"
    assert "CompletedOn" not in running
    # one run at a time (MaxConcurrentRuns defaults to 1), as on Glue
    with pytest.raises(glue.exceptions.ConcurrentRunsExceededException):
        glue.start_job_run(JobName="slow", Arguments={"--seconds": "0", "--output": "s3://x/y"})

    done = wait_run(localcloud_wait, glue, "slow", run_id)
    assert done["JobRunState"] == "SUCCEEDED"
    assert done["ExecutionTime"] >= 1
    assert s3.get_object(Bucket=BUCKET, Key="out/slow")["Body"].read() == b"done"


def test_failing_script_fails_the_run_with_its_last_stderr_line(aws, localcloud_wait):
    glue = aws["glue"]
    create_job(glue, "failing", f"s3://{BUCKET}/code/failing_job.py")
    run_id = glue.start_job_run(JobName="failing")["JobRunId"]
    run = wait_run(localcloud_wait, glue, "failing", run_id)

    assert run["JobRunState"] == "FAILED"
    assert run["ErrorMessage"] == (
        "NonNumericFeatureError: column 'mean_radius' has 2 value(s) that are not numbers"
    )
    assert "CompletedOn" in run


def test_job_run_output_and_errors_are_in_the_glue_log_groups(aws, localcloud_wait):
    glue, logs = aws["glue"], aws["logs"]
    create_job(glue, "failing", f"s3://{BUCKET}/code/failing_job.py")
    run_id = glue.start_job_run(JobName="failing")["JobRunId"]
    run = wait_run(localcloud_wait, glue, "failing", run_id)

    assert run["LogGroupName"] == "/aws-glue/jobs"
    assert log_messages(logs, "/aws-glue/jobs/output", run_id) == ["failing_job: reading the input"]
    errors = log_messages(logs, "/aws-glue/jobs/error", run_id)
    assert errors[0] == "failing_job: a warning that is not the error"
    assert "Traceback (most recent call last):" in errors
    assert errors[-1] == run["ErrorMessage"]


def test_run_past_its_timeout_ends_in_timeout_and_its_process_is_killed(
    aws, localcloud_wait, monkeypatch
):
    glue, s3 = aws["glue"], aws["s3"]
    # One Timeout minute lasts 0.3 s here, so a 2 s script overruns a 1-minute Timeout.
    monkeypatch.setattr(glue_gap, "SECONDS_PER_MINUTE", 0.3)
    create_job(glue, "overrun", f"s3://{BUCKET}/code/slow_job.py", Timeout=60)
    run_id = glue.start_job_run(
        JobName="overrun",
        Timeout=1,
        Arguments={"--seconds": "2", "--output": f"s3://{BUCKET}/out/overrun"},
    )["JobRunId"]
    run = wait_run(localcloud_wait, glue, "overrun", run_id, timeout=10)

    assert run["JobRunState"] == "TIMEOUT"
    assert run["Timeout"] == 1
    assert "timed out after 1 minute" in run["ErrorMessage"]
    time.sleep(2.5)  # had the script survived, it would have written its output by now
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="out/overrun")["KeyCount"] == 0


def test_missing_script_fails_the_run_and_names_the_uri(aws, localcloud_wait):
    glue = aws["glue"]
    create_job(glue, "ghost", f"s3://{BUCKET}/code/no_such_script.py")
    run_id = glue.start_job_run(JobName="ghost")["JobRunId"]
    run = wait_run(localcloud_wait, glue, "ghost", run_id)

    assert run["JobRunState"] == "FAILED"
    assert f"s3://{BUCKET}/code/no_such_script.py cannot be read" in run["ErrorMessage"]


def test_extra_py_files_zip_shadows_the_installed_etl_package(aws, localcloud_wait):
    """The deployed `etl` zip, not the editable install in the venv, is what a job imports."""
    glue, s3 = aws["glue"], aws["s3"]
    _, library = package.etl_bundles()
    s3.put_object(Bucket=BUCKET, Key=library.key, Body=library.body)
    create_job(
        glue,
        "which-etl",
        f"s3://{BUCKET}/code/report_job.py",
        DefaultArguments={"--extra-py-files": f"s3://{BUCKET}/{library.key}"},
    )
    run_id = glue.start_job_run(
        JobName="which-etl",
        Arguments={"--modules": "etl", "--output": f"s3://{BUCKET}/out/which.json"},
    )["JobRunId"]
    run = wait_run(localcloud_wait, glue, "which-etl", run_id)

    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    etl_file = read_json(s3, "out/which.json")["modules"]["etl"]
    assert f"{library.filename}/etl/__init__.py" in etl_file


def test_job_deployed_by_cloudformation_exists_runs_and_goes_with_its_stack(aws, localcloud_wait):
    """AWS::Glue::Job as pipeline/stack.py declares it (moto itself has no such resource)."""
    cfn, glue = boto3.client("cloudformation"), aws["glue"]

    def template(colour: str) -> str:
        job = {
            "Type": "AWS::Glue::Job",
            "Properties": {
                "Name": "stack-job",
                "Role": ROLE,
                "GlueVersion": "5.0",
                "WorkerType": "G.1X",
                "NumberOfWorkers": 2,
                "Timeout": 30,
                "Command": {
                    "Name": "glueetl",
                    "PythonVersion": "3",
                    "ScriptLocation": {"Fn::Sub": f"s3://{BUCKET}/code/report_job.py"},
                },
                "DefaultArguments": {
                    "--extra-py-files": f"s3://{BUCKET}/code/lib.zip",
                    "--output": f"s3://{BUCKET}/out/stack.json",
                    "--colour": colour,
                },
            },
        }
        return json.dumps(
            {"Resources": {"EtlJob": job}, "Outputs": {"Job": {"Value": {"Ref": "EtlJob"}}}}
        )

    cfn.create_stack(StackName="glue-gap", TemplateBody=template("blue"))
    [output] = cfn.describe_stacks(StackName="glue-gap")["Stacks"][0]["Outputs"]
    assert output["OutputValue"] == "stack-job"
    job = glue.get_job(JobName="stack-job")["Job"]
    assert job["Timeout"] == 30 and job["NumberOfWorkers"] == 2

    first = glue.start_job_run(JobName="stack-job")["JobRunId"]
    assert wait_run(localcloud_wait, glue, "stack-job", first)["JobRunState"] == "SUCCEEDED"
    assert read_json(aws["s3"], "out/stack.json")["arguments"]["colour"] == "blue"

    cfn.update_stack(StackName="glue-gap", TemplateBody=template("green"))
    assert glue.get_job(JobName="stack-job")["Job"]["DefaultArguments"]["--colour"] == "green"
    assert [r["Id"] for r in glue.get_job_runs(JobName="stack-job")["JobRuns"]] == [first]

    cfn.delete_stack(StackName="glue-gap")
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_job(JobName="stack-job")


# ---------------------------------------------------------------- Step Functions .sync


def sync_state_machine(sfn: Any, name: str, job: str) -> str:
    definition = {
        "StartAt": "ETL",
        "States": {
            "ETL": {
                "Type": "Task",
                "Resource": "arn:aws:states:::glue:startJobRun.sync",
                "Parameters": {"JobName": job, "Arguments": {"--output.$": "$.output"}},
                "ResultSelector": {"job_run_id.$": "$.Id", "state.$": "$.JobRunState"},
                "ResultPath": "$.etl",
                "Catch": [
                    {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}
                ],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    return sfn.create_state_machine(name=name, roleArn=ROLE, definition=json.dumps(definition))[
        "stateMachineArn"
    ]


def run_execution(sfn: Any, wait: Any, machine: str, payload: dict) -> dict[str, Any]:
    arn = sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload))["executionArn"]
    return wait(
        lambda: sfn.describe_execution(executionArn=arn),
        lambda execution: execution["status"] != "RUNNING",
    )


def test_sync_task_waits_for_the_job_run_and_returns_it(aws, localcloud_wait):
    glue, sfn, s3 = aws["glue"], aws["stepfunctions"], aws["s3"]
    create_job(
        glue,
        "report",
        f"s3://{BUCKET}/code/report_job.py",
        DefaultArguments={"--extra-py-files": f"s3://{BUCKET}/code/lib.zip"},
    )
    machine = sync_state_machine(sfn, "sync-ok", "report")
    started = time.monotonic()
    execution = run_execution(
        sfn, localcloud_wait, machine, {"output": f"s3://{BUCKET}/out/sfn.json"}
    )
    elapsed = time.monotonic() - started

    assert execution["status"] == "SUCCEEDED"
    output = json.loads(execution["output"])
    assert "error" not in output
    assert output["etl"]["state"] == "SUCCEEDED"
    assert read_json(s3, "out/sfn.json")["arguments"]["JOB_RUN_ID"] == output["etl"]["job_run_id"]
    assert elapsed < 10  # moto polls every 0.5 s by default; the gap polls every 0.05 s


def test_sync_task_failure_is_caught_with_the_error_message_in_the_cause(aws, localcloud_wait):
    glue, sfn = aws["glue"], aws["stepfunctions"]
    create_job(glue, "failing", f"s3://{BUCKET}/code/failing_job.py")
    machine = sync_state_machine(sfn, "sync-fail", "failing")
    execution = run_execution(sfn, localcloud_wait, machine, {"output": "unused"})

    assert execution["status"] == "SUCCEEDED"  # caught
    error = json.loads(execution["output"])["error"]
    # What AWS reports for a failed run of a .sync Glue task: the GetJobRun JobRun as Cause.
    assert error["Error"] == "States.TaskFailed"
    cause = json.loads(error["Cause"])
    assert cause["JobRunState"] == "FAILED"
    assert cause["JobName"] == "failing"
    assert cause["ErrorMessage"].startswith("NonNumericFeatureError: column 'mean_radius'")


# ---------------------------------------------------------------- the real ETL


def _workflow_etl_state() -> dict[str, Any]:
    """The ETL state exactly as the rendered workflow has it, wired to two end states."""
    asl = json.loads((REPO / "pipeline" / "statemachine.dev.asl.json").read_text())
    state = dict(asl["States"]["ETL"])
    state["Next"] = "Done"
    state["Catch"] = [{**state["Catch"][0], "Next": "ETL failed"}]
    return state


@pytest.fixture
def etl_machine(aws: dict[str, Any]) -> str:
    """The deployed ETL job (bundles as package.py builds them) and a machine around its state."""
    s3, glue, sfn = aws["s3"], aws["glue"], aws["stepfunctions"]
    script, library = package.etl_bundles()
    for bundle in (script, library):
        s3.put_object(Bucket=BUCKET, Key=bundle.key, Body=bundle.body)
    state = _workflow_etl_state()
    create_job(
        glue,
        state["Parameters"]["JobName"],
        f"s3://{BUCKET}/{script.key}",
        DefaultArguments={
            "--extra-py-files": f"s3://{BUCKET}/{library.key}",
            "--job-bookmark-option": "job-bookmark-disable",
        },
        Timeout=30,
    )
    definition = {
        "StartAt": "ETL",
        "States": {
            "ETL": state,
            "Done": {"Type": "Succeed"},
            "ETL failed": {"Type": "Pass", "End": True},
        },
    }
    return sfn.create_state_machine(name="etl", roleArn=ROLE, definition=json.dumps(definition))[
        "stateMachineArn"
    ]


def _upload_drop(s3: Any, drop: str) -> dict[str, Any]:
    s3.put_object(
        Bucket=BUCKET,
        Key=f"raw/{drop}/data.csv",
        Body=(REPO / "data" / "sample" / drop / "data.csv").read_bytes(),
    )
    return {
        "manifest": {
            "input_uri": f"s3://{BUCKET}/raw/{drop}/",
            "processed_uri": f"s3://{BUCKET}/processed/{drop}/",
        }
    }


@pytest.mark.slow
def test_real_etl_job_splits_a_sample_drop_through_the_workflow_etl_state(
    aws, etl_machine, localcloud_wait
):
    s3, sfn = aws["s3"], aws["stepfunctions"]
    execution = run_execution(sfn, localcloud_wait, etl_machine, _upload_drop(s3, "drop-002"))

    assert execution["status"] == "SUCCEEDED"
    output = json.loads(execution["output"])
    assert "error" not in output, output.get("error")
    assert output["etl"]["state"] == "SUCCEEDED"
    keys = [
        obj["Key"]
        for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix="processed/drop-002/")["Contents"]
    ]
    for split in ("train", "validation", "test"):
        assert any(k.startswith(f"processed/drop-002/{split}/part-") for k in keys), keys
    report = read_json(s3, "processed/drop-002/report.json")
    assert report["output_rows"] > 0


@pytest.mark.slow
def test_real_etl_job_on_a_corrupt_drop_fails_the_state_with_the_etl_error(
    aws, etl_machine, localcloud_wait
):
    s3, sfn = aws["s3"], aws["stepfunctions"]
    execution = run_execution(sfn, localcloud_wait, etl_machine, _upload_drop(s3, "drop-corrupt"))

    assert execution["status"] == "SUCCEEDED"  # the Catch took it
    error = json.loads(execution["output"])["error"]
    assert error["Error"] == "States.TaskFailed"
    message = json.loads(error["Cause"])["ErrorMessage"]
    assert message.startswith("NonNumericFeatureError: ")
    assert "mean_radius" in message
