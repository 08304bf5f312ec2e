"""CloudFormation templates without AWS: parse, validate, parameters, conditions, intrinsics, order.

Pure functions and a resolver that asks its caller for resource references, so the stack engine
(cloudformation.py) can evaluate a template against whatever resources exist at that moment.
Error messages are the ValidationError texts CloudFormation returns for the same mistakes.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

import yaml

PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::NotificationARNs",
        "AWS::NoValue",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)
NUMBER_TYPES = ("Number", "List<Number>")
LIST_TYPES = ("CommaDelimitedList", "List<Number>")
# Resource attributes that are not properties; DependsOn and Condition shape the plan.
RESOURCE_KEYS = frozenset(
    {
        "Type",
        "Properties",
        "DependsOn",
        "Condition",
        "DeletionPolicy",
        "UpdateReplacePolicy",
        "Metadata",
        "CreationPolicy",
        "UpdatePolicy",
    }
)
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class TemplateError(Exception):
    """The template or its parameters are invalid; the message is CloudFormation's."""


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


# ---------------------------------------------------------------- parsing


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !GetAtt a.b, !Sub, ...)."""


def _short_form(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _short_form)
# Timestamps and dates stay strings, as CloudFormation reads them.
_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in _Loader.yaml_implicit_resolvers.items()
}


def load(body: str | dict[str, Any]) -> dict[str, Any]:
    """The template document of a TemplateBody (JSON or YAML)."""
    if isinstance(body, dict):
        return body
    try:
        document = json.loads(body)
    except ValueError:
        try:
            document = yaml.load(body, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise TemplateError(f"Template format error: YAML not well-formed. ({exc})") from None
    if not isinstance(document, dict):
        raise TemplateError("Template format error: JSON not well-formed.")
    return document


# ---------------------------------------------------------------- references


def _getatt_target(value: Any) -> tuple[str, Any]:
    if isinstance(value, str):
        name, _, attribute = value.partition(".")
        return name, attribute
    if isinstance(value, list) and len(value) == 2:
        return value[0], value[1]
    raise TemplateError("Template error: every Fn::GetAtt object requires two non-empty parameters")


def _sub_names(text: str, variables: Iterable[str] = ()) -> set[str]:
    names = set()
    for match in _SUB_VARIABLE.finditer(text):
        inner = match.group(1)
        if inner.startswith("!"):
            continue
        head = inner.split(".", 1)[0].strip()
        if head not in variables:
            names.add(head)
    return names


def references(value: Any) -> set[str]:
    """Every name `value` refers to through Ref, Fn::GetAtt or Fn::Sub (parameters included)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(_getatt_target(inner)[0])
                if isinstance(inner, list):
                    found |= references(inner[1])
            elif key == "Fn::Sub":
                if isinstance(inner, str):
                    found |= _sub_names(inner)
                elif isinstance(inner, list) and len(inner) == 2:
                    found |= _sub_names(inner[0], inner[1]) | references(inner[1])
            else:
                found |= references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= references(inner)
    return found


