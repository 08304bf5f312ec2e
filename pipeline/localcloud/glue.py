"""Glue gap: moto records job runs but never runs them; here StartJobRun runs the job's script.

For a job whose Command.ScriptLocation is an s3:// URI, StartJobRun downloads the script and
every `--extra-py-files` zip into a scratch folder and runs `python script --JOB_NAME <name>
--JOB_RUN_ID <id> --key value ...` in a fresh interpreter, in a background thread, with the
zips first on PYTHONPATH (as Glue puts them) and AWS_ENDPOINT_URL pointing back at the local
cloud. The run reports RUNNING while the process lives, then SUCCEEDED, FAILED (ErrorMessage:
the last non-empty stderr line, e.g. `NonNumericFeatureError: ...`) or TIMEOUT, with StartedOn,
CompletedOn and ExecutionTime filled in; stdout and stderr land in the CloudWatch Logs groups
/aws-glue/jobs/output and /aws-glue/jobs/error under a stream named by the run id.

Patched in moto 5.2.5 (tests/functional/localcloud/test_glue_gap.py checks each):
- moto.glue.models.FakeJob.start_job_run: wrapped; runs the script after moto records the run.
- moto.glue.models.FakeJobRun.status: a property over ManagedState.status; a run that really
  runs reports its own state instead of moto's "glue::job_run" transition timer.
- moto.glue.models.FakeJobRun.as_dict: wrapped; real times, ErrorMessage, log group.
- state_task_service_callback._DELAY_SECONDS_SYNC_CONDITION_CHECK: how often every `.sync`
  task (glue:startJobRun.sync included) polls; 0.5 s in moto, SYNC_POLL_SECONDS here.
- state_task_service_glue.StateTaskServiceGlue._eval_integration_pattern: replaced; moto's
  inherited one crashes on every Glue `.sync` task (see eval_sync_without_callback).
- moto.cloudformation.parsing model list: an AWS::Glue::Job model is added (moto has none), so
  the deployed stack's ETL job exists in the local cloud.
The rest of moto's Step Functions Glue integration (StateTaskServiceGlue) is kept: a FAILED,
TIMEOUT or ERROR run fails the task with States.TaskFailed and the GetJobRun JobRun as JSON in
Cause, as AWS does (LocalStack's snapshot of the real service), so Cause carries the run's
ErrorMessage.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

log = logging.getLogger(__name__)

LOG_GROUP = "/aws-glue/jobs"
OUTPUT_LOG_GROUP = "/aws-glue/jobs/output"
ERROR_LOG_GROUP = "/aws-glue/jobs/error"
# Glue's default Timeout for a job that sets none (48 hours), in minutes.
DEFAULT_TIMEOUT_MINUTES = 2880
# The unit of Timeout; only tests shrink it, to see TIMEOUT without waiting a minute.
SECONDS_PER_MINUTE = 60.0
# moto's .sync tasks poll every 0.5 s; a run of a few seconds should not wait that long to end.
SYNC_POLL_SECONDS = 0.05
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED", "ERROR"})
# Variables a Spark job needs from the server's environment; everything else is set here so
# the job sees the local cloud's endpoint and credentials, never the caller's.
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "JAVA_HOME", "TMPDIR")
# Set by Glue itself, so a run's own arguments with these names are dropped.
RESERVED_ARGUMENTS = ("--JOB_NAME", "--JOB_RUN_ID")

_running: dict[str, LocalJobRun] = {}
_running_lock = threading.Lock()


class GlueJobScriptError(Exception):
    """The job's script or an --extra-py-files zip cannot be fetched from the local cloud's S3."""


# ---------------------------------------------------------------- pure helpers


def split_s3_uri(uri: str) -> tuple[str, str]:
    """("bucket", "key") of s3://bucket/key."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise GlueJobScriptError(
            f"{uri!r} is not an s3://bucket/key URI; Glue reads the script and "
            "--extra-py-files from S3"
        )
    return bucket, key


