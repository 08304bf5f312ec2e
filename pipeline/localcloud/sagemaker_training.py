"""Training-job gap: CreateTrainingJob runs the job the way the script-mode container does.

A thread per job lays out an /opt/ml-like root in a temp dir
(input/data/<channel>/, input/config/{hyperparameters,resourceconfig,inputdataconfig}.json,
model/, output/data/, output/failure), copies each channel's S3 prefix and the
sagemaker_submit_directory tarball from S3, and runs `python <sagemaker_program> --key value ...`
in the unpacked code dir with the SM_* variables the sagemaker-training toolkit sets. The job
moves InProgress -> Completed | Failed | Stopped through the SecondaryStatus steps SageMaker
reports; model/ and output/data/ are uploaded as <S3OutputPath>/<job>/output/{model,output}.tar.gz;
the final metrics come from the job's MetricDefinitions applied to its log, last match wins.

The log goes to CloudWatch Logs (/aws/sagemaker/TrainingJobs, stream <job>/algo-1-<epoch>) and to
<job root>/output.log; job roots live under WORK_ROOT until the local cloud stops.

The training image is not used: the script runs with this interpreter (the project's venv), with
the unpacked code first on sys.path, so the uploaded code and not the editable install runs.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pipeline.localcloud import sagemaker_aws

WORK_ROOT = Path(tempfile.gettempdir()) / "mlops-localcloud-sagemaker" / "training"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
HOST = "algo-1"
# DescribeTrainingJob's FailureReason holds at most 1024 characters.
FAILURE_REASON_LIMIT = 1024
# SageMaker sends SIGTERM on StopTrainingJob and kills the container if it lingers.
STOP_GRACE_SECONDS = 5
TERMINAL = ("Completed", "Failed", "Stopped")

STATUS_MESSAGES = {
    "Starting": "Preparing the instances for training",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopping": "Stopping the training job",
    "Stopped": "Training job stopped",
    "MaxRuntimeExceeded": "Job stopped because it exceeded the maximum allowed runtime",
}


class TrainingSetupError(Exception):
    """The job could not be staged (bad channel, missing code); becomes a ClientError reason."""


# --- pure: the container contract ---------------------------------------------------------------


def decode_hyperparameters(raw: Mapping[str, str] | None) -> dict[str, Any]:
    """CreateTrainingJob values are strings; the toolkit json-decodes each, keeping non-JSON as is."""
    decoded = {}
    for key, value in (raw or {}).items():
        try:
            decoded[key] = json.loads(value)
        except (TypeError, ValueError):
            decoded[key] = value
    return decoded


def user_hyperparameters(decoded: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in decoded.items() if not k.startswith("sagemaker_")}


def _arg_value(value: Any) -> str:
    if isinstance(value, Mapping):  # the toolkit passes a dict as k=v,k=v
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    return value if isinstance(value, str) else json.dumps(value)


def cli_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """`--key value` pairs in key order, as sagemaker_training.mapping.to_cmd_args builds them."""
    args = []
    for key in sorted(hyperparameters):
        args += [f"--{key}" if len(key) > 1 else f"-{key}", _arg_value(hyperparameters[key])]
    return args


def final_metrics(
    definitions: Sequence[Mapping[str, str]] | None, lines: Sequence[str], timestamp: Any
) -> list[dict[str, Any]]:
    """FinalMetricDataList: for each MetricDefinition, the last value its regex finds in the log."""
    metrics = []
    for definition in definitions or []:
        pattern = re.compile(definition["Regex"])
        value = None
        for line in lines:
            for match in pattern.finditer(line):
                try:
                    value = float(match.group(1) if pattern.groups else match.group(0))
                except (IndexError, ValueError):
                    continue
        if value is not None and math.isfinite(value):
            metrics.append(
                {"MetricName": definition["Name"], "Value": value, "Timestamp": timestamp}
            )
    return metrics


def failure_reason(failure_text: str | None, stderr_lines: Sequence[str], returncode: int) -> str:
    """What SageMaker reports for an algorithm failure: output/failure, else the last stderr line."""
    detail = (failure_text or "").strip()
    if not detail:
        detail = next((line.strip() for line in reversed(stderr_lines) if line.strip()), "")
    if not detail:
        detail = f"the training program exited with code {returncode} and printed no error"
    return truncate(f"AlgorithmError: {detail}")


def truncate(reason: str) -> str:
    if len(reason) <= FAILURE_REASON_LIMIT:
        return reason
    return reason[: FAILURE_REASON_LIMIT - 3] + "..."


@dataclass(frozen=True)
class Layout:
    """The container's /opt/ml tree, rooted in a temp dir."""

    root: Path

    @property
    def input_data(self) -> Path:
        return self.root / "input" / "data"

    @property
    def input_config(self) -> Path:
        return self.root / "input" / "config"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def output_data(self) -> Path:
        return self.root / "output" / "data"

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def log(self) -> Path:
        return self.root / "output.log"

    def channel(self, name: str) -> Path:
        return self.input_data / name

    def create(self) -> None:
        for path in (self.input_data, self.input_config, self.model, self.output_data, self.code):
            path.mkdir(parents=True, exist_ok=True)
        (self.output / "intermediate").mkdir(exist_ok=True)


