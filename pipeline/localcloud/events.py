"""S3 -> EventBridge -> Step Functions gap: a new object under a prefix starts an execution.

On AWS a bucket with EventBridge notifications on sends every object event to the account's
default event bus; a rule whose pattern matches (source aws.s3, detail-type Object Created,
detail.bucket.name, a detail.object.key prefix) passes the event, shaped by the target's Input,
InputPath or InputTransformer, to its targets; a Step Functions target starts one execution per
matching event (a second upload of the same key is a second event and a second execution).

moto 5.2.5 already sends S3 events to EventBridge and matches patterns (prefix included), but
its Rule.send_to_targets raises NotImplementedError for a `states` target (swallowed by S3's
notifier, so nothing happens), applies no Input or InputPath, skips InputTransformer for S3
events, ignores a rule's DISABLED state, and S3 sends to the rules of every bus, not only the
default one, with a fixed event id and moto's own detail fields.

Patched (tests/functional/localcloud/test_events_gap.py checks each):
- moto.events.models.Rule.send_to_targets: wrapped; a DISABLED rule sends nothing, and a
  target whose Arn is a state machine starts an execution with the target's input. Every
  other target still goes through moto's own code, unchanged.
- moto.s3.models.FakeBucket.create_from_cloudformation_json / update_from_cloudformation_json:
  wrapped; moto ignores NotificationConfiguration.EventBridgeConfiguration of an
  AWS::S3::Bucket, so a bucket deployed by CloudFormation never sent an event.
- moto.s3.notifications._send_event_bridge_message: replaced; the event has the fields AWS
  documents for S3 (fresh id, `etag`, `sequencer`, `reason` PutObject, ...) and goes to the
  default bus only; a failure is logged instead of silently dropped.
Delivery is synchronous (the execution is started before PutObject returns; it then runs in
its own thread): a test can count executions right after the upload without polling.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

# EventBridge's JSONPath subset: dot notation with dashes and underscores, array indices.
_PATH_STEP = re.compile(r"\.([A-Za-z0-9_\-/@]+)|\[(\d+)\]")
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")
# What S3 puts in detail.reason, per event (docs: S3 user guide, "EventBridge event message
# structure"); other events fall back to moto's value.
S3_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
}


class EventTargetInputError(Exception):
    """A target's Input, InputPath or InputTransformer cannot be applied to an event."""


# ---------------------------------------------------------------- pure: the S3 event


def iso_time(value: float | str) -> str:
    """EventBridge's `time`: ISO 8601 to the second, in UTC (moto keeps epoch seconds inside)."""
    if isinstance(value, str):
        return value
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def s3_event(
    *,
    account_id: str,
    region: str,
    bucket_name: str,
    event_name: str,
    detail_type: str,
    key: str,
    size: int,
    etag: str,
    version_id: str | None,
    now: float,
) -> dict[str, Any]:
    """The event S3 sends to EventBridge for `event_name` (e.g. s3:ObjectCreated:Put).

    `time` and `ingestion-time` are epoch seconds, as moto's events code expects inside; the
    delivered event carries ISO time (see delivered_event).
    """
    obj: dict[str, Any] = {"key": key, "size": size, "etag": etag.strip('"')}
    if version_id:
        obj["version-id"] = version_id
    # Increases with every event, as S3's per-key sequencer does.
    obj["sequencer"] = f"{time.time_ns():018X}"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": account_id,
        "time": now,
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket_name}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket_name},
            "object": obj,
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": account_id,
            "source-ip-address": "127.0.0.1",
            "reason": S3_REASONS.get(event_name, event_name.split(":")[1]),
        },
        "ingestion-time": now,
    }


def delivered_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event as a target receives it: ISO time, without moto's ingestion-time."""
    delivered = {k: copy.deepcopy(v) for k, v in event.items() if k != "ingestion-time"}
    if "time" in delivered:
        delivered["time"] = iso_time(delivered["time"])
    return delivered


# ---------------------------------------------------------------- pure: target input