def condition_names(value: Any) -> set[str]:
    """Conditions named by Fn::If (and by {"Condition": name} inside conditions)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Fn::If" and isinstance(inner, list) and inner:
                found.add(inner[0])
                found |= condition_names(inner[1:])
            elif key == "Condition" and isinstance(inner, str):
                found.add(inner)
            else:
                found |= condition_names(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= condition_names(inner)
    return found


def depends_on(declaration: dict[str, Any]) -> list[str]:
    value = declaration.get("DependsOn", [])
    return [value] if isinstance(value, str) else list(value)


def resource_dependencies(template: dict[str, Any], logical_id: str) -> set[str]:
    """The resources `logical_id` needs first: its references and its DependsOn."""
    declaration = template["Resources"][logical_id]
    resources = template["Resources"]
    body = {k: v for k, v in declaration.items() if k not in ("Type", "DependsOn", "Condition")}
    names = references(body) | set(depends_on(declaration))
    return {name for name in names if name in resources and name != logical_id}


# ---------------------------------------------------------------- validation


def validate(template: dict[str, Any]) -> None:
    """Structural checks CloudFormation makes before it accepts a template."""
    resources = template.get("Resources")
    if not isinstance(resources, dict) or not resources:
        raise TemplateError("Template format error: At least one Resources member must be defined.")
    if template.get("Transform"):
        raise TemplateError(
            f"Transform {template['Transform']} is not supported by the local cloud; "
            "deploy the processed template instead"
        )
    parameters = template.get("Parameters") or {}
    conditions = template.get("Conditions") or {}
    known = set(resources) | set(parameters) | PSEUDO_PARAMETERS
    in_conditions = sorted(references(conditions) - set(parameters) - PSEUDO_PARAMETERS)
    if in_conditions:
        raise TemplateError(
            f"Template format error: Unresolved dependencies [{', '.join(in_conditions)}]. "
            "Cannot reference resources in the Conditions block of the template"
        )
    for logical_id, declaration in resources.items():
        if not isinstance(declaration, dict) or not isinstance(declaration.get("Type"), str):
            raise TemplateError(
                f"Template format error: [/Resources/{logical_id}] Every Resources object "
                "must contain a Type member."
            )
        unknown = sorted((references(declaration) | set(depends_on(declaration))) - known)
        if unknown:
            raise TemplateError(
                f"Template format error: Unresolved resource dependencies [{', '.join(unknown)}] "
                "in the Resources block of the template"
            )
        missing = sorted(
            (condition_names(declaration.get("Properties", {})) | _own_condition(declaration))
            - set(conditions)
        )
        if missing:
            raise TemplateError(
                f"Template error: unresolved condition dependency {missing[0]} in Fn::If"
            )
        for name in _getatt_names(declaration):
            if name not in resources:
                raise TemplateError(
                    f"Template error: instance of Fn::GetAtt references undefined resource {name}"
                )
    for name, output in (template.get("Outputs") or {}).items():
        unknown = sorted(references(output) - known)
        if unknown:
            raise TemplateError(
                f"Template format error: Unresolved resource dependencies [{', '.join(unknown)}] "
                "in the Outputs block of the template"
            )
        if not isinstance(output, dict) or "Value" not in output:
            raise TemplateError(
                f"Template format error: Every Outputs member must contain a Value object ({name})"
            )
    order(template, set(resources))  # raises on a cycle


def _own_condition(declaration: dict[str, Any]) -> set[str]:
    condition = declaration.get("Condition")
    return {condition} if isinstance(condition, str) else set()


def _getatt_names(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Fn::GetAtt":
                found.add(_getatt_target(inner)[0])
            else:
                found |= _getatt_names(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _getatt_names(inner)
    return found


def order(template: dict[str, Any], active: set[str]) -> list[str]:
    """`active` resources in an order where each comes after what it depends on.

    Ties keep template order, so a plan is deterministic. Dependencies on resources whose
    condition is false are dropped: they sit in the unused branch of an Fn::If.
    """
    resources = [name for name in template["Resources"] if name in active]
    pending = {name: resource_dependencies(template, name) & active for name in resources}
    done: list[str] = []
    placed: set[str] = set()
    while pending:
        ready = [name for name in resources if name in pending and pending[name] <= placed]
        if not ready:
            raise TemplateError(
                f"Circular dependency between resources: [{', '.join(sorted(pending))}]"
            )
        for name in ready:
            done.append(name)
            placed.add(name)
            del pending[name]
    return done


# ---------------------------------------------------------------- parameters


def resolve_parameters(
    template: dict[str, Any],
    given: dict[str, str],
    previous: dict[str, str] | None = None,
    use_previous: Iterable[str] = (),
) -> dict[str, str]:
    """Every declared parameter's value as a string (defaults filled in), validated as AWS does."""
    declared: dict[str, Any] = template.get("Parameters") or {}
    values = dict(given)
    for name in use_previous:
        if previous is None or name not in previous:
            raise TemplateError(
                f"Invalid input for parameter key {name}. Cannot use previous value"
            )
        values[name] = previous[name]
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise TemplateError(f"Parameters: [{', '.join(unknown)}] do not exist in the template")
    resolved: dict[str, str] = {}
    missing = []
    for name, declaration in declared.items():
        if name in values:
            value = values[name]
        elif "Default" in declaration:
            value = declaration["Default"]
        else:
            missing.append(name)
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        resolved[name] = str(value)
        _check_parameter(name, declaration, resolved[name])
    if missing:
        raise TemplateError(f"Parameters: [{', '.join(missing)}] must have values")
    return resolved


