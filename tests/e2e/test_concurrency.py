"""Concurrent retrainings on the local cloud: the best candidate wins, duplicates train once.

Four drops of the same patients with different amounts of label noise land at once, and for
each the deployed commit is also started by hand (`mlops run`) at the same moment; two of the
drops are uploaded again meanwhile, once under the same name and once under another. Every
trigger starts an execution, but each (commit, data) trains once: the others end as Duplicate.
The four trainings run side by side and race for production; whatever order they finish in,
production (the registry's PRODUCTION item and the endpoint) must end on the most accurate
candidate, and the registry must hold every candidate.
"""

from __future__ import annotations

import csv
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline import data, registry, run
from pipeline.demo import SAMPLE

from .conftest import REPO

pytestmark = pytest.mark.slow

# drop name -> fraction of labels flipped: more noise, a less accurate candidate.
NOISE = {"conc-clean": 0.0, "conc-noise10": 0.1, "conc-noise25": 0.25, "conc-noise40": 0.4}
# Uploaded a second time during the burst: one under its own name, one under another.
REUPLOADED = {"conc-noise10": "conc-noise10", "conc-clean": "conc-clean-copy"}
IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")


def noisy_drop(label_column: str, flip: float, out: Path, seed: int) -> Path:
    """The full clean sample drop with `flip` of its labels swapped; returns its folder."""
    with (SAMPLE / "drop-003" / "data.csv").open() as fh:
        reader = csv.DictReader(fh)
        columns, rows = reader.fieldnames or [], list(reader)
    classes = sorted({row[label_column] for row in rows})
    rng = random.Random(seed)
    for row in rng.sample(rows, round(len(rows) * flip)):
        row[label_column] = classes[1 - classes.index(row[label_column])]
    out.mkdir(parents=True)
    with (out / "data.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out


def deployed_commit(cfg) -> str:
    """The commit the stack was deployed from: what event-started runs train."""
    function = boto3.client("lambda").get_function_configuration(
        FunctionName=cfg.names["lambda_manifest"]
    )
    return function["Environment"]["Variables"]["CODE_VERSION"]


def _executions_since(cfg, since: float, count: int, timeout: float = 60) -> list[str]:
    """ARNs of the executions started since `since`, once there are at least `count`."""
    sfn = boto3.client("stepfunctions")
    machine = run.state_machine_arn(cfg, sfn)
    deadline = time.monotonic() + timeout
    while True:
        arns = [
            execution["executionArn"]
            for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine)
            for execution in page["executions"]
            if execution["startDate"].timestamp() >= since - 1
        ]
        if len(arns) >= count or time.monotonic() > deadline:
            return arns
        time.sleep(run.POLL_SECONDS)


def _endpoint(cfg) -> dict[str, Any]:
    """The endpoint once no transition is in progress."""
    sagemaker = boto3.client("sagemaker")
    deadline = time.monotonic() + 120
    while True:
        described = sagemaker.describe_endpoint(EndpointName=cfg.names["endpoint"])
        if described["EndpointStatus"] not in IN_PROGRESS:
            return described
        assert time.monotonic() < deadline, f"endpoint stuck: {described}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def burst(cfg, deployed, tmp_path_factory) -> dict[str, Any]:
    """Every trigger at once, then every execution followed to its end."""
    root = tmp_path_factory.mktemp("drops")
    label = cfg.settings.data.label_column
    drops = {
        name: noisy_drop(label, flip, root / name, seed)
        for seed, (name, flip) in enumerate(NOISE.items())
    }
    commit = deployed_commit(cfg)
    before = registry.list_models(cfg)
    gate = threading.Barrier(len(NOISE) + len(REUPLOADED))
    started_by_hand: list[tuple[str, bool]] = []

    def deliver(name: str) -> None:
        gate.wait()
        data.push(cfg, drops[name], name)  # the S3 rule starts an execution
        started_by_hand.append(run.start(cfg, name, commit))  # and so does `mlops run`

    def deliver_again(source: str, name: str) -> None:
        gate.wait()
        data.push(cfg, drops[source], name)

    since = time.time()
    with ThreadPoolExecutor(gate.parties) as pool:
        futures = [pool.submit(deliver, name) for name in NOISE]
        futures += [pool.submit(deliver_again, s, n) for s, n in REUPLOADED.items()]
        for future in futures:
            future.result()
    # One execution per upload and per `mlops run` that won its start (a run that found the
    # event's execution already running under its name reports that one instead).
    expected = len(NOISE) + len(REUPLOADED) + sum(new for _, new in started_by_hand)
    arns = _executions_since(cfg, since, expected)
    summaries = [run.follow(cfg, arn, timeout=900) for arn in arns]
    return {
        "commit": commit,
        "expected": expected,
        "summaries": summaries,
        "by_hand": started_by_hand,
        "before": before,
        "after": registry.list_models(cfg),
    }


