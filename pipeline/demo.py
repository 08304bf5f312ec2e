"""`mlops demo`: the retraining story on the embedded local cloud, told in the terminal.

It starts a local cloud in this process, bootstraps and deploys the dev environment
with the same code paths as AWS, then:
  1. the first data drop trains model v1, which is promoted (there is no production yet);
  2. a larger, cleaner drop retrains; the new model is promoted only if it beats v1;
  3. a config change that makes the model worse is deployed and retrains: rejected,
     production unchanged;
  4. a corrupt drop fails in the ETL: the failure is notified, production unchanged;
  5. the production endpoint serves a prediction;
and ends with the model registry. Every notification published on the topic is shown.
The local cloud and every process it started stop when the demo ends.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from pipeline.config import ProjectConfig, load_config

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
# The config change of chapter 3: a deliberately weak model.
WORSE_HYPERPARAMETERS = {"model": "random_forest", "n_estimators": 1, "max_depth": 1, "seed": 42}


class DemoError(Exception):
    """A chapter of the story did not end as the story says it must."""


def _say(text: str = "") -> None:
    print(text, flush=True)


def _chapter(number: int, title: str) -> None:
    _say()
    _say(f"=== {number}. {title} " + "=" * max(0, 60 - len(title)))


class Inbox:
    """An SQS queue subscribed to the topic, so the demo can show what was notified."""

    def __init__(self, cfg: ProjectConfig):
        import boto3

        session = boto3.Session(region_name=cfg.settings.project.region)
        self.sqs = session.client("sqs")
        sns = session.client("sns")
        self.url = self.sqs.create_queue(QueueName=f"{cfg.names['topic']}-demo-inbox")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        topic = next(
            t["TopicArn"]
            for t in sns.list_topics()["Topics"]
            if t["TopicArn"].endswith(f":{cfg.names['topic']}")
        )
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    def show(self) -> list[str]:
        subjects = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return subjects
            for message in messages:
                body = json.loads(message["Body"])
                subjects.append(body.get("Subject", ""))
                _say(f"  notified: {body.get('Subject')}")
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])


def _retrain(cfg: ProjectConfig, drop: str) -> object:
    """Upload a drop; the bucket's EventBridge rule starts the retraining, which we follow."""
    from pipeline import cli, run

    summary = run.upload_and_follow(
        cfg, SAMPLE / drop, cli._print_state, say=lambda message: _say(f"  {message}")
    )
    _say(run.text(summary))
    return summary


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoError(message)


def _production(cfg: ProjectConfig) -> int | None:
    from pipeline import registry

    return registry.list_models(cfg)["production"]


def _worse_project(cfg: ProjectConfig, workdir: Path) -> ProjectConfig:
    """A copy of the project's config with the weak model, rendered like a reviewed change."""
    from pipeline import workflow

    shutil.copytree(cfg.root / "config", workdir / "config")
    (workdir / "src").symlink_to(cfg.root / "src")  # same code, changed config
    (workdir / "pipeline").mkdir()
    base = workdir / "config" / "project.yaml"
    doc = yaml.safe_load(base.read_text())
    doc["training"]["hyperparameters"] = WORSE_HYPERPARAMETERS
    base.write_text(yaml.safe_dump(doc, sort_keys=False))
    overlay = workdir / "config" / "env" / f"{cfg.env}.yaml"
    overlay_doc = yaml.safe_load(overlay.read_text()) or {}
    overlay_doc.get("training", {}).pop("hyperparameters", None)
    overlay.write_text(yaml.safe_dump(overlay_doc, sort_keys=False))
    worse = load_config(cfg.env, workdir / "config")
    workflow.asl_path(worse).write_text(workflow.render(worse))
    return worse


def _sample_rows(cfg: ProjectConfig, count: int = 3) -> tuple[str, list[str]]:
    features = cfg.settings.data.feature_columns
    label = cfg.settings.data.label_column
    with (SAMPLE / "drop-003" / "data.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if all(r[f] for f in features)][:count]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(features)
    writer.writerows([[r[f] for f in features] for r in rows])
    return out.getvalue(), [r[label] for r in rows]


def story(cfg: ProjectConfig, commit: str = "demo") -> None:
    from pipeline import cli, data, deploy

    _chapter(0, "Deploy the stack to the local cloud")
    deploy.bootstrap(cfg, "local/demo", progress=lambda m: _say(f"  {m}"))
    result = deploy.deploy(cfg, progress=lambda m: _say(f"  {m}"), commit=commit)
    _say(f"  {result.stack}: {result.status}")
    inbox = Inbox(cfg)

    _chapter(1, "First data drop: model v1 goes to production")
    first = _retrain(cfg, "drop-001")
    inbox.show()
    _expect(first.outcome == "promoted", f"the first model must be promoted, got {first.outcome}")

    _chapter(2, "A new drop lands: retrain, promote only if better")
    second = _retrain(cfg, "drop-002")
    inbox.show()
    _expect(second.ok, f"the retraining on drop-002 failed: {second.cause}")
    production = _production(cfg)

    _chapter(3, "A config change makes the model worse: rejected")
    with tempfile.TemporaryDirectory() as tmp:
        worse = _worse_project(cfg, Path(tmp))
        _say(f"  training.hyperparameters -> {WORSE_HYPERPARAMETERS}; rendered and deployed")
        deploy.deploy(worse, progress=lambda m: _say(f"  {m}"), commit=f"{commit}-weak")
        third = _retrain(worse, "drop-003")
    inbox.show()
    _expect(third.outcome == "rejected", f"the weak model must be rejected, got {third.outcome}")
    _expect(_production(cfg) == production, "production changed although the model was rejected")
    _say("  reverting the config change (redeploying the reviewed config)")
    deploy.deploy(cfg, progress=lambda m: _say(f"  {m}"), commit=commit)

    _chapter(4, "A corrupt drop: the ETL fails, production stays")
    fourth = _retrain(cfg, "drop-corrupt")
    inbox.show()
    _expect(
        fourth.outcome == "failed" and fourth.failed_state == "ETL",
        "the corrupt drop must fail in the ETL",
    )
    _expect(_production(cfg) == production, "production changed although the run failed")

    _chapter(5, "The production endpoint serves predictions")
    body, truth = _sample_rows(cfg)
    answer = json.loads(data.predict(cfg, body))
    for prediction, actual in zip(answer["predictions"], truth, strict=True):
        _say(f"  predicted {prediction['label']:<10} actual {actual}")

    _chapter(6, "The model registry")
    cli.main(["models", "--env", cfg.env])


def main(port: int | None = None, say: Callable[[str], None] | None = None) -> int:
    from pipeline.localcloud.server import LocalCloud

    cfg = load_config("dev")
    _say("Retraining story on the embedded local cloud (no AWS account, no Docker)")
    with LocalCloud(port=port, region=cfg.settings.project.region) as cloud:
        _say(f"local cloud at {cloud.url}")
        try:
            story(cfg)
        except DemoError as exc:
            print(f"error: demo: {exc}", file=sys.stderr)
            return 1
    _say()
    _say("Done: the local cloud and everything it started have stopped.")
    return 0