def extra_py_files(arguments: dict[str, str]) -> list[str]:
    """The s3:// URIs of `--extra-py-files` (comma-separated, as Glue takes them)."""
    value = arguments.get("--extra-py-files", "")
    return [uri.strip() for uri in value.split(",") if uri.strip()]


def script_argv(job_name: str, run_id: str, arguments: dict[str, str]) -> list[str]:
    """The arguments Glue gives the script: its name and run id, then every `--key value`."""
    argv = ["--JOB_NAME", job_name, "--JOB_RUN_ID", run_id]
    for key, value in arguments.items():
        if key not in RESERVED_ARGUMENTS:
            argv += [key, str(value)]
    return argv


def last_error_line(stderr: str, returncode: int) -> str:
    """Glue's ErrorMessage for a failed script: its last non-empty stderr line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"Command failed with exit code {returncode}"


# ---------------------------------------------------------------- one run


class LocalJobRun:
    """One job run executed as a subprocess; its fields are what GetJobRun reports."""

    def __init__(
        self,
        *,
        account_id: str,
        region: str,
        job_name: str,
        run_id: str,
        script_location: str,
        arguments: dict[str, str],
        timeout_minutes: int,
        glue_version: str | None = None,
    ) -> None:
        self.glue_version = glue_version
        self.account_id = account_id
        self.region = region
        self.job_name = job_name
        self.run_id = run_id
        self.script_location = script_location
        self.arguments = dict(arguments)
        self.timeout_minutes = timeout_minutes
        self.state = "STARTING"
        self.error_message: str | None = None
        self.modified_on = datetime.now(UTC)
        self.completed_on: datetime | None = None
        self.execution_seconds = 0
        self.process_seconds = 0.0  # wall time of the script's process, for timing reports
        self.stdout = ""
        self.stderr = ""
        self._process: subprocess.Popen | None = None

    # -- what GetJobRun shows

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "JobRunState": self.state,
            "LastModifiedOn": self.modified_on,
            "ExecutionTime": self.execution_seconds,
            "LogGroupName": LOG_GROUP,
            "Timeout": self.timeout_minutes,
        }
        if self.glue_version:
            fields["GlueVersion"] = self.glue_version
        if self.completed_on is not None:
            fields["CompletedOn"] = self.completed_on
        if self.error_message is not None:
            fields["ErrorMessage"] = self.error_message
        return fields

    def _set_state(self, state: str, error_message: str | None = None) -> None:
        now = datetime.now(UTC)
        self.error_message = error_message
        if state in TERMINAL_STATES:
            self.completed_on = now
        self.modified_on = now
        self.state = state  # last: a poller that sees a final state sees its details too

    # -- the run

    def run(self) -> None:
        """Fetch, execute, record; never raises (it runs in a thread nobody joins)."""
        try:
            with tempfile.TemporaryDirectory(prefix=f"glue-{self.run_id[:15]}-") as scratch:
                workdir = Path(scratch)
                script = self._fetch(self.script_location, workdir)
                zips = [
                    self._fetch(uri, workdir / "py-files" / str(index))
                    for index, uri in enumerate(extra_py_files(self.arguments))
                ]
                state, message = self._execute(script, zips, workdir)
        except Exception as exc:  # a missing script, a broken argument: the run fails, visibly
            if isinstance(exc, GlueJobScriptError):
                log.warning("glue job run %s of %s: %s", self.run_id, self.job_name, exc)
            else:
                log.exception("glue job run %s of %s could not run", self.run_id, self.job_name)
            state, message = "FAILED", f"{type(exc).__name__}: {exc}"
            self.stderr += message + "\n"
        # Logs first: whoever sees the final state can read them at once.
        self._save_logs()
        with _running_lock:
            _running.pop(self.run_id, None)
        self._set_state(state, message)

    def _fetch(self, uri: str, folder: Path) -> Path:
        from moto.s3.models import s3_backends
        from moto.utilities.utils import get_partition

        bucket, key = split_s3_uri(uri)
        backend = s3_backends[self.account_id][get_partition(self.region)]
        try:
            found = backend.get_object(bucket, key)
        except Exception as exc:  # moto raises MissingBucket or MissingKey
            found, reason = None, type(exc).__name__
        else:
            reason = "NoSuchKey"
        if found is None:
            raise GlueJobScriptError(
                f"{uri} cannot be read ({reason}); upload it or fix the job {self.job_name}'s "
                "Command.ScriptLocation / --extra-py-files"
            )
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / PurePosixPath(key).name
        target.write_bytes(found.value)
        return target

    def _env(self, zips: list[Path]) -> dict[str, str]:
        from pipeline.localcloud.lambdas import endpoint_url

        env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
        env.update(
            {
                # Glue puts --extra-py-files on the path before anything else; zipimport
                # loads pure-Python packages from the zips as they are.
                "PYTHONPATH": os.pathsep.join(str(z) for z in zips),
                "PYTHONUNBUFFERED": "1",
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_ENDPOINT_URL": endpoint_url(),
            }
        )
        return env

    def _execute(self, script: Path, zips: list[Path], workdir: Path) -> tuple[str, str | None]:
        """Run the script to its end or its timeout: (final state, ErrorMessage)."""
        argv = [
            sys.executable,
            str(script),
            *script_argv(self.job_name, self.run_id, self.arguments),
        ]
        out_path, err_path = workdir / "stdout.log", workdir / "stderr.log"
        timeout = self.timeout_minutes * SECONDS_PER_MINUTE
        with out_path.open("wb") as out, err_path.open("wb") as err:
            started = time.monotonic()
            self._process = subprocess.Popen(
                argv,
                cwd=workdir,
                env=self._env(zips),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                # Its own process group: a timeout or shutdown also stops Spark's JVM.
                start_new_session=True,
            )
            self._set_state("RUNNING")
            try:
                returncode = self._process.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                self.kill()
                returncode = self._process.wait()
                timed_out = True
            self.process_seconds = time.monotonic() - started
            self.execution_seconds = round(self.process_seconds)
        self.stdout = out_path.read_text(errors="replace")
        self.stderr = err_path.read_text(errors="replace")
        if timed_out:
            return "TIMEOUT", (
                f"Job run timed out after {self.timeout_minutes} minute(s); raise Timeout of "
                f"job {self.job_name} or of the run"
            )
        if returncode == 0:
            return "SUCCEEDED", None
        return "FAILED", last_error_line(self.stderr, returncode)

    def kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    def _save_logs(self) -> None:
        try:
            from moto.logs.models import logs_backends

            backend = logs_backends[self.account_id][self.region]
            now = int(time.time() * 1000)
            for group, text in ((OUTPUT_LOG_GROUP, self.stdout), (ERROR_LOG_GROUP, self.stderr)):
                backend.ensure_log_group(group)
                backend.ensure_log_stream(group, self.run_id)
                events = [{"timestamp": now, "message": line} for line in text.splitlines()]
                if events:
                    backend.put_log_events(group, self.run_id, events)
        except Exception:  # the run's outcome stands even when its logs cannot be stored
            log.exception("could not store the logs of glue job run %s", self.run_id)


# ---------------------------------------------------------------- moto patches


def start(job: Any, job_run: Any) -> LocalJobRun:
    """Run `job_run` of `job` (moto's FakeJob and FakeJobRun) in a background thread."""
    backend = job.backend
    local = LocalJobRun(
        account_id=backend.account_id,
        region=backend.region_name,
        job_name=job.name,
        run_id=job_run.job_run_id,
        script_location=job.command["ScriptLocation"],
        arguments=job_run.arguments or {},
        timeout_minutes=int(job_run.timeout or DEFAULT_TIMEOUT_MINUTES),
        glue_version=job.glue_version,
    )
    job_run._local = local
    with _running_lock:
        _running[local.run_id] = local
    threading.Thread(target=local.run, name=f"glue-{local.run_id[:15]}", daemon=True).start()
    return local


def stop_all() -> None:
    """Kill every running job's process group (at exit: they would outlive the server)."""
    with _running_lock:
        runs = list(_running.values())
    for run in runs:
        run.kill()


def runs_script(job: Any) -> bool:
    command = job.command or {}
    return str(command.get("ScriptLocation", "")).startswith("s3://")


def eval_sync_without_callback(
    self: Any,
    env: Any,
    resource_runtime_part: Any,
    normalised_parameters: dict,
    state_credentials: Any,
) -> None:
    """StateTaskServiceGlue._eval_integration_pattern for its one pattern, `.sync`.

    moto's StateTaskServiceCallback._eval_integration_pattern ends with
    `callback_endpoint.interrupt_all()` in a finally block, but an integration without
    `.waitForTaskToken` (Glue's only pattern is `.sync`) has no endpoint, so every
    glue:startJobRun.sync task failed with States.Runtime "'NoneType' object has no attribute
    'interrupt_all'". This is moto's own flow without the endpoint (and so without heartbeats,
    which Glue runs do not send).
    """
    task_output = env.stack.pop()
    self.timeout.eval(env=env)
    timeout_seconds = env.stack.pop()
    env.stack.append(task_output)  # the sync resolver reads StartJobRun's output from the stack
    sync_resolver = self._build_sync_resolver(
        env=env,
        resource_runtime_part=resource_runtime_part,
        normalised_parameters=normalised_parameters,
        state_credentials=state_credentials,
    )
    outcome = self._eval_sync(
        env=env,
        sync_resolver=sync_resolver,
        timeout_seconds=timeout_seconds,
        callback_endpoint=None,
        heartbeat_endpoint=None,
    )
    env.stack.append(outcome)


# AWS::Glue::Job properties -> moto's GlueBackend.create_job arguments.
CFN_JOB_PROPERTIES = {
    "Role": "role",
    "Command": "command",
    "Description": "description",
    "LogUri": "log_uri",
    "ExecutionProperty": "execution_property",
    "DefaultArguments": "default_arguments",
    "NonOverridableArguments": "non_overridable_arguments",
    "Connections": "connections",
    "MaxRetries": "max_retries",
    "AllocatedCapacity": "allocated_capacity",
    "Timeout": "timeout",
    "MaxCapacity": "max_capacity",
    "SecurityConfiguration": "security_configuration",
    "Tags": "tags",
    "NotificationProperty": "notification_property",
    "GlueVersion": "glue_version",
    "NumberOfWorkers": "number_of_workers",
    "WorkerType": "worker_type",
    "ExecutionClass": "execution_class",
}
_cfn_model: Any = None  # moto finds models through __subclasses__ (weak): keep the class alive


def put_job_from_cfn(account_id: str, region: str, name: str, properties: dict[str, Any]) -> None:
    """Create or replace job `name` as AWS::Glue::Job `properties` describe it, keeping its runs."""
    from moto.glue.models import glue_backends

    backend = glue_backends[account_id][region]
    arguments = {arg: properties.get(prop) for prop, arg in CFN_JOB_PROPERTIES.items()}
    previous = backend.jobs.get(name)
    backend.create_job(
        name=name, code_gen_configuration_nodes=None, source_control_details=None, **arguments
    )
    if previous is not None:
        backend.jobs[name].job_runs = previous.job_runs


def _register_cfn_job() -> None:
    """AWS::Glue::Job for the local cloud's CloudFormation: moto 5.2.5 has no model for it and
    skips the resource with a warning, so a deployed stack had no ETL job."""
    global _cfn_model
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel

    class GlueJobStackResource(CloudFormationModel):
        def __init__(self, name: str) -> None:
            self.name = name

        @property
        def physical_resource_id(self) -> str:
            return self.name  # Ref returns the job name

        @staticmethod
        def cloudformation_name_type() -> str:
            return "Name"

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::Glue::Job"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return False

        @classmethod
        def create_from_cloudformation_json(  # type: ignore[override]
            cls,
            resource_name: str,
            cloudformation_json: Any,
            account_id: str,
            region_name: str,
            **kwargs: Any,
        ) -> GlueJobStackResource:
            properties = cloudformation_json.get("Properties", {})
            put_job_from_cfn(account_id, region_name, resource_name, properties)
            return cls(resource_name)

        @classmethod
        def update_from_cloudformation_json(  # type: ignore[override]
            cls,
            original_resource: Any,
            new_resource_name: str,
            cloudformation_json: Any,
            account_id: str,
            region_name: str,
        ) -> GlueJobStackResource:
            properties = cloudformation_json.get("Properties", {})
            name = properties.get("Name", original_resource.name)
            if name != original_resource.name:  # a new name replaces the job
                cls.delete_from_cloudformation_json(
                    original_resource.name, cloudformation_json, account_id, region_name
                )
            put_job_from_cfn(account_id, region_name, name, properties)
            return cls(name)

        @classmethod
        def delete_from_cloudformation_json(  # type: ignore[override]
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
        ) -> None:
            from moto.glue.models import glue_backends

            glue_backends[account_id][region_name].delete_job(resource_name)

    _cfn_model = GlueJobStackResource
    # moto caches its model list; a CloudFormation call before install() would hide this one.
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()


def _require(owner: Any, name: str) -> None:
    # Setting a module constant moto no longer reads would do nothing, silently.
    if not hasattr(owner, name):
        raise AttributeError(
            f"{owner.__name__}.{name} is gone: the moto upgrade changed what "
            "pipeline/localcloud/glue.py patches; update the patch and its tests"
        )


def install() -> None:
    from moto.glue.models import FakeJob, FakeJobRun
    from moto.moto_api._internal.managed_state_model import ManagedState
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback,
        state_task_service_glue,
    )

    _require(state_task_service_callback, "_DELAY_SECONDS_SYNC_CONDITION_CHECK")
    state_task_service_callback._DELAY_SECONDS_SYNC_CONDITION_CHECK = SYNC_POLL_SECONDS
    glue_task = state_task_service_glue.StateTaskServiceGlue
    glue_task._eval_integration_pattern = eval_sync_without_callback
    if getattr(FakeJob.start_job_run, "_localcloud", False):
        return

    moto_start_job_run = FakeJob.start_job_run
    moto_as_dict = FakeJobRun.as_dict
    moto_status = ManagedState.status

    def start_job_run(self: Any, *args: Any, **kwargs: Any) -> str:
        run_id = moto_start_job_run(self, *args, **kwargs)
        if runs_script(self):
            job_run = next(run for run in self.job_runs if run.job_run_id == run_id)
            start(self, job_run)
        return run_id

    def get_status(self: Any) -> str | None:
        local = self.__dict__.get("_local")
        return local.state if local is not None else moto_status.fget(self)

    def set_status(self: Any, value: str) -> None:
        local = self.__dict__.get("_local")
        if local is not None:
            local.state = value
        else:
            moto_status.fset(self, value)

    def as_dict(self: Any) -> dict[str, Any]:
        result = moto_as_dict(self)
        local = self.__dict__.get("_local")
        if local is not None:
            result.pop("CompletedOn", None)  # AWS leaves it out until the run ends
            result.update(local.fields())
        return result

    _register_cfn_job()
    start_job_run._localcloud = True  # type: ignore[attr-defined]
    FakeJob.start_job_run = start_job_run
    FakeJobRun.status = property(get_status, set_status)
    FakeJobRun.as_dict = as_dict
    atexit.register(stop_all)