def resource_config(job_resource_config: Mapping[str, Any] | None) -> dict[str, Any]:
    instance_type = (job_resource_config or {}).get("InstanceType", "local")
    return {
        "current_host": HOST,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": [HOST],
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": instance_type,
                "hosts": [HOST],
            }
        ],
        "network_interface_name": "eth0",
    }


def input_data_config(channels: Sequence[Mapping[str, Any]] | None, mode: str) -> dict[str, Any]:
    config = {}
    for channel in channels or []:
        source = channel.get("DataSource", {}).get("S3DataSource", {})
        config[channel["ChannelName"]] = {
            "TrainingInputMode": channel.get("InputMode", mode),
            "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
            **({"ContentType": channel["ContentType"]} if "ContentType" in channel else {}),
        }
    return config


def training_env(
    layout: Layout,
    hyperparameters: Mapping[str, Any],
    channels: Sequence[str],
    program: str,
    submit_dir: str,
    resources: Mapping[str, Any],
    data_config: Mapping[str, Any],
    job_name: str,
) -> dict[str, str]:
    """The SM_* variables the sagemaker-training toolkit gives the user script."""
    module = program[:-3] if program.endswith(".py") else program
    user_args = cli_args(hyperparameters)
    env = {
        "SM_MODEL_DIR": str(layout.model),
        "SM_INPUT_DIR": str(layout.root / "input"),
        "SM_INPUT_CONFIG_DIR": str(layout.input_config),
        "SM_OUTPUT_DIR": str(layout.output),
        "SM_OUTPUT_DATA_DIR": str(layout.output_data),
        "SM_OUTPUT_INTERMEDIATE_DIR": str(layout.output / "intermediate"),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps(dict(hyperparameters), sort_keys=True),
        "SM_CURRENT_HOST": HOST,
        "SM_HOSTS": json.dumps([HOST]),
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
        "SM_NETWORK_INTERFACE_NAME": "eth0",
        "SM_MODULE_NAME": module,
        "SM_USER_ENTRY_POINT": program,
        "SM_MODULE_DIR": submit_dir,
        "SM_USER_ARGS": json.dumps(user_args),
        "SM_RESOURCE_CONFIG": json.dumps(resources),
        "SM_INPUT_DATA_CONFIG": json.dumps(data_config),
        "SM_LOG_LEVEL": "20",
        "TRAINING_JOB_NAME": job_name,
    }
    for name in channels:
        env[f"SM_CHANNEL_{name.upper()}"] = str(layout.channel(name))
    for key, value in hyperparameters.items():
        env[f"SM_HP_{key.upper()}"] = _arg_value(value)
    env["SM_TRAINING_ENV"] = json.dumps(
        {
            "job_name": job_name,
            "hyperparameters": dict(hyperparameters),
            "channel_input_dirs": {name: str(layout.channel(name)) for name in channels},
            "model_dir": str(layout.model),
            "output_data_dir": str(layout.output_data),
            "output_dir": str(layout.output),
            "current_host": HOST,
            "hosts": [HOST],
            "module_name": module,
            "module_dir": submit_dir,
            "user_entry_point": program,
            "num_cpus": os.cpu_count() or 1,
            "num_gpus": 0,
        },
        sort_keys=True,
    )
    return env


# --- the job thread ------------------------------------------------------------------------------


