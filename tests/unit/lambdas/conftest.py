"""Fixtures for the unit tests of the Lambda functions: the recorded event payloads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).resolve().parents[2] / "fixtures" / "events"


@pytest.fixture
def load_event() -> Callable[[str], dict[str, Any]]:
    """Read tests/fixtures/events/<name>.json (a fresh copy per call, safe to modify)."""

    def load(name: str) -> dict[str, Any]:
        return json.loads((EVENTS / f"{name}.json").read_text())

    return load
