"""The local cloud's CloudFormation engine: stack state and one stack operation at a time.

Stack and ChangeSet subclass moto's classes so moto's responses (DescribeStacks,
DescribeStackEvents, DescribeChangeSet, GetTemplate, ListStacks) serve them unchanged; the
resources themselves are ResourceRecords provisioned by cloudformation_resources handlers.
An Operation creates, updates or deletes a stack synchronously and rolls back on failure the
way CloudFormation does (see the module docstring of cloudformation.py).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from moto.cloudformation import models
from moto.cloudformation.models import Event, cloudformation_backends
from moto.cloudformation.parsing import Export
from moto.core.utils import utcnow
from moto.utilities.utils import get_partition

from pipeline.localcloud import cloudformation_template as cfn
from pipeline.localcloud.cloudformation_resources import (
    Context,
    Provisioned,
    ResourceError,
    error_reason,
    handler_for,
    replace_on,
)

log = logging.getLogger(__name__)


def _endpoint() -> str:
    from pipeline.localcloud.lambdas import endpoint_url

    return endpoint_url()


# ---------------------------------------------------------------- stack state


@dataclass
class ResourceRecord:
    """One provisioned resource of a stack (what DescribeStackResources lists)."""

    logical_id: str
    resource_type: str
    provisioned: Provisioned
    properties: dict[str, Any]
    status: str = "CREATE_COMPLETE"
    timestamp: datetime = field(default_factory=utcnow)

    # Names moto's StackResourceDTO reads.
    @property
    def logical_resource_id(self) -> str:
        return self.logical_id

    @property
    def physical_resource_id(self) -> str:
        return self.provisioned.physical_id

    @property
    def cf_resource_type(self) -> str:
        return self.resource_type

    @property
    def resource_status(self) -> str:
        return self.status


class Stack(models.Stack):
    """A stack of the local cloud. The class names Stack and ChangeSet stay: moto's serializer
    strips them from attribute names (StackStatus -> status)."""

    def __init__(
        self,
        stack_id: str,
        name: str,
        account_id: str,
        region_name: str,
        notification_arns: list[str] | None = None,
        tags: dict[str, str] | None = None,
        role_arn: str | None = None,
    ):
        # moto's __init__ is not called: it builds a lazy ResourceMap that creates
        # resources when they are looked up, which is what this module replaces.
        self.stack_id = stack_id
        self.name = name
        self.account_id = account_id
        self.region_name = region_name
        self.notification_arns = notification_arns or []
        self.tags = tags or {}
        self.role_arn = role_arn
        self.template: str | dict[str, Any] = {}
        self.template_dict: dict[str, Any] = {}
        self.description: str | None = None
        self.parameters: dict[str, str] = {}
        self.no_echo: set[str] = set()
        self.resources: dict[str, ResourceRecord] = {}
        self.output_values: list[dict[str, Any]] | None = None
        self.export_list: list[Any] = []
        self.events: list[Any] = []
        self.status = "REVIEW_IN_PROGRESS"
        self.status_reason: str | None = None
        self.creation_time = utcnow()
        self.last_updated_time = None
        self.deletion_time = None
        self.change_set_id: str | None = None
        self.capabilities: list[str] = []
        self.timeout_in_minutes = None
        self.policy = ""
        self.cross_stack_resources: dict[str, Any] = {}
        self.enable_termination_protection = False
        self.custom_resources: dict[str, Any] = {}
        self.disable_rollback = False
        self.resource_map = None

    @property
    def parameter_list(self) -> list[dict[str, Any]]:
        return [
            {"ParameterKey": k, "ParameterValue": "****" if k in self.no_echo else v}
            for k, v in self.parameters.items()
        ]

    @property
    def stack_parameters(self) -> dict[str, Any]:
        return self.parameters

    @property
    def stack_resources(self) -> list[ResourceRecord]:
        return list(self.resources.values())

    @property
    def outputs(self) -> list[dict[str, Any]] | None:
        return self.output_values or None

    @property
    def exports(self) -> list[Any]:
        return self.export_list

    def has_template(self, other_template: str) -> bool:
        return self.template_dict == cfn.load(other_template)

    def has_parameters(self, other_parameters: dict[str, Any]) -> bool:
        return self.parameters == other_parameters

    def delete(self) -> None:
        Operation(self).delete()

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("stack updates go through the local cloud's engine")


class ChangeSet(models.ChangeSet):
    def __init__(
        self,
        change_set_type: str,
        change_set_id: str,
        change_set_name: str,
        stack: Any,
        template: str,
        template_dict: dict[str, Any],
        parameters: dict[str, str],
        description: str | None,
        changes: list[Any],
        notification_arns: list[str] | None,
        tags: dict[str, str] | None,
        role_arn: str | None,
        capabilities: list[str],
    ):
        self.change_set_type = change_set_type
        self.change_set_id = change_set_id
        self.change_set_name = change_set_name
        self.stack = stack
        self.stack_id = stack.stack_id
        self.stack_name = stack.name
        self.notification_arns = notification_arns or []
        self.description = description
        self.tags = [{"Key": k, "Value": v} for k, v in (tags or {}).items()]
        self.tag_dict = tags
        self.role_arn = role_arn
        self.template = template
        self.template_dict = template_dict
        self.parameters = parameters
        self.capabilities = capabilities
        self.creation_time = utcnow()
        self.changes = changes
        self.status = "CREATE_COMPLETE"
        self.execution_status = "AVAILABLE"
        self.status_reason: str | None = None

    def apply(self) -> None:
        raise NotImplementedError("change sets are executed by the local cloud's engine")


def stack_event(
    stack: Any,
    status: str,
    *,
    logical_id: str | None = None,
    physical_id: str | None = None,
    resource_type: str = "AWS::CloudFormation::Stack",
    reason: str | None = None,
    properties: dict[str, Any] | None = None,
) -> None:
    event = Event(
        stack_id=stack.stack_id,
        stack_name=stack.name,
        logical_resource_id=logical_id or stack.name,
        physical_resource_id=physical_id if logical_id else stack.stack_id,
        resource_type=resource_type,
        resource_status=status,
        resource_status_reason=reason,
        resource_properties=json.dumps(properties) if properties is not None else None,
    )
    try:
        event.sendToSns(stack.account_id, stack.region_name, stack.notification_arns)
    except Exception:  # a notification topic that is gone must not break the stack
        log.exception("stack %s: event not sent to %s", stack.name, stack.notification_arns)
    stack.events.append(event)


# ---------------------------------------------------------------- the engine


class _Failure(Exception):
    def __init__(self, logical_id: str, verb: str):
        super().__init__(logical_id)
        self.logical_id = logical_id
        self.verb = verb  # create | update


# Where a stack ends when the engine itself breaks mid-operation (a bug, not a resource).
_BROKEN = {
    "create": "ROLLBACK_FAILED",
    "update": "UPDATE_ROLLBACK_FAILED",
    "delete": "DELETE_FAILED",
}


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(self: Operation, *args: Any) -> Any:
        try:
            return method(self, *args)
        except Exception as exc:  # never leave the stack *_IN_PROGRESS for ever
            log.exception("stack %s: %s broke", self.stack.name, method.__name__)
            self.set_status(
                _BROKEN[method.__name__], f"Internal Failure: {type(exc).__name__}: {exc}"
            )
            return False

    return run


class Operation:
    """One stack operation: create, update or delete, with rollback."""

    def __init__(self, stack: Any):
        self.stack = stack
        self.backend = cloudformation_backends[stack.account_id][stack.region_name]
        self.endpoint = _endpoint()

    # --- helpers

    def context(self, logical_id: str, resource_type: str) -> Context:
        return Context(
            account_id=self.stack.account_id,
            region=self.stack.region_name,
            stack_name=self.stack.name,
            stack_id=self.stack.stack_id,
            logical_id=logical_id,
            resource_type=resource_type,
            endpoint=self.endpoint,
        )

    def resolver(self, template: dict[str, Any], parameters: dict[str, str]) -> cfn.Resolver:
        return make_resolver(self.stack, template, parameters, self.backend)

    def set_status(self, status: str, reason: str | None = None) -> None:
        self.stack.status = status
        self.stack.status_reason = reason
        if status.startswith(("UPDATE", "ROLLBACK")):
            self.stack.last_updated_time = utcnow()
        stack_event(self.stack, status, reason=reason)

    def event(
        self,
        logical_id: str,
        resource_type: str,
        status: str,
        physical_id: str | None = None,
        reason: str | None = None,
        properties: dict[str, Any] | None = None,
    ) -> None:
        stack_event(
            self.stack,
            status,
            logical_id=logical_id,
            physical_id=physical_id or "",
            resource_type=resource_type,
            reason=reason,
            properties=properties,
        )

    def _provision(
        self, logical_id: str, resource_type: str, props: dict[str, Any], verb: str
    ) -> ResourceRecord:
        """Create one resource (verb create, or update for a replacement); raises _Failure."""
        status = "CREATE" if verb == "create" else "UPDATE"
        handler = handler_for(resource_type)
        try:
            if handler is None:
                raise ResourceError(
                    f"The local cloud cannot provision {resource_type}: neither "
                    "pipeline/localcloud/cloudformation_resources.py nor moto 5.2.5 has a "
                    "handler for it. Fix: add one there"
                )
            handler.check(props)
            provisioned = handler.create(self.context(logical_id, resource_type), props)
        except Exception as exc:
            name = handler.name_property if handler else None
            reason = error_reason(exc, resource_type, (name and props.get(name)) or logical_id)
            self.event(logical_id, resource_type, f"{status}_FAILED", reason=reason)
            raise _Failure(logical_id, verb) from exc
        self.event(
            logical_id,
            resource_type,
            f"{status}_COMPLETE",
            provisioned.physical_id,
            properties=props,
        )
        return ResourceRecord(logical_id, resource_type, provisioned, props)

    def _delete(self, record: ResourceRecord, policy: str, made_now: bool) -> bool:
        """Delete one resource unless its policy keeps it; False when the delete failed."""
        physical = record.provisioned.physical_id
        if policy == "Retain" or (policy == "RetainExceptOnCreate" and not made_now):
            self.event(record.logical_id, record.resource_type, "DELETE_SKIPPED", physical)
            return True
        self.event(record.logical_id, record.resource_type, "DELETE_IN_PROGRESS", physical)
        handler = handler_for(record.resource_type)
        try:
            if handler is not None:
                handler.delete(
                    self.context(record.logical_id, record.resource_type),
                    record.provisioned,
                    record.properties,
                )
        except Exception as exc:
            reason = error_reason(exc, record.resource_type, physical)
            self.event(record.logical_id, record.resource_type, "DELETE_FAILED", physical, reason)
            return False
        self.event(record.logical_id, record.resource_type, "DELETE_COMPLETE", physical)
        return True

    def _finish_outputs(self, template: dict[str, Any], parameters: dict[str, str]) -> None:
        outputs, exports = evaluate_outputs(self.stack, template, parameters, self.backend)
        for export in exports:
            owner = self.backend.exports.get(export.name)
            if owner is not None and owner.exporting_stack_id != self.stack.stack_id:
                raise ResourceError(
                    f"Export with name {export.name} is already exported by stack "
                    f"{owner.exporting_stack_id.split('/')[1]}"
                )
        for export in self.stack.export_list:
            self.backend.exports.pop(export.name, None)
        for export in exports:
            self.backend.exports[export.name] = export
        self.stack.output_values = outputs
        self.stack.export_list = exports

    # --- create

    @_guarded
    def create(self, body: str, template: dict[str, Any], parameters: dict[str, str]) -> None:
        stack = self.stack
        stack.template, stack.template_dict, stack.parameters = body, template, parameters
        stack.description = template.get("Description")
        stack.no_echo = cfn.no_echo(template)
        self.set_status("CREATE_IN_PROGRESS", "User Initiated")
        made: list[ResourceRecord] = []
        try:
            resolver = self.resolver(template, parameters)
            plan = cfn.order(template, {n for n in template["Resources"] if resolver.active(n)})
            for logical_id in plan:
                declaration = template["Resources"][logical_id]
                kind = declaration["Type"]
                self.event(logical_id, kind, "CREATE_IN_PROGRESS")
                props = self._resolve(resolver, logical_id, kind, declaration, "create")
                record = self._provision(logical_id, kind, props, "create")
                stack.resources[logical_id] = record
                made.append(record)
            self._outputs_or_fail(template, parameters)
        except _Failure as failure:
            self._rollback_create(failure, made)
            return
        self.set_status("CREATE_COMPLETE")

    def _resolve(
        self,
        resolver: cfn.Resolver,
        logical_id: str,
        kind: str,
        declaration: dict[str, Any],
        verb: str,
    ) -> dict[str, Any]:
        try:
            return resolver.resolve(declaration.get("Properties") or {})
        except Exception as exc:  # an intrinsic function that cannot be evaluated
            reason = (
                str(exc)
                if isinstance(exc, (cfn.TemplateError, ResourceError))
                else (f"Template error: {type(exc).__name__}: {exc}")
            )
            self.event(logical_id, kind, f"{verb.upper()}_FAILED", reason=reason)
            raise _Failure(logical_id, verb) from exc

    def _outputs_or_fail(self, template: dict[str, Any], parameters: dict[str, str]) -> None:
        try:
            self._finish_outputs(template, parameters)
        except Exception as exc:
            self.stack.status_reason = str(exc)
            stack_event(self.stack, self.stack.status, reason=str(exc))
            raise _Failure(self.stack.name, "update") from exc

    def _rollback_create(self, failure: _Failure, made: list[ResourceRecord]) -> None:
        stack = self.stack
        self.set_status(
            "ROLLBACK_IN_PROGRESS",
            f"The following resource(s) failed to {failure.verb}: [{failure.logical_id}]. "
            "Rollback requested by user.",
        )
        failed = False
        for record in reversed(made):
            policy = stack.template_dict["Resources"][record.logical_id].get("DeletionPolicy", "")
            failed |= not self._delete(record, policy, made_now=True)
            stack.resources.pop(record.logical_id, None)
        if failure.logical_id in stack.template_dict["Resources"]:
            kind = stack.template_dict["Resources"][failure.logical_id]["Type"]
            self.event(failure.logical_id, kind, "DELETE_COMPLETE")
        stack.output_values = None
        self.set_status("ROLLBACK_FAILED" if failed else "ROLLBACK_COMPLETE")

    # --- update

    @_guarded
    def update(self, body: str, template: dict[str, Any], parameters: dict[str, str]) -> None:
        stack = self.stack
        before = (
            stack.template,
            stack.template_dict,
            stack.parameters,
            stack.description,
            stack.no_echo,
            dict(stack.resources),
            stack.output_values,
        )
        old_template = stack.template_dict
        stack.template, stack.template_dict, stack.parameters = body, template, parameters
        stack.description = template.get("Description")
        stack.no_echo = cfn.no_echo(template)
        self.set_status("UPDATE_IN_PROGRESS", "User Initiated")
        # (logical id, record before this update or None when added, properties now applied)
        touched: list[tuple[str, ResourceRecord | None, dict[str, Any]]] = []
        replaced: list[ResourceRecord] = []
        try:
            resolver = self.resolver(template, parameters)
            plan = cfn.order(template, {n for n in template["Resources"] if resolver.active(n)})
            for logical_id in plan:
                self._update_one(resolver, template, logical_id, touched, replaced)
            self._outputs_or_fail(template, parameters)
        except _Failure as failure:
            self._rollback_update(failure, before, touched)
            return
        self.set_status("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")
        for record in reversed(replaced):
            old = old_template["Resources"].get(record.logical_id, {})
            self._delete(record, old.get("UpdateReplacePolicy", ""), made_now=False)
        old_plan = [n for n in old_template.get("Resources", {}) if n in before[5]]
        for logical_id in reversed(old_plan):
            if logical_id not in plan and logical_id in stack.resources:
                record = stack.resources.pop(logical_id)
                policy = old_template["Resources"][logical_id].get("DeletionPolicy", "")
                self._delete(record, policy, made_now=False)
        self.set_status("UPDATE_COMPLETE")

    def _update_one(
        self,
        resolver: cfn.Resolver,
        template: dict[str, Any],
        logical_id: str,
        touched: list[tuple[str, ResourceRecord | None, dict[str, Any]]],
        replaced: list[ResourceRecord],
    ) -> None:
        stack = self.stack
        declaration = template["Resources"][logical_id]
        kind = declaration["Type"]
        previous = stack.resources.get(logical_id)
        verb = "create" if previous is None else "update"
        props = self._resolve(resolver, logical_id, kind, declaration, verb)
        if previous is None:
            self.event(logical_id, kind, "CREATE_IN_PROGRESS")
            stack.resources[logical_id] = self._provision(logical_id, kind, props, "create")
            touched.append((logical_id, None, props))
            return
        if previous.resource_type == kind and props == previous.properties:
            return
        handler = handler_for(kind)
        keys = replace_on(kind)
        replacing = previous.resource_type != kind or any(
            previous.properties.get(k) != props.get(k) for k in keys
        )
        if replacing:
            name = handler.name_property if handler else None
            if name and props.get(name) and props.get(name) == previous.properties.get(name):
                reason = (
                    "CloudFormation cannot update a stack when a custom-named resource requires "
                    f"replacing. Rename {props[name]} and update the stack again."
                )
                self.event(logical_id, kind, "UPDATE_FAILED", previous.physical_resource_id, reason)
                raise _Failure(logical_id, "update")
            self.event(
                logical_id,
                kind,
                "UPDATE_IN_PROGRESS",
                previous.physical_resource_id,
                "Requested update requires the creation of a new physical resource; hence "
                "creating one.",
            )
            made = self._provision(logical_id, kind, props, "update")
            stack.resources[logical_id] = replace(made, status="UPDATE_COMPLETE")
            touched.append((logical_id, previous, props))
            replaced.append(previous)
            return
        self.event(logical_id, kind, "UPDATE_IN_PROGRESS", previous.physical_resource_id)
        try:
            assert handler is not None  # a resource of a type without handler was never made
            provisioned = handler.update(
                self.context(logical_id, kind), previous.provisioned, previous.properties, props
            )
        except Exception as exc:
            # The call may have half-applied; the rollback re-applies the previous properties.
            touched.append((logical_id, previous, props))
            reason = error_reason(exc, kind, previous.physical_resource_id)
            self.event(logical_id, kind, "UPDATE_FAILED", previous.physical_resource_id, reason)
            raise _Failure(logical_id, "update") from exc
        stack.resources[logical_id] = replace(
            previous,
            provisioned=provisioned,
            properties=props,
            status="UPDATE_COMPLETE",
            timestamp=utcnow(),
        )
        touched.append((logical_id, previous, props))
        self.event(logical_id, kind, "UPDATE_COMPLETE", provisioned.physical_id, properties=props)

    def _rollback_update(
        self,
        failure: _Failure,
        before: tuple[Any, ...],
        touched: list[tuple[str, ResourceRecord | None, dict[str, Any]]],
    ) -> None:
        stack = self.stack
        new_template = stack.template_dict
        self.set_status(
            "UPDATE_ROLLBACK_IN_PROGRESS",
            f"The following resource(s) failed to {failure.verb}: [{failure.logical_id}]. ",
        )
        (
            stack.template,
            stack.template_dict,
            stack.parameters,
            stack.description,
            stack.no_echo,
            _,
            stack.output_values,
        ) = before
        failed = False
        made_now: list[ResourceRecord] = []
        for logical_id, previous, applied in reversed(touched):
            current = stack.resources.get(logical_id)
            if previous is None:
                if current is not None:
                    made_now.append(current)
                stack.resources.pop(logical_id, None)
                continue
            if (
                current is not None
                and current.physical_resource_id != previous.physical_resource_id
            ):
                made_now.append(current)  # the replacement; the previous resource is intact
                stack.resources[logical_id] = previous
                continue
            kind = previous.resource_type
            self.event(logical_id, kind, "UPDATE_IN_PROGRESS", previous.physical_resource_id)
            try:
                handler = handler_for(kind)
                assert handler is not None
                provisioned = handler.update(
                    self.context(logical_id, kind),
                    (current or previous).provisioned,
                    applied,
                    previous.properties,
                )
            except Exception as exc:
                failed = True
                reason = error_reason(exc, kind, previous.physical_resource_id)
                self.event(logical_id, kind, "UPDATE_FAILED", previous.physical_resource_id, reason)
                stack.resources[logical_id] = previous
                continue
            stack.resources[logical_id] = replace(
                previous, provisioned=provisioned, timestamp=utcnow()
            )
            self.event(logical_id, kind, "UPDATE_COMPLETE", provisioned.physical_id)
        self.set_status("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
        for record in made_now:
            policy = new_template["Resources"].get(record.logical_id, {}).get("DeletionPolicy", "")
            failed |= not self._delete(record, policy, made_now=True)
        self.set_status("UPDATE_ROLLBACK_FAILED" if failed else "UPDATE_ROLLBACK_COMPLETE")

    # --- delete

    @_guarded
    def delete(self) -> bool:
        """Delete the stack's resources; False when one could not be deleted (DELETE_FAILED)."""
        stack = self.stack
        self.set_status("DELETE_IN_PROGRESS", "User Initiated")
        declared = stack.template_dict.get("Resources") or {}
        known = set(stack.resources) & set(declared)
        try:
            plan = cfn.order(stack.template_dict, known) if known else []
        except cfn.TemplateError:
            plan = list(known)
        plan += [n for n in stack.resources if n not in plan]
        failed = []
        for logical_id in reversed(plan):
            record = stack.resources[logical_id]
            policy = declared.get(logical_id, {}).get("DeletionPolicy", "")
            if self._delete(record, policy, made_now=False):
                stack.resources.pop(logical_id)
            else:
                failed.append(logical_id)
        if failed:
            self.set_status(
                "DELETE_FAILED",
                f"The following resource(s) failed to delete: [{', '.join(sorted(failed))}]. ",
            )
            return False
        for export in stack.export_list:
            self.backend.exports.pop(export.name, None)
        stack.export_list = []
        stack.deletion_time = utcnow()
        self.set_status("DELETE_COMPLETE")
        return True