@dataclass
class JobRun:
    """Runtime state of one job, kept off the moto object so it never reaches a response."""

    job: Any  # moto's FakeTrainingJob
    region: str
    layout: Layout
    process: subprocess.Popen | None = None
    stop_requested: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None
    created: float = field(default_factory=time.time)


_runs: dict[str, JobRun] = {}
_runs_lock = threading.Lock()


def _now():
    from moto.core.utils import utcnow

    return utcnow()


def _transition(job, status: str, message: str | None = None, final: bool = False) -> None:
    now = _now()
    transitions = [dict(t) for t in job.secondary_status_transitions or []]
    if transitions and "EndTime" not in transitions[-1]:
        transitions[-1]["EndTime"] = now
    step = {"Status": status, "StartTime": now, "StatusMessage": message or STATUS_MESSAGES[status]}
    if final:
        step["EndTime"] = now
    transitions.append(step)
    # Replace, never mutate: a request thread may be serializing the old list right now.
    job.secondary_status_transitions = transitions
    job.secondary_status = status
    job.last_modified_time = now


def prepare_job(job) -> None:
    """Reset what moto's FakeTrainingJob fakes (Completed, a made-up metric) to a fresh job."""
    now = _now()
    job.training_job_status = "InProgress"
    job.secondary_status = "Starting"
    job.secondary_status_transitions = [
        {"Status": "Starting", "StartTime": now, "StatusMessage": STATUS_MESSAGES["Starting"]}
    ]
    job.final_metric_data_list = []
    job.model_artifacts = None  # set once model.tar.gz is really in S3
    job.training_start_time = None
    job.training_end_time = None
    # Every attribute a later step sets exists from the start: the response is built from
    # vars(job), and a dict growing while a request thread iterates it would fail that request.
    job.failure_reason = None
    job.training_time_in_seconds = None
    job.billable_time_in_seconds = None


def start(job, region: str, algorithm_specification: Mapping[str, Any]) -> None:
    # moto replaces the job's MetricDefinitions with a sample; the caller's are the real ones.
    job.algorithm_specification = copy.deepcopy(dict(algorithm_specification or {}))
    prepare_job(job)
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"{job.training_job_name}-", dir=WORK_ROOT))
    run = JobRun(job=job, region=region, layout=Layout(root))
    run.thread = threading.Thread(
        target=_run, args=(run,), name=f"training-{job.training_job_name}", daemon=True
    )
    with _runs_lock:
        _runs[job.arn] = run
    run.thread.start()


def stop(job) -> bool:
    """StopTrainingJob: SIGTERM the script; False when the job is not running."""
    with _runs_lock:
        run = _runs.get(job.arn)
    if run is None or job.training_job_status != "InProgress":
        return False
    with run.lock:
        run.stop_requested = True
        job.training_job_status = "Stopping"
        _transition(job, "Stopping")
        if run.process and run.process.poll() is None:
            run.process.terminate()
    return True


