from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline.config import (
    NAME_RULES,
    RUN_SUFFIX_LEN,
    ConfigError,
    bucket_name_problem,
    derive_names,
    load_config,
    shorten,
)

REPO = Path(__file__).resolve().parents[3]


def _edit(config_dir: Path, mutate, file: str = "project.yaml") -> None:
    path = config_dir / file
    data = yaml.safe_load(path.read_text()) or {}
    mutate(data)
    path.write_text(yaml.safe_dump(data))


def test_shipped_config_loads_for_every_environment():
    for overlay in sorted((REPO / "config" / "env").glob("*.yaml")):
        cfg = load_config(overlay.stem, REPO / "config", environ={})
        assert cfg.env == overlay.stem
        assert cfg.warnings == []


def test_overlay_is_merged_over_base():
    prod = load_config("prod", REPO / "config", environ={})
    dev = load_config("dev", REPO / "config", environ={})
    assert prod.settings.gate.min_improvement == 0.005
    assert dev.settings.gate.min_improvement == 0.0
    # Deep merge: the overlay changes one hyperparameter and keeps the others.
    assert dev.settings.training.hyperparameters["n_estimators"] == 50
    assert dev.settings.training.hyperparameters["model"] == "random_forest"


def test_every_derived_name_contains_project_and_environment():
    cfg = load_config("prod", REPO / "config", environ={})
    project = cfg.settings.project.name
    assert set(cfg.names) == set(NAME_RULES)
    for kind, name in cfg.names.items():
        assert name.startswith(f"{project}-prod"), kind


def test_changing_project_name_changes_every_name(config_copy: Path):
    before = load_config("dev", config_copy, environ={})
    _edit(config_copy, lambda d: d["project"].update(name="fraud-score"))
    after = load_config("dev", config_copy, environ={})
    for kind in NAME_RULES:
        assert before.names[kind] != after.names[kind]
        assert after.names[kind].startswith("fraud-score-dev")
    assert all(uri.startswith("s3://fraud-score-dev-data/") for uri in after.data_uris.values())


def test_environment_variable_overrides_a_nested_field():
    env = {"MLOPS__TRAINING__MAX_RUNTIME_SECONDS": "7200", "MLOPS__GATE__MIN_IMPROVEMENT": "0.01"}
    cfg = load_config("dev", REPO / "config", environ=env)
    assert cfg.settings.training.max_runtime_seconds == 7200
    assert cfg.settings.gate.min_improvement == 0.01
    assert "MLOPS__TRAINING__MAX_RUNTIME_SECONDS" in cfg.files


def test_environment_selected_by_mlops_env_variable():
    cfg = load_config(None, REPO / "config", environ={"MLOPS_ENV": "prod"})
    assert cfg.env == "prod"


def test_long_name_is_shortened_with_hash_and_warning():
    names, warnings = derive_names("a" * 40, "staging")
    for kind, (limit, _) in NAME_RULES.items():
        assert len(names[kind]) <= limit, kind
    assert len(names["training_job_prefix"]) <= 63 - RUN_SUFFIX_LEN
    assert re.search(r"-[0-9a-f]{6}$", names["training_job_prefix"])
    assert any("training_job_prefix" in w and "over the AWS limit" in w for w in warnings)


def test_shortening_is_deterministic_and_distinct():
    assert shorten("x" * 100, 20) == shorten("x" * 100, 20)
    assert shorten("x" * 100, 20) != shorten("x" * 99 + "y", 20)
    assert shorten("short", 20) == "short"


def test_training_job_names_fit_sagemaker_pattern():
    names, _ = derive_names("a" * 40, "prod")
    job = names["training_job_prefix"] + "-" + "0" * (RUN_SUFFIX_LEN - 1)
    assert len(job) <= 63
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", job)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("ab", "3 to 63"),
        ("Upper-case", "lowercase"),
        ("a..b", "adjacent dots"),
        ("192.168.1.1", "IP address"),
        ("xn--abc", "xn--"),
        ("abc-s3alias", "-s3alias"),
        ("valid-bucket-name", None),
    ],
)
def test_bucket_name_rules(name, problem):
    found = bucket_name_problem(name)
    if problem is None:
        assert found is None
    else:
        assert problem in found


