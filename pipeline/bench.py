"""`make bench`: the speed figures of the template, each the median of several runs.

Writes bench/results.json and bench/results.md. Keys: cli_help_s, render_s,
validate_s, execution_s and overhead_s (one full retraining execution on the sample
data in the local cloud, and the part of it spent outside the ETL and training
programs), etl_rows_per_s (keyed by input rows), make_test_s (wall time of `make test`
in this checkout), cores, and runs (how many runs each figure is the median of).
Benchmarks are never timed tests: shared machines are noisy, so figures are medians
reported with the core count.

Runs per figure: cheap figures default to RUNS, `make test` (about ten minutes) to
one run; `--runs N` / BENCH_RUNS and `--make-test-runs N` / BENCH_MAKE_TEST_RUNS change
them, and 0 make-test runs leaves make_test_s null. `make test` never calls the bench,
so timing it from here cannot recurse.
"""

from __future__ import annotations

import argparse
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
# Default runs per group of figures: a run of each costs ~1 s, ~15 s, ~1 min and ~10 min.
RUNS = {"cli": 5, "execution": 3, "etl": 3, "make_test": 1}
KEYS = ("cli_help_s", "render_s", "validate_s", "execution_s", "overhead_s", "etl_rows_per_s",
        "make_test_s", "cores")  # fmt: skip


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


def make_test_figure(runs: int) -> float | None:
    """Seconds of `make test` (lint and the whole suite) in this checkout; None when 0 runs."""
    if runs < 1:
        return None
    return round(median_of(runs, lambda: _timed_command("make", "test")), 1)


def markdown(results: dict) -> str:
    runs = results.get("runs", {})

    def times(key: str) -> str:
        count = runs.get(key)
        return f" ({count} run{'s' if count != 1 else ''})" if count else ""

    rows = [
        ("CLI start-up (`mlops --help`)", f"{results['cli_help_s']:.3f} s"),
        ("render --check (dev)", f"{results['render_s']:.2f} s"),
        ("validate (dev)", f"{results['validate_s']:.2f} s"),
        (
            "one full retraining execution (local cloud)",
            f"{results['execution_s']:.2f} s (target < 15 s)",
        ),
        ("orchestration overhead of it", f"{results['overhead_s']:.2f} s (target < 2 s)"),
    ]
    rows += [
        (f"ETL rows/s at {int(k):,} rows", f"{v:,}") for k, v in results["etl_rows_per_s"].items()
    ]
    rows.append(
        (
            "`make test` (lint and every test)",
            "not measured (--make-test-runs 0)"
            if results.get("make_test_s") is None
            else f"{results['make_test_s']:.0f} s",
        )
    )
    keys = ["cli_help_s", "render_s", "validate_s", "execution_s", "overhead_s"]
    keys += ["etl_rows_per_s"] * len(results["etl_rows_per_s"]) + ["make_test_s"]
    rows = [(name + times(key), value) for (name, value), key in zip(rows, keys, strict=True)]
    lines = [
        f"Medians on a {results['cores']}-core machine.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    return "\n".join(lines + [f"| {a} | {b} |" for a, b in rows]) + "\n"


def write_results(results: dict, out: Path = OUT) -> tuple[Path, Path]:
    """bench/results.json and results.md; refuses results missing a figure or with extra ones."""
    found = set(results) - {"runs"}
    if found != set(KEYS):
        raise ValueError(
            f"bench results must have exactly {sorted(KEYS)}; missing {sorted(set(KEYS) - found)}, "
            f"unexpected {sorted(found - set(KEYS))}"
        )
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "results.json", out / "results.md"
    paths[0].write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    paths[1].write_text(markdown(results))
    return paths


def _runs_argument(value: str) -> int:
    runs = int(value)
    if runs < 0:
        raise argparse.ArgumentTypeError(f"{value} runs: use 0 or more")
    return runs


def parse_args(argv: list[str] | None, environ: dict[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__)
    parser.add_argument(
        "--runs",
        type=_runs_argument,
        default=environ.get("BENCH_RUNS"),
        help="runs of every figure but make test (default: per figure, 3-5)",
    )
    parser.add_argument(
        "--make-test-runs",
        type=_runs_argument,
        default=environ.get("BENCH_MAKE_TEST_RUNS", RUNS["make_test"]),
        help="runs of `make test` (default 1; 0 skips it)",
    )
    parser.add_argument("--out", type=Path, default=OUT, help="folder of results.json/.md")
    args = parser.parse_args(argv)
    for name in ("runs", "make_test_runs"):
        if isinstance(getattr(args, name), str):  # from the environment
            setattr(args, name, _runs_argument(getattr(args, name)))
    if args.runs == 0:
        parser.error("--runs must be at least 1: every figure but make test needs a run")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, dict(os.environ))
    runs = {group: args.runs or default for group, default in RUNS.items()}
    runs["make_test"] = args.make_test_runs
    results: dict = {"cores": os.cpu_count()}
    results.update(cli_figures(runs["cli"]))
    results.update(execution_figures(runs["execution"]))
    results["etl_rows_per_s"] = etl_figures(runs["etl"])
    results["make_test_s"] = make_test_figure(runs["make_test"])
    results["runs"] = {
        **dict.fromkeys(("cli_help_s", "render_s", "validate_s"), runs["cli"]),
        **dict.fromkeys(("execution_s", "overhead_s"), runs["execution"]),
        "etl_rows_per_s": runs["etl"],
        "make_test_s": runs["make_test"],
    }
    write_results(results, args.out)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
