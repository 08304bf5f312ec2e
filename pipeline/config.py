"""The typed project config: one source for every setting and AWS resource name.

`load_config(env)` reads config/project.yaml, merges config/env/<env>.yaml over
it, applies MLOPS__SECTION__FIELD environment overrides, validates the result
and derives every resource name. Any problem raises ConfigError with one line
naming the file, the field and the fix.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "MLOPS__"
ENV_SELECT_VAR = "MLOPS_ENV"
CONFIG_DIR_VAR = "MLOPS_CONFIG_DIR"
DEFAULT_ENV = "dev"
BASE_FILE = "project.yaml"
OVERLAY_DIR = "env"

# Characters reserved in the training-job and model names for the per-execution
# suffix the manifest Lambda appends ("-" + a 16-character run key).
RUN_SUFFIX_LEN = 17

PROJECT_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
# GitHub: an owner is at most 39 alphanumerics and single inner hyphens; "." and ".." are no repos.
GITHUB_REPO_RE = re.compile(
    r"^(?=[^/]{1,39}/)[A-Za-z0-9]+(-[A-Za-z0-9]+)*/(?!\.\.?$)[A-Za-z0-9._-]{1,100}$"
)
SUPPORTED_METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "balanced_accuracy")


class ConfigError(Exception):
    """A config problem a user fixes by editing a file or an environment variable."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectSection(_Strict):
    name: str = Field(min_length=2, max_length=40)
    region: str
    # The repository whose workflows may deploy (the OIDC role's trust); `mlops init` sets it
    # and `mlops bootstrap` defaults to it.
    github_repo: str | None = None

    @field_validator("github_repo")
    @classmethod
    def _repo_shape(cls, v: str | None) -> str | None:
        if v is not None and not GITHUB_REPO_RE.match(v):
            raise ValueError(
                "must be OWNER/REPO as on GitHub: an owner of letters, digits and single "
                "hyphens (at most 39), a repository of letters, digits, '.', '_' and '-'"
            )
        return v

    @field_validator("name")
    @classmethod
    def _name_shape(cls, v: str) -> str:
        if not PROJECT_NAME_RE.match(v):
            raise ValueError(
                "must be lowercase letters, digits and single hyphens, starting with a letter "
                "(it becomes part of S3 bucket and SageMaker names)"
            )
        return v

    @field_validator("region")
    @classmethod
    def _region_shape(cls, v: str) -> str:
        if not REGION_RE.match(v):
            raise ValueError("must be an AWS region code such as eu-west-1")
        return v


