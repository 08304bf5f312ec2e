"""`mlops run`: start a retraining execution, follow it, and summarise what happened.

The execution name is derived from the commit and the data version (the same content
hash the manifest Lambda computes), so re-running the same commit on the same data
reports the existing execution instead of training twice. `follow` prints each state
as it starts and ends; `summarize` reads the execution history into a RunSummary
that renders for a terminal, as JSON, or as Markdown with the path taken drawn in
Mermaid (for $GITHUB_STEP_SUMMARY).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import ProjectConfig

POLL_SECONDS = 0.3
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
OUTCOME_STATES = {
    "NotifyPromoted": "promoted",
    "NotifyRejected": "rejected",
    "NotifyFailure": "failed",
}


class RunError(Exception):
    """A run that could not start or be followed; the message says how to fix it."""


@dataclass
class RunSummary:
    execution_arn: str
    execution_name: str
    status: str
    outcome: str  # promoted | rejected | duplicate | failed | running
    duration_s: float | None = None
    data_prefix: str | None = None
    data_version: str | None = None
    commit: str | None = None
    metric: str | None = None
    candidate_value: float | None = None
    production_value: float | None = None
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    decision: str | None = None
    reason: str | None = None
    model_version: int | None = None
    production_version: int | None = None
    failed_state: str | None = None
    error: str | None = None
    cause: str | None = None
    path: list[str] = field(default_factory=list)
    console_url: str | None = None
    existing: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome in ("promoted", "rejected", "duplicate")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clients(cfg: ProjectConfig):
    import boto3

    session = boto3.Session(region_name=cfg.settings.project.region)
    return session.client("stepfunctions"), session.client("s3")


def git_commit(repo: Path | None = None) -> str:
    """The short HEAD commit, marked dirty (with a hash of the changes) when the tree has edits."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "--short=12", "HEAD")
        diff = git("diff", "HEAD")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "nogit"
    if not diff:
        return sha
    import hashlib

    return f"{sha}-dirty{hashlib.sha256(diff.encode()).hexdigest()[:6]}"


def state_machine_arn(cfg: ProjectConfig, sfn) -> str:
    name = cfg.names["state_machine"]
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return machine["stateMachineArn"]
    raise RunError(f"state machine {name} is not deployed. Fix: run `mlops deploy --env {cfg.env}`")


def data_version(cfg: ProjectConfig, s3, prefix: str) -> str:
    from lambdas import manifest

    objects = manifest.list_objects(s3, cfg.names["bucket"], prefix)
    if not objects:
        raise RunError(
            f"no data under s3://{cfg.names['bucket']}/{prefix}. Fix: upload a drop first "
            f"(`mlops data push DIR --env {cfg.env}`) or pass another --data"
        )
    return manifest.data_version(prefix, objects)


def execution_name(commit: str, version: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{commit}-{version}")[:80]


LATEST = "latest"


def latest_drop(cfg: ProjectConfig, s3) -> str:
    """The drop under raw/ that received the newest object: what a scheduled retraining reads."""
    from pipeline.config import DATA_PREFIXES

    raw = DATA_PREFIXES["raw"]
    newest: tuple[Any, str] | None = None
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=cfg.names["bucket"], Prefix=raw)
    for page in pages:
        for obj in page.get("Contents", []):
            drop, _, file = obj["Key"][len(raw) :].partition("/")
            if file and (newest is None or obj["LastModified"] > newest[0]):
                newest = (obj["LastModified"], drop)
    if newest is None:
        raise RunError(
            f"no data drop under s3://{cfg.names['bucket']}/{raw}. Fix: upload one first "
            f"(`mlops data push DIR --env {cfg.env}`)"
        )
    return f"{raw}{newest[1]}/"


def normalise_prefix(prefix: str) -> str:
    prefix = prefix.removeprefix("s3://").strip("/")
    if not prefix.startswith("raw/"):
        prefix = f"raw/{prefix}"
    return prefix + "/"


def start(cfg: ProjectConfig, data_prefix: str, commit: str | None = None) -> tuple[str, bool]:
    """Start (or find) the execution for this commit and data; returns (arn, started_now)."""
    from botocore.exceptions import ClientError

    sfn, s3 = _clients(cfg)
    prefix = latest_drop(cfg, s3) if data_prefix == LATEST else normalise_prefix(data_prefix)
    machine = state_machine_arn(cfg, sfn)
    commit = commit or git_commit()
    name = execution_name(commit, data_version(cfg, s3, prefix))
    arn = machine.replace(":stateMachine:", ":execution:") + f":{name}"
    try:
        sfn.describe_execution(executionArn=arn)
        return arn, False
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionDoesNotExist":
            raise
    payload = {"data_prefix": prefix, "commit": commit}
    try:
        sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(payload))
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":  # a concurrent twin won
            raise
        return arn, False
    return arn, True


