"""`mlops dry-run`: retrain this checkout's code on sample data in a throwaway local cloud.

The pull-request check. It deploys this checkout (config, rendered ASL, step code) to an
in-process local cloud with the same code paths `mlops deploy` uses on AWS, uploads a data
drop, follows the retraining the upload starts, and reports the run. `--json FILE` keeps the
summary; `--compare BASE.json` puts it beside another dry-run's (the base branch's code on
the same data), so a reviewer sees what the change does to the metrics before merging.
Nothing outside the process is touched: the local cloud and what it started stop at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.config import ProjectConfig
from pipeline.run import RunError, RunSummary


def dry_run(
    cfg: ProjectConfig,
    drop: Path,
    commit: str,
    on_state: Callable[[str, str, float | None], None] | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> RunSummary:
    from pipeline import deploy, run
    from pipeline.localcloud.server import LocalCloud

    with LocalCloud(region=cfg.settings.project.region):
        # What an administrator does once per account, then what CI does on every merge.
        deploy.bootstrap(cfg, "local/dry-run", progress=say)
        deploy.deploy(cfg, progress=say, commit=commit)
        return run.upload_and_follow(cfg, drop, on_state, say)


def load_summary(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunError(
            f"{path}: not a dry-run summary ({exc}). Fix: pass the file `mlops dry-run --json` wrote"
        ) from None
    if not isinstance(data, dict) or "outcome" not in data:
        raise RunError(
            f"{path}: not a dry-run summary. Fix: pass the file `mlops dry-run --json` wrote"
        )
    return data


def _value(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def comparison_markdown(head: dict[str, Any], base: dict[str, Any] | None, drop: str) -> str:
    """A job-summary section: the pull request's metrics beside the base branch's."""
    lines = [f"## Dry run on `{drop}`", ""]
    head_label = f"this change (`{str(head.get('commit'))[:12]}`)"
    if base is None:
        lines += [
            "The base branch's code could not be dry-run (the job log says why: it may predate",
            "`mlops dry-run`, or fail on this data), so there is nothing to compare with.",
            "",
            f"| metric | {head_label} |",
            "|---|---|",
        ]
        lines += [
            f"| {name} | {_value(value)} |"
            for name, value in sorted(head.get("candidate_metrics", {}).items())
        ]
    else:
        base_label = f"base (`{str(base.get('commit'))[:12]}`)"
        lines += [f"| metric | {base_label} | {head_label} | change |", "|---|---|---|---|"]
        names = sorted(
            set(head.get("candidate_metrics", {})) | set(base.get("candidate_metrics", {}))
        )
        for name in names:
            new = head.get("candidate_metrics", {}).get(name)
            old = base.get("candidate_metrics", {}).get(name)
            change = "—" if new is None or old is None else f"{new - old:+.4f}"
            marker = " (gate metric)" if name == head.get("metric") else ""
            lines.append(f"| {name}{marker} | {_value(old)} | {_value(new)} | {change} |")
    lines += ["", f"Outcome of this change's run: **{head.get('outcome')}**"]
    if head.get("outcome") == "failed":
        lines.append(f"(failed in `{head.get('failed_state')}`: {head.get('cause')})")
    return "\n".join(lines) + "\n"
