"""Shared fixtures for the local-cloud gap tests (append new fixtures with unique names)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline.localcloud.server import LocalCloud


@pytest.fixture
def localcloud_fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region, so nothing in a test can reach a real account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def localcloud_running(localcloud_fake_aws: None) -> Iterator[LocalCloud]:
    """A local cloud for one test, emptied afterwards (moto's backends outlive its server)."""
    with LocalCloud() as cloud:
        yield cloud
        request = urllib.request.Request(f"{cloud.url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass


@pytest.fixture
def localcloud_wait() -> Callable[..., Any]:
    """wait(fetch, done, timeout=30): call fetch() until done(value); returns the last value."""

    def wait(
        fetch: Callable[[], Any],
        done: Callable[[Any], bool],
        timeout: float = 30,
        interval: float = 0.02,
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = fetch()
            if done(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still not done after {timeout}s: {value!r}")
            time.sleep(interval)

    return wait
