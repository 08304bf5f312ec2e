"""`mlops init`: make a copy of the template a new project, in one command.

A fork must leave nothing of the template's project behind and pass its own tests at
once, so init:
  1. checks every answer with the config model's own rules (pipeline/config.py) and
     refuses a name AWS would reject, saying why, before anything is written;
  2. sets the answers in config/project.yaml, line by line so its comments survive;
  3. respells the old project name (any case, "-", "_", " " or no separator) in every
     file of the repository, including files added after this module was written, and
     renames paths that carry it;
  4. re-renders what derives from config (the ASL of every environment, the README
     diagram), removes the template's own measurements and refreshes the
     detect-secrets baseline;
  5. reports what it changed and what to do next.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.config import (
    BASE_FILE,
    OVERLAY_DIR,
    SUPPORTED_METRICS,
    ConfigError,
    DataSection,
    ProjectSection,
    _describe,
    _read_yaml,
    derive_names,
    load_config,
)

# Directories never rewritten when the project is not a git checkout (with git, its
# ignore rules decide): environments, caches and build output.
SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache"}
SKIP_DIRS |= {".mlops", "build", "dist", "spark-warehouse", "metastore_db"}
# The template's own history: figures measured on the template's machine.
TEMPLATE_HISTORY = ["bench/results.json", "bench/results.md"]
# The places a new project replaces first carry this comment tag.
FORK_TAG = "TEMPLATE:"


@dataclass
class Answers:
    name: str
    region: str
    github_repo: str | None
    label_column: str
    metric: str


# option -> question, in the order init asks them.
QUESTIONS = {
    "name": "project name (lowercase letters, digits and hyphens)",
    "region": "AWS region",
    "github_repo": "GitHub repository OWNER/REPO (empty: none yet)",
    "label_column": "label column of your data",
    "metric": f"gate metric, one of {', '.join(SUPPORTED_METRICS)}",
}


@dataclass
class Report:
    rewritten: dict[str, int] = field(default_factory=dict)  # path -> replacements
    renamed: list[tuple[str, str]] = field(default_factory=list)
    generated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)


# --- answers ---------------------------------------------------------------------------


def current(config_dir: Path) -> dict[str, Any]:
    """config/project.yaml as written (no overlay, no MLOPS__ overrides), checked first."""
    for env in environments(config_dir):
        load_config(env, config_dir, environ={})
    return _read_yaml(config_dir / BASE_FILE, f"config/{BASE_FILE}")


def _model_problem(model: type[BaseModel], data: dict[str, Any], key: str) -> str | None:
    """The config model's objection to `key` (or to the section as a whole), if any."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            if not error["loc"] or error["loc"][0] == key:
                return _describe(error)[0]
    return None


def problem(option: str, value: Any, base: dict[str, Any], envs: list[str]) -> str | None:
    """Why `value` cannot be the answer for `option`, in the config's own words, or None."""
    if option in ("name", "region", "github_repo"):
        found = _model_problem(ProjectSection, {**base["project"], option: value}, option)
        if found or option != "name":
            return found
        for env in envs:  # the derived names: a bucket name S3 would refuse, say
            try:
                derive_names(value, env)
            except ConfigError as exc:
                return str(exc).removeprefix("project.name: ").split(". Fix:")[0]
        return None
    if option == "label_column":
        return _model_problem(DataSection, {**base["data"], "label_column": value}, option)
    if value not in SUPPORTED_METRICS:
        return f"{value!r} is not a metric the evaluation computes ({', '.join(SUPPORTED_METRICS)})"
    return None


def defaults(root: Path, base: dict[str, Any]) -> dict[str, Any]:
    """What --yes accepts: the folder's name as project name when it is a valid one, the
    GitHub repository of the `origin` remote, and the config's current values."""
    folder = re.sub(r"[^a-z0-9]+", "-", root.resolve().name.lower()).strip("-")
    name = folder if _valid_name(folder) else base["project"]["name"]
    return {
        "name": name,
        "region": base["project"]["region"],
        "github_repo": _origin_repo(root) or base["project"].get("github_repo"),
        "label_column": base["data"]["label_column"],
        "metric": base["gate"]["metric"],
    }