def _check_parameter(name: str, declaration: dict[str, Any], value: str) -> None:
    kind = declaration.get("Type", "String")
    if kind.startswith("AWS::SSM::Parameter"):
        raise TemplateError(
            f"Parameter '{name}' has type {kind}, which the local cloud does not resolve; "
            "pass the value itself with Type String"
        )
    items = value.split(",") if kind in LIST_TYPES or kind.startswith("List<") else [value]
    description = declaration.get("ConstraintDescription")

    def fail(message: str) -> None:
        if description:
            raise TemplateError(f"Parameter {name} failed to satisfy constraint: {description}")
        raise TemplateError(message)

    for item in items:
        if kind in NUMBER_TYPES:
            try:
                number = float(item)
            except ValueError:
                fail(f"Parameter '{name}' must be a number")
                continue
            if "MinValue" in declaration and number < float(declaration["MinValue"]):
                fail(f"Parameter '{name}' must be a number not less than {declaration['MinValue']}")
            if "MaxValue" in declaration and number > float(declaration["MaxValue"]):
                fail(
                    f"Parameter '{name}' must be a number not greater than {declaration['MaxValue']}"
                )
        pattern = declaration.get("AllowedPattern")
        if pattern is not None and re.fullmatch(pattern, item) is None:
            fail(f"Parameter '{name}' must match pattern {pattern}")
        allowed = declaration.get("AllowedValues")
        if allowed is not None and item not in [str(v) for v in allowed]:
            fail(f"Parameter '{name}' must be one of AllowedValues")
        if "MinLength" in declaration and len(item) < int(declaration["MinLength"]):
            fail(f"Parameter '{name}' must contain at least {declaration['MinLength']} characters")
        if "MaxLength" in declaration and len(item) > int(declaration["MaxLength"]):
            fail(f"Parameter '{name}' must contain at most {declaration['MaxLength']} characters")


def typed_parameter(declaration: dict[str, Any], value: str) -> Any:
    """What Ref returns for a parameter: a list for list types, else the string."""
    kind = declaration.get("Type", "String")
    if kind in LIST_TYPES or kind.startswith("List<"):
        return value.split(",") if value else []
    return value


def no_echo(template: dict[str, Any]) -> set[str]:
    return {
        name
        for name, declaration in (template.get("Parameters") or {}).items()
        if str(declaration.get("NoEcho", "false")).lower() == "true"
    }


# ---------------------------------------------------------------- resolver


