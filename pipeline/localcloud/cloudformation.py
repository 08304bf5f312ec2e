"""CloudFormation gap: stacks that deploy, update, roll back and delete as on AWS.

moto 5.2.5 provisions each resource through its own CloudFormation model classes, which miss
or misplace what this project deploys: a stack's state machine goes to the Step Functions
backend the API does not read when executions run and ignores DefinitionSubstitutions;
AWS::Glue::Job, AWS::S3::BucketPolicy, AWS::IAM::OIDCProvider and AWS::CloudWatch::Alarm are
silently skipped (a Ref to them resolves to nothing); a failing resource leaves the stack
half-made and *_COMPLETE, with no rollback and no *_FAILED event; a no-change change set is
refused instead of FAILED; a parameter-only update is applied by reaching back into moto's
lazy resource map, which creates resources when they are looked up.

Patched (tests/functional/localcloud/test_cloudformation_gap.py checks each):
- CloudFormationBackend.create_change_set, execute_change_set, create_stack, update_stack,
  delete_stack: replaced; cloudformation_engine.py runs the operations. Its Stack and
  ChangeSet subclass moto's, so DescribeStacks, DescribeStackEvents, DescribeChangeSet,
  GetTemplate and ListStacks keep working through moto's own responses.
- CloudFormationResponse.create_change_set: replaced; passes Capabilities and
  UsePreviousValue through, and no longer refuses an unchanged template (AWS creates the
  change set, which then FAILS with "The submitted information didn't contain changes").
- StackResourceDTO.__init__: wrapped; DescribeStackResource(s) report each resource's status.
- FakeBucket.get_permission (S3 bucket policies): replaced; moto applies a statement whose
  conditions it cannot evaluate, so the bootstrap stack's TLS-only Deny (Condition Bool
  aws:SecureTransport false) denied every object request. Conditions are evaluated against
  the local cloud's request context, where the endpoint stands in for AWS's HTTPS one.
- moto.stepfunctions.parser.api errors (InvalidDefinition, ...): TYPE set from their code;
  the API answered them with an empty error code.

The engine (one stack operation at a time, synchronously inside the API call, so a caller
that polls DescribeStacks sees the final status at once):
- resources are provisioned in dependency order (Ref, Fn::GetAtt, Fn::Sub, DependsOn) by the
  handlers of cloudformation_resources.py, which call each service's API;
- an update re-resolves every resource and touches only those whose resolved properties
  changed, so a new Lambda code key reaches the functions while an unchanged state machine is
  left alone; removed and replaced resources are deleted in the cleanup phase, after success;
- a failure emits the resource's *_FAILED event with the service's message, then rolls back
  as CloudFormation does: a failed create deletes what it made (DeletionPolicy Retain keeps a
  resource, as on AWS) and ends ROLLBACK_COMPLETE; a failed update re-applies the previous
  properties of every resource it touched (the failed one included), deletes what it added
  or replaced, restores template, parameters and outputs, and ends UPDATE_ROLLBACK_COMPLETE.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import threading
from typing import Any

from pipeline.localcloud import cloudformation_template as cfn
from pipeline.localcloud.cloudformation_engine import (
    ChangeSet,
    Operation,
    Stack,
    make_resolver,
    stack_event,
)
from pipeline.localcloud.cloudformation_resources import ResourceError, replace_on

log = logging.getLogger(__name__)

NO_CHANGES_REASON = (
    "The submitted information didn't contain changes. "
    "Submit different information to create a change set."
)
# Stack states from which an update may start (AWS refuses the others).
UPDATABLE = frozenset(
    {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"}
)
IAM_NAMES = {
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::User": "UserName",
    "AWS::IAM::Group": "GroupName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
    "AWS::IAM::Policy": None,
    "AWS::IAM::AccessKey": None,
    "AWS::IAM::UserToGroupAddition": None,
}
# The local cloud's requests arrive over plain HTTP on 127.0.0.1 in place of AWS's TLS
# endpoints; bucket policies see them as AWS would see an SDK's HTTPS call.
REQUEST_CONTEXT = {"aws:securetransport": "true"}

_lock = threading.RLock()  # one stack operation at a time, as moto's backends are not locked


# ---------------------------------------------------------------- backend methods


def _validation(message: str) -> Exception:
    from moto.cloudformation.exceptions import ValidationError

    return ValidationError(message=message)


def _live_stack(backend: Any, name_or_id: str) -> Any | None:
    if name_or_id in backend.stacks:
        return backend.stacks[name_or_id]
    return next((s for s in backend.stacks.values() if s.name == name_or_id), None)


def _check_updatable(stack: Any) -> None:
    if stack.status not in UPDATABLE:
        raise _validation(
            f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated."
        )


def _parse(body: str | dict[str, Any]) -> dict[str, Any]:
    try:
        template = cfn.load(body)
        cfn.validate(template)
    except cfn.TemplateError as exc:
        raise _validation(str(exc)) from None
    return template


def _parameters(
    template: dict[str, Any],
    given: dict[str, str],
    previous: dict[str, str] | None = None,
    use_previous: list[str] | tuple[str, ...] = (),
) -> dict[str, str]:
    try:
        return cfn.resolve_parameters(template, given, previous, use_previous)
    except cfn.TemplateError as exc:
        raise _validation(str(exc)) from None


def required_capability(template: dict[str, Any]) -> str | None:
    """CAPABILITY_NAMED_IAM, CAPABILITY_IAM or None: what CloudFormation demands for it."""
    needed = None
    for declaration in template["Resources"].values():
        kind = declaration["Type"]
        if kind in IAM_NAMES:
            needed = needed or "CAPABILITY_IAM"
            name = IAM_NAMES[kind]
            if name and name in (declaration.get("Properties") or {}):
                return "CAPABILITY_NAMED_IAM"
    return needed


def _check_capabilities(template: dict[str, Any], capabilities: list[str] | None) -> None:
    from moto.cloudformation.exceptions import CloudFormationError

    needed = required_capability(template)
    if capabilities is None or needed is None or needed in capabilities:
        return
    if needed == "CAPABILITY_IAM" and "CAPABILITY_NAMED_IAM" in capabilities:
        return

    class InsufficientCapabilities(CloudFormationError):
        code = "InsufficientCapabilitiesException"

    raise InsufficientCapabilities(f"Requires capabilities : [{needed}]")


def _changes(
    backend: Any, stack: Any, template: dict[str, Any], parameters: dict[str, str]
) -> list[Any]:
    from moto.cloudformation.models import Change

    try:
        probe = make_resolver(stack, template, parameters, backend)
        plan = cfn.order(template, {n for n in template["Resources"] if probe.active(n)})
    except (cfn.TemplateError, ResourceError, KeyError) as exc:
        raise _validation(str(exc)) from None
    planned = cfn.plan_changes(
        stack.template_dict,
        stack.parameters,
        {n: r.resource_type for n, r in stack.resources.items()},
        template,
        parameters,
        plan,
        replace_on,
    )
    changes = []
    for entry in planned:
        change = Change(entry["Action"], entry["LogicalResourceId"], entry["ResourceType"])
        change.replacement = entry.get("Replacement")
        record = stack.resources.get(entry["LogicalResourceId"])
        change.physical_resource_id = record.physical_resource_id if record else None
        change.scope = ["Properties"] if entry["Action"] == "Modify" else []
        changes.append(change)
    return changes


def create_change_set(
    self: Any,
    stack_name: str,
    change_set_name: str,
    template: str,
    parameters: dict[str, str],
    description: str,
    change_set_type: str,
    notification_arns: list[str] | None = None,
    tags: dict[str, str] | None = None,
    role_arn: str | None = None,
    capabilities: list[str] | None = None,
    use_previous: list[str] | tuple[str, ...] = (),
) -> tuple[str, str]:
    """Replaces CloudFormationBackend.create_change_set."""
    from moto.cloudformation.utils import (
        generate_changeset_id,
        generate_stack_id,
        validate_create_change_set,
    )

    validate_create_change_set(change_set_name)
    with _lock:
        document = _parse(template)
        existing = _live_stack(self, stack_name)
        if existing is not None and any(
            cs.change_set_name == change_set_name and cs.stack_id == existing.stack_id
            for cs in self.change_sets.values()
        ):
            from moto.cloudformation.exceptions import AlreadyExistsException

            raise AlreadyExistsException(f"ChangeSet [{change_set_name}] already exists")
        if change_set_type == "UPDATE":
            if existing is None:
                raise _validation(f"Stack [{stack_name}] does not exist")
            _check_updatable(existing)
            resolved = _parameters(document, parameters, existing.parameters, use_previous)
        else:
            if existing is not None and existing.status != "REVIEW_IN_PROGRESS":
                raise _validation(
                    f"Stack [{stack_name}] already exists and cannot be created again with the "
                    f"changeSet [{change_set_name}]."
                )
            resolved = _parameters(document, parameters)
        _check_capabilities(document, capabilities)
        stack = existing
        if stack is None:
            stack = Stack(
                generate_stack_id(stack_name, self.region_name, self.account_id),
                stack_name,
                self.account_id,
                self.region_name,
                notification_arns,
                tags,
                role_arn,
            )
            self.stacks[stack.stack_id] = stack
            stack_event(stack, "REVIEW_IN_PROGRESS", reason="User Initiated")
        change_set = ChangeSet(
            change_set_type,
            generate_changeset_id(change_set_name, self.region_name, self.account_id),
            change_set_name,
            stack,
            template if isinstance(template, str) else json.dumps(template),
            document,
            resolved,
            description,
            _changes(self, stack, document, resolved),
            notification_arns,
            tags,
            role_arn,
            list(capabilities or []),
        )
        if (
            change_set_type == "UPDATE"
            and document == stack.template_dict
            and resolved == stack.parameters
        ):
            change_set.status = "FAILED"
            change_set.execution_status = "UNAVAILABLE"
            change_set.status_reason = NO_CHANGES_REASON
        self.change_sets[change_set.change_set_id] = change_set
        return change_set.change_set_id, stack.stack_id


def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
    """Replaces CloudFormationBackend.execute_change_set."""
    from moto.cloudformation.exceptions import CloudFormationError

    with _lock:
        change_set = self.change_sets.get(change_set_name) or next(
            (
                cs
                for cs in self.change_sets.values()
                if cs.change_set_name == change_set_name
                and (not stack_name or stack_name in (cs.stack_name, cs.stack_id))
            ),
            None,
        )
        if change_set is None:
            raise _validation(f"ChangeSet [{change_set_name}] does not exist")
        if change_set.execution_status != "AVAILABLE":

            class InvalidChangeSetStatus(CloudFormationError):
                code = "InvalidChangeSetStatus"

            raise InvalidChangeSetStatus(
                f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current "
                f"status of [{change_set.status}]"
            )
        stack = self.stacks[change_set.stack_id]
        if change_set.change_set_type == "UPDATE":
            _check_updatable(stack)
        change_set.execution_status = "EXECUTE_IN_PROGRESS"
        stack.change_set_id = change_set.change_set_id
        stack.capabilities = change_set.capabilities
        stack.role_arn = change_set.role_arn or stack.role_arn
        if change_set.notification_arns:
            stack.notification_arns = change_set.notification_arns
        if change_set.tag_dict:
            stack.tags = change_set.tag_dict
        operation = Operation(stack)
        if change_set.change_set_type == "CREATE":
            operation.create(change_set.template, change_set.template_dict, change_set.parameters)
        else:
            operation.update(change_set.template, change_set.template_dict, change_set.parameters)
        ok = stack.status in ("CREATE_COMPLETE", "UPDATE_COMPLETE")
        change_set.execution_status = "EXECUTE_COMPLETE" if ok else "EXECUTE_FAILED"
        # After an execution CloudFormation deletes the stack's other change sets.
        for other_id, other in list(self.change_sets.items()):
            if other.stack_id == stack.stack_id and other is not change_set:
                del self.change_sets[other_id]


def create_stack(
    self: Any,
    name: str,
    template: str,
    parameters: dict[str, Any],
    notification_arns: list[str] | None = None,
    tags: dict[str, str] | None = None,
    role_arn: str | None = None,
    enable_termination_protection: bool | None = False,
    timeout_in_mins: int | None = None,
    stack_policy_body: str | None = None,
) -> Any:
    """Replaces CloudFormationBackend.create_stack."""
    from moto.cloudformation.exceptions import AlreadyExistsException
    from moto.cloudformation.utils import generate_stack_id

    with _lock:
        existing = _live_stack(self, name)
        if existing is not None and existing.status != "REVIEW_IN_PROGRESS":
            raise AlreadyExistsException(f"Stack [{name}] already exists")
        document = _parse(template)
        resolved = _parameters(document, parameters)
        stack = Stack(
            generate_stack_id(name, self.region_name, self.account_id),
            name,
            self.account_id,
            self.region_name,
            notification_arns,
            tags,
            role_arn,
        )
        stack.timeout_in_minutes = timeout_in_mins
        stack.policy = stack_policy_body or ""
        stack.enable_termination_protection = bool(enable_termination_protection)
        self.stacks[stack.stack_id] = stack
        Operation(stack).create(template, document, resolved)
        return stack


def update_stack(
    self: Any,
    name: str,
    template: str,
    role_arn: str | None,
    parameters: list[dict[str, Any]],
    tags: dict[str, str] | None,
) -> Any:
    """Replaces CloudFormationBackend.update_stack (UpdateStack without a change set)."""
    with _lock:
        stack = self.get_stack(name)
        _check_updatable(stack)
        given, use_previous = split_parameters(parameters)
        document = _parse(template)
        resolved = _parameters(document, given, stack.parameters, use_previous)
        if document == stack.template_dict and resolved == stack.parameters:
            raise _validation("No updates are to be performed.")
        stack.role_arn = role_arn or stack.role_arn
        if tags is not None:
            stack.tags = tags
        Operation(stack).update(template, document, resolved)
        return stack


def delete_stack(self: Any, name_or_stack_id: str) -> None:
    """Replaces CloudFormationBackend.delete_stack; deleting a missing stack is a no-op."""
    with _lock:
        stack = _live_stack(self, name_or_stack_id)
        if stack is None:
            return
        if Operation(stack).delete():
            self.stacks.pop(stack.stack_id, None)
            self.deleted_stacks[stack.stack_id] = stack


def split_parameters(items: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """({key: value}, [keys with UsePreviousValue]) of an API Parameters list."""
    given, use_previous = {}, []
    for item in items or []:
        if str(item.get("UsePreviousValue", "false")).lower() == "true":
            use_previous.append(item["ParameterKey"])
        else:
            given[item["ParameterKey"]] = item.get("ParameterValue", "")
    return given, use_previous


# ---------------------------------------------------------------- responses


def response_create_change_set(self: Any) -> Any:
    """Replaces CloudFormationResponse.create_change_set."""
    from moto.core.responses import ActionResult

    stack_name = self._get_param("StackName")
    change_set_type = self._get_param("ChangeSetType", "CREATE")
    self.validate_template_and_stack_body()
    body = self._get_param("TemplateBody")
    if self._get_bool_param("UsePreviousTemplate", False):
        body = self.cloudformation_backend.get_stack(stack_name).template
    elif self._get_param("TemplateURL"):
        body = self._get_stack_from_s3_url(self._get_param("TemplateURL"))
    given, use_previous = split_parameters(self._get_param("Parameters", []))
    change_set_id, stack_id = self.cloudformation_backend.create_change_set(
        stack_name=stack_name,
        change_set_name=self._get_param("ChangeSetName"),
        template=body,
        parameters=given,
        description=self._get_param("Description"),
        change_set_type=change_set_type,
        notification_arns=self._get_param("NotificationARNs", []),
        tags={item["Key"]: item["Value"] for item in self._get_param("Tags", [])},
        role_arn=self._get_param("RoleARN"),
        capabilities=self._get_param("Capabilities", []),
        use_previous=use_previous,
    )
    return ActionResult({"Id": change_set_id, "StackId": stack_id})


# ---------------------------------------------------------------- S3 bucket policies


_NEGATED = (
    "StringNotEquals",
    "StringNotEqualsIgnoreCase",
    "StringNotLike",
    "ArnNotEquals",
    "ArnNotLike",
)


def condition_holds(operator: str, key: str, expected: Any, context: dict[str, str]) -> bool:
    """One policy condition against a request context (keys compared case-insensitively)."""
    values = [str(v) for v in (expected if isinstance(expected, list) else [expected])]
    base = operator.removesuffix("IfExists")
    actual = context.get(key.lower())
    if base == "Null":
        return (actual is None) == (values[0].lower() == "true")
    if actual is None:
        # AWS: a key missing from the request matches no value, so a negated operator holds.
        return operator.endswith("IfExists") or base in _NEGATED
    if base == "Bool":
        return actual.lower() in [v.lower() for v in values]
    if base in ("StringEquals", "ArnEquals"):
        return actual in values
    if base in ("StringNotEquals", "ArnNotEquals"):
        return actual not in values
    if base == "StringEqualsIgnoreCase":
        return actual.lower() in [v.lower() for v in values]
    if base == "StringNotEqualsIgnoreCase":
        return actual.lower() not in [v.lower() for v in values]
    if base in ("StringLike", "ArnLike"):
        return any(fnmatch.fnmatchcase(actual, v) for v in values)
    if base in ("StringNotLike", "ArnNotLike"):
        return not any(fnmatch.fnmatchcase(actual, v) for v in values)
    log.warning("bucket policy condition operator %s is not evaluated locally", operator)
    return False


def bucket_permission(policy: bytes | str, action: str, resource: str) -> Any:
    """PERMITTED, DENIED or NEUTRAL for `action` on `resource` under a bucket policy."""
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    document = json.loads(policy)
    statements = document.get("Statement", [])
    permitted = False
    for statement in statements if isinstance(statements, list) else [statements]:
        conditions = statement.get("Condition") or {}
        if not all(
            condition_holds(operator, key, expected, REQUEST_CONTEXT)
            for operator, entries in conditions.items()
            for key, expected in entries.items()
        ):
            continue  # a statement whose condition does not hold does not apply
        bare = {k: v for k, v in statement.items() if k != "Condition"}
        result = IAMPolicyStatement(bare).is_action_permitted(action, resource)
        if result == PermissionResult.DENIED:
            return result
        permitted |= result == PermissionResult.PERMITTED
    return PermissionResult.PERMITTED if permitted else PermissionResult.NEUTRAL


# ---------------------------------------------------------------- install


def install() -> None:
    from moto.cloudformation import models, responses
    from moto.s3.models import FakeBucket

    backend = models.CloudFormationBackend
    if getattr(backend.execute_change_set, "_localcloud", False):
        return
    for name, function in (
        ("create_change_set", create_change_set),
        ("execute_change_set", execute_change_set),
        ("create_stack", create_stack),
        ("update_stack", update_stack),
        ("delete_stack", delete_stack),
    ):
        function._localcloud = True  # type: ignore[attr-defined]
        setattr(backend, name, function)
    responses.CloudFormationResponse.create_change_set = response_create_change_set

    dto_init = responses.StackResourceDTO.__init__

    def stack_resource(self: Any, stack: Any, resource: Any) -> None:
        dto_init(self, stack, resource)
        self.resource_status = getattr(resource, "resource_status", stack.status)
        self.timestamp = getattr(resource, "timestamp", self.timestamp)

    responses.StackResourceDTO.__init__ = stack_resource

    def get_permission(self: Any, action: str, resource: str) -> Any:
        from moto.iam.access_control import PermissionResult

        if self.policy is None:
            return PermissionResult.NEUTRAL
        return bucket_permission(self.policy, action, resource)

    FakeBucket.get_permission = get_permission
    name_step_functions_errors()


def name_step_functions_errors() -> None:
    """Give the ASL interpreter's API errors their codes (InvalidDefinition, ...).

    They subclass moto's AWSError, which serializes TYPE as __type, but set only `code`: the
    API answered an invalid definition with an empty error code, so neither a client's
    `except sfn.exceptions.InvalidDefinition` nor a stack event could name it.
    """
    from moto.core.exceptions import AWSError
    from moto.stepfunctions.parser import api

    for error in vars(api).values():
        if (
            isinstance(error, type)
            and issubclass(error, AWSError)
            and error.TYPE is None
            and isinstance(error.__dict__.get("code"), str)
        ):
            error.TYPE = error.__dict__["code"]
