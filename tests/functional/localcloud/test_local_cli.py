"""`mlops local up/status/down`: a background local cloud any process can use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3

from pipeline.localcloud.server import free_port

REPO = Path(__file__).resolve().parents[3]


def _mlops(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_up_status_down_leaves_nothing_running(tmp_path, localcloud_fake_aws):
    port = free_port()
    up = _mlops("local", "up", "--port", str(port), cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    assert f"http://127.0.0.1:{port}" in up.stdout
    pid = int((tmp_path / ".mlops" / "localcloud.pid").read_text())
    try:
        status = _mlops("local", "status", cwd=tmp_path)
        assert status.returncode == 0 and f"pid {pid}" in status.stdout
        # Any process reaches it through AWS_ENDPOINT_URL.
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="eu-west-1")
        s3.create_bucket(
            Bucket="reachable", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        assert "reachable" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        again = _mlops("local", "up", "--port", str(port), cwd=tmp_path)
        assert again.returncode == 0 and f"pid {pid}" in again.stdout  # reuses the running one
    finally:
        down = _mlops("local", "down", cwd=tmp_path)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert (
        not Path(f"/proc/{pid}").exists()
        or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    )
    assert _mlops("local", "status", cwd=tmp_path).returncode == 1
    assert "was not running" in _mlops("local", "down", cwd=tmp_path).stdout


def test_up_on_a_busy_port_says_so(tmp_path, localcloud_running):
    port = localcloud_running.port
    result = _mlops("local", "up", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 2
    assert f"port {port} is already serving something else" in result.stderr
    assert "Traceback" not in result.stderr
    assert os.environ["AWS_ENDPOINT_URL"] == localcloud_running.url
