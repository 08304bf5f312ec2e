"""What pipeline.actrun checks after act has run, against moto."""

from __future__ import annotations

import pytest
from moto import mock_aws

from pipeline import actrun


@pytest.fixture
def aws(monkeypatch):
    for key in ("AWS_ENDPOINT_URL", "MOTO_PORT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


def test_an_act_run_that_deployed_nothing_is_an_error_not_a_traceback(aws):
    with pytest.raises(actrun.ActError, match="left nothing deployed.*mlops deploy"):
        actrun._check_retraining("dev")