def _valid_name(name: str) -> bool:
    try:
        ProjectSection(name=name, region="eu-west-1")
    except ValidationError:
        return False
    return True


def _origin_repo(root: Path) -> str | None:
    try:
        url = subprocess.run(
            ["git", "remote", "get-url", "origin"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return None
    found = re.search(r"github\.com[:/]([^/]+/[^/]+?)(\.git)?/?$", url)
    return found.group(1) if found else None


def ask(
    given: dict[str, Any],
    base: dict[str, Any],
    envs: list[str],
    root: Path,
    accept_defaults: bool,
    prompt: Callable[[str], str] | None = None,
    say: Callable[[str], None] = print,
) -> Answers:
    """Options as given, the rest from the prompt (or the defaults with --yes).

    A given option that is wrong is an error; a wrong typed answer is asked again."""
    prompt = prompt or input  # looked up now, so a test (or a wrapper) can replace it
    fallback = defaults(root, base)
    values: dict[str, Any] = {}
    for option, question in QUESTIONS.items():
        flag = "--" + option.replace("_", "-")
        if given.get(option) is not None:
            value = given[option]
        elif accept_defaults:
            value = fallback[option]
        else:
            while True:
                shown = fallback[option] if fallback[option] is not None else "none"
                try:
                    typed = prompt(f"{question} [{shown}]: ").strip()
                except EOFError:
                    raise ConfigError(
                        f"{flag}: no answer (input ended). Fix: pass {flag}, or --yes to "
                        "accept the defaults"
                    ) from None
                value = _none(option, typed or fallback[option])
                found = value is not None and problem(option, value, base, envs)
                if not found:
                    break
                say(f"  {value!r}: {found}")
        value = _none(option, value)
        found = value is not None and problem(option, value, base, envs)
        if found:
            raise ConfigError(f"{flag} {value!r}: {found}. Fix: choose another value")
        values[option] = value
    return Answers(**values)


def _none(option: str, value: Any) -> Any:
    """The repository is the one optional answer: "none" or empty leaves it unset."""
    return None if option == "github_repo" and value in ("", "none") else value


# --- config/project.yaml ----------------------------------------------------------------


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    plain = str(value)
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", plain) and yaml.safe_load(plain) == value:
        return plain
    return json.dumps(value)


def set_value(text: str, section: str, key: str, value: Any) -> str:
    """`section.key: value` in YAML text, keeping the comment (and its column) on that line."""
    lines = text.splitlines(keepends=True)
    inside = False
    for i, line in enumerate(lines):
        if re.match(r"[A-Za-z_]", line):
            inside = line.split(":", 1)[0] == section
            continue
        found = inside and re.match(rf"^(  {key}:\s*)([^#\n]*?)(\s*#.*)?(\n?)$", line)
        if found:
            head, _, comment, end = found.groups()
            body = head.rstrip() + " " + _scalar(value)
            if comment:
                column = len(head) + len(found.group(2)) + len(comment) - len(comment.lstrip())
                body = body.ljust(max(column, len(body) + 2)) + comment.lstrip()
            lines[i] = body + end
            break
    else:
        raise ConfigError(
            f"config/{BASE_FILE}: no {section}.{key} line to set. Fix: add `{key}:` under "
            f"`{section}:`"
        )
    updated = "".join(lines)
    if yaml.safe_load(updated)[section][key] != value:  # a line this editor misread
        raise ConfigError(
            f"config/{BASE_FILE}: could not set {section}.{key} to {value!r} in place. "
            "Fix: set it by hand, then run `mlops init` again"
        )
    return updated


def write_config(config_dir: Path, answers: Answers) -> bool:
    """Set the answers in project.yaml; refuse (leaving it as it was) what load_config
    refuses for any environment. Returns whether the file changed."""
    path = config_dir / BASE_FILE
    before = path.read_text()
    doc = yaml.safe_load(before)
    text = before
    for section, key, value in (
        ("project", "name", answers.name),
        ("project", "region", answers.region),
        ("project", "github_repo", answers.github_repo),
        ("data", "label_column", answers.label_column),
        ("gate", "metric", answers.metric),
    ):
        if doc[section].get(key) != value:
            text = set_value(text, section, key, value)
    metrics = doc["evaluation"]["metrics"]
    if answers.metric not in metrics:  # the gate compares a metric the evaluation computes
        text = set_value(text, "evaluation", "metrics", [*metrics, answers.metric])
    path.write_text(text)
    try:
        for env in environments(config_dir):
            load_config(env, config_dir, environ={})
    except ConfigError:
        path.write_text(before)
        raise
    return text != before


def environments(config_dir: Path) -> list[str]:
    return sorted(p.stem for p in (config_dir / OVERLAY_DIR).glob("*.yaml"))


# --- the old name, everywhere -----------------------------------------------------------


def spellings(name: str) -> re.Pattern[str]:
    """Every spelling of a project name: any case, words joined by "-", "_", " " or nothing,
    not inside a longer word (a following capital is allowed: CamelCase)."""
    words = r"[-_ ]?".join(re.escape(w) for w in name.split("-"))
    return re.compile(rf"(?<![A-Za-z0-9]){words}(?-i:(?![a-z0-9]))", re.IGNORECASE)


def respell(found: str, new: str, old_words: int) -> str:
    """`new` written the way `found` writes the old name: same case, same separator."""
    words = new.split("-")
    if found.isupper():
        words, separator = [w.upper() for w in words], "_"
    elif found[:1].isupper():
        words, separator = [w.capitalize() for w in words], ""
    else:
        separator = "-"
    if old_words > 1:  # a one-word old name shows no separator; keep the case's default
        separator = next((c for c in found if c in "-_ "), "")
    return separator.join(words)


def git_checkout(root: Path) -> bool:
    """Whether `root` is the top of a git checkout."""
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True
        )
    except OSError:  # no git at all
        return False
    return top.returncode == 0 and Path(top.stdout.strip()).resolve() == root.resolve()


def project_files(root: Path) -> Iterator[Path]:
    """The repository's files: git's view (tracked plus untracked-not-ignored) in a
    checkout, else every file outside SKIP_DIRS."""
    if git_checkout(root):
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        )
        names = sorted({n for n in listed.stdout.decode().split("\0") if n})
        yield from (root / n for n in names if (root / n).is_file() and not (root / n).is_symlink())
        return
    for folder, dirs, files in os.walk(root):  # pruned: never into .venv or node_modules
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(folder) / name
            if not path.is_symlink():
                yield path


