"""End-to-end fixtures: the dev environment deployed to an in-process local cloud.

Module-scoped on purpose: LocalCloud points AWS_ENDPOINT_URL at itself for as long as
it runs, which must not leak into the moto-decorated tests of other modules.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import deploy
from pipeline.config import ProjectConfig, load_config
from pipeline.localcloud.server import LocalCloud

REPO = Path(__file__).resolve().parents[2]


def copy_project(target: Path) -> Path:
    """config/ and the rendered ASL in `target`, so a test can change them; returns config dir."""
    shutil.copytree(REPO / "config", target / "config")
    (target / "src").symlink_to(REPO / "src")  # same code, changed config
    (target / "pipeline").mkdir()
    for asl in (REPO / "pipeline").glob("statemachine.*.asl.json"):
        shutil.copy(asl, target / "pipeline" / asl.name)
    return target / "config"


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as running:
        yield running


@pytest.fixture(scope="module")
def cfg(cloud: LocalCloud) -> ProjectConfig:
    return load_config("dev", REPO / "config", environ={})


@pytest.fixture(scope="module")
def deployed(cfg: ProjectConfig) -> deploy.DeployResult:
    quiet = lambda message: None  # noqa: E731
    deploy.bootstrap(cfg, "local/tests", progress=quiet)
    return deploy.deploy(cfg, progress=quiet)
