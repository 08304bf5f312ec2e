"""Shared test helpers: the repository root and a writable copy of config/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    """A copy of config/ that a test may break without touching the real one."""
    target = tmp_path / "config"
    shutil.copytree(REPO / "config", target)
    return target