def read_text(path: Path) -> str | None:
    """The file's text, or None for a binary file."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def rename_everywhere(root: Path, old: str, new: str, report: Report) -> None:
    pattern = spellings(old)
    words = len(old.split("-"))
    for path in list(project_files(root)):
        text = read_text(path)
        rel = path.relative_to(root).as_posix()
        if text is not None and pattern.search(text):
            updated, count = pattern.subn(lambda m: respell(m.group(0), new, words), text)
            path.write_text(updated, encoding="utf-8")
            report.rewritten[rel] = count
        if pattern.search(rel):
            target = root / pattern.sub(lambda m: respell(m.group(0), new, words), rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
            report.renamed.append((rel, target.relative_to(root).as_posix()))


# --- derived files and the template's history ------------------------------------------


def regenerate(root: Path, config_dir: Path, report: Report) -> None:
    from pipeline import graph, workflow

    for env in environments(config_dir):
        cfg = load_config(env, config_dir, environ={})
        report.warnings += [w for w in cfg.warnings if w not in report.warnings]
        path = workflow.asl_path(cfg)
        path.write_text(workflow.render(cfg))
        report.generated.append(path.relative_to(root).as_posix())
    readme = root / "README.md"
    envs = environments(config_dir)
    if readme.is_file() and graph.BEGIN in readme.read_text():  # `mlops graph` draws dev
        drawn = load_config("dev" if "dev" in envs else envs[0], config_dir, environ={})
        readme.write_text(graph.diagram_update(readme, drawn)[1])
        report.generated.append("README.md (diagram)")


def reset_history(root: Path, report: Report) -> None:
    for rel in TEMPLATE_HISTORY:
        if (root / rel).is_file():
            (root / rel).unlink()
            report.removed.append(rel)
    baseline = root / ".secrets.baseline"
    if not baseline.is_file():
        return
    tool = shutil.which("detect-secrets") or shutil.which(
        "detect-secrets", path=str(Path(sys.executable).parent)
    )
    # detect-secrets scans the files git tracks; outside a checkout it would empty the baseline.
    if not tool or not git_checkout(root):
        why = "detect-secrets was not found" if not tool else "this folder is no git checkout"
        report.todo.append(
            f"refresh the secrets baseline ({why}): `git init && git add -A` if needed, then "
            "`detect-secrets scan --baseline .secrets.baseline`"
        )
        return
    done = subprocess.run(
        [tool, "scan", "--baseline", ".secrets.baseline"], cwd=root, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise ConfigError(
            f".secrets.baseline: detect-secrets failed ({done.stderr.strip()[:200]}). "
            "Fix: run `detect-secrets scan --baseline .secrets.baseline` and read its error"
        )
    report.generated.append(".secrets.baseline")


# --- the whole fork ---------------------------------------------------------------------


def initialise(root: Path, config_dir: Path, answers: Answers) -> Report:
    report = Report()
    old = current(config_dir)["project"]["name"]
    if write_config(config_dir, answers):
        report.rewritten[config_dir.joinpath(BASE_FILE).relative_to(root).as_posix()] = 0
    if old != answers.name:
        rename_everywhere(root, old, answers.name, report)
    regenerate(root, config_dir, report)
    reset_history(root, report)
    header = _sample_header(root)
    if header and answers.label_column not in header:
        report.todo.append(
            f"data/sample/ has no column {answers.label_column!r} yet: replace the sample data "
            "before `make demo` and the end-to-end tests"
        )
    return report


def _sample_header(root: Path) -> list[str]:
    """The columns of the first sample drop, or [] when there is none."""
    first = sorted((root / "data" / "sample").glob("*/data.csv"))
    return first[0].read_text().split("\n", 1)[0].split(",") if first else []


def next_steps(answers: Answers, report: Report, envs: list[str]) -> list[str]:
    repo = answers.github_repo or "OWNER/REPO"
    repo_flag = "" if answers.github_repo else " --github-repo OWNER/REPO"
    first = envs[0] if envs else "dev"
    return [
        *report.todo,
        "review and commit: `git add -A && git commit -m 'Start the project from the template'`",
        f"replace the template's model and data first: `git grep -n '{FORK_TAG}'` lists the "
        "training code, the data schema and the sample data generator",
        "`make test`: the fork's own tests, on the local cloud",
        f"bootstrap the GitHub OIDC deploy role and the data bucket, as an AWS administrator, "
        f"once per environment ({', '.join(envs)}): `mlops bootstrap --env {first}{repo_flag}`",
        f"in {repo} on GitHub (Settings > Environments): create each environment and set its "
        "variable AWS_DEPLOY_ROLE_ARN to the DeployRoleArn its bootstrap printed",
    ]


def render_report(answers: Answers, report: Report, envs: list[str]) -> str:
    out = [f"project {answers.name} in {answers.region}"]
    for warning in report.warnings:
        out.append(f"warning: {warning}")
    if report.rewritten:
        out.append(f"rewrote {len(report.rewritten)} file(s):")
        out += [f"  {p}" + (f" ({n} x old name)" if n else "") for p, n in report.rewritten.items()]
    out += [f"renamed {a} -> {b}" for a, b in report.renamed]
    out += [f"regenerated {p}" for p in report.generated]
    out += [
        f"removed {p} (the template's figures; `make bench` measures yours)" for p in report.removed
    ]
    out.append("next steps:")
    out += [f"  {i}. {step}" for i, step in enumerate(next_steps(answers, report, envs), 1)]
    return "\n".join(out)