def _stage(run: JobRun, s3) -> tuple[str, str, dict[str, Any]]:
    """Download channels and code; returns (program, submit_dir, decoded hyperparameters)."""
    job, layout = run.job, run.layout
    layout.create()
    decoded = decode_hyperparameters(job.hyper_parameters)
    program = decoded.get("sagemaker_program")
    submit_dir = decoded.get("sagemaker_submit_directory")
    if not isinstance(program, str) or not program:
        raise TrainingSetupError(
            "hyperparameter sagemaker_program is missing; script mode needs the entry script's "
            'name, JSON-encoded (e.g. "\\"entry.py\\"")'
        )
    if not isinstance(submit_dir, str) or not submit_dir.startswith("s3://"):
        raise TrainingSetupError(
            f"hyperparameter sagemaker_submit_directory is {submit_dir!r}; it must be the s3:// "
            "URI of the code tar.gz, JSON-encoded"
        )
    mode = (job.algorithm_specification or {}).get("TrainingInputMode", "File")
    resources = resource_config(job.resource_config)
    data_config = input_data_config(job.input_data_config, mode)
    (layout.input_config / "hyperparameters.json").write_text(
        json.dumps(job.hyper_parameters or {}, indent=2)
    )
    (layout.input_config / "resourceconfig.json").write_text(json.dumps(resources, indent=2))
    (layout.input_config / "inputdataconfig.json").write_text(json.dumps(data_config, indent=2))

    for channel in job.input_data_config or []:
        name = channel["ChannelName"]
        source = channel.get("DataSource", {}).get("S3DataSource")
        if not source:
            raise TrainingSetupError(
                f"channel {name!r} has no S3DataSource; the local cloud stages S3 channels only"
            )
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise TrainingSetupError(
                f"channel {name!r} has S3DataType {source.get('S3DataType')!r}; the local cloud "
                "supports S3Prefix only"
            )
        uri = source.get("S3Uri", "")
        try:
            files = sagemaker_aws.download_prefix(s3, uri, layout.channel(name))
        except sagemaker_aws.S3UriError as exc:
            raise TrainingSetupError(f"channel {name!r}: {exc}") from None
        except s3.exceptions.NoSuchBucket:
            files = []
        if not files:
            bucket = uri[len("s3://") :].split("/", 1)[0]
            raise TrainingSetupError(
                f'Data download failed:No S3 objects found under S3 URL "{uri}" given in input '
                f"data source. Please ensure that the bucket exists in the selected region "
                f"({run.region}), that objects exist under that S3 prefix, and that the role "
                f'{job.role_arn} has "s3:ListBucket" permissions on bucket "{bucket}".'
            )
    try:
        sagemaker_aws.unpack_tar_gz(sagemaker_aws.read_object(s3, submit_dir), layout.code)
    except ClientError as exc:
        raise TrainingSetupError(
            f"cannot read the code tarball {submit_dir} (sagemaker_submit_directory): "
            f"{exc.response['Error']['Code']}; upload the training bundle before starting the job"
        ) from None
    except tarfile.TarError as exc:
        raise TrainingSetupError(
            f"the code tarball {submit_dir} (sagemaker_submit_directory) is not a tar.gz: {exc}"
        ) from None
    if not (layout.code / program).is_file():
        found = sorted(p.name for p in layout.code.iterdir())
        raise TrainingSetupError(
            f"sagemaker_program {program!r} is not in {submit_dir} (it holds {found})"
        )
    return program, submit_dir, decoded


def _pump(stream, name: str, lines: list, log_file, lock: threading.Lock) -> None:
    for raw in iter(stream.readline, ""):
        line = raw.rstrip("\n")
        with lock:
            lines.append((time.time(), name, line))
            log_file.write(line + "\n")
            log_file.flush()
    stream.close()


def _execute(run: JobRun, program: str, submit_dir: str, decoded: Mapping[str, Any]):
    """Run the script; returns (returncode, [(time, stream, line)], timed_out)."""
    job, layout = run.job, run.layout
    hyperparameters = user_hyperparameters(decoded)
    channels = [c["ChannelName"] for c in job.input_data_config or []]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        **sagemaker_aws.client_env(run.region),
        **training_env(
            layout,
            hyperparameters,
            channels,
            program,
            submit_dir,
            resource_config(job.resource_config),
            input_data_config(
                job.input_data_config,
                (job.algorithm_specification or {}).get("TrainingInputMode", "File"),
            ),
            job.training_job_name,
        ),
    }
    max_runtime = (job.stopping_condition or {}).get("MaxRuntimeInSeconds", 86400)
    lines: list[tuple[float, str, str]] = []
    lock = threading.Lock()
    with layout.log.open("a") as log_file:
        with run.lock:
            if run.stop_requested:
                return None, lines, False
            # -E ignores PYTHONPATH and friends: the unpacked code (cwd, the script's dir)
            # is what `import` finds first, as in the container.
            run.process = subprocess.Popen(
                [sys.executable, "-E", "-u", program, *cli_args(hyperparameters)],
                cwd=layout.code,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
            )
        pumps = [
            threading.Thread(target=_pump, args=(stream, name, lines, log_file, lock), daemon=True)
            for stream, name in ((run.process.stdout, "stdout"), (run.process.stderr, "stderr"))
        ]
        for pump in pumps:
            pump.start()
        timed_out = False
        try:
            run.process.wait(timeout=max_runtime)
        except subprocess.TimeoutExpired:
            timed_out = True
            run.process.terminate()
        try:
            run.process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            run.process.kill()
            run.process.wait()
        for pump in pumps:
            pump.join()
    return run.process.returncode, lines, timed_out