def triggered_executions(
    cfg: ProjectConfig, prefix: str, since: float, timeout: float = 30
) -> list[str]:
    """Executions the S3 rule started for objects under `prefix` since `since` (epoch seconds),
    oldest first; waits until at least one appears."""
    sfn, _ = _clients(cfg)
    machine = state_machine_arn(cfg, sfn)
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine):
            for execution in page["executions"]:
                if execution["startDate"].timestamp() < since - 1:
                    continue
                data = json.loads(
                    sfn.describe_execution(executionArn=execution["executionArn"]).get("input")
                    or "{}"
                )
                if str(data.get("data_key", "")).startswith(prefix):
                    found.append((execution["startDate"], execution["executionArn"]))
        if found:
            return [arn for _, arn in sorted(found)]
        if time.monotonic() > deadline:
            raise RunError(
                f"no execution started within {timeout:.0f}s of the upload to {prefix}. Fix: check the "
                f"stack's {cfg.names['data_rule']} rule and the bucket's EventBridge setting"
            )
        time.sleep(POLL_SECONDS)


def upload_and_follow(
    cfg: ProjectConfig,
    drop: Path,
    on_state: Callable[[str, str, float | None], None] | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> RunSummary:
    """Upload a drop as a user would; the bucket's rule starts the retraining, which we follow."""
    from pipeline import data

    since = time.time()
    prefix, _ = data.push(cfg, drop)
    say(f"uploaded {drop} to s3://{cfg.names['bucket']}/{prefix}")
    arn = triggered_executions(cfg, prefix, since)[0]
    say(f"the upload started execution {arn.rsplit(':', 1)[-1]}")
    return follow(cfg, arn, on_state)


def history(sfn, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(
        executionArn=arn, includeExecutionData=True
    ):
        events.extend(page["events"])
    return events


def follow(
    cfg: ProjectConfig,
    arn: str,
    on_state: Callable[[str, str, float | None], None] | None = None,
    timeout: float = 7200,
) -> RunSummary:
    """Wait for the execution to end, reporting ("entered"|"exited", state, seconds)."""
    sfn, _ = _clients(cfg)
    seen = 0
    entered_at: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = sfn.describe_execution(executionArn=arn)["status"]
            events = history(sfn, arn)
        except Exception as exc:  # the endpoint went away mid-run
            raise _lost_contact(sfn, arn, exc) from None
        for event in events[seen:]:
            when = event["timestamp"].timestamp()
            if "stateEnteredEventDetails" in event:
                name = event["stateEnteredEventDetails"]["name"]
                entered_at[name] = when
                if on_state:
                    on_state("entered", name, None)
            elif "stateExitedEventDetails" in event:
                name = event["stateExitedEventDetails"]["name"]
                if on_state:
                    on_state("exited", name, when - entered_at.get(name, when))
        seen = len(events)
        if status in TERMINAL:
            try:
                return summarize(cfg, arn, sfn)
            except Exception as exc:
                raise _lost_contact(sfn, arn, exc) from None
        if time.monotonic() > deadline:
            raise RunError(f"{arn} still running after {timeout:.0f}s")
        time.sleep(POLL_SECONDS)


def _lost_contact(sfn, arn: str, exc: Exception) -> Exception:
    """A one-line RunError for an endpoint that stopped answering or forgot the execution
    (a local cloud keeps nothing across a restart); `exc` itself when it is something else."""
    from botocore.exceptions import BotoCoreError, ClientError

    endpoint = sfn.meta.endpoint_url
    if isinstance(exc, ClientError) and exc.response["Error"]["Code"] in (
        "ExecutionDoesNotExist",
        "StateMachineDoesNotExist",
    ):
        return RunError(
            f"Step Functions at {endpoint} no longer knows execution {arn}: it was restarted "
            "and lost its state (a local cloud keeps none across restarts) or the execution "
            "was deleted. Fix: `mlops deploy`, then start the run again"
        )
    if isinstance(exc, BotoCoreError | ClientError):
        detail = " ".join(str(exc).split())
        return RunError(
            f"lost contact with Step Functions at {endpoint} while following {arn}: {detail}. "
            "Fix: check the endpoint (is the local cloud up? `mlops local status`), then follow "
            "the run again with the same `mlops run` command"
        )
    return exc


def _data_at(events: list[dict[str, Any]], states: set[str]) -> tuple[str | None, dict[str, Any]]:
    """(state, input) of the last entered state among `states`."""
    for event in reversed(events):
        details = event.get("stateEnteredEventDetails")
        if details and details["name"] in states:
            return details["name"], json.loads(details.get("input") or "{}")
    return None, {}


def summarize(cfg: ProjectConfig, arn: str, sfn=None) -> RunSummary:
    sfn = sfn or _clients(cfg)[0]
    described = sfn.describe_execution(executionArn=arn)
    events = history(sfn, arn)
    status = described["status"]
    path = [
        e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
    ]
    notifier, data = _data_at(events, set(OUTCOME_STATES))
    if status == "RUNNING":
        outcome = "running"
    elif status != "SUCCEEDED":
        outcome = "failed"
    elif "Duplicate" in path:
        outcome = "duplicate"
    else:
        outcome = OUTCOME_STATES.get(notifier or "", "failed")
    if not data:  # failed before any notification: take the last state's input
        _, data = _data_at(events, set(path))
    stopped = described.get("stopDate")
    region = cfg.settings.project.region
    gate = data.get("gate") or {}
    manifest = data.get("manifest") or {}
    registry = data.get("registry") or {}
    promotion = data.get("promotion") or {}
    error = data.get("error") or {}
    if outcome == "duplicate":
        _, data = _data_at(events, {"Duplicate"})
        error = {}
    summary = RunSummary(
        execution_arn=arn,
        execution_name=described["name"],
        status=status,
        outcome=outcome,
        duration_s=round((stopped - described["startDate"]).total_seconds(), 2)
        if stopped
        else None,
        data_prefix=manifest.get("data_prefix")
        or json.loads(described.get("input") or "{}").get("data_prefix"),
        data_version=manifest.get("data_version"),
        commit=manifest.get("commit") or json.loads(described.get("input") or "{}").get("commit"),
        metric=gate.get("metric"),
        candidate_value=gate.get("candidate_value"),
        production_value=gate.get("production_value"),
        candidate_metrics=gate.get("candidate_metrics") or {},
        decision=("promote" if gate.get("promote") else "reject") if gate else None,
        reason=(
            _short_cause((data.get("duplicate") or {}).get("Cause"))
            if outcome == "duplicate"
            else promotion.get("reason")
            if promotion and not promotion.get("promoted")
            else gate.get("reason")
        ),
        model_version=registry.get("version"),
        production_version=gate.get("production_version"),
        failed_state=(data.get("failed_state") or {}).get("state"),
        error=error.get("Error") or described.get("error"),
        cause=_short_cause(error.get("Cause") or described.get("cause")),
        path=path,
        console_url=f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{arn}",
    )
    return summary


def _short_cause(cause: str | None) -> str | None:
    """The readable part of a Step Functions Cause (often JSON from the failed service)."""
    if not cause:
        return None
    try:
        doc = json.loads(cause)
    except (TypeError, ValueError):
        return cause[:500]
    if isinstance(doc, dict):
        for key in ("errorMessage", "ErrorMessage", "FailureReason", "message", "Message"):
            if doc.get(key):
                return str(doc[key])[:500]
    return cause[:500]


# --- rendering ---------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def text(summary: RunSummary) -> str:
    lines = [
        f"execution  {summary.execution_name} ({summary.status}"
        + (f", {summary.duration_s:.1f}s)" if summary.duration_s is not None else ")"),
        f"outcome    {summary.outcome.upper()}"
        + (" (existing execution, not started again)" if summary.existing else ""),
        f"data       {summary.data_prefix} (version {summary.data_version}), commit {summary.commit}",
    ]
    if summary.metric:
        lines.append(
            f"{summary.metric:<10} candidate {_fmt(summary.candidate_value)} vs production "
            f"{_fmt(summary.production_value)}"
            + (f" (v{summary.production_version})" if summary.production_version else " (none yet)")
        )
    if summary.decision:
        lines.append(f"gate       {summary.decision}: {summary.reason}")
    if summary.outcome == "duplicate":
        lines.append(f"duplicate  {summary.reason}")
    if summary.model_version is not None:
        lines.append(
            f"model      v{summary.model_version}"
            + (
                " is now in production"
                if summary.outcome == "promoted"
                else " recorded, not deployed"
            )
        )
    if summary.outcome == "failed":
        lines.append(
            f"failed in  {summary.failed_state or '?'}: {summary.error or ''} {summary.cause or ''}".rstrip()
        )
    return "\n".join(lines)


def markdown(summary: RunSummary, definition: dict[str, Any] | None = None) -> str:
    from pipeline import graph

    icon = {"promoted": "✅", "rejected": "⏸️", "failed": "❌"}.get(summary.outcome, "⏳")
    rows = [
        ("Outcome", f"{icon} **{summary.outcome}**"),
        ("Execution", f"[{summary.execution_name}]({summary.console_url})"),
        ("Duration", f"{summary.duration_s:.1f} s" if summary.duration_s is not None else "-"),
        ("Data", f"`{summary.data_prefix}` (version `{summary.data_version}`)"),
        ("Commit", f"`{summary.commit}`"),
    ]
    if summary.metric:
        rows.append((f"Candidate {summary.metric}", _fmt(summary.candidate_value)))
        rows.append((f"Production {summary.metric}", _fmt(summary.production_value)))
    if summary.decision:
        rows.append(("Gate", f"{summary.decision}: {summary.reason}"))
    if summary.model_version is not None:
        rows.append(("Model version", f"v{summary.model_version}"))
    if summary.outcome == "failed":
        rows.append(
            ("Failed state", f"{summary.failed_state}: {summary.error} {summary.cause or ''}")
        )
    body = ["## Retraining run", "", "| | |", "|---|---|"]
    body += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows]
    if summary.candidate_metrics:
        body += ["", "| metric | candidate |", "|---|---|"]
        body += [f"| {k} | {v:.4f} |" for k, v in sorted(summary.candidate_metrics.items())]
    if definition:
        body += [
            "",
            "### Path taken",
            "",
            "```mermaid",
            graph.flowchart(definition, set(summary.path)).rstrip(),
            "```",
        ]
    return "\n".join(body) + "\n"
