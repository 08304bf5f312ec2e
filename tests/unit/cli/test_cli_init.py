"""`mlops init`: answers checked by the config's rules, the old name respelled everywhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline import init
from pipeline.cli import main
from pipeline.config import SUPPORTED_METRICS, load_config

REPO = Path(__file__).resolve().parents[3]
OPTIONS = ["--name", "--region", "--github-repo", "--label-column", "--metric", "--yes"]


@pytest.fixture(autouse=True)
def _no_config_from_the_environment(monkeypatch):
    for var in ("MLOPS_CONFIG_DIR", "MLOPS_ENV"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A small project (config, README with the diagram, a notes file) that is no git checkout."""
    root = tmp_path / "Weather Watch"
    shutil.copytree(REPO / "config", root / "config")
    (root / "pipeline").mkdir()
    shutil.copy(REPO / "README.md", root / "README.md")
    monkeypatch.chdir(root)
    return root


def _old_name(root: Path) -> str:
    return load_config("dev", root / "config", environ={}).settings.project.name


def _new_name(old: str) -> str:
    """A name that is not the current one and does not contain it."""
    return next(n for n in ("quiet-harbor", "fraud-alerts") if old not in n and n != old)


def test_init_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["init", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    missing = [o for o in OPTIONS if o not in text]
    assert missing == []
    assert all(metric in text for metric in SUPPORTED_METRICS)
    assert "refused, with the reason" in text


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("WeatherWatch", "lowercase letters, digits and single hyphens"),
        ("weather_watch", "lowercase letters, digits and single hyphens"),
        ("w" * 41, "at most 40 characters"),
        ("sthree-weather", "must not start with 'sthree-'"),
        ("amzn-s3-demo-weather", "must not start with 'amzn-s3-demo-'"),
    ],
)
def test_name_aws_would_reject_is_refused_with_the_reason_and_nothing_changes(
    project, capsys, name, reason
):
    before = (project / "config" / "project.yaml").read_bytes()
    assert main(["init", "--name", name, "--yes"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --name {name!r}: ") and reason in err
    assert err.count("\n") == 1
    assert (project / "config" / "project.yaml").read_bytes() == before


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("--region", "europe", "AWS region code"),
        ("--github-repo", "acme", "OWNER/REPO"),
        ("--github-repo", "-acme/weather", "OWNER/REPO"),
        ("--label-column", "mean_radius", "also in feature_columns"),
        ("--label-column", "the label", "letters, digits and underscores"),
        ("--metric", "auc", "not a metric the evaluation computes"),
    ],
)
def test_other_answers_the_config_would_reject_are_refused(project, capsys, option, value, reason):
    if option == "--label-column":  # a feature of this project's schema, whatever it is
        features = load_config("dev", project / "config", environ={}).settings.data
        value = features.feature_columns[0] if value == "mean_radius" else value
    before = (project / "config" / "project.yaml").read_bytes()
    assert main(["init", "--name", "weather-watch", f"{option}={value}", "--yes"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option} {value!r}: ") and reason in err
    assert (project / "config" / "project.yaml").read_bytes() == before


@pytest.mark.parametrize(
    ("old", "text", "expected"),
    [
        (
            "acme-forecast",
            "s3://acme-forecast-dev-data ACME_FORECAST=1 AcmeForecastStack acme_forecast "
            "Acme Forecast acmeforecast",
            "s3://quiet-harbor-dev-data QUIET_HARBOR=1 QuietHarborStack quiet_harbor "
            "Quiet Harbor quietharbor",
        ),
        # Not inside longer words.
        ("acme-forecast", "myacme-forecast acme-forecaster", "myacme-forecast acme-forecaster"),
        (
            "forecast",
            "forecast-dev FORECAST_X Forecast",
            "quiet-harbor-dev QUIET_HARBOR_X QuietHarbor",
        ),
    ],
)
def test_every_spelling_of_the_old_name_takes_the_new_one(old, text, expected):
    words = len(old.split("-"))
    respelled = init.spellings(old).sub(
        lambda m: init.respell(m.group(0), "quiet-harbor", words), text
    )
    assert respelled == expected


def test_set_value_keeps_the_comment_and_its_column():
    text = "project:\n  name: old-one       # TEMPLATE: the name\n  region: eu-west-1\ngate:\n  name: x\n"
    updated = init.set_value(text, "project", "name", "a-much-longer-name")
    assert updated.splitlines()[1] == "  name: a-much-longer-name  # TEMPLATE: the name"
    assert init.set_value(text, "project", "name", "new").splitlines()[1] == (
        "  name: new           # TEMPLATE: the name"
    )
    assert yaml.safe_load(init.set_value(text, "gate", "name", None))["gate"] == {"name": None}


def test_init_sets_the_answers_respells_the_old_name_and_renders(project, capsys):
    old = _old_name(project)
    new = _new_name(old)
    snake = old.replace("-", "_")
    (project / "notes").mkdir()
    (project / "notes" / f"{snake}_plan.txt").write_text(f"{old}-dev-data\n{snake.upper()}\n")
    shutil.copy(REPO / ".secrets.baseline", project / ".secrets.baseline")
    baseline = (project / ".secrets.baseline").read_bytes()
    assert (
        main(
            [
                "init",
                "--name",
                new,
                "--region",
                "us-east-2",
                "--github-repo",
                "acme/weather",
                "--metric",
                "balanced_accuracy",
                "--yes",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out

    settings = load_config("dev", project / "config", environ={}).settings
    assert (settings.project.name, settings.project.region) == (new, "us-east-2")
    assert settings.project.github_repo == "acme/weather"
    assert settings.gate.metric == "balanced_accuracy"
    assert "balanced_accuracy" in settings.evaluation.metrics  # the gate's metric is computed
    assert "# TEMPLATE:" in (project / "config" / "project.yaml").read_text()  # comments kept

    renamed = project / "notes" / f"{new.replace('-', '_')}_plan.txt"
    assert renamed.read_text() == f"{new}-dev-data\n{new.replace('-', '_').upper()}\n"
    assert f"renamed notes/{snake}_plan.txt -> notes/{renamed.name}" in out
    assert "  notes/" in out and "  README.md (" in out

    for env in ("dev", "prod"):
        asl = json.loads((project / "pipeline" / f"statemachine.{env}.asl.json").read_text())
        assert f"{new}-{env}-models" in json.dumps(asl)
    readme = (project / "README.md").read_text()
    assert readme.startswith(f"# {new}") and old not in readme
    assert "```mermaid\nflowchart TD" in readme
    assert "`mlops bootstrap --env dev`" in out and "AWS_DEPLOY_ROLE_ARN" in out
    # Outside a git checkout detect-secrets would scan nothing: the baseline is left for later.
    assert (project / ".secrets.baseline").read_bytes() == baseline
    assert "refresh the secrets baseline (this folder is no git checkout)" in out


def test_prompts_ask_for_what_was_not_given_and_again_after_a_bad_answer(
    project, monkeypatch, capsys
):
    answers = iter(["Bad Name", "weather-watch", "none", "", "f1_macro"])
    asked: list[str] = []

    def prompt(question: str) -> str:
        asked.append(question)
        return next(answers)

    monkeypatch.setattr("builtins.input", prompt)
    base = init.current(project / "config")
    assert main(["init", "--region", "eu-central-1"]) == 0
    out = capsys.readouterr().out
    assert "'Bad Name': must be lowercase letters" in out
    # --region was given; the bad name is asked again.
    expected = ["name", "name", "github_repo", "label_column", "metric"]
    assert [q.split(" [")[0] for q in asked] == [init.QUESTIONS[k] for k in expected]
    assert asked[0].endswith("[weather-watch]: ")  # the folder's name as the default
    settings = load_config("dev", project / "config", environ={}).settings
    assert settings.project.name == "weather-watch"
    assert settings.project.region == "eu-central-1"
    assert settings.project.github_repo is None
    assert settings.data.label_column == base["data"]["label_column"]
    assert settings.gate.metric == "f1_macro"


def test_a_label_the_sample_data_lacks_is_set_and_named_as_a_next_step(project, capsys):
    shutil.copytree(REPO / "data" / "sample", project / "data" / "sample")
    assert main(["init", "--name", "weather-watch", "--label-column", "storm", "--yes"]) == 0
    assert load_config("dev", project / "config", environ={}).settings.data.label_column == "storm"
    assert "data/sample/ has no column 'storm' yet: replace the sample data" in (
        capsys.readouterr().out
    )


def test_input_that_ends_before_an_answer_is_a_user_error(project, monkeypatch, capsys):
    def ended(question: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", ended)
    assert main(["init", "--name", "weather-watch"]) == 2
    assert "--region: no answer (input ended). Fix: pass --region, or --yes" in (
        capsys.readouterr().err
    )


def test_bootstrap_without_a_repository_given_or_configured_is_a_user_error(
    config_copy, monkeypatch, capsys
):
    base = config_copy / "project.yaml"
    base.write_text(init.set_value(base.read_text(), "project", "github_repo", None))
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(config_copy))
    assert main(["bootstrap", "--env", "dev"]) == 2
    err = capsys.readouterr().err
    assert "--github-repo: not given, and project.github_repo is not set" in err