def resolve_path(document: Any, path: str) -> Any:
    """The value at `path` ($.detail.object.key, $.resources[0]) or None when absent."""
    if not path.startswith("$"):
        raise EventTargetInputError(f"JSONPath {path!r} must start with '$', like $.detail.key")
    rest, value, position = path[1:], document, 0
    while position < len(rest):
        step = _PATH_STEP.match(rest, position)
        if step is None:
            raise EventTargetInputError(
                f"JSONPath {path!r} is not in EventBridge's subset (dot notation and array "
                "indices, e.g. $.detail.object.key or $.resources[0]); rewrite it"
            )
        name, index = step.groups()
        if name is not None:
            value = value.get(name) if isinstance(value, dict) else None
        else:
            value = (
                value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
            )
        position = step.end()
    return value


def _render(value: Any, in_string: bool, json_template: bool) -> str:
    if not json_template:  # a plain-text template takes strings as they are
        return "" if value is None else value if isinstance(value, str) else json.dumps(value)
    if in_string:
        if value is None:
            return ""
        # Strings are escaped into the surrounding JSON string; objects go in as raw JSON, as
        # AWS does for aws.events.event.json ("only as the value of a JSON field").
        return json.dumps(value)[1:-1] if isinstance(value, str) else json.dumps(value)
    return json.dumps(value)


def render_template(template: str, values: dict[str, Any]) -> str:
    """InputTemplate with each <name> of `values` replaced as EventBridge replaces it.

    In a JSON template a placeholder outside quotes becomes the JSON value (a string gets its
    quotes), inside quotes the string's text; a plain-text template gets strings verbatim.
    Placeholders not in `values` stay as written.
    """
    json_template = template.lstrip().startswith(("{", "["))
    out: list[str] = []
    in_string = False
    position = 0
    while position < len(template):
        char = template[position]
        if json_template and in_string and char == "\\":
            out.append(template[position : position + 2])
            position += 2
            continue
        if json_template and char == '"':
            in_string = not in_string
        elif char == "<":
            match = _PLACEHOLDER.match(template, position)
            if match and match.group(1) in values:
                out.append(_render(values[match.group(1)], in_string, json_template))
                position = match.end()
                continue
        out.append(char)
        position += 1
    return "".join(out)


def target_input(
    target: dict[str, Any], event: dict[str, Any], rule_name: str, rule_arn: str
) -> str:
    """The text a target receives for `event` (the delivered event): Input, InputPath,
    InputTransformer, or else the whole event."""
    if target.get("Input") is not None:
        return target["Input"]
    if target.get("InputPath"):
        return json.dumps(resolve_path(event, target["InputPath"]))
    transformer = target.get("InputTransformer")
    if not transformer:
        return json.dumps(event)
    values: dict[str, Any] = {
        name: resolve_path(event, path)
        for name, path in (transformer.get("InputPathsMap") or {}).items()
    }
    values.update(
        {
            "aws.events.rule-arn": rule_arn,
            "aws.events.rule-name": rule_name,
            "aws.events.event.ingestion-time": event.get("time"),
            "aws.events.event": {k: v for k, v in event.items() if k != "detail"},
            "aws.events.event.json": event,
        }
    )
    return render_template(transformer["InputTemplate"], values)


def is_state_machine(arn: str) -> bool:
    parts = arn.split(":")
    return len(parts) >= 7 and parts[2] == "states" and parts[5] == "stateMachine"


# ---------------------------------------------------------------- edges (moto)


def start_execution(target: dict[str, Any], text: str) -> str:
    """Start the target state machine with `text` as input; returns the execution ARN."""
    from moto.stepfunctions.responses import get_backend

    _, _, _, region, account, *_ = target["Arn"].split(":")
    json.loads(text)  # Step Functions takes JSON only: fail here with the reason
    backend = get_backend(account, region)  # the ASL interpreter when executions really run
    execution = backend.start_execution(target["Arn"], name=str(uuid.uuid4()), execution_input=text)
    return execution.execution_arn