class Resolver:
    """Evaluates intrinsic functions; resources are looked up through the callbacks."""

    def __init__(
        self,
        template: dict[str, Any],
        parameters: dict[str, str],
        pseudo: dict[str, Any],
        ref: Callable[[str], Any],
        getatt: Callable[[str, str], Any],
        import_value: Callable[[str], Any] = lambda name: _no_export(name),
    ):
        self.template = template
        declared = template.get("Parameters") or {}
        self.parameters = {
            name: typed_parameter(declared.get(name, {}), value)
            for name, value in parameters.items()
        }
        self.pseudo = pseudo
        self._ref = ref
        self._getatt = getatt
        self._import_value = import_value
        self.conditions = self._evaluate_conditions()

    # --- conditions

    def _evaluate_conditions(self) -> dict[str, bool]:
        declared = self.template.get("Conditions") or {}
        results: dict[str, bool] = {}

        def evaluate(name: str, stack: tuple[str, ...]) -> bool:
            if name in results:
                return results[name]
            if name not in declared:
                raise TemplateError(f"Template error: unresolved condition dependency {name}")
            if name in stack:
                raise TemplateError(f"Template error: circular condition dependency {name}")
            results[name] = self._condition(declared[name], lambda n: evaluate(n, (*stack, name)))
            return results[name]

        for name in declared:
            evaluate(name, ())
        return results

    def _condition(self, value: Any, named: Callable[[str], bool]) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, dict) or len(value) != 1:
            raise TemplateError(f"Template error: invalid condition {value!r}")
        ((key, args),) = value.items()
        if key == "Condition":
            return named(args)
        if key == "Fn::Equals":
            left, right = (self._condition_operand(a, named) for a in args)
            if isinstance(left, dict | list) or isinstance(right, dict | list):
                return left == right
            return _text(left) == _text(right)  # values compare as the strings they render to
        if key == "Fn::Not":
            return not self._condition(args[0], named)
        if key == "Fn::And":
            return all(self._condition(a, named) for a in args)
        if key == "Fn::Or":
            return any(self._condition(a, named) for a in args)
        raise TemplateError(f"Template error: {key} is not a condition function")

    def _condition_operand(self, value: Any, named: Callable[[str], bool]) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            key = next(iter(value))
            if key in ("Condition", "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
                return self._condition(value, named)
        return self.resolve(value)

    def active(self, logical_id: str) -> bool:
        condition = self.template["Resources"][logical_id].get("Condition")
        return condition is None or self.conditions[condition]

    # --- values

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic function evaluated and AWS::NoValue removed."""
        if isinstance(value, dict):
            if len(value) == 1:
                key, args = next(iter(value.items()))
                function = _FUNCTIONS.get(key)
                if function is not None:
                    return function(self, args)
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not NO_VALUE]
        return value

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        return self._ref(name)

    def _fn_ref(self, args: Any) -> Any:
        return self.ref(self.resolve(args))

    def _fn_getatt(self, args: Any) -> Any:
        name, attribute = _getatt_target(args)
        return self._getatt(name, str(self.resolve(attribute)))

    def _fn_sub(self, args: Any) -> str:
        if isinstance(args, list):
            text, variables = args[0], self.resolve(args[1])
        else:
            text, variables = args, {}

        def replace(match: re.Match[str]) -> str:
            inner = match.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            inner = inner.strip()
            if inner in variables:
                value = variables[inner]
            elif "." in inner and inner.split(".", 1)[0] in self.template["Resources"]:
                value = self._getatt(*inner.split(".", 1))
            else:
                value = self.ref(inner)
            if isinstance(value, list):
                raise TemplateError(f"Template error: variable {inner} in Fn::Sub is a list")
            return str(value)

        return _SUB_VARIABLE.sub(replace, text)

    def _fn_if(self, args: Any) -> Any:
        name, when_true, when_false = args
        if name not in self.conditions:
            raise TemplateError(f"Template error: unresolved condition dependency {name} in Fn::If")
        return self.resolve(when_true if self.conditions[name] else when_false)

    def _fn_join(self, args: Any) -> str:
        delimiter, items = args
        values = self.resolve(items)
        return str(delimiter).join(_text(v) for v in values)

    def _fn_select(self, args: Any) -> Any:
        index, items = self.resolve(args[0]), self.resolve(args[1])
        try:
            return items[int(index)]
        except (IndexError, ValueError, TypeError):
            raise TemplateError(
                f"Template error: Fn::Select cannot select index {index} of {items!r}"
            ) from None

    def _fn_split(self, args: Any) -> list[str]:
        delimiter, text = args[0], self.resolve(args[1])
        return str(text).split(delimiter)

    def _fn_find_in_map(self, args: Any) -> Any:
        names = [self.resolve(a) for a in args[:3]]
        mappings = self.template.get("Mappings") or {}
        try:
            return mappings[names[0]][names[1]][names[2]]
        except (KeyError, TypeError):
            raise TemplateError(
                f"Template error: Unable to get mapping for {'::'.join(map(str, names))}"
            ) from None

    def _fn_base64(self, args: Any) -> str:
        return base64.b64encode(str(self.resolve(args)).encode()).decode()

    def _fn_get_azs(self, args: Any) -> list[str]:
        region = self.resolve(args) or self.pseudo["AWS::Region"]
        return [f"{region}{zone}" for zone in "abc"]

    def _fn_import_value(self, args: Any) -> Any:
        return self._import_value(self.resolve(args))

    def _fn_to_json_string(self, args: Any) -> str:
        return json.dumps(self.resolve(args), separators=(",", ":"))

    def _fn_length(self, args: Any) -> int:
        return len(self.resolve(args))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _no_export(name: str) -> Any:
    raise TemplateError(f"No export named {name} found.")


_FUNCTIONS: dict[str, Callable[[Resolver, Any], Any]] = {
    "Ref": Resolver._fn_ref,
    "Fn::GetAtt": Resolver._fn_getatt,
    "Fn::Sub": Resolver._fn_sub,
    "Fn::If": Resolver._fn_if,
    "Fn::Join": Resolver._fn_join,
    "Fn::Select": Resolver._fn_select,
    "Fn::Split": Resolver._fn_split,
    "Fn::FindInMap": Resolver._fn_find_in_map,
    "Fn::Base64": Resolver._fn_base64,
    "Fn::GetAZs": Resolver._fn_get_azs,
    "Fn::ImportValue": Resolver._fn_import_value,
    "Fn::ToJsonString": Resolver._fn_to_json_string,
    "Fn::Length": Resolver._fn_length,
}


# ---------------------------------------------------------------- change sets


def plan_changes(
    old_template: dict[str, Any],
    old_parameters: dict[str, str],
    old_resources: dict[str, str],
    new_template: dict[str, Any],
    new_parameters: dict[str, str],
    new_plan: list[str],
    replace_on: Callable[[str], tuple[str, ...]],
) -> list[dict[str, Any]]:
    """The ResourceChange entries of a change set: Add, Modify (with Replacement), Remove.

    `old_resources` maps the logical ids that exist to their types; `new_plan` is the new
    template's active resources in dependency order. A resource is modified when its
    declaration changed, a parameter it refers to did (a Lambda whose S3Key parameter changed
    is a Modify though its template text is the same), or it refers to a resource that may be
    replaced (its Ref or Arn may change).
    """
    changed_parameters = {
        name
        for name in set(old_parameters) | set(new_parameters)
        if old_parameters.get(name) != new_parameters.get(name)
    }
    old_declared = old_template.get("Resources") or {}
    changes: list[dict[str, Any]] = []
    moving = set(changed_parameters)  # names whose value may differ after the update
    for logical_id in new_plan:
        declaration = new_template["Resources"][logical_id]
        kind = declaration["Type"]
        if logical_id not in old_resources:
            changes.append({"Action": "Add", "LogicalResourceId": logical_id, "ResourceType": kind})
            moving.add(logical_id)
            continue
        old = old_declared.get(logical_id, {})
        old_props, new_props = old.get("Properties", {}), declaration.get("Properties", {})
        keys = replace_on(kind)
        if old_resources[logical_id] != kind or any(
            old_props.get(k) != new_props.get(k) for k in keys
        ):
            replacement = "True"
        elif any(references(new_props.get(k)) & moving for k in keys):
            replacement = "Conditional"
        elif old != declaration or references(declaration) & moving:
            replacement = "False"
        else:
            continue
        if replacement != "False":
            moving.add(logical_id)
        changes.append(
            {
                "Action": "Modify",
                "LogicalResourceId": logical_id,
                "ResourceType": kind,
                "Replacement": replacement,
            }
        )
    for logical_id, kind in old_resources.items():
        if logical_id not in new_plan:
            changes.append(
                {"Action": "Remove", "LogicalResourceId": logical_id, "ResourceType": kind}
            )
    return changes