def _trained(burst) -> list[run.RunSummary]:
    return [s for s in burst["summaries"] if "ETL" in s.path]


def test_every_trigger_started_an_execution_and_all_ended_cleanly(burst):
    summaries = burst["summaries"]
    assert len(summaries) == burst["expected"]
    assert [s for s in summaries if not s.ok] == [], [run.text(s) for s in summaries]


def test_duplicate_triggers_for_the_same_data_train_once(burst):
    trained = _trained(burst)
    # One training per drop, although every drop had 2 to 4 triggers.
    assert len(trained) == len(NOISE)
    assert len({s.data_version for s in trained}) == len(NOISE)
    assert all(s.commit == burst["commit"] for s in trained)
    duplicates = [s for s in burst["summaries"] if s.outcome == "duplicate"]
    assert len(duplicates) == len(burst["summaries"]) - len(NOISE)
    for duplicate in duplicates:
        assert duplicate.path == ["Manifest", "Duplicate"], duplicate.path
        assert "already handled by execution" in duplicate.reason
    # Each `mlops run` raced the upload's event: whichever claimed first trained, the other
    # ended as its duplicate, so every drop has exactly one trained execution.
    by_hand = {arn for arn, _ in burst["by_hand"]}
    assert len(by_hand) == len(NOISE)
    assert by_hand <= {s.execution_arn for s in burst["summaries"]}


def test_registry_holds_every_candidate_and_no_record_is_lost(cfg, burst):
    trained = _trained(burst)
    before = {m["version"] for m in burst["before"]["models"]}
    after = {m["version"]: m for m in burst["after"]["models"]}
    new = set(after) - before
    assert new == {s.model_version for s in trained}
    # Versions come from the COUNTER one by one: none skipped, none written twice.
    assert sorted(new) == list(range(max(before, default=0) + 1, max(before, default=0) + 5))
    assert before <= set(after)
    counter = boto3.client("dynamodb").get_item(
        TableName=cfg.names["table"], Key={"pk": {"S": "COUNTER"}}, ConsistentRead=True
    )
    assert int(counter["Item"]["last_version"]["N"]) == max(after)
    for summary in trained:
        model = after[summary.model_version]
        assert model["execution_id"] == summary.execution_arn
        assert model["metric_value"] == summary.candidate_value
        assert model["data_version"] == summary.data_version


def test_production_holds_the_most_accurate_candidate(cfg, burst):
    trained = _trained(burst)
    values = {s.model_version: s.candidate_value for s in trained}
    assert len(set(values.values())) > 1, f"the noise made no difference: {values}"
    best = max(values.values())
    production = burst["after"]["production"]
    assert values.get(production) == best, (production, values)
    statuses = {m["version"]: m["status"] for m in burst["after"]["models"]}
    assert statuses[production] == "production"
    # Everything else ended out of production, each with a status that says why.
    for version in values.keys() - {production}:
        assert statuses[version] in ("rejected", "superseded", "retired"), statuses


def test_endpoint_serves_the_production_model(cfg, burst):
    pointer = next(m for m in burst["after"]["models"] if m["status"] == "production")
    endpoint = _endpoint(cfg)
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == pointer["model_name"]
    config = boto3.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=endpoint["EndpointConfigName"]
    )
    served = config["ProductionVariants"][0]["ModelName"]
    model = boto3.client("sagemaker").describe_model(ModelName=served)
    assert model["PrimaryContainer"]["ModelDataUrl"] == pointer["artifact_uri"]
    # And it answers: a prediction per row of the request (the file the CLI's predict reads).
    body = (REPO / "tests" / "fixtures" / "train" / "request_rows.csv").read_text()
    answer = json.loads(data.predict(cfg, body))
    assert len(answer["predictions"]) == len(body.strip().splitlines()) - 1
