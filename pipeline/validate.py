"""Offline checks of a state machine definition, beyond the JSON schema.

`validate_definition` returns findings ("file: state 'X': problem"); an empty list
means the definition passed. It checks, in this order: the ASL schema and rules
(the pinned `asl-validator` npm package), the graph (targets exist, every state is
reachable, non-terminal states continue), error handling (every Task has Retry and
Catch), resources (every Lambda placeholder names a handler in src/lambdas/, every
placeholder is one the deploy fills), data flow (every JSONPath a Choice reads is
written by a state on every path before it), the gate (the promote branch is
reachable only through the gate's comparison), the endpoint wait (no path from
Create/UpdateEndpoint ends in success without a Choice seeing EndpointStatus InService, or
seeing the PRODUCTION pointer name another run's model: both calls return before the endpoint
serves, or fails to serve, the new model) and concurrent promotions (every endpoint call follows
a Choice confirming the pointer still names this run's model, and none is retried in place, so
a superseded run's update cannot land after the winner's).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.workflow import GATE_VARIABLE, POINTER_MODEL, RUN_MODEL, SUBSTITUTIONS

REPO = Path(__file__).resolve().parents[1]
LAMBDA_DIR = REPO / "src" / "lambdas"
ASL_VALIDATOR = REPO / "node_modules" / ".bin" / "asl-validator"
PLACEHOLDER_RE = re.compile(r"\$\{([A-Za-z0-9]+)\}")
LAMBDA_PLACEHOLDER_RE = re.compile(r"^\$\{([A-Z][A-Za-z0-9]*)FunctionArn\}$")
# States whose effect is a promotion: only the gate's comparison may lead to them.
PROMOTING_RESOURCES = (
    "arn:aws:states:::sagemaker:createEndpoint",
    "arn:aws:states:::sagemaker:updateEndpoint",
)
TERMINAL_TYPES = {"Succeed", "Fail"}
ENDPOINT_STATUS_FIELD = "EndpointStatus"
# Errors an endpoint call must not retry in place: "Cannot update in-progress endpoint" is one.
BLIND_RETRIES = ("States.ALL", "States.TaskFailed", "SageMaker.AmazonSageMakerException")


class ValidationError(Exception):
    """The definition file cannot be read at all (missing or not JSON)."""


def load_definition(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValidationError(f"{path}: file not found. Fix: run `mlops render`") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path}: not valid JSON ({exc}). Fix: run `mlops render`") from None


def _edges(state: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, target) for every transition out of a state."""
    out = []
    if "Next" in state:
        out.append(("Next", state["Next"]))
    if "Default" in state:
        out.append(("Default", state["Default"]))
    for i, choice in enumerate(state.get("Choices", [])):
        if "Next" in choice:
            out.append((f"Choices[{i}]", choice["Next"]))
    for i, catch in enumerate(state.get("Catch", [])):
        if "Next" in catch:
            out.append((f"Catch[{i}]", catch["Next"]))
    return out


def _reachable(
    states: dict[str, Any], start: str, skip: set[tuple[str, str]] = frozenset()
) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in states:
            continue
        seen.add(name)
        todo.extend(t for label, t in _edges(states[name]) if (name, label) not in skip)
    return seen


def _choice_variables(choice: dict[str, Any]) -> Iterable[str]:
    if "Variable" in choice:
        yield choice["Variable"]
    for key in ("And", "Or"):
        for sub in choice.get(key, []):
            yield from _choice_variables(sub)
    if "Not" in choice:
        yield from _choice_variables(choice["Not"])
    for key, value in choice.items():
        if key.endswith("Path") and isinstance(value, str):
            yield value


def _top_key(path: str) -> str | None:
    match = re.match(r"^\$\.([A-Za-z0-9_]+)", path)
    return match.group(1) if match else None


def _handler_defined(module: Path) -> bool:
    tree = ast.parse(module.read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == "handler" for n in tree.body)