def make_resolver(
    stack: Any, template: dict[str, Any], parameters: dict[str, str], backend: Any
) -> cfn.Resolver:
    def ref(name: str) -> Any:
        record = stack.resources.get(name)
        if record is None:
            raise ResourceError(
                f"Template error: resource {name} is referenced but does not exist (its "
                "Condition is false or it failed); reference it under an Fn::If on the same "
                "condition"
            )
        return record.provisioned.physical_id

    def getatt(name: str, attribute: str) -> Any:
        record = stack.resources.get(name)
        if record is None:
            ref(name)
        handler = handler_for(record.resource_type)
        assert handler is not None
        try:
            return handler.getatt(record.provisioned, attribute)
        except ResourceError:
            raise ResourceError(
                f"Template error: resource {name} does not support attribute type {attribute} "
                "in Fn::GetAtt"
            ) from None

    def import_value(name: str) -> Any:
        export = backend.exports.get(name)
        if export is None:
            raise cfn.TemplateError(f"No export named {name} found.")
        return export.value

    partition = get_partition(stack.region_name)
    pseudo = {
        "AWS::AccountId": stack.account_id,
        "AWS::Region": stack.region_name,
        "AWS::StackName": stack.name,
        "AWS::StackId": stack.stack_id,
        "AWS::Partition": partition,
        "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
        "AWS::NotificationARNs": list(stack.notification_arns),
    }
    return cfn.Resolver(template, parameters, pseudo, ref, getatt, import_value)


def evaluate_outputs(
    stack: Any, template: dict[str, Any], parameters: dict[str, str], backend: Any
) -> tuple[list[dict[str, Any]], list[Any]]:
    resolver = make_resolver(stack, template, parameters, backend)
    outputs, exports = [], []
    for key, output in (template.get("Outputs") or {}).items():
        condition = output.get("Condition")
        if condition and not resolver.conditions.get(condition, False):
            continue
        value = resolver.resolve(output["Value"])
        text = ",".join(map(str, value)) if isinstance(value, list) else cfn._text(value)
        entry = {"OutputKey": key, "OutputValue": text, "Description": output.get("Description")}
        if output.get("Export"):
            name = str(resolver.resolve(output["Export"]["Name"]))
            entry["ExportName"] = name
            exports.append(Export(stack.stack_id, name, text))
        outputs.append(entry)
    return outputs, exports