# --- bad configs: one readable line naming file, field and fix ----------------------


BAD_CONFIGS = {
    "unknown_key": (
        lambda d: d["training"].update(instance_typo="ml.m5.large"),
        "training.instance_typo",
        "unknown key",
    ),
    "wrong_type": (
        lambda d: d["training"].update(instance_count="two"),
        "training.instance_count",
        "integer",
    ),
    "invalid_project_name": (
        lambda d: d["project"].update(name="My_Project"),
        "project.name",
        "lowercase",
    ),
    "invalid_region": (
        lambda d: d["project"].update(region="europe"),
        "project.region",
        "region code",
    ),
    "bad_literal": (lambda d: d["gate"].update(direction="up"), "gate.direction", "maximize"),
    "gate_metric_not_evaluated": (
        lambda d: d["gate"].update(metric="roc_auc"),
        "gate.metric",
        "roc_auc",
    ),
    "label_is_feature": (
        lambda d: d["data"]["feature_columns"].append("diagnosis"),
        "data",
        "also in feature_columns",
    ),
    "missing_section": (lambda d: d.pop("gate"), "gate", "missing"),
    "split_too_large": (
        lambda d: d["data"]["split"].update(validation=0.5, test=0.45),
        "data.split",
        "10%",
    ),
    "bad_instance_type": (
        lambda d: d["training"].update(instance_type="m5.large"),
        "training.instance_type",
        "pattern",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_names_file_field_and_fix(config_copy: Path, case: str):
    mutate, field, words = BAD_CONFIGS[case]
    _edit(config_copy, mutate)
    with pytest.raises(ConfigError) as info:
        load_config("dev", config_copy, environ={})
    message = str(info.value)
    assert "\n" not in message
    assert "project.yaml" in message
    assert f": {field}:" in message
    assert words in message
    assert "Fix:" in message


def test_bad_value_in_overlay_names_the_overlay(config_copy: Path):
    _edit(config_copy, lambda d: d["gate"].update(min_improvement=-1), file="env/prod.yaml")
    with pytest.raises(ConfigError, match=r"env/prod\.yaml: gate\.min_improvement:"):
        load_config("prod", config_copy, environ={})


def test_bad_environment_override_names_the_variable():
    with pytest.raises(
        ConfigError, match=r"^MLOPS__TRAINING__INSTANCE_COUNT: training\.instance_count:"
    ):
        load_config("dev", REPO / "config", environ={"MLOPS__TRAINING__INSTANCE_COUNT": "many"})


def test_unknown_override_field_is_rejected():
    with pytest.raises(ConfigError, match=r"MLOPS__TRAINING__GPUS: training\.gpus: unknown key"):
        load_config("dev", REPO / "config", environ={"MLOPS__TRAINING__GPUS": "1"})


def test_missing_config_file(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"project\.yaml: file not found\. Fix:"):
        load_config("dev", tmp_path / "nowhere", environ={})


def test_invalid_yaml_reports_line(config_copy: Path):
    (config_copy / "project.yaml").write_text("project:\n  name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"project\.yaml: line \d+, column \d+: invalid YAML"):
        load_config("dev", config_copy, environ={})


def test_top_level_must_be_mapping(config_copy: Path):
    (config_copy / "project.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config("dev", config_copy, environ={})


def test_unknown_environment_lists_known_ones():
    with pytest.raises(ConfigError, match=r"no overlay for environment 'qa'.*\['dev', 'prod'\]"):
        load_config("qa", REPO / "config", environ={})


def test_invalid_environment_name():
    with pytest.raises(ConfigError, match="environment 'Prod!'"):
        load_config("Prod!", REPO / "config", environ={})


def test_more_than_one_training_instance_is_refused_for_scikit_learn():
    with pytest.raises(
        ConfigError,
        match=r"training\.instance_count: the SageMaker scikit-learn container trains on one instance only",
    ):
        load_config("dev", REPO / "config", environ={"MLOPS__TRAINING__INSTANCE_COUNT": "2"})
