"""Forking: copy the repository, `mlops init` a new name, and the copy is a working project.

The copy holds what a clone holds (git's tracked plus untracked-but-not-ignored files, so
files being added right now count too) and runs its own code: every process below gets
PYTHONPATH=<copy>:<copy>/src and runs in the copy, which one test proves from __file__.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import init
from pipeline.config import load_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
OLD = load_config("dev", REPO / "config", environ={}).settings.project.name
# A name unrelated to the current one (a fork of a fork runs this test too).
NEW = next(n for n in ("churn-predictor", "fraud-alerts") if OLD not in n and n not in OLD)
REGION = "us-east-2"
GITHUB_REPO = f"acme/{NEW}"
# Written by running things in the copy, not part of the fork.
RUNTIME_DIRS = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".mlops", "spark-warehouse"}

# One retraining as a user of the fork runs it: bootstrap (the repository comes from the
# config init wrote), deploy, upload a sample drop, follow the execution it starts.
RETRAIN = """
import json, sys
from pathlib import Path
from pipeline import cli, registry, run
from pipeline.config import load_config
from pipeline.localcloud.server import LocalCloud

cfg = load_config("dev")
with LocalCloud(region=cfg.settings.project.region):
    for argv in (["bootstrap", "--env", "dev"], ["deploy", "--env", "dev"]):
        if cli.main(argv) != 0:
            sys.exit("mlops " + " ".join(argv) + " failed")
    summary = run.upload_and_follow(cfg, Path("data/sample/drop-002"))
    models = registry.list_models(cfg)
print("RESULT " + json.dumps({"summary": summary.as_dict(), "models": models}, default=str))
"""


def _env(fork: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLOPS", "AWS_", "PYTEST_")) and k != "PYTHONPATH"
    }
    tools = [str(Path(sys.executable).parent), str(REPO / "node_modules" / ".bin")]
    env["PATH"] = os.pathsep.join([*tools, env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(fork), str(fork / "src")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _in_fork(fork: Path, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, cwd=fork, env=_env(fork), capture_output=True, text=True, timeout=timeout
    )


def _tail(done: subprocess.CompletedProcess, lines: int = 40) -> str:
    return "\n".join((done.stdout + done.stderr).splitlines()[-lines:])


@pytest.fixture(scope="module")
def fork(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    target = tmp_path_factory.mktemp("fork") / "project"
    # What a clone holds: git's view of the files (tracked plus untracked-not-ignored).
    for source in init.project_files(REPO):
        name = source.relative_to(REPO)
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name)
    # A clone is a git checkout: init then uses git's view of the files, as in a real fork.
    for argv in (["git", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(argv, cwd=target, check=True, capture_output=True)
    done = _in_fork(
        target,
        sys.executable,
        "-m",
        "pipeline.cli",
        "init",
        "--name",
        NEW,
        "--region",
        REGION,
        "--github-repo",
        GITHUB_REPO,
        "--yes",
    )
    assert done.returncode == 0, _tail(done)
    return target, done


def _leftovers(root: Path) -> list[str]:
    """Every file, path or line of the copy that still spells the old name, in any form."""
    words = OLD.split("-")
    forms = {sep.join(words) for sep in ("-", "_", " ", "")}
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if set(rel.parts) & RUNTIME_DIRS or not path.is_file():
            continue
        if any(f in str(rel).lower() for f in forms):
            found.append(f"{rel}: the path")
        data = path.read_bytes()
        try:
            lines = data.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            lines = None
        if lines is None:
            if any(f.encode() in data.lower() for f in forms):
                found.append(f"{rel}: (binary file)")
            continue
        found += [
            f"{rel}:{n}: {line.strip()[:120]}"
            for n, line in enumerate(lines, 1)
            if any(f in line.lower() for f in forms)
        ]
    return found


def test_init_leaves_no_file_or_path_spelling_the_template_name(fork):
    root, _ = fork
    leftovers = _leftovers(root)
    assert not leftovers, (
        f"{len(leftovers)} place(s) in the fork still spell {OLD!r} after `mlops init`; derive "
        "the name from config (cfg.settings.project.name, cfg.names) instead:\n"
        + "\n".join(leftovers)
    )


def test_init_sets_the_config_lists_its_changes_and_the_next_steps(fork):
    root, done = fork
    settings = load_config("dev", root / "config", environ={}).settings
    assert (settings.project.name, settings.project.region) == (NEW, REGION)
    assert settings.project.github_repo == GITHUB_REPO
    assert (
        "  config/project.yaml" in done.stdout and "  pyproject.toml (1 x old name)" in done.stdout
    )
    assert "regenerated pipeline/statemachine.dev.asl.json" in done.stdout
    assert "regenerated .secrets.baseline" in done.stdout
    assert "`mlops bootstrap --env dev`" in done.stdout and "AWS_DEPLOY_ROLE_ARN" in done.stdout
    assert not list((root / "bench").glob("results.*")), "the template's figures were kept"


def test_the_fork_runs_its_own_code(fork):
    root, _ = fork
    done = _in_fork(
        root,
        sys.executable,
        "-c",
        "import pipeline, etl, train; print(pipeline.__file__, etl.__file__)",
    )
    assert done.returncode == 0, _tail(done)
    assert done.stdout.split() == [
        str(root / "pipeline" / "__init__.py"),
        str(root / "src" / "etl" / "__init__.py"),
    ]


def test_the_forks_checks_pass_render_validate_graph_and_secrets(fork):
    root, _ = fork
    # The next step init prints: stage the fork (the secrets hook refuses an unstaged baseline).
    subprocess.run(["git", "add", "-A"], cwd=root, check=True, capture_output=True)
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for argv in (
        ["mlops", "render", "--check"],
        ["mlops", "validate"],
        ["mlops", "graph", "--check"],
        ["detect-secrets-hook", "--baseline", ".secrets.baseline", *tracked],
    ):
        command = [sys.executable, "-m", "pipeline.cli", *argv[1:]] if argv[0] == "mlops" else argv
        done = _in_fork(root, *command)
        assert done.returncode == 0, f"{' '.join(argv[:3])} failed in the fork:\n{_tail(done)}"


def test_the_forks_fast_unit_tests_pass(fork):
    root, _ = fork
    done = _in_fork(
        root, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
        "tests/unit",
    )  # fmt: skip
    assert done.returncode == 0, f"the fork's unit tests failed:\n{_tail(done, 60)}"


def test_a_retraining_on_the_local_cloud_promotes_a_model_named_after_the_fork(fork):
    root, _ = fork
    done = _in_fork(root, sys.executable, "-c", RETRAIN)
    assert done.returncode == 0, _tail(done, 60)
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    summary, models = result["summary"], result["models"]
    assert summary["outcome"] == "promoted", summary
    assert f":{NEW}-dev-retrain:" in summary["execution_arn"]
    assert models["production"] == summary["model_version"] == 1
    assert OLD not in json.dumps(result)
