"""src/etl/glue_job.py run as Glue runs it: a script file in a fresh Python process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "src" / "etl" / "glue_job.py"
SAMPLE = REPO / "data" / "sample"

pytestmark = pytest.mark.slow


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK", "SPARK_"))}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        cwd=cwd,  # outside the repository: the script must not rely on the working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_script_writes_the_splits_and_prints_the_report(job_argv, tmp_path):
    out = tmp_path / "out"
    done = _run(job_argv(str(SAMPLE / "drop-002"), str(out)), tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert json.loads((out / "report.json").read_text()) == report
    assert report["input_rows"] == 402
    for split in ("train", "validation", "test"):
        (data_file,) = (out / split).iterdir()
        assert data_file.name.startswith("part-") and data_file.suffix == ".csv"
        assert len(data_file.read_text().splitlines()) == report["splits"][split]["rows"] + 1


def test_script_fails_on_corrupt_data_with_the_error_as_last_stderr_line(job_argv, tmp_path):
    done = _run(job_argv(str(SAMPLE / "drop-corrupt"), str(tmp_path / "out")), tmp_path)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("NonNumericFeatureError: column 'mean_radius' has 5 value(s)"), last
    assert "Traceback" in done.stderr
    assert not (tmp_path / "out").exists()
