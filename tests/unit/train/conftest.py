"""Shared data for the training-code unit tests: the sample drop as the ETL would hand it over.

Helpers are handed out as fixtures because tests run with --import-mode=importlib, where a
conftest cannot be imported by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "train"
LABEL = "diagnosis"
FEATURES = [
    "mean_radius",
    "mean_texture",
    "mean_perimeter",
    "mean_area",
    "mean_smoothness",
    "mean_compactness",
    "mean_concavity",
    "mean_concave_points",
    "mean_symmetry",
    "mean_fractal_dimension",
]


def _clean_sample(drop: str = "drop-002") -> pd.DataFrame:
    """The drop's features and label, without incomplete or duplicate rows (the ETL's job)."""
    frame = pd.read_csv(REPO / "data" / "sample" / drop / "data.csv")
    return frame[[*FEATURES, LABEL]].dropna().drop_duplicates().reset_index(drop=True)


def _split(frame: pd.DataFrame, fractions=(0.7, 0.15)) -> tuple[pd.DataFrame, ...]:
    """Shuffle once with a fixed seed, then cut into train / validation / test."""
    shuffled = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    a = int(len(shuffled) * fractions[0])
    b = a + int(len(shuffled) * fractions[1])
    return (
        shuffled.iloc[:a].reset_index(drop=True),
        shuffled.iloc[a:b].reset_index(drop=True),
        shuffled.iloc[b:].reset_index(drop=True),
    )


def _write_channels(root: Path, frames: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Write each frame as a Spark-style channel directory; return the SM_* environment."""
    for name, frame in frames.items():
        channel = root / "input" / name
        channel.mkdir(parents=True)
        frame.to_csv(channel / "part-00000-c000.csv", index=False)
        (channel / "_SUCCESS").write_text("")
    return {
        "SM_MODEL_DIR": str(root / "model"),
        "SM_CHANNEL_TRAIN": str(root / "input" / "train"),
        "SM_CHANNEL_VALIDATION": str(root / "input" / "validation"),
        "SM_CHANNEL_TEST": str(root / "input" / "test"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_OUTPUT_DIR": str(root / "output"),
    }


def _toolkit_argv(hyperparameters: dict[str, str]) -> list[str]:
    """The command line the SageMaker training toolkit builds from hyperparameters.json.

    Like sagemaker_training: each value is JSON-decoded when it can be, None becomes "", keys
    are sorted and each becomes `--key value`. Unlike it, sagemaker_* keys are kept, to check
    that the script tolerates them.
    """
    argv = []
    for key in sorted(hyperparameters):
        try:
            value = json.loads(hyperparameters[key])
        except (TypeError, ValueError):
            value = hyperparameters[key]
        argv += [f"--{key}", "" if value is None else str(value)]
    return argv


@pytest.fixture(scope="session")
def sample() -> pd.DataFrame:
    """drop-002, cleaned: 10 numeric features and the diagnosis."""
    return _clean_sample()


@pytest.fixture(scope="session")
def splits(sample: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, validation, test) of the cleaned sample."""
    return _split(sample)


@pytest.fixture(scope="session")
def features() -> list[str]:
    return list(FEATURES)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def write_channels():
    return _write_channels


@pytest.fixture(scope="session")
def toolkit_argv():
    return _toolkit_argv
