from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
HEAVY_MODULES = (
    "boto3",
    "botocore",
    "sagemaker",
    "stepfunctions",
    "pyspark",
    "sklearn",
    "pydantic",
)


def _mlops(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_commands_without_loading_heavy_libraries():
    code = (
        "import sys\n"
        "from pipeline.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "config" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_config_show_prints_names_and_prefixes():
    result = _mlops("config", "show", "--env", "prod")
    assert result.returncode == 0, result.stderr
    assert "state_machine" in result.stdout
    assert "-prod-retrain" in result.stdout
    assert "s3://" in result.stdout


def test_config_show_json_has_names_and_data():
    result = _mlops("config", "show", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["env"] == "dev"
    assert doc["names"]["bucket"] == doc["data"]["bucket"]
    assert doc["data"]["raw"] == f"s3://{doc['names']['bucket']}/raw/"
    assert {
        "state_machine",
        "table",
        "topic",
        "glue_job",
        "endpoint",
        "training_job_prefix",
    } <= set(doc["names"])
    assert doc["settings"]["gate"]["metric"] == "accuracy"


def test_broken_config_exits_2_with_one_line_and_no_traceback(tmp_path: Path):
    shutil_copy = tmp_path / "config"
    (shutil_copy / "env").mkdir(parents=True)
    data = yaml.safe_load((REPO / "config" / "project.yaml").read_text())
    data["training"]["instance_count"] = "two"
    (shutil_copy / "project.yaml").write_text(yaml.safe_dump(data))
    (shutil_copy / "env" / "dev.yaml").write_text("{}\n")
    result = _mlops("config", "show", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: config/project.yaml: training.instance_count:")
    assert "Traceback" not in result.stderr


def test_missing_config_outside_a_project_exits_2(tmp_path: Path):
    result = _mlops("config", "show", cwd=tmp_path)
    assert result.returncode == 2
    assert "file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_environment_exits_2():
    result = _mlops("config", "show", "--env", "nope")
    assert result.returncode == 2
    assert "no overlay for environment 'nope'" in result.stderr


def test_environment_override_reaches_config_show():
    result = _mlops(
        "config", "show", "--json", env={"MLOPS__TRAINING__MAX_RUNTIME_SECONDS": "7200"}
    )
    assert json.loads(result.stdout)["settings"]["training"]["max_runtime_seconds"] == 7200
