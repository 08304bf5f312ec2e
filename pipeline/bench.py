"""`make bench`: the speed figures of the template, each the median of several runs.

Writes bench/results.json and bench/results.md. Keys: cli_help_s, render_s,
validate_s, execution_s and overhead_s (one full retraining execution on the sample
data in the local cloud, and the part of it spent outside the ETL and training
programs), etl_rows_per_s (keyed by input rows), training_s, make_test_s (only with
BENCH_MAKE_TEST=1: it reruns the whole suite), cores. Benchmarks are never timed
tests: shared machines are noisy, so figures are medians reported with the core count.
"""

from __future__ import annotations

import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench"
SAMPLE = REPO / "data" / "sample" / "drop-003" / "data.csv"
ETL_SIZES = (10_000, 100_000, 1_000_000)


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return round(statistics.median(measure() for _ in range(runs)), 4)


def _timed_command(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run(args, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def cli_figures(runs: int) -> dict[str, float]:
    mlops = str(Path(sys.executable).with_name("mlops"))
    return {
        "cli_help_s": median_of(runs, lambda: _timed_command(mlops, "--help")),
        "render_s": median_of(
            runs, lambda: _timed_command(mlops, "render", "--check", "--env", "dev")
        ),
        "validate_s": median_of(runs, lambda: _timed_command(mlops, "validate", "--env", "dev")),
    }


def synthetic_drop(rows: int, path: Path, seed: int = 0) -> Path:
    """`rows` rows resampled from the sample data, jittered so they are not duplicates."""
    with SAMPLE.open() as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        source = [r for r in reader if all(r.values())]
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for i in range(rows):
            row = dict(rng.choice(source))
            row["id"] = f"s{i}"
            row["mean_radius"] = f"{float(row['mean_radius']) * rng.uniform(0.98, 1.02):.5g}"
            writer.writerow(row)
    return path


def etl_figures(runs: int) -> dict[str, float]:
    """Rows per second of the ETL job on local files, with Spark already started."""
    from etl import glue_job
    from pipeline.config import load_config

    cfg = load_config("dev", REPO / "config", environ={})
    data = cfg.settings.data
    spark = glue_job.local_spark()
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rows in ETL_SIZES:
            drop = synthetic_drop(rows, Path(tmp) / f"in-{rows}" / "data.csv")

            def once(rows: int = rows, drop: Path = drop) -> float:
                out = Path(tmp) / f"out-{rows}-{time.monotonic_ns()}"
                start = time.perf_counter()
                glue_job.main(
                    [
                        "--input", str(drop.parent), "--output", str(out),
                        "--label_column", data.label_column,
                        "--feature_columns", ",".join(data.feature_columns),
                    ]
                )  # fmt: skip
                return rows / (time.perf_counter() - start)

            once()  # warm-up: JIT and caches, as a warm Glue worker would have
            figures[str(rows)] = round(statistics.median(once() for _ in range(runs)))
    spark.stop()
    return figures


def training_figure(runs: int) -> float:
    """Seconds of one script-mode training run on the sample data's ETL output."""
    from etl import glue_job
    from pipeline.config import load_config
    from pipeline.workflow import training_hyperparameters

    cfg = load_config("dev", REPO / "config", environ={})
    data = cfg.settings.data
    with tempfile.TemporaryDirectory() as tmp:
        splits = Path(tmp) / "splits"
        glue_job.main(
            [
                "--input", str(SAMPLE.parent), "--output", str(splits),
                "--label_column", data.label_column, "--feature_columns", ",".join(data.feature_columns),
            ]
        )  # fmt: skip
        args = [f"--{k}={v}" for k, v in training_hyperparameters(cfg).items()]
        env = {
            **os.environ,
            **{f"SM_CHANNEL_{c.upper()}": str(splits / c) for c in ("train", "validation", "test")},
        }

        def once() -> float:
            out = Path(tempfile.mkdtemp(dir=tmp))
            env.update(
                SM_MODEL_DIR=str(out / "model"),
                SM_OUTPUT_DATA_DIR=str(out / "data"),
                SM_OUTPUT_DIR=str(out),
            )
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "entry.py", *args],
                cwd=REPO / "src" / "train",
                env=env,
                check=True,
                capture_output=True,
            )
            return time.perf_counter() - start

        return median_of(runs, once)


def execution_figures(runs: int) -> dict[str, float]:
    """One full retraining on drop-002 in the local cloud, and its orchestration overhead."""
    import boto3

    from pipeline import data, deploy, run
    from pipeline.config import load_config
    from pipeline.localcloud.server import LocalCloud

    cfg = load_config("dev", REPO / "config", environ={})
    walls, overheads = [], []
    with LocalCloud(region=cfg.settings.project.region):
        deploy.bootstrap(cfg, "local/bench", progress=lambda m: None)
        deploy.deploy(cfg, progress=lambda m: None)
        data.push(cfg, REPO / "data" / "sample" / "drop-002", "drop-002")
        glue, sagemaker = boto3.client("glue"), boto3.client("sagemaker")
        for i in range(runs + 1):
            arn, _ = run.start(cfg, "drop-002", f"bench{i}")
            summary = run.follow(cfg, arn)
            if not summary.ok:
                raise RuntimeError(f"benchmark execution failed: {summary.error} {summary.cause}")
            state = json.loads(
                boto3.client("stepfunctions").describe_execution(executionArn=arn)["output"]
            )
            job_run = glue.get_job_run(
                JobName=cfg.names["glue_job"], RunId=state["etl"]["job_run_id"]
            )["JobRun"]
            training = sagemaker.describe_training_job(
                TrainingJobName=state["training"]["job_name"]
            )
            programs = (job_run["CompletedOn"] - job_run["StartedOn"]).total_seconds() + (
                training["TrainingEndTime"] - training["TrainingStartTime"]
            ).total_seconds()
            if i == 0:
                continue  # the first execution starts the warm workers
            walls.append(summary.duration_s)
            overheads.append(summary.duration_s - programs)
    return {
        "execution_s": round(statistics.median(walls), 3),
        "overhead_s": round(statistics.median(overheads), 3),
    }


def markdown(results: dict) -> str:
    rows = [
        ("CLI start-up (`mlops --help`)", f"{results['cli_help_s']:.3f} s"),
        ("render --check (dev)", f"{results['render_s']:.2f} s"),
        ("validate (dev)", f"{results['validate_s']:.2f} s"),
        (
            "one full retraining execution (local cloud)",
            f"{results['execution_s']:.2f} s (target < 15 s)",
        ),
        ("orchestration overhead of it", f"{results['overhead_s']:.2f} s (target < 2 s)"),
        ("training run (script mode, sample data)", f"{results['training_s']:.2f} s"),
    ]
    rows += [
        (f"ETL rows/s at {int(k):,} rows", f"{v:,}") for k, v in results["etl_rows_per_s"].items()
    ]
    if results.get("make_test_s") is not None:
        rows.append(("`make test`", f"{results['make_test_s']:.0f} s"))
    lines = [
        f"Medians on a {results['cores']}-core machine.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    return "\n".join(lines + [f"| {a} | {b} |" for a, b in rows]) + "\n"


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    results: dict = {"cores": os.cpu_count()}
    results.update(cli_figures(runs))
    results.update(execution_figures(runs))
    results["training_s"] = training_figure(runs)
    results["etl_rows_per_s"] = etl_figures(runs)
    results["make_test_s"] = (
        round(_timed_command("make", "test"), 1)
        if os.environ.get("BENCH_MAKE_TEST") == "1"
        else None
    )
    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (OUT / "results.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