def _upload_outputs(job, layout: Layout, s3) -> None:
    base = f"{job.output_data_config['S3OutputPath'].rstrip('/')}/{job.training_job_name}/output"
    model_uri = f"{base}/model.tar.gz"
    sagemaker_aws.put_object(s3, model_uri, sagemaker_aws.tar_gz_dir(layout.model))
    sagemaker_aws.put_object(
        s3, f"{base}/output.tar.gz", sagemaker_aws.tar_gz_dir(layout.output_data)
    )
    job.model_artifacts = {"S3ModelArtifacts": model_uri}


def _finish(job, status: str, secondary: str, reason: str | None, started: float) -> None:
    now = _now()
    seconds = max(1, math.ceil(time.time() - started))
    job.training_time_in_seconds = seconds
    job.billable_time_in_seconds = seconds
    job.training_end_time = now
    job.failure_reason = reason
    message = STATUS_MESSAGES[secondary] + (f". Reason: {reason}" if reason else "")
    _transition(job, secondary, message if status == "Failed" else None, final=True)
    # Last: a poller that sees the terminal status must see everything set above.
    job.training_job_status = status


def _outcome(run: JobRun, s3, lines: list) -> tuple[str, str, str | None]:
    """Stage, train and upload; returns (TrainingJobStatus, SecondaryStatus, FailureReason)."""
    job, layout = run.job, run.layout
    try:
        program, submit_dir, decoded = _stage(run, s3)
        _transition(job, "Training")
        returncode, output, timed_out = _execute(run, program, submit_dir, decoded)
        lines.extend(output)
        job.final_metric_data_list = final_metrics(
            job.algorithm_specification.get("MetricDefinitions"), [x[2] for x in output], _now()
        )
        if returncode not in (0, None) and not (run.stop_requested or timed_out):
            failure = layout.output / "failure"
            text = failure.read_text(errors="replace") if failure.is_file() else None
            stderr = [line for _, stream, line in output if stream == "stderr"]
            return "Failed", "Failed", failure_reason(text, stderr, returncode)
        # A stopped job still uploads what the script saved, as SageMaker does.
        _transition(job, "Uploading")
        _upload_outputs(job, layout, s3)
        if timed_out:
            return "Stopped", "MaxRuntimeExceeded", None
        if run.stop_requested:
            return "Stopped", "Stopped", None
        return "Completed", "Completed", None
    except TrainingSetupError as exc:
        return "Failed", "Failed", truncate(f"ClientError: {exc}")
    except Exception as exc:  # a local-cloud bug must still end the job, never hang a .sync
        return "Failed", "Failed", truncate(f"InternalServerError: {type(exc).__name__}: {exc}")


def _run(run: JobRun) -> None:
    job = run.job
    lines: list[tuple[float, str, str]] = []
    _transition(job, "Downloading")
    started = time.time()
    job.training_start_time = _now()
    try:
        s3 = sagemaker_aws.client("s3", run.region)
        status, secondary, reason = _outcome(run, s3, lines)
    except Exception as exc:
        status, secondary = "Failed", "Failed"
        reason = truncate(f"InternalServerError: {type(exc).__name__}: {exc}")
    # Logs first: whoever sees the terminal status can read the whole log.
    _save_logs(run, lines, reason)
    _finish(job, status, secondary, reason, started)


def _save_logs(run: JobRun, lines: list[tuple[float, str, str]], reason: str | None) -> None:
    job = run.job
    stream = f"{job.training_job_name}/{HOST}-{int(run.created)}"
    events = [(at, line) for at, _, line in lines]
    if reason:
        events.append((time.time(), reason))
    try:
        logs = sagemaker_aws.client("logs", run.region)
        sagemaker_aws.put_logs(logs, LOG_GROUP, stream, events)
    except Exception as exc:  # the server may be stopping; the log file still has it all
        with run.layout.log.open("a") as log_file:
            log_file.write(f"[local cloud] could not write CloudWatch Logs: {exc}\n")


def shutdown() -> None:
    """Stop running jobs and remove their temp roots."""
    with _runs_lock:
        runs = list(_runs.values())
        _runs.clear()
    for run in runs:
        run.stop_requested = True
        if run.process and run.process.poll() is None:
            run.process.kill()
    for run in runs:
        if run.thread:
            run.thread.join(timeout=10)
        shutil.rmtree(run.layout.root, ignore_errors=True)