def _schema_findings(path: Path, text: str) -> list[str]:
    validator = ASL_VALIDATOR if ASL_VALIDATOR.exists() else shutil.which("asl-validator")
    if not validator:
        return [f"{path}: asl-validator is not installed. Fix: run `make install`"]
    result = subprocess.run(
        [str(validator), "--json-definition", text, "--silent"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode == 0:
        return []
    detail = (result.stdout + result.stderr).strip().replace("\n", "; ")
    return [f"{path}: ASL schema: {detail or 'invalid definition'}"]


def _written_before(states: dict[str, Any], start: str) -> dict[str, set[str]]:
    """For each state, the top-level keys every path from the start has written on entry."""
    all_keys = {
        _top_key(s["ResultPath"])
        for s in states.values()
        if isinstance(s.get("ResultPath"), str) and _top_key(s["ResultPath"])
    }
    entry: dict[str, set[str]] = {name: set(all_keys) for name in states}
    entry[start] = set()
    changed = True
    while changed:  # must-analysis: intersect over predecessors until stable
        changed = False
        for name, state in states.items():
            if name not in entry:
                continue
            written = set(entry[name])
            for label, target in _edges(state):
                if target not in states:
                    continue
                out = set(written)
                # A Catch writes the error at its own ResultPath, not the state's result.
                path = (
                    state["Catch"][int(label[6:-1])].get("ResultPath")
                    if label.startswith("Catch")
                    else state.get("ResultPath")
                )
                key = _top_key(path) if isinstance(path, str) else None
                if key:
                    out.add(key)
                new = entry[target] & out
                if new != entry[target]:
                    entry[target] = new
                    changed = True
    return entry


def validate_definition(definition: dict[str, Any], path: Path, schema: bool = True) -> list[str]:
    text = json.dumps(definition)
    findings = _schema_findings(path, text) if schema else []
    states: dict[str, Any] = definition.get("States") or {}
    start = definition.get("StartAt")
    if start not in states:
        return [*findings, f"{path}: StartAt {start!r} is not a state"]

    def finding(state: str, problem: str) -> None:
        findings.append(f"{path}: state {state!r}: {problem}")

    for name, state in states.items():
        for label, target in _edges(state):
            if target not in states:
                finding(name, f"{label} goes to {target!r}, which does not exist")
        kind = state.get("Type")
        if kind not in TERMINAL_TYPES | {"Choice"} and "Next" not in state and not state.get("End"):
            finding(name, "has neither Next nor End")
        if kind == "Task":
            if not state.get("Retry"):
                finding(name, "Task has no Retry for transient errors")
            if not state.get("Catch"):
                finding(name, "Task has no Catch routing failures to a notification")

    for name in sorted(set(states) - _reachable(states, start)):
        finding(name, f"is unreachable from {start!r}")

    used = set(PLACEHOLDER_RE.findall(text))
    for unknown in sorted(used - set(SUBSTITUTIONS)):
        findings.append(
            f"{path}: placeholder ${{{unknown}}} is not one the deploy fills ({sorted(SUBSTITUTIONS)})"
        )
    for name, state in states.items():
        match = LAMBDA_PLACEHOLDER_RE.match(str(state.get("Resource", "")))
        if match:
            module = LAMBDA_DIR / f"{match.group(1).lower()}.py"
            if not module.is_file() or not _handler_defined(module):
                finding(
                    name, f"Lambda {match.group(0)} has no handler in src/lambdas/{module.name}"
                )

    written = _written_before(states, start)
    for name, state in states.items():
        if state.get("Type") != "Choice" or name not in written:
            continue
        for choice in [*state.get("Choices", [])]:
            for variable in _choice_variables(choice):
                key = _top_key(variable)
                if key and key not in written[name]:
                    finding(
                        name, f"reads {variable}, but no earlier state writes $.{key} on every path"
                    )

    _check_gate(states, start, finding)
    _check_endpoint_awaited(states, finding)
    _check_pointer_rechecked(states, start, finding)
    return findings


def _tests_owned(choice: dict[str, Any]) -> bool:
    """Whether a Choice rule can only match when the pointer names this run's model."""
    if choice.get("Variable") == POINTER_MODEL and choice.get("StringEqualsPath") == RUN_MODEL:
        return True
    return any(_tests_owned(sub) for sub in choice.get("And", []))


def _tests_superseded(choice: dict[str, Any]) -> bool:
    """Whether a Choice rule matches exactly when the pointer does not name this run's model."""
    return "Not" in choice and _tests_owned(choice["Not"])


def _choice_edges(states: dict[str, Any], test) -> set[tuple[str, str]]:
    return {
        (name, f"Choices[{i}]")
        for name, state in states.items()
        if state.get("Type") == "Choice"
        for i, choice in enumerate(state.get("Choices", []))
        if test(choice)
    }


def _check_pointer_rechecked(states: dict[str, Any], start: str, finding) -> None:
    # Edges taken only while the pointer names this run: an owning rule, or the Default (and
    # later rules) of a Choice that first sent every superseded run elsewhere.
    owned = _choice_edges(states, _tests_owned)
    for name, state in states.items():
        rules = state.get("Choices", []) if state.get("Type") == "Choice" else []
        first = next((i for i, c in enumerate(rules) if _tests_superseded(c)), None)
        if first is not None:
            owned |= {(name, f"Choices[{i}]") for i in range(first + 1, len(rules))}
            owned.add((name, "Default"))
    # The pointer can change whenever time passes: from the start, after any Wait, and after an
    # endpoint call (refused, it may lead to another), a call needs a fresh check first.
    unchecked = _reachable(states, start, skip=owned)
    for name, state in states.items():
        if state.get("Type") == "Wait" or state.get("Resource") in PROMOTING_RESOURCES:
            for label, target in _edges(state):
                if (name, label) not in owned:
                    unchecked |= _reachable(states, target, skip=owned)
    for name, state in states.items():
        if state.get("Resource") not in PROMOTING_RESOURCES:
            continue
        if name in unchecked:
            finding(
                name,
                f"can be reached without a Choice seeing the PRODUCTION pointer ({POINTER_MODEL}) "
                f"still name this run's model ({RUN_MODEL}): a superseded run's endpoint call "
                "could land after the winner's",
            )
        blind = sorted(
            {e for r in state.get("Retry", []) for e in r.get("ErrorEquals", [])}
            & set(BLIND_RETRIES)
        )
        if blind:
            finding(
                name,
                f"retries {blind[0]} in place; a refused endpoint call (another update in "
                "progress) must go back through the pointer check instead",
            )


def _tests_in_service(choice: dict[str, Any]) -> bool:
    """Whether a Choice rule can only match when the endpoint status is InService."""
    if choice.get("StringEquals") == "InService":
        return str(choice.get("Variable", "")).endswith(f".{ENDPOINT_STATUS_FIELD}")
    return any(_tests_in_service(sub) for sub in choice.get("And", []))


def _check_endpoint_awaited(states: dict[str, Any], finding) -> None:
    # A superseded run may end in success without the endpoint serving its model: the run the
    # pointer names awaits the endpoint instead.
    confirmed = _choice_edges(states, _tests_in_service) | _choice_edges(states, _tests_superseded)
    # Catch edges lead to the failure path, which may end anywhere but in a success.
    catches = {
        (name, f"Catch[{i}]")
        for name, state in states.items()
        for i in range(len(state.get("Catch", [])))
    }
    for name, state in states.items():
        if state.get("Resource") not in PROMOTING_RESOURCES:
            continue
        after = _reachable(states, name, skip=confirmed | catches)
        unawaited = sorted(n for n in after if states[n].get("Type") == "Succeed")
        if unawaited:
            finding(
                name,
                f"reaches {unawaited[0]!r} without a Choice seeing {ENDPOINT_STATUS_FIELD} "
                "InService or the pointer naming another run (the call returns before the "
                "endpoint serves the model)",
            )


def _check_gate(states: dict[str, Any], start: str, finding) -> None:
    promoting = [n for n, s in states.items() if s.get("Resource") in PROMOTING_RESOURCES]
    gates = [
        (name, f"Choices[{i}]")
        for name, state in states.items()
        if state.get("Type") == "Choice"
        for i, choice in enumerate(state.get("Choices", []))
        if choice.get("Variable") == GATE_VARIABLE and choice.get("BooleanEquals") is True
    ]
    if not gates:
        finding("(gate)", f"no Choice compares {GATE_VARIABLE} with BooleanEquals true")
        return
    if not promoting:
        finding("(gate)", "no state creates or updates the endpoint")
        return
    bypass = _reachable(states, start, skip=set(gates))
    for name in promoting:
        if name in bypass:
            finding(name, f"can be reached without passing the gate's {GATE_VARIABLE} comparison")