class SplitSection(_Strict):
    validation: float = Field(gt=0, lt=1)
    test: float = Field(gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> SplitSection:
        if self.validation + self.test >= 0.9:
            raise ValueError("validation + test must leave at least 10% of rows for training")
        return self


class DataSection(_Strict):
    label_column: str
    feature_columns: list[str] = Field(min_length=1)
    input_format: Literal["csv", "parquet"] = "csv"
    output_format: Literal["csv", "parquet"] = "csv"
    split: SplitSection

    @field_validator("label_column")
    @classmethod
    def _label_shape(cls, v: str) -> str:
        if not COLUMN_RE.match(v):
            raise ValueError("must be a column name of letters, digits and underscores")
        return v

    @field_validator("feature_columns")
    @classmethod
    def _features_shape(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not COLUMN_RE.match(c)]
        if bad:
            raise ValueError(f"{bad} are not column names of letters, digits and underscores")
        dupes = sorted({c for c in v if v.count(c) > 1})
        if dupes:
            raise ValueError(f"{dupes} listed more than once")
        return v

    @model_validator(mode="after")
    def _label_not_a_feature(self) -> DataSection:
        if self.label_column in self.feature_columns:
            raise ValueError(f"label_column {self.label_column!r} is also in feature_columns")
        return self


class EtlSection(_Strict):
    glue_version: str = "5.0"
    worker_type: Literal["G.1X", "G.2X", "G.4X", "G.8X", "G.025X"] = "G.1X"
    number_of_workers: int = Field(default=2, ge=2, le=299)
    timeout_minutes: int = Field(default=30, ge=1, le=2880)
    max_concurrent_runs: int = Field(default=10, ge=1, le=1000)


class TrainingSection(_Strict):
    framework_version: str = Field(pattern=r"^\d+\.\d+-\d+$")
    instance_type: str = Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    instance_count: int = Field(ge=1, le=20)
    max_runtime_seconds: int = Field(ge=60, le=432000)
    hyperparameters: dict[str, str | int | float | bool] = {}

    @field_validator("instance_count")
    @classmethod
    def _one_instance(cls, v: int) -> int:
        if v != 1:
            raise ValueError(
                "the SageMaker scikit-learn container trains on one instance only (no distributed "
                "training); use 1, or a bigger instance_type"
            )
        return v


class EvaluationSection(_Strict):
    metrics: list[Literal[SUPPORTED_METRICS]] = Field(min_length=1)  # type: ignore[valid-type]


class GateSection(_Strict):
    metric: str
    direction: Literal["maximize", "minimize"] = "maximize"
    min_improvement: float = Field(default=0.0, ge=0)


class EndpointWaitSection(_Strict):
    """How the state machine waits for Create/UpdateEndpoint to serve the new model: it polls
    DescribeEndpoint after poll_seconds, then each wait poll_seconds longer (1, 2, 3 s... locally
    done in a poll or two; a 10-minute AWS update in about 35), until timeout_seconds."""

    poll_seconds: int = Field(default=1, ge=1, le=300)
    timeout_seconds: int = Field(default=3600, ge=1, le=86400)


class EndpointSection(_Strict):
    instance_type: str = Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    initial_instance_count: int = Field(ge=1, le=10)
    wait: EndpointWaitSection = EndpointWaitSection()


class NotificationsSection(_Strict):
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    notify_on: list[Literal["promoted", "rejected", "failed"]] = ["promoted", "rejected", "failed"]


class Settings(_Strict):
    """What config/project.yaml (plus overlay and overrides) may contain."""

    project: ProjectSection
    data: DataSection
    etl: EtlSection = EtlSection()
    training: TrainingSection
    evaluation: EvaluationSection
    gate: GateSection
    endpoint: EndpointSection
    notifications: NotificationsSection = NotificationsSection()


def _cross_section_problems(settings: Settings) -> list[tuple[tuple[str, ...], str, str]]:
    """Rules spanning sections, as (field path, problem, fix); pydantic would report them
    without a field name."""
    problems = []
    if settings.gate.metric not in settings.evaluation.metrics:
        problems.append(
            (
                ("gate", "metric"),
                f"{settings.gate.metric!r} is not one of evaluation.metrics {list(settings.evaluation.metrics)}",
                "use one of those metrics or add it to evaluation.metrics",
            )
        )
    return problems


# --- derived names ------------------------------------------------------------------

# kind -> (AWS length limit, suffix appended to "<project>-<env>")
NAME_RULES: dict[str, tuple[int, str]] = {
    "stack": (128, ""),
    "bootstrap_stack": (128, "-bootstrap"),
    "bucket": (63, "-data"),
    "state_machine": (80, "-retrain"),
    "table": (255, "-models"),
    "topic": (256, "-events"),
    "glue_job": (255, "-etl"),
    "endpoint": (63, ""),
    "training_job_prefix": (63 - RUN_SUFFIX_LEN, ""),
    "model_prefix": (63 - RUN_SUFFIX_LEN, ""),
    "lambda_manifest": (64, "-manifest"),
    "lambda_evaluate": (64, "-evaluate"),
    "lambda_promote": (64, "-promote"),
    "lambda_notify": (64, "-notify"),
    "role_states": (64, "-states"),
    "role_glue": (64, "-glue"),
    "role_sagemaker": (64, "-sagemaker"),
    "role_lambda": (64, "-lambda"),
    "role_events": (64, "-events"),
    "role_deploy": (64, "-deploy"),
    "data_rule": (64, "-new-data"),
    "failure_rule": (64, "-failed-runs"),
}

DATA_PREFIXES = {
    "raw": "raw/",
    "manifests": "manifests/",
    "processed": "processed/",
    "models": "models/",
    "code": "code/",
}


def shorten(name: str, limit: int) -> str:
    """Fit `name` into `limit` characters, keeping it unique with a short hash."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:6]
    return f"{name[: limit - 7].rstrip('-')}-{digest}"


def bucket_name_problem(name: str) -> str | None:
    """Why S3 would reject `name` as a bucket name, or None."""
    if not 3 <= len(name) <= 63:
        return "must be 3 to 63 characters"
    if not re.match(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$", name):
        return (
            "must be lowercase letters, digits, dots and hyphens, starting and ending alphanumeric"
        )
    if ".." in name:
        return "must not contain two adjacent dots"
    try:
        ipaddress.ip_address(name)
        return "must not look like an IP address"
    except ValueError:
        pass
    for prefix in ("xn--", "sthree-", "amzn-s3-demo-"):
        if name.startswith(prefix):
            return f"must not start with {prefix!r}"
    for suffix in ("-s3alias", "--ol-s3", "--x-s3", ".mrap"):
        if name.endswith(suffix):
            return f"must not end with {suffix!r}"
    return None


def derive_names(project: str, env: str) -> tuple[dict[str, str], list[str]]:
    """Every resource name for one project and environment, plus shortening warnings."""
    base = f"{project}-{env}"
    names: dict[str, str] = {}
    warnings: list[str] = []
    for kind, (limit, suffix) in NAME_RULES.items():
        full = base + suffix
        names[kind] = shorten(full, limit)
        if names[kind] != full:
            warnings.append(
                f"{kind} name {full!r} is {len(full)} characters, over the AWS limit of {limit}; "
                f"using {names[kind]!r}"
            )
    problem = bucket_name_problem(names["bucket"])
    if problem:
        raise ConfigError(
            f"project.name: the derived bucket name {names['bucket']!r} {problem}. "
            "Fix: choose another project.name"
        )
    return names, warnings


# --- loading --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectConfig:
    """The resolved config of one environment: settings plus everything derived."""

    env: str
    settings: Settings
    names: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    # The project directory holding config/ (rendered ASL files live under it too).
    root: Path = field(default_factory=Path.cwd)

    @property
    def data_uris(self) -> dict[str, str]:
        bucket = self.names["bucket"]
        return {key: f"s3://{bucket}/{prefix}" for key, prefix in DATA_PREFIXES.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "files": self.files,
            "settings": self.settings.model_dump(mode="json"),
            "names": dict(self.names),
            "data": {"bucket": self.names["bucket"], **self.data_uris},
            "warnings": list(self.warnings),
        }


def find_config_dir(start: Path | None = None) -> Path:
    """$MLOPS_CONFIG_DIR, else the nearest config/project.yaml above the working directory."""
    override = os.environ.get(CONFIG_DIR_VAR)
    if override:
        return Path(override)
    here = (start or Path.cwd()).resolve()
    for parent in (here, *here.parents):
        if (parent / "config" / BASE_FILE).is_file():
            return parent / "config"
    return here / "config"


def _read_yaml(path: Path, display: str) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"{display}: file not found. Fix: create it, or run from the project root "
            f"(or set {CONFIG_DIR_VAR})"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{display}:{where}: invalid YAML ({problem}). Fix: correct the syntax"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{display}: the top level must be a mapping of sections, not a {type(data).__name__}"
        )
    return data


def _merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    overrides: dict[str, Any] = {}
    sources: dict[tuple[str, ...], str] = {}
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX):
            continue
        path = tuple(part.lower() for part in var[len(ENV_PREFIX) :].split("__"))
        if not all(path):
            raise ConfigError(f"{var}: empty field name. Fix: use {ENV_PREFIX}SECTION__FIELD=value")
        try:
            value = yaml.safe_load(environ[var])
        except yaml.YAMLError:
            value = environ[var]
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        sources[path] = var
    return overrides, sources


def _has_path(data: Mapping[str, Any], path: tuple[Any, ...]) -> bool:
    node: Any = data
    for part in path:
        in_mapping = isinstance(node, Mapping) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_mapping or in_list:
            node = node[part]
        else:
            return False
    return True


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    """One validation error as (problem, fix)."""
    kind = error["type"]
    got = error.get("input")
    if kind == "extra_forbidden":
        return (
            "unknown key",
            "remove it or correct its spelling (see config/project.yaml for the keys)",
        )
    if kind == "missing":
        return "required field is missing", "add it"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{got!r} is not allowed", f"use one of {expected}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{error['msg'].lower()} (got {got!r})", "change the value's type"
    msg = error["msg"].removeprefix("Value error, ")
    return f"{msg} (got {got!r})" if not isinstance(got, dict) else msg, "change the value"


def _display_path(path: Path) -> str:
    """A path relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def _source_of(
    loc: tuple[Any, ...],
    override_sources: dict[tuple[str, ...], str],
    overlay: Mapping[str, Any],
    overlay_display: str,
    base_display: str,
) -> str:
    """Which file (or environment variable) set the field at `loc`."""
    for path, var in override_sources.items():
        if loc[: len(path)] == path or path[: len(loc)] == loc:
            return var
    return overlay_display if _has_path(overlay, loc) else base_display


def load_config(
    env: str | None = None,
    config_dir: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ProjectConfig:
    environ = os.environ if environ is None else environ
    env = env or environ.get(ENV_SELECT_VAR) or DEFAULT_ENV
    cdir = Path(config_dir) if config_dir else find_config_dir()
    rel = _display_path(cdir)

    if not ENV_NAME_RE.match(env):
        raise ConfigError(
            f"environment {env!r}: must be 1-10 lowercase letters or digits, starting with a letter"
        )
    base_display = os.path.join(rel, BASE_FILE)
    base = _read_yaml(cdir / BASE_FILE, base_display)

    overlay_path = cdir / OVERLAY_DIR / f"{env}.yaml"
    overlay_display = os.path.join(rel, OVERLAY_DIR, f"{env}.yaml")
    if not overlay_path.is_file():
        known = sorted(p.stem for p in (cdir / OVERLAY_DIR).glob("*.yaml"))
        raise ConfigError(
            f"{overlay_display}: no overlay for environment {env!r}. "
            f"Fix: use one of {known} or create that file"
        )
    overlay = _read_yaml(overlay_path, overlay_display)
    overrides, override_sources = _env_overrides(environ)
    merged = _merge(_merge(base, overlay), overrides)

    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        source = _source_of(loc, override_sources, overlay, overlay_display, base_display)
        problem, fix = _describe(error)
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{source}: {dotted}: {problem}. Fix: {fix}{more}") from None
    for loc, problem, fix in _cross_section_problems(settings):
        source = _source_of(loc, override_sources, overlay, overlay_display, base_display)
        raise ConfigError(f"{source}: {'.'.join(loc)}: {problem}. Fix: {fix}")

    names, warnings = derive_names(settings.project.name, env)
    files = [base_display, overlay_display] + [override_sources[p] for p in override_sources]
    return ProjectConfig(
        env=env,
        settings=settings,
        names=names,
        warnings=warnings,
        files=files,
        root=cdir.resolve().parent,
    )
