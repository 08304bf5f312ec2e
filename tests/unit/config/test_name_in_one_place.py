"""The project name lives in config/ only: code derives every name from it."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import load_config

REPO = Path(__file__).resolve().parents[3]


def test_no_code_spells_the_project_name():
    name = load_config("dev", REPO / "config", environ={}).settings.project.name
    spellings = {name, name.replace("-", "_")}
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("pipeline", "src")
        for path in (REPO / folder).rglob("*.py")
        if any(s in path.read_text() for s in spellings)
    ]
    assert offenders == []