def deliver_to_state_machine(rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None:
    try:
        if not target.get("RoleArn"):
            raise EventTargetInputError(
                f"target {target.get('Id')} of rule {rule.name} has no RoleArn; EventBridge "
                "needs a role allowed states:StartExecution to start a state machine"
            )
        text = target_input(target, delivered_event(event), rule.name, rule.arn)
        arn = start_execution(target, text)
        log.info("rule %s started %s", rule.name, arn)
    except Exception:  # AWS counts a FailedInvocation and carries on with the other targets
        log.exception("rule %s could not start %s", rule.name, target.get("Arn"))


def send_s3_event(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
    """Replaces moto.s3.notifications._send_event_bridge_message (same arguments)."""
    try:
        from moto.core.utils import unix_time
        from moto.events.models import events_backends
        from moto.s3.notifications import _detail_type

        event = s3_event(
            account_id=account_id,
            region=bucket.region_name,
            bucket_name=bucket.name,
            event_name=event_name,
            detail_type=_detail_type(event_name),
            key=key.name,
            size=key.size,
            etag=key.etag,
            version_id=key.version_id if getattr(bucket, "is_versioned", False) else None,
            now=unix_time(),
        )
        bus = events_backends[account_id][bucket.region_name].event_buses["default"]
        for rule in list(bus.rules.values()):
            # transform_input=False as moto's own call: its transformer needs fields S3 events
            # lack; targets of this gap apply theirs in deliver_to_state_machine.
            rule.send_to_targets(event, transform_input=False)
    except Exception:  # asynchronous on AWS: the S3 request succeeds whatever happens here
        log.exception("S3 event %s for s3://%s/%s not delivered", event_name, bucket.name, key.name)


def apply_cfn_eventbridge(bucket: Any, properties: dict[str, Any]) -> None:
    """Turn EventBridge notifications on or off as AWS::S3::Bucket's properties say."""
    from moto.s3.models import NotificationConfiguration

    setting = (properties.get("NotificationConfiguration") or {}).get("EventBridgeConfiguration")
    enabled = bool(setting) and str(setting.get("EventBridgeEnabled", True)).lower() == "true"
    if bucket.notification_configuration is None:
        if enabled:
            bucket.notification_configuration = NotificationConfiguration(event_bridge={})
        return
    bucket.notification_configuration.event_bridge = {} if enabled else None


def _patch_cfn_bucket() -> None:
    from moto.s3.models import FakeBucket

    moto_create = FakeBucket.create_from_cloudformation_json.__func__
    moto_update = FakeBucket.update_from_cloudformation_json.__func__

    def create(
        cls: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kw: Any
    ) -> Any:
        bucket = moto_create(cls, resource_name, cloudformation_json, *args, **kw)
        apply_cfn_eventbridge(bucket, cloudformation_json.get("Properties", {}))
        return bucket

    def update(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        # CloudFormation calls this with keywords: the parameter names are moto's.
        bucket = moto_update(
            cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
        )
        apply_cfn_eventbridge(bucket, cloudformation_json.get("Properties", {}))
        return bucket

    FakeBucket.create_from_cloudformation_json = classmethod(create)
    FakeBucket.update_from_cloudformation_json = classmethod(update)


def install() -> None:
    from moto.events.models import Rule
    from moto.s3 import notifications

    if not hasattr(notifications, "_send_event_bridge_message"):
        # Replacing a function moto no longer calls would do nothing, silently.
        raise AttributeError(
            "moto.s3.notifications._send_event_bridge_message is gone: the moto upgrade "
            "changed what pipeline/localcloud/events.py patches; update the patch and its tests"
        )
    notifications._send_event_bridge_message = send_s3_event
    if getattr(Rule.send_to_targets, "_localcloud", False):
        return
    moto_send_to_targets = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if self.state == "DISABLED" or not self.event_pattern.matches_event(original_event):
            return
        machines = [t for t in self.targets if is_state_machine(t["Arn"])]
        for target in machines:
            deliver_to_state_machine(self, target, original_event)
        others = [t for t in self.targets if not is_state_machine(t["Arn"])]
        if others:
            view = copy.copy(self)
            view.targets = others
            moto_send_to_targets(view, original_event, transform_input)

    send_to_targets._localcloud = True  # type: ignore[attr-defined]
    Rule.send_to_targets = send_to_targets
    _patch_cfn_bucket()
