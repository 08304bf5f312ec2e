"""Channels built from the sample data and a runner for src/train/entry.py as SageMaker runs it.

Helpers are handed out as fixtures because tests run with --import-mode=importlib, where a
conftest cannot be imported by name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "train"
ENTRY = REPO / "src" / "train" / "entry.py"
LABEL = "diagnosis"
UNUSED_COLUMNS = ["id", "clinic"]  # the ETL drops them


def _etl_like(drop: str) -> pd.DataFrame:
    frame = pd.read_csv(REPO / "data" / "sample" / drop / "data.csv")
    return frame.drop(columns=UNUSED_COLUMNS).dropna().reset_index(drop=True)


def _write_channel(directory: Path, frame: pd.DataFrame, parts: int = 1) -> None:
    """A Spark-style channel: part files with headers, .crc twins and _SUCCESS."""
    directory.mkdir(parents=True, exist_ok=True)
    size = -(-len(frame) // parts) if len(frame) else 0
    for i in range(parts):
        name = f"part-{i:05d}-7d2e.c000.csv"
        frame.iloc[i * size : (i + 1) * size].to_csv(directory / name, index=False)
        (directory / f".{name}.crc").write_bytes(b"crc")
    (directory / "_SUCCESS").write_text("")


@dataclass(frozen=True)
class Job:
    root: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
        env.update(
            SM_MODEL_DIR=str(self.root / "model"),
            SM_CHANNEL_TRAIN=str(self.root / "input" / "data" / "train"),
            SM_CHANNEL_VALIDATION=str(self.root / "input" / "data" / "validation"),
            SM_CHANNEL_TEST=str(self.root / "input" / "data" / "test"),
            SM_OUTPUT_DATA_DIR=str(self.root / "output" / "data"),
            SM_OUTPUT_DIR=str(self.root / "output"),
        )
        return env

    def channel(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    @property
    def model_file(self) -> Path:
        return self.root / "model" / "model.joblib"

    @property
    def evaluation_file(self) -> Path:
        return self.root / "output" / "data" / "evaluation.json"

    @property
    def failure_file(self) -> Path:
        return self.root / "output" / "failure"

    def run(self, argv: list[str], script: Path = ENTRY, cwd: Path = REPO):
        """`python <script> argv...` with this job's SM_* environment."""
        return subprocess.run(
            [sys.executable, str(script), *argv],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )


@pytest.fixture(scope="session")
def sample_splits() -> dict[str, pd.DataFrame]:
    """drop-002 without incomplete rows, shuffled once and cut 70 / 15 / 15."""
    frame = _etl_like("drop-002").sample(frac=1.0, random_state=0).reset_index(drop=True)
    a, b = int(len(frame) * 0.7), int(len(frame) * 0.85)
    return {"train": frame.iloc[:a], "validation": frame.iloc[a:b], "test": frame.iloc[b:]}


@pytest.fixture
def make_job(tmp_path, sample_splits):
    """A job directory with the three channels, where `overrides` replace some splits."""

    def make(name: str = "job", **overrides: pd.DataFrame) -> Job:
        job = Job(tmp_path / name)
        for split, frame in {**sample_splits, **overrides}.items():
            _write_channel(job.channel(split), frame, parts=2 if split == "train" else 1)
        return job

    return make


@pytest.fixture(scope="session")
def fixture_hyperparameters() -> dict[str, str]:
    """hyperparameters.json as SageMaker writes it for a job the SDK built."""
    return json.loads((FIXTURES / "hyperparameters.json").read_text())


@pytest.fixture(scope="session")
def toolkit_argv():
    def build(hyperparameters: dict[str, str]) -> list[str]:
        """The command line sagemaker-training builds: values JSON-decoded when they can be,
        keys sorted. The sagemaker_* keys, which the toolkit strips, are kept on purpose."""
        argv = []
        for key in sorted(hyperparameters):
            try:
                value = json.loads(hyperparameters[key])
            except (TypeError, ValueError):
                value = hyperparameters[key]
            argv += [f"--{key}", "" if value is None else str(value)]
        return argv

    return build


@pytest.fixture(scope="session")
def trained_job(tmp_path_factory, sample_splits, fixture_hyperparameters, toolkit_argv):
    """One training run of the script on the sample channels, shared by the read-only tests."""
    job = Job(tmp_path_factory.mktemp("trained"))
    for split, frame in sample_splits.items():
        _write_channel(job.channel(split), frame, parts=2 if split == "train" else 1)
    result = job.run(toolkit_argv(fixture_hyperparameters))
    return job, result


@pytest.fixture(scope="session")
def etl_like():
    return _etl_like


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
